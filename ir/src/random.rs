//! The counter-based random number generator behind `random_bits` and
//! parameter initialization: every value is a pure function of a key, a
//! stream and a counter, so results never depend on evaluation order or
//! thread count. The mixing function is SplitMix64's finalizer applied in
//! three rounds, which passes the usual avalanche tests for this use.

/// 64 random bits for counter `index` of `stream` under `key`.
pub fn bits(key: u64, stream: u64, index: u64) -> u64 {
    let a = mix(index ^ 0x9e37_79b9_7f4a_7c15);
    let b = mix(a ^ stream.wrapping_mul(0xbf58_476d_1ce4_e5b9));
    mix(b ^ key.wrapping_mul(0x94d0_49bb_1331_11eb))
}

/// 31 random bits for counter `index` of `stream` under `key`, from 32-bit
/// arithmetic only, so that vector units compute four counters at once:
/// what `random_bits` of dtype i32 holds. The key and stream are folded into
/// two 32-bit seeds ([`seeds32`]); the counter (its low 32 bits: tensors of
/// more than 2^32 elements repeat) is mixed with MurmurHash3's 32-bit
/// finalizer, offset by the second seed, and mixed again. Two keys give
/// unrelated sequences, not permutations of each other.
pub fn bits31(key: u64, stream: u64, index: u64) -> u32 {
    let (s1, s2) = seeds32(key, stream);
    fmix32(fmix32(index as u32 ^ s1).wrapping_add(s2)) >> 1
}

/// The two 32-bit seeds of [`bits31`] for `key` and `stream`.
pub fn seeds32(key: u64, stream: u64) -> (u32, u32) {
    let k = (key as u32) ^ ((key >> 32) as u32);
    let s1 = fmix32(k ^ (stream as u32).wrapping_mul(0x9e37_79b9) ^ 0x85eb_ca6b);
    (s1, fmix32(s1 ^ 0xc2b2_ae35))
}

/// MurmurHash3's 32-bit finalizer (a bijection with full avalanche).
pub fn fmix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// A uniform float in `[0, 1)` from the top 53 bits.
pub fn uniform(key: u64, stream: u64, index: u64) -> f64 {
    (bits(key, stream, index) >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// A standard normal sample (Box-Muller on two counters).
pub fn normal(key: u64, stream: u64, index: u64) -> f64 {
    let u1 = 1.0 - uniform(key, stream, 2 * index);
    let u2 = uniform(key, stream, 2 * index + 1);
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// A stable 64-bit hash of a name (FNV-1a), to derive a stream from it.
pub fn stream_of(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_has_mean_one_half_and_normal_unit_variance() {
        let n = 20_000;
        let mean: f64 = (0..n).map(|i| uniform(7, 1, i)).sum::<f64>() / n as f64;
        assert!((mean - 0.5).abs() < 0.01, "mean {mean}");
        let xs: Vec<f64> = (0..n).map(|i| normal(7, 2, i)).collect();
        let m = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n as f64;
        assert!(m.abs() < 0.03 && (var - 1.0).abs() < 0.05, "mean {m} variance {var}");
    }

    #[test]
    fn bits31_are_uniform_and_differ_by_key_and_stream() {
        let n = 1u64 << 16;
        // Each of the 31 bits is set about half the time.
        for bit in 0..31 {
            let ones = (0..n).filter(|&i| bits31(7, 0, i) >> bit & 1 == 1).count() as f64 / n as f64;
            assert!((ones - 0.5).abs() < 0.01, "bit {bit}: {ones}");
        }
        let below = (0..n).filter(|&i| bits31(3, 1, i) < (1 << 30)).count() as f64 / n as f64;
        assert!((below - 0.5).abs() < 0.01, "{below}");
        // Neighbouring keys and streams are unrelated, not shifted copies.
        let same = |a: &dyn Fn(u64) -> u32, b: &dyn Fn(u64) -> u32| (0..n).filter(|&i| a(i) == b(i)).count();
        assert_eq!(same(&|i| bits31(1, 0, i), &|i| bits31(2, 0, i)), 0);
        assert_eq!(same(&|i| bits31(1, 0, i), &|i| bits31(1, 1, i)), 0);
        let mut a: Vec<u32> = (0..4096).map(|i| bits31(1, 0, i)).collect();
        let mut b: Vec<u32> = (0..4096).map(|i| bits31(2, 0, i)).collect();
        a.sort_unstable();
        b.sort_unstable();
        assert_ne!(a, b, "one key's values are not a permutation of another's");
    }

    #[test]
    fn streams_and_keys_differ() {
        assert_ne!(bits(1, 0, 0), bits(2, 0, 0));
        assert_ne!(bits(1, 0, 0), bits(1, 1, 0));
        assert_eq!(bits(3, 4, 5), bits(3, 4, 5));
    }
}
