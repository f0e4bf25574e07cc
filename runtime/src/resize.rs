//! Resizing images as the book's data pipeline does: torchvision's
//! `Resize` on a PIL image of 8-bit gray levels, which is PIL's bilinear
//! resampling, then `ToTensor`'s division by 255.
//!
//! PIL resamples separably, first along rows, then along columns. Each
//! output pixel is a normalized sum of input pixels weighted by a triangle
//! filter centered at the output pixel's center mapped into the input
//! (`(x + 0.5) * scale`); when shrinking, the filter widens by the scale,
//! which antialiases. Each pass rounds to an 8-bit level, as PIL does for an
//! 8-bit image. So the values a model sees are the book's, to within PIL's
//! fixed-point rounding (at most one level in rare ties).

/// The weights of one output coordinate: the first input index and the
/// normalized weights from there.
struct Taps {
    first: usize,
    weights: Vec<f32>,
}

/// PIL's bilinear coefficients for resizing an axis of `from` samples to `to`.
fn taps(from: usize, to: usize) -> Vec<Taps> {
    let scale = from as f64 / to as f64;
    let filter_scale = scale.max(1.0);
    let support = filter_scale; // the triangle's support is 1, widened when shrinking
    (0..to)
        .map(|x| {
            let center = (x as f64 + 0.5) * scale;
            let lo = ((center - support + 0.5).floor().max(0.0)) as usize;
            let hi = ((center + support + 0.5).floor() as usize).min(from);
            let raw: Vec<f64> = (lo..hi)
                .map(|i| {
                    let t = ((i as f64 - center + 0.5) / filter_scale).abs();
                    if t < 1.0 { 1.0 - t } else { 0.0 }
                })
                .collect();
            let total: f64 = raw.iter().sum();
            let weights = raw.iter().map(|w| if total > 0.0 { (w / total) as f32 } else { 0.0 }).collect();
            Taps { first: lo, weights }
        })
        .collect()
}

/// Rounds to the nearest 8-bit level, as PIL stores each pass.
fn level(v: f32) -> f32 {
    v.round().clamp(0.0, 255.0)
}

/// Resizes one image of `from = [height, width]` pixels in [0, 1] (a
/// multiple of 1/255, as read from IDX files) to `to`, bilinearly as PIL.
pub fn resize_bilinear(image: &[f32], from: [usize; 2], to: [usize; 2]) -> Vec<f32> {
    let ([h, w], [th, tw]) = (from, to);
    debug_assert_eq!(image.len(), h * w);
    if from == to {
        return image.to_vec();
    }
    let levels: Vec<f32> = image.iter().map(|v| (v * 255.0).round()).collect();
    let (across, down) = (taps(w, tw), taps(h, th));
    let mut rows = vec![0.0f32; h * tw];
    for y in 0..h {
        let src = &levels[y * w..(y + 1) * w];
        for (x, t) in across.iter().enumerate() {
            let sum: f32 = t.weights.iter().enumerate().map(|(k, wt)| wt * src[t.first + k]).sum();
            rows[y * tw + x] = level(sum);
        }
    }
    let mut out = vec![0.0f32; th * tw];
    for (y, t) in down.iter().enumerate() {
        for x in 0..tw {
            let sum: f32 = t.weights.iter().enumerate().map(|(k, wt)| wt * rows[(t.first + k) * tw + x]).sum();
            out[y * tw + x] = level(sum) / 255.0;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(h: usize, w: usize, f: impl Fn(usize, usize) -> u8) -> Vec<f32> {
        (0..h * w).map(|i| f32::from(f(i / w, i % w)) / 255.0).collect()
    }

    #[test]
    fn a_constant_image_stays_constant_at_any_size() {
        let src = image(28, 28, |_, _| 77);
        for to in [[96, 96], [224, 224], [14, 14], [28, 56]] {
            let out = resize_bilinear(&src, [28, 28], to);
            assert_eq!(out.len(), to[0] * to[1]);
            assert!(out.iter().all(|v| (v * 255.0 - 77.0).abs() < 1e-3), "{to:?}");
        }
    }

    /// Doubling a ramp: PIL's bilinear puts output pixel x at input
    /// (x + 0.5) / 2 - 0.5, clamping at the edges, so a ramp 0, 100, 200
    /// becomes 0, 25, 75, 125, 175, 200 (rounded to levels).
    #[test]
    fn upsampling_interpolates_between_pixel_centers() {
        let src = image(1, 3, |_, x| [0, 100, 200][x]);
        let out: Vec<f32> = resize_bilinear(&src, [1, 3], [1, 6]).iter().map(|v| (v * 255.0).round()).collect();
        assert_eq!(out, [0.0, 25.0, 75.0, 125.0, 175.0, 200.0]);
    }

    /// Halving widens the triangle to two input pixels, as PIL antialiases:
    /// the output pixel centered at input 1.0 weighs pixels 0, 1, 2 by
    /// 0.75, 0.75, 0.25 (normalized), the one at 3.0 pixels 1, 2, 3 by
    /// 0.25, 0.75, 0.75.
    #[test]
    fn downsampling_antialiases() {
        let src = image(1, 4, |_, x| [0, 100, 200, 250][x]);
        let out: Vec<f32> = resize_bilinear(&src, [1, 4], [1, 2]).iter().map(|v| (v * 255.0).round()).collect();
        let first = (0.75 * 0.0 + 0.75 * 100.0 + 0.25 * 200.0) / 1.75;
        let second = (0.25 * 100.0 + 0.75 * 200.0 + 0.75 * 250.0) / 1.75;
        assert_eq!(out, [f32::round(first), f32::round(second)]);
    }
}
