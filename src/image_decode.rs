//! Bytes -> RGB -> the evaluation preprocessing of SPEC §6 (resize the shorter side to
//! `size` with PIL's antialiased bilinear, center crop, scale to [-1, 1]), for one image.
//!
//! Everything here reads untrusted data and needs neither libtorch nor the rest of the
//! crate (only `crate::resample`), so the fuzzer in `fuzz/` compiles this very file on its
//! own. `image_io` adds files, batches and tensors around it.

use image::RgbImage;

/// Why an image could not be preprocessed: the image itself (an empty side), or the size
/// asked for (out of range, or an aspect ratio whose resize would not fit in memory).
#[derive(Debug)]
pub enum PixelError {
    Image(String),
    Value(String),
}

/// Decodes an encoded image (PNG, JPEG, GIF, BMP, TIFF, WebP) into RGB; grayscale, alpha,
/// palette and 16-bit images are converted (alpha is dropped, as PIL's `convert("RGB")`
/// does). A file that ends early is an error, also where the decoder itself accepts it.
/// The error is the reason alone; the caller names the file.
pub fn decode_rgb(bytes: &[u8]) -> Result<RgbImage, String> {
    let decoded = image::load_from_memory(bytes).map_err(|e| e.to_string())?;
    if let Some(why) = ends_early(bytes) {
        return Err(format!("the file is truncated ({why})"));
    }
    Ok(decoded.to_rgb8())
}

/// Why a file that decoded without error still ends early, for the formats whose decoder
/// accepts such data silently; `None` when it is complete or not such a format.
///
/// Measured on files cut short (see tests/test_images.py): the png, bmp and tiff decoders
/// fail on any cut that PIL fails on (png also when only the IEND chunk is missing, which
/// PIL accepts). Three decoders accept some cuts that PIL refuses: zune-jpeg, the `image`
/// crate's JPEG decoder, fills the blocks it did not get with gray and returns the image
/// (the crate runs it in its lenient mode, which cannot be changed through `image`);
/// image-webp accepts a VP8/VP8L chunk that lacks its last bytes; the gif decoder accepts
/// a last data sub-block that lacks its last bytes (those that hold the end code). Each
/// of these is checked on the file's structure here, after it decoded.
fn ends_early(bytes: &[u8]) -> Option<String> {
    match image::guess_format(bytes).ok()? {
        image::ImageFormat::Jpeg => jpeg_ends_early(bytes).map(str::to_owned),
        image::ImageFormat::WebP => webp_ends_early(bytes),
        image::ImageFormat::Gif => gif_ends_early(bytes).map(str::to_owned),
        _ => None,
    }
}

/// A JPEG is complete when its marker structure reaches the end-of-image marker (EOI).
///
/// The segments are walked from SOI: each marker segment's declared length must fit in the
/// file (which also steps over payloads that may hold an EOI of their own, such as an EXIF
/// thumbnail), and each scan's entropy-coded data must be followed by another marker. In
/// entropy-coded data an 0xFF byte is always followed by 0x00 (a stuffed 0xFF) or a restart
/// marker, so the first other marker ends the scan. This asks nothing of the decoder's
/// leniency and costs one pass over the bytes. A cut anywhere, down to the last byte of
/// EOI, leaves the walk without EOI; so does a file that never had one, which libjpeg
/// (PIL) reports as truncated too. Stray bytes between segments are skipped, as decoders do.
fn jpeg_ends_early(data: &[u8]) -> Option<&'static str> {
    const CUT: &str = "the JPEG data ends before its end-of-image marker";
    let len = data.len();
    let mut pos = 2; // after SOI, which `guess_format` found
    loop {
        // The next marker: 0xFF, optional 0xFF fill bytes, then its code.
        while pos < len && data[pos] != 0xFF {
            pos += 1;
        }
        while pos < len && data[pos] == 0xFF {
            pos += 1;
        }
        let Some(&marker) = data.get(pos) else {
            return Some(CUT);
        };
        pos += 1;
        match marker {
            0xD9 => return None,
            // Markers without a length: TEM, RSTn; 0x00 is no marker (stray stuffing).
            0x00 | 0x01 | 0xD0..=0xD7 => continue,
            _ => {}
        }
        let (Some(&hi), Some(&lo)) = (data.get(pos), data.get(pos + 1)) else {
            return Some(CUT);
        };
        let length = u16::from_be_bytes([hi, lo]) as usize;
        if length < 2 {
            // Not a segment a decoder would have accepted: not a question of truncation.
            return None;
        }
        pos += length;
        if pos > len {
            return Some("a JPEG segment is cut short");
        }
        if marker == 0xDA {
            // Start of scan: skip the entropy-coded data up to the marker that ends it.
            loop {
                let rest = data.get(pos..).unwrap_or_default();
                let Some(offset) = rest.iter().position(|&b| b == 0xFF) else {
                    return Some(CUT);
                };
                let ff = pos + offset;
                let mut next = ff + 1;
                while next < len && data[next] == 0xFF {
                    next += 1;
                }
                match data.get(next) {
                    None => return Some(CUT),
                    Some(0x00 | 0xD0..=0xD7) => pos = next + 1,
                    Some(_) => {
                        pos = ff;
                        break;
                    }
                }
            }
        }
    }
}

/// A GIF's first image (the one decoded) is complete when each data sub-block the file
/// starts is all there. Its block terminator and the file's trailer may be missing, as PIL
/// accepts; a cut at a sub-block boundary before the image's end already fails to decode.
fn gif_ends_early(data: &[u8]) -> Option<&'static str> {
    const CUT: &str = "the GIF data ends inside a data sub-block";
    // Colour table size from a packed flags byte.
    let table = |flags: u8| {
        if flags & 0x80 != 0 {
            3usize << ((flags & 7) + 1)
        } else {
            0
        }
    };
    // Sub-blocks from `pos` up to their terminator: Ok(position after it), or Err(CUT) when
    // one is cut short, or Ok(None) when the data ends at a boundary.
    let sub_blocks = |mut pos: usize| -> std::result::Result<Option<usize>, &'static str> {
        loop {
            match data.get(pos) {
                None => return Ok(None),
                Some(0) => return Ok(Some(pos + 1)),
                Some(&n) => {
                    pos += 1 + n as usize;
                    if pos > data.len() {
                        return Err(CUT);
                    }
                }
            }
        }
    };
    // Header (6 bytes), logical screen descriptor (7, flags at 10), global colour table.
    let mut pos = 13 + table(*data.get(10)?);
    loop {
        match data.get(pos)? {
            0x21 => match sub_blocks(pos + 2) {
                Ok(Some(next)) => pos = next,
                // Ends before the image: the decoder would have failed; not for this check.
                Ok(None) => return None,
                Err(cut) => return Some(cut),
            },
            0x2C => {
                // Image descriptor (10 bytes, flags at 9), local colour table, LZW code size.
                let flags = *data.get(pos + 9)?;
                return sub_blocks(pos + 10 + table(flags) + 1).err();
            }
            _ => return None,
        }
    }
}

/// A WebP file is a RIFF container whose header declares its size: a file holding fewer
/// bytes was cut short (libwebp, which PIL uses, refuses it as well).
fn webp_ends_early(data: &[u8]) -> Option<String> {
    let declared = data.get(4..8)?;
    let declared = u32::from_le_bytes([declared[0], declared[1], declared[2], declared[3]]);
    let expected = (declared as u64).saturating_add(8);
    (expected > data.len() as u64).then(|| {
        format!(
            "its RIFF header declares {expected} bytes, the file holds {}",
            data.len()
        )
    })
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
pub fn preprocess(image: &RgbImage, size: u32) -> Result<Vec<f32>, PixelError> {
    let (width, height) = image.dimensions();
    if width == 0 || height == 0 {
        return Err(PixelError::Image(format!(
            "image has an empty side: {width}x{height}"
        )));
    }
    if !(1..=MAX_SIZE).contains(&size) {
        return Err(PixelError::Value(format!(
            "size must be in [1, {MAX_SIZE}], got {size}"
        )));
    }
    let (new_w, new_h) = resized_dims(width, height, size);
    if new_w * new_h > MAX_RESIZED_PIXELS {
        return Err(PixelError::Value(format!(
            "resizing a {width}x{height} image to a shorter side of {size} would make it \
             {new_w}x{new_h}, more than {MAX_RESIZED_PIXELS} pixels"
        )));
    }
    // Both sides fit u32 now: the shorter is `size`, the product is at most 2^30.
    let (new_w, new_h) = (new_w as u32, new_h as u32);
    // torchvision's CenterCrop: offset = round((side - size) / 2) with Python's rounding,
    // which sends halves to the even neighbour (10.5 -> 10).
    let top = ((new_h - size) as f64 / 2.0).round_ties_even() as u32;
    let left = ((new_w - size) as f64 / 2.0).round_ties_even() as u32;
    // Only the crop of the resized image is computed.
    let cropped;
    let (source, left, top) = if (new_w, new_h) == (width, height) {
        (image, left, top)
    } else {
        cropped =
            crate::resample::resize_bilinear_crop(image, (new_w, new_h), (left, top), (size, size));
        (&cropped, 0, 0)
    };
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

#[cfg(test)]
mod tests {
    use super::{gif_ends_early, jpeg_ends_early, webp_ends_early};

    /// SOI; an APP1 segment whose payload holds an EOI (as an EXIF thumbnail does); a
    /// scan whose entropy-coded data holds a stuffed 0xFF, fill bytes and a restart marker;
    /// EOI.
    const JPEG: &[u8] = &[
        0xFF, 0xD8, // SOI
        0xFF, 0xE1, 0x00, 0x06, 0xFF, 0xD9, 0xFF, 0xD9, // APP1, length 6
        0xFF, 0xDA, 0x00, 0x03, 0x01, // SOS, length 3
        0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD0, 0x56, 0xFF, 0xFF, 0xD1, 0x78, // scan data
        0xFF, 0xD9, // EOI
    ];

    #[test]
    fn a_jpeg_is_complete_only_up_to_its_eoi() {
        assert_eq!(jpeg_ends_early(JPEG), None);
        for cut in 2..JPEG.len() {
            assert!(jpeg_ends_early(&JPEG[..cut]).is_some(), "cut at {cut}");
        }
        // Bytes after EOI are not a truncation.
        assert_eq!(jpeg_ends_early(&[JPEG, b"\x00trailing"].concat()), None);
    }

    #[test]
    fn a_webp_must_hold_the_size_its_header_declares() {
        let mut file = b"RIFF\x10\x00\x00\x00WEBPVP8L".to_vec();
        file.extend([0; 8]);
        assert_eq!(file.len(), 16 + 8);
        assert_eq!(webp_ends_early(&file), None);
        assert_eq!(
            webp_ends_early(&file[..23]).as_deref(),
            Some("its RIFF header declares 24 bytes, the file holds 23")
        );
        // More than declared (trailing bytes) is no truncation.
        assert_eq!(webp_ends_early(&[&file[..], b"xx"].concat()), None);
    }

    #[test]
    fn a_gif_image_needs_all_its_data_sub_blocks() {
        // Header, screen descriptor without colour table, a comment extension, an image
        // descriptor, LZW code size 2, sub-blocks of 3 and 2 bytes, terminator, trailer.
        let mut gif = b"GIF89a\x01\x00\x01\x00\x00\x00\x00".to_vec();
        gif.extend([0x21, 0xFE, 0x02, b'h', b'i', 0x00]);
        gif.extend([0x2C, 0, 0, 0, 0, 1, 0, 1, 0, 0x00, 0x02]);
        gif.extend([0x03, 1, 2, 3, 0x02, 4, 5, 0x00, 0x3B]);
        let n = gif.len();
        assert_eq!(gif_ends_early(&gif), None);
        // Terminator and trailer may be missing, as PIL accepts.
        assert_eq!(gif_ends_early(&gif[..n - 1]), None);
        assert_eq!(gif_ends_early(&gif[..n - 2]), None);
        // A sub-block cut short is a truncation.
        assert!(gif_ends_early(&gif[..n - 3]).is_some());
        assert!(gif_ends_early(&gif[..n - 6]).is_some());
    }
}
