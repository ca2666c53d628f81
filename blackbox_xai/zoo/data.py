"""Data the zoo ships or borrows: the ImageNet-1k class names and sample photographs from ``skimage.data``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import ModelError

__all__ = ["LABELS_FILE", "NUM_CLASSES", "SAMPLE_IMAGES", "imagenet_labels", "labels_path", "sample_image"]

LABELS_FILE = "imagenet_classes.txt"
NUM_CLASSES = 1000
SAMPLE_IMAGES = ("chelsea", "coffee", "astronaut", "rocket", "motorcycle")


def labels_path() -> Path:
    """The ImageNet class-name file shipped in the package (``blackbox_xai/data/imagenet_classes.txt``)."""
    return Path(__file__).resolve().parents[1] / "data" / LABELS_FILE


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet-1k class names, in class-index order (short, human-readable)."""
    labels = labels_path().read_text(encoding="utf-8").splitlines()
    if len(labels) != NUM_CLASSES:
        raise ModelError(f"{labels_path()} has {len(labels)} lines, expected {NUM_CLASSES}")
    return labels


def sample_image(name: str) -> np.ndarray:
    """A sample photograph from ``skimage.data`` as uint8 (H, W, 3) RGB.

    Names: "chelsea" (a tabby cat), "coffee" (a cup of coffee), "astronaut" (Eileen Collins), "rocket" (a launch),
    "motorcycle" (left view of the stereo motorcycle pair).
    """
    from skimage import data

    loaders: dict[str, Callable[[], np.ndarray]] = {
        "chelsea": data.chelsea,
        "coffee": data.coffee,
        "astronaut": data.astronaut,
        "rocket": data.rocket,
        "motorcycle": lambda: data.stereo_motorcycle()[0],
    }
    if name not in loaders:
        raise ValueError(f"unknown sample image {name!r}; choose one of {', '.join(SAMPLE_IMAGES)}")
    image = np.asarray(loaders[name]())
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return np.ascontiguousarray(image[..., :3], dtype=np.uint8)
