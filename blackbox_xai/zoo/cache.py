"""Where zoo models are built and kept, and the ready-to-use models read from there."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .data import LABELS_FILE, imagenet_labels
from .efficientnet import build_efficientnet_lite0_onnx

__all__ = ["CACHE_ENV", "default_cache_dir", "efficientnet_lite0", "efficientnet_lite0_path"]

MODEL_FILE = "efficientnet_lite0.onnx"
SPEC_FILE = "efficientnet_lite0.spec.json"
CACHE_ENV = "BLACKBOX_XAI_CACHE"


def default_cache_dir() -> Path:
    """Where zoo models are built: ``$BLACKBOX_XAI_CACHE`` if set; else the checkout's ``models/`` folder when
    blackbox_xai runs from a source checkout (a ``pyproject.toml`` beside the package); else
    ``~/.cache/blackbox-xai/models``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    root = Path(__file__).resolve().parents[2]  # blackbox_xai/zoo/cache.py -> the folder holding blackbox_xai
    if (root / "pyproject.toml").is_file():
        return root / "models"
    return Path.home() / ".cache" / "blackbox-xai" / "models"


def efficientnet_lite0_path(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Path of ``efficientnet_lite0.onnx`` in ``cache_dir`` (default :func:`default_cache_dir`), building it
    (with its ``efficientnet_lite0.spec.json`` and labels) the first time."""
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    path = folder / MODEL_FILE
    needed = (path, folder / SPEC_FILE, folder / LABELS_FILE)
    if not all(p.is_file() for p in needed):
        build_efficientnet_lite0_onnx(path)
    return path


def efficientnet_lite0(cache_dir: str | os.PathLike[str] | None = None, **kwargs: Any) -> Any:
    """The EfficientNet-Lite0 ImageNet classifier (Tan & Le 2019; Lite variant) as a ready
    :class:`blackbox_xai.model.OnnxModel` with its spec and ImageNet labels; extra keyword arguments go to
    ``OnnxModel`` (``providers``, ``batch_size``...). The ONNX file is built on first use
    (see :func:`efficientnet_lite0_path`)."""
    from ..model import InputSpec, OnnxModel

    path = efficientnet_lite0_path(cache_dir)
    spec = InputSpec.from_json(path.with_name(SPEC_FILE))
    return OnnxModel(path, spec=spec, labels=imagenet_labels(), **kwargs)
