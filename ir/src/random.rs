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
    fn streams_and_keys_differ() {
        assert_ne!(bits(1, 0, 0), bits(2, 0, 0));
        assert_ne!(bits(1, 0, 0), bits(1, 1, 0));
        assert_eq!(bits(3, 4, 5), bits(3, 4, 5));
    }
}
