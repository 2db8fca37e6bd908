//! PIL's antialiased bilinear resize (`Image.resize(..., BILINEAR)`, which torchvision's
//! `Resize` calls for PIL images), so that lverse's preprocessing gives the official
//! pipeline's pixels: a triangle filter widened by the downscale factor, a horizontal pass
//! then a vertical one, each rounded to 8 bits as PIL does.

use image::RgbImage;
use std::ops::Range;

/// Per output pixel: first source index and normalised weights.
struct Taps {
    first: Vec<usize>,
    weights: Vec<Vec<f64>>,
}

/// The taps of the output pixels in `outputs` only (index 0 is `outputs.start`).
fn taps_for(in_size: u32, out_size: u32, outputs: Range<u32>) -> Taps {
    let scale = in_size as f64 / out_size as f64;
    let filter_scale = scale.max(1.0);
    let support = filter_scale; // bilinear's support is 1, widened when shrinking
    let mut first = Vec::with_capacity(outputs.len());
    let mut weights = Vec::with_capacity(outputs.len());
    for out in outputs {
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

/// PIL's BILINEAR resize of `src` to `out_w` x `out_h`, cropped to the `width` x `height`
/// pixels at (`left`, `top`) and computed without the rest of the resized image: the same
/// taps and the same rounding after each pass (a pass whose size does not change is
/// skipped, as in PIL), at a cost that follows the crop and not the resized size. (A 1 px wide strip resized to a 256 px shorter side is 256 px by
/// millions; found by fuzz/fuzz_targets/decode_image.rs, where it took seconds.)
pub fn resize_bilinear_crop(
    src: &RgbImage,
    (out_w, out_h): (u32, u32),
    (left, top): (u32, u32),
    (width, height): (u32, u32),
) -> RgbImage {
    let (in_w, in_h) = src.dimensions();
    // The vertical pass's taps for the crop's rows, and the source rows they read.
    let vertical_taps = (out_h != in_h).then(|| taps_for(in_h, out_h, top..top + height));
    let rows = match &vertical_taps {
        Some(t) => {
            let start = t.first.iter().copied().min().unwrap_or(0);
            let end = t
                .first
                .iter()
                .zip(&t.weights)
                .map(|(f, w)| f + w.len())
                .max()
                .unwrap_or(start);
            start as u32..end as u32
        }
        None => top..top + height,
    };
    // The horizontal pass over those rows, for the crop's columns only.
    let mut stage = RgbImage::new(width, rows.len() as u32);
    let horizontal_taps = (out_w != in_w).then(|| taps_for(in_w, out_w, left..left + width));
    for (sy, y) in rows.clone().enumerate() {
        for x in 0..width {
            let pixel = match &horizontal_taps {
                Some(t) => {
                    let mut acc = [0f64; 3];
                    for (i, w) in t.weights[x as usize].iter().enumerate() {
                        let p = src.get_pixel((t.first[x as usize] + i) as u32, y);
                        for c in 0..3 {
                            acc[c] += w * p[c] as f64;
                        }
                    }
                    image::Rgb(acc.map(to_u8))
                }
                None => *src.get_pixel(left + x, y),
            };
            stage.put_pixel(x, sy as u32, pixel);
        }
    }
    let Some(t) = vertical_taps else {
        return stage;
    };
    let mut dst = RgbImage::new(width, height);
    for y in 0..height as usize {
        for x in 0..width {
            let mut acc = [0f64; 3];
            for (i, wt) in t.weights[y].iter().enumerate() {
                let p = stage.get_pixel(x, (t.first[y] + i) as u32 - rows.start);
                for c in 0..3 {
                    acc[c] += wt * p[c] as f64;
                }
            }
            dst.put_pixel(x, y as u32, image::Rgb(acc.map(to_u8)));
        }
    }
    dst
}

#[cfg(test)]
mod tests {
    use super::*;

    // The uncropped resize, pass by pass over the whole image, as PIL runs it: the
    // reference the crop is checked against.
    fn taps(in_size: u32, out_size: u32) -> Taps {
        taps_for(in_size, out_size, 0..out_size)
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
    fn resize_bilinear(src: &RgbImage, out_w: u32, out_h: u32) -> RgbImage {
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

    #[test]
    fn a_crop_of_the_resize_is_the_resize_cropped() {
        let src = RgbImage::from_fn(37, 23, |x, y| {
            image::Rgb([(x * 7) as u8, (y * 11) as u8, (x * y) as u8])
        });
        for (out, at, size) in [
            ((20, 12), (3, 2), (10, 9)),
            ((90, 56), (40, 0), (50, 56)),
            ((37, 60), (0, 11), (37, 30)),
            ((64, 23), (7, 0), (20, 23)),
            ((37, 23), (5, 5), (8, 8)),
        ] {
            let full = resize_bilinear(&src, out.0, out.1);
            let cropped = image::imageops::crop_imm(&full, at.0, at.1, size.0, size.1).to_image();
            assert_eq!(
                resize_bilinear_crop(&src, out, at, size),
                cropped,
                "{out:?} {at:?} {size:?}"
            );
        }
    }

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
