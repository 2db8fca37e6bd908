//! Image loading and the evaluation preprocessing of SPEC §6: RGB, resize the shorter side
//! to `size` (PIL's antialiased bilinear, see `resample`), center crop, scale to [-1, 1]. Files decode in
//! parallel on rayon's pool.

use crate::error::{Error, Result};
use image::{DynamicImage, RgbImage};
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use tch::Tensor;

/// Decodes a file into RGB; grayscale, alpha, palette and 16-bit images are converted
/// (alpha is dropped, as PIL's `convert("RGB")` does).
pub fn read_rgb(path: &Path) -> Result<RgbImage> {
    let bytes = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            Error::NotFound(format!("image file not found: {}", path.display()))
        }
        _ => Error::Io(format!("cannot read image {}: {e}", path.display())),
    })?;
    let decoded = image::load_from_memory(&bytes)
        .map_err(|e| Error::Image(format!("cannot decode image {}: {e}", path.display())))?;
    Ok(decoded.to_rgb8())
}

/// Output size of torchvision's `Resize(size)`: the shorter side becomes `size`, the longer
/// one `int(size * long / short)`.
fn resized_dims(width: u32, height: u32, size: u32) -> (u64, u64) {
    let (w, h, s) = (width as u64, height as u64, size as u64);
    if width <= height {
        (s, s * h / w)
    } else {
        (s * w / h, s)
    }
}

/// The largest output side: a (3, 16384, 16384) float image is already 3 GiB.
pub const MAX_SIZE: u32 = 16384;

/// The largest intermediate a resize may produce, in pixels (3 GiB of RGB), so that an
/// extreme aspect ratio is an error and not an aborted allocation.
const MAX_RESIZED_PIXELS: u64 = 1 << 30;

/// Resize shorter side then center crop to `size` x `size`, returned as CHW floats in
/// [-1, 1].
pub fn preprocess(image: &RgbImage, size: u32) -> Result<Vec<f32>> {
    let (width, height) = image.dimensions();
    if width == 0 || height == 0 {
        return Err(Error::Image(format!(
            "image has an empty side: {width}x{height}"
        )));
    }
    if !(1..=MAX_SIZE).contains(&size) {
        return Err(Error::Value(format!(
            "size must be in [1, {MAX_SIZE}], got {size}"
        )));
    }
    let (new_w, new_h) = resized_dims(width, height, size);
    if new_w * new_h > MAX_RESIZED_PIXELS {
        return Err(Error::Value(format!(
            "resizing a {width}x{height} image to a shorter side of {size} would make it \
             {new_w}x{new_h}, more than {MAX_RESIZED_PIXELS} pixels"
        )));
    }
    // Both sides fit u32 now: the shorter is `size`, the product is at most 2^30.
    let (new_w, new_h) = (new_w as u32, new_h as u32);
    let resized;
    let source = if (new_w, new_h) == (width, height) {
        image
    } else {
        resized = crate::resample::resize_bilinear(image, new_w, new_h);
        &resized
    };
    // torchvision's CenterCrop: offset = round((side - size) / 2) with Python's rounding,
    // which sends halves to the even neighbour (10.5 -> 10).
    let top = ((new_h - size) as f64 / 2.0).round_ties_even() as u32;
    let left = ((new_w - size) as f64 / 2.0).round_ties_even() as u32;
    let plane = (size * size) as usize;
    let mut chw = vec![0f32; 3 * plane];
    for y in 0..size {
        for x in 0..size {
            let pixel = source.get_pixel(left + x, top + y);
            let at = (y * size + x) as usize;
            for c in 0..3 {
                chw[c * plane + at] = pixel[c] as f32 / 255.0 * 2.0 - 1.0;
            }
        }
    }
    Ok(chw)
}

fn batch_tensor(chw: Vec<f32>, batch: usize, size: u32) -> Result<Tensor> {
    Ok(Tensor::f_from_slice(&chw)?.f_reshape([batch as i64, 3, size as i64, size as i64])?)
}

/// Loads and preprocesses image files into a (B, 3, size, size) float tensor in [-1, 1].
pub fn load_files(paths: &[PathBuf], size: u32) -> Result<Tensor> {
    let images: Vec<Vec<f32>> = paths
        .par_iter()
        .map(|path| preprocess(&read_rgb(path)?, size))
        .collect::<Result<_>>()?;
    batch_tensor(images.concat(), paths.len(), size)
}

/// Preprocesses raw 8-bit pixels (H, W, C) with C in {1, 3, 4}, row-major.
pub fn from_pixels(pixels: &[u8], height: u32, width: u32, channels: u32) -> Result<RgbImage> {
    let expected = height as usize * width as usize * channels as usize;
    if pixels.len() != expected {
        return Err(Error::Shape(format!(
            "pixel buffer holds {} bytes, expected {height}x{width}x{channels} = {expected}",
            pixels.len()
        )));
    }
    let dynamic =
        match channels {
            1 => image::GrayImage::from_raw(width, height, pixels.to_vec())
                .map(DynamicImage::ImageLuma8),
            3 => RgbImage::from_raw(width, height, pixels.to_vec()).map(DynamicImage::ImageRgb8),
            4 => image::RgbaImage::from_raw(width, height, pixels.to_vec())
                .map(DynamicImage::ImageRgba8),
            other => {
                return Err(Error::Shape(format!(
                    "expected 1 (gray), 3 (RGB) or 4 (RGBA) channels, got {other}"
                )))
            }
        };
    dynamic
        .map(|d| d.to_rgb8())
        .ok_or_else(|| Error::Shape("pixel buffer does not match its dimensions".into()))
}

/// Preprocesses several in-memory images (from numpy arrays or PIL) in parallel.
pub fn load_pixels(images: &[(Vec<u8>, u32, u32, u32)], size: u32) -> Result<Tensor> {
    let chw: Vec<Vec<f32>> = images
        .par_iter()
        .map(|(pixels, h, w, c)| preprocess(&from_pixels(pixels, *h, *w, *c)?, size))
        .collect::<Result<_>>()?;
    batch_tensor(chw.concat(), images.len(), size)
}
