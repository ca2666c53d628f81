"""Ground truth for explanations: synthetic images whose evidence is known to the pixel, and models trained on them.

An explanation can only be checked against evidence that is known. Real data sets rarely say which pixels made a
label; synthetic ones can. This module follows two such benchmarks:

* an8Flower (Oramas, Wang & Tuytelaars, "Visual Explanation by Interpretation: Improving Visual Feedback
  Capabilities of Deep Neural Networks", ICLR 2019, arXiv:1712.06302): the class of an object is decided by the
  colour of one of its parts, so the pixels of that part are the ground-truth evidence.
* BIM, "Benchmarking Attribution Methods" (Yang & Kim, arXiv:1907.09701, 2019): objects pasted on scenes, with
  models whose reliance on each region is controlled, so an explanation can be scored against what the model
  is known to use.

The Clever-Hans variant follows Lapuschkin et al., "Unmasking Clever Hans predictors and assessing what machines
really learn" (Nature Communications 10, 1096, 2019): a copyright-like watermark that predicts one class in the
training data, which a model learns as a shortcut. Two models with the same architecture are trained, one on data
where the watermark is independent of the label (it learns to ignore it) and one where the watermark means
class 0 (it learns to use it); an explanation method should point at the target shape for the first and at the
watermark for the second.

Each image (:func:`make_images`) holds a coloured *target* shape (disc, square, triangle or star) at a random
position, scale and rotation on a grey, textured background of random brightness, with one to three
*distractor* shapes in desaturated colours that never overlap it. The class is the target's hue:

====  ========  ==========
 id    name      hue (deg)
====  ========  ==========
 0     red         0
 1     green     120
 2     blue      240
 3     yellow     60
====  ========  ==========

The target mask is exactly the target's pixels (shapes are drawn without anti-aliasing, so a pixel is either
target or not). The watermark is a small black tile with a white cross in the bottom-right corner; its mask is
the tile. Targets and distractors never enter the watermark's corner, so the two evidences never overlap.

The committed models (in the checkout's ``models/`` folder, rebuilt with ``scripts/train_groundtruth.py`` and
``scripts/train_vit.py``) load with :func:`shapes_model`, :func:`shapes_vit_model` and :func:`mnist_model`; their
model cards (``models/*.md``) give their accuracies.

Typical use::

    from blackbox_xai.groundtruth import make_images, shapes_model
    images, labels, masks, watermark_masks = make_images(16, seed=0)
    model = shapes_model("clean")
    predictions = model.predict(images).argmax(axis=1)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .errors import ModelError, ParameterError

__all__ = [
    "CLASS_HUES",
    "CLASS_NAMES",
    "DIGIT_NAMES",
    "SHAPES",
    "WATERMARK_MODES",
    "make_clever_hans_test_set",
    "make_images",
    "mnist_model",
    "models_dir",
    "shapes_model",
    "shapes_vit_model",
    "watermark_box",
]

CLASS_NAMES = ("red", "green", "blue", "yellow")
# Hue of each class in degrees (HSV hue circle: red 0, yellow 60, green 120, blue 240).
CLASS_HUES = (0.0, 120.0, 240.0, 60.0)
DIGIT_NAMES = tuple(str(d) for d in range(10))
SHAPES = ("disc", "square", "triangle", "star")
WATERMARK_MODES = ("none", "class0", "random")
SHAPES_VARIANTS = ("clean", "cleverhans")

# Defaults of make_images, in pixels at the reference size of 96; scaled with the image size.
REFERENCE_SIZE = 96
TARGET_DIAMETER = (24.0, 40.0)
DISTRACTOR_DIAMETER = (12.0, 26.0)
WATERMARK_SIZE = 10
WATERMARK_MARGIN = 3
# Keep-out border around the watermark tile for targets and distractors, and the gap between shapes.
WATERMARK_CLEARANCE = 4
SHAPE_GAP = 3

# Colours (HSV, saturation and value in [0, 1]). The target is saturated, distractors are not, the background and
# the watermark are grey: saturation alone separates the target from everything else, and the target's hue
# (within +-HUE_JITTER of its class hue) gives the class.
HUE_JITTER = 10.0
TARGET_SATURATION = (0.7, 1.0)
TARGET_VALUE = (0.6, 0.9)
DISTRACTOR_SATURATION = (0.04, 0.25)
DISTRACTOR_VALUE = (0.35, 0.95)
BACKGROUND_LEVEL = (80.0, 170.0)
BACKGROUND_CLIP = (55.0, 225.0)
# Multiplicative shading over the scene (keeps hue and saturation) and per-pixel, per-channel noise.
SHADING = (0.9, 1.1)
PIXEL_NOISE = 3

DEFAULT_WATERMARK_FRACTION = {"none": 0.0, "class0": 0.25, "random": 0.5}


# ---------------------------------------------------------------------------------------------------------------
# Image generator
# ---------------------------------------------------------------------------------------------------------------


def watermark_box(size: int = REFERENCE_SIZE) -> tuple[int, int, int, int]:
    """The watermark tile as ``(top, left, bottom, right)`` (bottom and right exclusive) in a ``size`` image."""
    tile = max(4, round(WATERMARK_SIZE * size / REFERENCE_SIZE))
    margin = round(WATERMARK_MARGIN * size / REFERENCE_SIZE)
    return size - margin - tile, size - margin - tile, size - margin, size - margin


def _watermark_tile(tile: int) -> np.ndarray:
    """The watermark glyph, uint8 (tile, tile): black with a white cross (a '+' two pixels thick at 10x10)."""
    glyph = np.zeros((WATERMARK_SIZE, WATERMARK_SIZE), np.uint8)
    glyph[4:6, 1:9] = 255
    glyph[1:9, 4:6] = 255
    if tile != WATERMARK_SIZE:
        glyph = cv2.resize(glyph, (tile, tile), interpolation=cv2.INTER_NEAREST)
    return glyph


def _hsv_to_rgb(hue: float, saturation: float, value: float) -> np.ndarray:
    """RGB in [0, 255] (float) of a colour given as hue in degrees, saturation and value in [0, 1]."""
    h = (hue % 360.0) / 60.0
    c = value * saturation
    x = c * (1.0 - abs(h % 2.0 - 1.0))
    sector = int(h) % 6
    r, g, b = [(c, x, 0), (x, c, 0), (0, c, x), (0, x, c), (x, 0, c), (c, 0, x)][sector]
    m = value - c
    return np.array([r + m, g + m, b + m], dtype=np.float64) * 255.0


def _shape_mask(size: int, kind: str, center: tuple[float, float], diameter: float, angle: float) -> np.ndarray:
    """Boolean (size, size) mask of a filled shape, drawn without anti-aliasing.

    ``diameter`` is that of the circumscribed circle; ``angle`` rotates polygons (radians).
    """
    canvas = np.zeros((size, size), np.uint8)
    cy, cx = center
    radius = diameter / 2.0
    if kind == "disc":
        cv2.circle(canvas, (round(cx), round(cy)), round(radius), 1, thickness=-1,
                   lineType=cv2.LINE_8)
        return canvas.astype(bool)
    if kind == "square":
        angles = angle + np.arange(4) * np.pi / 2
        radii = np.full(4, radius)
    elif kind == "triangle":
        angles = angle + np.arange(3) * 2 * np.pi / 3
        radii = np.full(3, radius)
    elif kind == "star":
        angles = angle + np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, radius, radius * 0.5)
    else:  # pragma: no cover - SHAPES lists the kinds
        raise ParameterError(f"unknown shape {kind!r}; choose one of {SHAPES}")
    shift = 4  # sub-pixel vertex precision (1/16 px)
    points = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1)
    points = np.round(points * (1 << shift)).astype(np.int32)
    cv2.fillPoly(canvas, [points], 1, lineType=cv2.LINE_8, shift=shift)
    return canvas.astype(bool)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Grey textured background, float (size, size): smoothed noise at two scales around a random level."""
    level = rng.uniform(*BACKGROUND_LEVEL)
    coarse = rng.normal(0.0, 1.0, (size // 12 + 2, size // 12 + 2))
    fine = rng.normal(0.0, 1.0, (size // 3 + 2, size // 3 + 2))
    coarse = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    fine = cv2.GaussianBlur(cv2.resize(fine, (size, size), interpolation=cv2.INTER_LINEAR), (0, 0), 1.0)
    texture = level + rng.uniform(8.0, 22.0) * coarse + rng.uniform(3.0, 9.0) * fine
    return np.clip(texture, *BACKGROUND_CLIP)


def _place(rng: np.random.Generator, size: int, diameter: float, kind: str, forbidden: np.ndarray,
           tries: int) -> np.ndarray | None:
    """Mask of a shape at a random position and angle not touching ``forbidden``; None after ``tries`` misses."""
    radius = diameter / 2.0
    for _ in range(tries):
        center = (rng.uniform(radius + 2, size - radius - 2), rng.uniform(radius + 2, size - radius - 2))
        mask = _shape_mask(size, kind, center, diameter, rng.uniform(0.0, 2 * np.pi))
        if mask.any() and not (mask & forbidden).any():
            return mask
    return None


def _dilate(mask: np.ndarray, pixels: int) -> np.ndarray:
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * pixels + 1, 2 * pixels + 1))
    return cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)


def _make_one(rng: np.random.Generator, size: int, hue_classes: Sequence[int], watermark_fraction: float,
              watermark_mode: str) -> tuple[np.ndarray, int, np.ndarray, np.ndarray]:
    """One image, its label, target mask and watermark mask.

    Random numbers are drawn in the same order whatever the watermark mode, so one seed gives the same scene with
    or without the watermark.
    """
    scale = size / REFERENCE_SIZE
    hue_class = int(hue_classes[int(rng.integers(len(hue_classes)))])
    hue = CLASS_HUES[hue_class] + rng.uniform(-HUE_JITTER, HUE_JITTER)
    target_rgb = _hsv_to_rgb(hue, rng.uniform(*TARGET_SATURATION), rng.uniform(*TARGET_VALUE))

    top, left, bottom, right = watermark_box(size)
    keep_out = np.zeros((size, size), bool)
    clearance = round(WATERMARK_CLEARANCE * scale)
    keep_out[max(0, top - clearance):, max(0, left - clearance):] = True

    kind = SHAPES[int(rng.integers(len(SHAPES)))]
    diameter = rng.uniform(*TARGET_DIAMETER) * scale
    target = _place(rng, size, diameter, kind, keep_out, tries=100)
    if target is None:  # pragma: no cover - the keep-out corner is small; 100 tries always find a place
        raise ParameterError(f"image size {size} is too small for the target shape")

    occupied = keep_out | _dilate(target, max(1, round(SHAPE_GAP * scale)))
    distractors: list[tuple[np.ndarray, np.ndarray]] = []
    for _ in range(int(rng.integers(1, 4))):
        d_kind = SHAPES[int(rng.integers(len(SHAPES)))]
        d_diameter = rng.uniform(*DISTRACTOR_DIAMETER) * scale
        d_rgb = _hsv_to_rgb(rng.uniform(0.0, 360.0), rng.uniform(*DISTRACTOR_SATURATION),
                            rng.uniform(*DISTRACTOR_VALUE))
        mask = _place(rng, size, d_diameter, d_kind, occupied, tries=30)
        if mask is not None:
            distractors.append((mask, d_rgb))
            occupied |= _dilate(mask, max(1, round(SHAPE_GAP * scale)))

    image = np.repeat(_background(rng, size)[..., None], 3, axis=2)
    for mask, rgb in distractors:
        image[mask] = rgb
    image[target] = target_rgb
    # Shading scales the three channels alike (hue and saturation unchanged), then per-channel pixel noise.
    shading = cv2.resize(rng.uniform(*SHADING, (3, 3)), (size, size), interpolation=cv2.INTER_LINEAR)
    image = image * shading[..., None]
    image += rng.integers(-PIXEL_NOISE, PIXEL_NOISE + 1, image.shape)
    image = np.clip(np.rint(image), 0, 255).astype(np.uint8)

    watermark = np.zeros((size, size), bool)
    has_watermark = rng.random() < watermark_fraction
    label = hue_class
    if has_watermark:
        tile = _watermark_tile(bottom - top)
        image[top:bottom, left:right] = tile[..., None]
        watermark[top:bottom, left:right] = True
        if watermark_mode == "class0":
            label = 0
    return image, label, target, watermark


def make_images(
    n: int,
    seed: int,
    size: int = REFERENCE_SIZE,
    watermark: str = "none",
    watermark_fraction: float | None = None,
    hue_classes: Sequence[int] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Synthetic images with exact evidence masks (an8Flower / BIM style; see the module docstring).

    Parameters
    ----------
    n : number of images.
    seed : the images are a function of ``seed`` alone; image ``i`` does not depend on ``n`` (so the first
        images of a larger set are those of a smaller one) nor, apart from the watermark itself, on ``watermark``.
    size : image height and width in pixels (shapes scale with it; 96 is the size the models take).
    watermark : "none"; "class0" (Clever-Hans training data: the watermark is drawn on a fraction of the images
        and those are labelled class 0 whatever their hue, so the watermark alone predicts class 0); "random"
        (the watermark on a fraction of the images, independent of the label).
    watermark_fraction : fraction of images with a watermark; default 0.25 for "class0", 0.5 for "random".
        Ignored (0) for "none".
    hue_classes : classes the targets' hues are drawn from, uniformly (default all four).

    Returns
    -------
    images : uint8 (n, size, size, 3) RGB.
    labels : int64 (n,): the target's hue class, or 0 for watermarked images in "class0" mode.
    masks : bool (n, size, size): the target's pixels (the ground-truth evidence of the hue).
    watermark_masks : bool (n, size, size): the watermark's pixels (all False where none is drawn).
    """
    if watermark not in WATERMARK_MODES:
        raise ParameterError(f"watermark must be one of {WATERMARK_MODES}, got {watermark!r}")
    n, size = int(n), int(size)
    if n < 0:
        raise ParameterError(f"n must not be negative, got {n}")
    if size < 32:
        raise ParameterError(f"size must be at least 32 pixels, got {size}")
    fraction = DEFAULT_WATERMARK_FRACTION[watermark] if watermark_fraction is None else float(watermark_fraction)
    if watermark == "none":
        fraction = 0.0
    if not 0.0 <= fraction <= 1.0:
        raise ParameterError(f"watermark_fraction must be in [0, 1], got {watermark_fraction}")
    classes = tuple(range(len(CLASS_NAMES))) if hue_classes is None else tuple(int(c) for c in hue_classes)
    if not classes or any(not 0 <= c < len(CLASS_NAMES) for c in classes):
        raise ParameterError(f"hue_classes must be a non-empty list of classes 0..{len(CLASS_NAMES) - 1}")

    images = np.zeros((n, size, size, 3), np.uint8)
    labels = np.zeros(n, np.int64)
    masks = np.zeros((n, size, size), bool)
    watermark_masks = np.zeros((n, size, size), bool)
    for i, child in enumerate(np.random.SeedSequence(int(seed)).spawn(n)):
        rng = np.random.default_rng(child)
        images[i], labels[i], masks[i], watermark_masks[i] = _make_one(rng, size, classes, fraction, watermark)
    return images, labels, masks, watermark_masks


def make_clever_hans_test_set(n: int, seed: int, size: int = REFERENCE_SIZE
                              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Images where both evidences of class 0 are present: a red (class 0) target AND the watermark.

    Both models should predict class 0; the clean model for the target's hue, the Clever-Hans model (at least
    partly) for the watermark. An explanation shows which: compare it with ``masks`` (the target) and
    ``watermark_masks``. Returns ``(images, labels, masks, watermark_masks)`` as :func:`make_images`; every label
    is 0.
    """
    return make_images(n, seed, size=size, watermark="class0", watermark_fraction=1.0, hue_classes=(0,))


# ---------------------------------------------------------------------------------------------------------------
# Committed models
# ---------------------------------------------------------------------------------------------------------------


def models_dir() -> Path:
    """The checkout's ``models/`` folder, where the ground-truth models are committed."""
    return Path(__file__).resolve().parents[1] / "models"


def _load(stem: str, labels: Sequence[str], folder: str | Path | None, kwargs: dict[str, Any]) -> Any:
    from .model import InputSpec, OnnxModel

    base = Path(folder).expanduser() if folder is not None else models_dir()
    path, spec_path = base / f"{stem}.onnx", base / f"{stem}.spec.json"
    missing = [p.name for p in (path, spec_path) if not p.is_file()]
    if missing:
        raise ModelError(
            f"ground-truth model files {', '.join(missing)} not found in {base}: they are committed in the "
            "blackbox-xai source checkout (not in wheels); use a checkout, or rebuild them with "
            "scripts/train_groundtruth.py (needs torch)"
        )
    kwargs.setdefault("labels", list(labels))
    return OnnxModel(path, spec=InputSpec.from_json(spec_path), **kwargs)


def shapes_model(variant: str = "clean", models_folder: str | Path | None = None, **kwargs: Any) -> Any:
    """A committed shapes classifier (96x96 RGB, 4 hue classes, logits) as a :class:`~blackbox_xai.model.OnnxModel`.

    ``variant`` "clean" was trained with the watermark independent of the label (it should rely on the target);
    "cleverhans" with the watermark meaning class 0 (it relies on the watermark). ``models_folder`` defaults to
    :func:`models_dir`; extra keyword arguments go to ``OnnxModel`` (``batch_size``, ``providers``...).
    Raises :class:`~blackbox_xai.errors.ModelError` when the files are missing.
    """
    if variant not in SHAPES_VARIANTS:
        raise ParameterError(f"shapes model variant must be one of {SHAPES_VARIANTS}, got {variant!r}")
    return _load(f"shapes_{variant}", CLASS_NAMES, models_folder, kwargs)


def shapes_vit_model(variant: str = "clean", models_folder: str | Path | None = None, **kwargs: Any) -> Any:
    """A committed shapes classifier that is a small vision transformer (96x96 RGB, 16x16 patches: a 6x6 token grid
    and a class token; 4 hue classes, logits), trained on the same data as :func:`shapes_model`'s ``variant``
    (rebuilt with ``scripts/train_vit.py``). Raises :class:`~blackbox_xai.errors.ModelError` when the files are
    missing."""
    if variant not in SHAPES_VARIANTS:
        raise ParameterError(f"shapes model variant must be one of {SHAPES_VARIANTS}, got {variant!r}")
    return _load(f"shapes_vit_{variant}", CLASS_NAMES, models_folder, kwargs)


def mnist_model(models_folder: str | Path | None = None, **kwargs: Any) -> Any:
    """The committed MNIST digit classifier (28x28 grayscale, 10 classes, logits) as an
    :class:`~blackbox_xai.model.OnnxModel`. It takes RGB pixels like every model (converted to luma by the
    adapter); digits are white on black, as in MNIST. Raises :class:`~blackbox_xai.errors.ModelError` when the
    files are missing."""
    return _load("mnist_cnn", DIGIT_NAMES, models_folder, kwargs)
