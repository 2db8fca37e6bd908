//! Image loading: files and in-memory pixels, one or a batch, through the decoding and
//! preprocessing of `image_decode` into (B, 3, size, size) tensors. Files decode in
//! parallel on lverse's own rayon pool (`crate::pool`), never on rayon's global one: the
//! global pool's threads do not survive `fork()`, so after the parent had used it a forked
//! child (a DataLoader worker) would wait forever for them.

use crate::error::{Error, Result};
pub use crate::image_decode::MAX_SIZE;
use crate::image_decode::{decode_rgb, preprocess};
use image::{DynamicImage, RgbImage};
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use tch::Tensor;

/// Reads and decodes a file into RGB (`image_decode::decode_rgb`), naming the file in errors.
pub fn read_rgb(path: &Path) -> Result<RgbImage> {
    let bytes = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            Error::NotFound(format!("image file not found: {}", path.display()))
        }
        _ => Error::Io(format!("cannot read image {}: {e}", path.display())),
    })?;
    decode_rgb(&bytes)
        .map_err(|why| Error::Image(format!("cannot decode image {}: {why}", path.display())))
}

fn batch_tensor(chw: Vec<f32>, batch: usize, size: u32) -> Result<Tensor> {
    Ok(Tensor::f_from_slice(&chw)?.f_reshape([batch as i64, 3, size as i64, size as i64])?)
}

/// Loads and preprocesses image files into a (B, 3, size, size) float tensor in [-1, 1].
pub fn load_files(paths: &[PathBuf], size: u32) -> Result<Tensor> {
    let images: Vec<Vec<f32>> = crate::pool::install(|| {
        paths
            .par_iter()
            .map(|path| Ok(preprocess(&read_rgb(path)?, size)?))
            .collect::<Result<_>>()
    })?;
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
    let chw: Vec<Vec<f32>> = crate::pool::install(|| {
        images
            .par_iter()
            .map(|(pixels, h, w, c)| Ok(preprocess(&from_pixels(pixels, *h, *w, *c)?, size)?))
            .collect::<Result<_>>()
    })?;
    batch_tensor(chw.concat(), images.len(), size)
}
