//! PIL's antialiased bilinear resize (`Image.resize(..., BILINEAR)`, which torchvision's
//! `Resize` calls for PIL images), so that lverse's preprocessing gives the official
//! pipeline's pixels: a triangle filter widened by the downscale factor, a horizontal pass
//! then a vertical one, each rounded to 8 bits as PIL does.

use image::RgbImage;

/// Per output pixel: first source index and normalised weights.
struct Taps {
    first: Vec<usize>,
    weights: Vec<Vec<f64>>,
}

fn taps(in_size: u32, out_size: u32) -> Taps {
    let scale = in_size as f64 / out_size as f64;
    let filter_scale = scale.max(1.0);
    let support = filter_scale; // bilinear's support is 1, widened when shrinking
    let mut first = Vec::with_capacity(out_size as usize);
    let mut weights = Vec::with_capacity(out_size as usize);
    for out in 0..out_size {
        let center = (out as f64 + 0.5) * scale;
        let lo = ((center - support + 0.5).floor().max(0.0)) as usize;
        let hi = ((center + support + 0.5).floor() as usize).min(in_size as usize);
        let mut w: Vec<f64> = (lo..hi)
            .map(|x| {
                let t = ((x as f64 - center + 0.5) / filter_scale).abs();
                if t < 1.0 {
                    1.0 - t
                } else {
                    0.0
                }
            })
            .collect();
        let total: f64 = w.iter().sum();
        if total > 0.0 {
            w.iter_mut().for_each(|v| *v /= total);
        }
        first.push(lo);
        weights.push(w);
    }
    Taps { first, weights }
}

fn to_u8(v: f64) -> u8 {
    (v + 0.5).floor().clamp(0.0, 255.0) as u8
}

fn horizontal(src: &RgbImage, out_w: u32) -> RgbImage {
    let (in_w, h) = src.dimensions();
    let t = taps(in_w, out_w);
    let mut dst = RgbImage::new(out_w, h);
    for y in 0..h {
        for x in 0..out_w as usize {
            let mut acc = [0f64; 3];
            for (i, w) in t.weights[x].iter().enumerate() {
                let p = src.get_pixel((t.first[x] + i) as u32, y);
                for c in 0..3 {
                    acc[c] += w * p[c] as f64;
                }
            }
            dst.put_pixel(x as u32, y, image::Rgb(acc.map(to_u8)));
        }
    }
    dst
}

fn vertical(src: &RgbImage, out_h: u32) -> RgbImage {
    let (w, in_h) = src.dimensions();
    let t = taps(in_h, out_h);
    let mut dst = RgbImage::new(w, out_h);
    for y in 0..out_h as usize {
        for x in 0..w {
            let mut acc = [0f64; 3];
            for (i, wt) in t.weights[y].iter().enumerate() {
                let p = src.get_pixel(x, (t.first[y] + i) as u32);
                for c in 0..3 {
                    acc[c] += wt * p[c] as f64;
                }
            }
            dst.put_pixel(x, y as u32, image::Rgb(acc.map(to_u8)));
        }
    }
    dst
}

/// Resizes like PIL's BILINEAR; a pass whose size does not change is skipped, as in PIL.
pub fn resize_bilinear(src: &RgbImage, out_w: u32, out_h: u32) -> RgbImage {
    let (in_w, in_h) = src.dimensions();
    let stage = if out_w != in_w {
        horizontal(src, out_w)
    } else {
        src.clone()
    };
    if out_h != in_h {
        vertical(&stage, out_h)
    } else {
        stage
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_sum_to_one_and_cover_the_source() {
        for (inp, out) in [(100, 37), (37, 100), (256, 256), (5, 1)] {
            let t = taps(inp, out);
            for w in &t.weights {
                assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
            }
            assert_eq!(t.first[0], 0);
        }
    }

    #[test]
    fn constant_image_stays_constant() {
        let img = RgbImage::from_pixel(31, 17, image::Rgb([10, 200, 77]));
        let out = resize_bilinear(&img, 12, 40);
        assert!(out.pixels().all(|p| p.0 == [10, 200, 77]));
    }
}
