"""lverse.images: native loading and preprocessing against a PIL pipeline."""

import warnings

import numpy as np
import pytest
import torch
from lverse import ImageError, images
from PIL import Image


def pil_reference(img: Image.Image, size: int) -> torch.Tensor:
    """torchvision's eval transform written with PIL: Resize(size) bilinear, CenterCrop."""
    img = img.convert("RGB")
    w, h = img.size
    if w <= h:
        new = (size, int(size * h / w))
    else:
        new = (int(size * w / h), size)
    img = img.resize(new, Image.BILINEAR)
    left = int(round((new[0] - size) / 2.0))
    top = int(round((new[1] - size) / 2.0))
    img = img.crop((left, top, left + size, top + size))
    x = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float() / 255
    return x * 2 - 1


@pytest.fixture
def photo():
    # A smooth image with some edges, 120x90, so both resizing and cropping happen.
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:90, 0:120]
    base = np.stack([xx * 2, yy * 2.5, (xx + yy)], -1) % 256
    base[30:60, 40:80] = rng.integers(0, 256, 3)
    return Image.fromarray(base.astype(np.uint8))


def test_file_matches_pil_pipeline(tmp_path, photo):
    path = tmp_path / "photo.png"
    photo.save(path)
    x = images.load(path, size=64)
    assert x.shape == (1, 3, 64, 64) and x.dtype == torch.float32
    ref = pil_reference(photo, 64)
    diff = (x[0] - ref).abs()
    # Both are antialiased bilinear (triangle) filters; PIL rounds in fixed point.
    assert diff.max() <= 2.01 / 255  # at most one 8-bit level (2/255 in [-1, 1] units)
    assert diff.mean() < 0.1 / 255
    assert x.min() >= -1 and x.max() <= 1


@pytest.mark.parametrize("shape", [(5000, 3), (2, 1700)], ids=["tall-strip", "wide-strip"])
def test_strips_resize_to_the_crop_only(tmp_path, shape):
    # The resized image of a strip is huge (64 x 106,666 for the tall one); only its center
    # crop is computed, in milliseconds, and it is PIL's crop (found by the image fuzzer,
    # where such a file took seconds).
    rng = np.random.default_rng(1)
    strip = Image.fromarray(rng.integers(0, 256, (*shape, 3), dtype=np.uint8))
    path = tmp_path / "strip.png"
    strip.save(path)
    x = images.load(path, size=64)
    assert (x[0] - pil_reference(strip, 64)).abs().max() <= 2.01 / 255


def test_no_resize_is_exact(tmp_path):
    arr = np.random.default_rng(1).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    path = tmp_path / "exact.png"
    Image.fromarray(arr).save(path)
    x = images.load(str(path), size=32)
    expected = torch.from_numpy(arr[:, 8:40]).permute(2, 0, 1).float() / 255 * 2 - 1
    assert torch.allclose(x[0], expected, atol=1e-6)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16", "LA", "CMYK"])
def test_modes_become_rgb(tmp_path, photo, mode):
    if mode == "I;16":
        img = Image.fromarray(np.asarray(photo.convert("L")).astype(np.uint16) * 257)
    else:
        img = photo.convert(mode)
    path = tmp_path / f"img.{'jpg' if mode == 'CMYK' else 'png'}"
    img.save(path)
    x = images.load(path, size=16)
    assert x.shape == (1, 3, 16, 16)
    if mode in ("L", "I;16", "LA"):
        assert torch.allclose(x[0, 0], x[0, 1]) and torch.allclose(x[0, 1], x[0, 2])


def test_a_16_bit_pil_image_loads_as_its_file_does(tmp_path):
    # PIL's convert("RGB") clips I;16 at 255; a decoded file is scaled. Training crops
    # (train-vae) hand the decoded PIL image on, so both must agree.
    gray = Image.fromarray(np.linspace(0, 65535, 40 * 48).reshape(40, 48).astype(np.uint16))
    assert gray.mode == "I;16"
    path = tmp_path / "g16.png"
    gray.save(path)
    from_file = images.load(path, size=32)
    with Image.open(path) as opened:
        assert opened.mode == "I;16"
        assert (images.load(opened, size=32) - from_file).abs().max().item() == 0.0
    assert (images.load(gray, size=32) - from_file).abs().max().item() == 0.0


def test_batch_of_files_equals_one_by_one(tmp_path, photo):
    paths = []
    for i in range(5):
        p = tmp_path / f"{i}.png"
        photo.rotate(i * 30).save(p)
        paths.append(p)
    batch = images.load(paths, size=24)
    singles = torch.cat([images.load(p, size=24) for p in paths])
    assert torch.equal(batch, singles)


def test_arrays_and_pil_match_files(tmp_path, photo):
    path = tmp_path / "p.png"
    photo.save(path)
    from_file = images.load(path, size=32)
    assert torch.equal(images.load(photo, size=32), from_file)
    assert torch.equal(images.load(np.asarray(photo), size=32), from_file)
    as_float = np.asarray(photo).astype(np.float32) / 255
    assert torch.equal(images.load(as_float, size=32), from_file)
    mixed = images.load([photo, path], size=32)
    assert torch.equal(mixed, torch.cat([from_file, from_file]))


def test_to_pil_round_trip():
    arr = np.random.default_rng(2).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    x = torch.from_numpy(arr).permute(2, 0, 1).float() / 255 * 2 - 1
    out = images.to_pil(x)
    assert np.array_equal(np.asarray(out), arr)
    clamped = images.to_pil(torch.full((2, 3, 4, 4), 7.0))
    assert len(clamped) == 2 and np.asarray(clamped[0]).min() == 255
    # The same 8-bit values as a tensor, and back through load's scaling.
    pixels = images.to_uint8(x)
    assert pixels.dtype == torch.uint8 and torch.equal(pixels.permute(1, 2, 0), torch.from_numpy(arr))
    assert torch.equal(images.load(out, size=8)[0], pixels.float() / 127.5 - 1)


def test_corrupt_and_truncated_files(tmp_path, photo):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(ImageError, match="cannot decode image .*bad.png"):
        images.load(bad)
    good = tmp_path / "good.jpg"
    photo.save(good)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ImageError, match="cut.jpg"):
        images.load([good, cut])
    text = tmp_path / "notes.png"
    text.write_text("hello")
    with pytest.raises(ValueError, match="notes.png"):  # ImageError is a ValueError
        images.load(text)


def test_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.png"):
        images.load(tmp_path / "missing.png")
    with pytest.raises(ValueError, match="size must be a positive int"):
        images.load(np.zeros((4, 4, 3), np.uint8), size=0)
    with pytest.raises(ValueError, match=r"expected 1 \(gray\), 3 \(RGB\) or 4 \(RGBA\) channels, got 2"):
        images.load(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ValueError, match=r"float arrays must hold values in \[0, 1\]"):
        images.load(np.full((4, 4, 3), 2.0))
    with pytest.raises(TypeError, match="expected a uint8 or float array, got dtype int64"):
        images.load(np.zeros((4, 4, 3), np.int64))
    with pytest.raises(TypeError, match="expected a path, PIL.Image or numpy array, got int"):
        images.load([3])
    with pytest.raises(ValueError, match="no images given"):
        images.load([])
    with pytest.raises(ValueError, match=r"got \(2, 4, 4\)"):
        images.to_pil(torch.zeros(2, 4, 4))


def test_grid_tiles_row_by_row():
    tiles = [Image.new("RGB", (4, 3), (40 * i, 0, 0)) for i in range(5)]
    sheet = images.grid(tiles, columns=2)
    assert sheet.size == (8, 9)
    assert sheet.getpixel((4, 3)) == (120, 0, 0) and sheet.getpixel((0, 6)) == (160, 0, 0)
    assert images.grid(tiles, columns=8).size == (20, 3)
    with pytest.raises(ValueError, match="columns must be a positive int, got 0"):
        images.grid(tiles, columns=0)


# Every format the native loader decodes, as PIL writes it: (suffix, save options).
FORMATS = {
    "png": ("png", {}),
    "jpeg": ("jpg", {"quality": 90}),
    "jpeg-progressive": ("jpg", {"quality": 90, "progressive": True}),
    "gif": ("gif", {}),
    "bmp": ("bmp", {}),
    "tiff": ("tiff", {}),
    "tiff-lzw": ("tiff", {"compression": "tiff_lzw"}),
    "webp": ("webp", {"quality": 90}),
    "webp-lossless": ("webp", {"lossless": True}),
}


def pil_refuses(path) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL's own warnings about the damaged file
            with Image.open(path) as img:
                img.convert("RGB").load()
    except (OSError, SyntaxError, ValueError):
        return True
    return False


@pytest.mark.parametrize("name", FORMATS)
def test_truncated_files_are_image_errors(tmp_path, name):
    suffix, options = FORMATS[name]
    # Noise, so that the compressed data fills the whole file and every cut loses pixels.
    noise = np.random.default_rng(7).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    good = tmp_path / f"good.{suffix}"
    Image.fromarray(noise).save(good, **options)
    data = good.read_bytes()
    n = len(data)
    # Half, 90 %, and the last few bytes, which for most formats still hold image data or a
    # marker PIL insists on (JPEG's EOI, WebP's declared RIFF size, GIF's last sub-block).
    # PNG's last 20 bytes hold no pixels (zlib's checksum, the IDAT CRC, the IEND chunk),
    # nor do GIF's last 2 (block terminator, trailer): PIL accepts those cut, and lverse
    # need not refuse them (it does refuse PNG's, as the png decoder checks them).
    trailer = {"png": 20, "gif": 2}.get(name, 0)
    cuts = sorted({n // 2, n * 9 // 10, n - trailer - 4, n - trailer - 1})
    reference = images.load(good, size=32)
    for cut in cuts:
        path = tmp_path / f"cut{cut}.{suffix}"
        path.write_bytes(data[:cut])
        assert pil_refuses(path), f"PIL accepts {name} cut to {cut} of {n} bytes: not a useful cut"
        with pytest.raises(ImageError, match=f"cannot decode image .*cut{cut}.{suffix}"):
            images.load(path, size=32)
        with pytest.raises(ImageError, match=f"cut{cut}.{suffix}"):
            images.load([good, path], size=32)
    # The whole file still loads, alone and in a batch.
    assert torch.equal(images.load([good, good], size=32), reference.expand(2, -1, -1, -1))


@pytest.mark.parametrize("name", ["png", "gif"])
def test_files_missing_only_their_trailer_load_as_pil_does(tmp_path, name):
    """PNG's IEND CRC and GIF's terminator and trailer carry no pixels; PIL accepts such a
    cut, and so does lverse (with the same pixels)."""
    suffix, options = FORMATS[name]
    noise = np.random.default_rng(8).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    good = tmp_path / f"good.{suffix}"
    Image.fromarray(noise).save(good, **options)
    data = good.read_bytes()
    cut = tmp_path / f"cut.{suffix}"
    cut.write_bytes(data[:-2])
    assert not pil_refuses(cut)
    assert torch.equal(images.load(cut, size=32), images.load(good, size=32))


def test_complete_jpegs_of_every_kind_still_load(tmp_path, photo):
    """The check that a JPEG reaches its end-of-image marker walks the file's segments:
    an EOI inside a segment (an EXIF thumbnail, a comment), restart markers, progressive
    scans, gray and CMYK files, and bytes after EOI must not confuse it."""
    eoi_inside = b"Exif\x00\x00" + b"\xff\xd9" * 8 + b"\xff\xd8\xff\xd9"
    variants = {
        "plain": dict(quality=85),
        "exif": dict(quality=85, exif=eoi_inside),
        "comment": dict(quality=85, comment=b"\xff\xd9 not the end \xff\xd9"),
        "restarts": dict(quality=85, restart_marker_blocks=1),
        "progressive": dict(quality=85, progressive=True, optimize=True),
        "subsampled": dict(quality=50, subsampling=2),
    }
    for label, options in variants.items():
        path = tmp_path / f"{label}.jpg"
        photo.save(path, **options)
        x = images.load(path, size=32)
        assert x.shape == (1, 3, 32, 32), label
    for mode in ("L", "CMYK"):
        path = tmp_path / f"{mode}.jpg"
        photo.convert(mode).save(path, quality=85)
        assert images.load(path, size=32).shape == (1, 3, 32, 32), mode
    # Bytes after EOI (some cameras append data) are not a truncation.
    path = tmp_path / "trailing.jpg"
    photo.save(path, quality=85)
    path.write_bytes(path.read_bytes() + b"\x00\x01trailing data\xff")
    assert images.load(path, size=32).shape == (1, 3, 32, 32)


def test_truncated_jpeg_is_not_captioned(tmp_path, photo):
    import lverse

    good = tmp_path / "photo.jpg"
    photo.save(good, quality=90)
    cut = tmp_path / "half.jpg"
    cut.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    with pytest.raises(ImageError, match="half.jpg.*truncated"):
        lverse.caption(cut)
