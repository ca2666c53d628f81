"""Explanation: the one result type every method returns."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import OutputError
from .fileio import write_all_atomic
from .render import encode_png, heatmap, overlay

#: Suffixes that :meth:`Explanation.save` drops from its prefix: the files it writes, and other image formats.
SAVE_SUFFIXES = frozenset({".png", ".npz", ".json", ".npy", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})


@dataclass
class Explanation:
    """A saliency map and everything needed to reproduce and judge it.

    Attributes
    ----------
    saliency : float32 (H, W) at the original image resolution; larger = more evidence for the target.
    target : the explained target as JSON (a class index, a list of classes, or {"contrast": [p, q]}).
    method : method name (e.g. "rise").
    params : all hyperparameters, including the seed.
    scores : the model's raw output on the clean image (C,).
    extras : method-specific arrays (saved in the .npz) and values (saved in the .json).
    timing : seconds, forward passes, batch size.
    image : the explained image (H, W, 3) pixels in [0, 255], used for the overlay; not saved.
    labels : class names of the explained classes, when the model knows them.
    """

    saliency: np.ndarray
    target: Any
    method: str
    params: dict[str, Any] = field(default_factory=dict)
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    extras: dict[str, Any] = field(default_factory=dict)
    timing: dict[str, Any] = field(default_factory=dict)
    image: np.ndarray | None = field(default=None, repr=False)
    labels: dict[str, str] = field(default_factory=dict)

    def overlay(self, alpha: float = 0.5) -> np.ndarray:
        """uint8 RGB heat map over the image (the heat map alone when the image is not known)."""
        if self.image is None:
            return heatmap(self.saliency)
        return overlay(self.image, self.saliency, alpha=alpha)

    def to_json(self) -> dict[str, Any]:
        """The JSON record written by :meth:`save` (everything but the arrays)."""
        scalar_extras = {k: _jsonable(v) for k, v in self.extras.items() if not isinstance(v, np.ndarray)}
        return {
            "method": self.method,
            "target": self.target,
            "labels": self.labels,
            "params": {k: _jsonable(v) for k, v in self.params.items()},
            "scores": [float(s) for s in np.asarray(self.scores).ravel()],
            "timing": {k: _jsonable(v) for k, v in self.timing.items()},
            "extras": scalar_extras,
            "saliency_shape": list(self.saliency.shape),
        }

    def save(self, prefix: str | Path) -> list[Path]:
        """Write ``prefix.png`` (overlay), ``prefix.npz`` (``saliency`` and array extras) and ``prefix.json``.

        A known image, array or JSON suffix on ``prefix`` (``.png``, ``.jpg``, ``.npz``, ``.json``...; see
        :data:`SAVE_SUFFIXES`) is dropped: ``save("out/cat.png")`` writes ``out/cat.png``, not ``out/cat.png.png``.
        Other dots stay part of the name (``save("out/cat.v2")`` writes ``out/cat.v2.png``...). Each file is
        written atomically with ordinary permissions (:func:`~blackbox_xai.fileio.write_atomic`); when one
        fails, the files this call created are removed. Returns the paths written.
        """
        prefix = _stem_prefix(prefix)
        arrays = {"saliency": self.saliency.astype(np.float32)}
        for key, value in self.extras.items():
            if isinstance(value, np.ndarray):
                if key == "saliency":
                    raise OutputError("an extra array may not be called 'saliency'")
                arrays[key] = value
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        files = {
            prefix.with_name(prefix.name + ".png"): encode_png(self.overlay()),
            prefix.with_name(prefix.name + ".npz"): buffer.getvalue(),
            prefix.with_name(prefix.name + ".json"): json.dumps(self.to_json(), indent=2).encode(),
        }
        return write_all_atomic(files)

    @classmethod
    def load(cls, prefix: str | Path) -> "Explanation":
        """Read an explanation written by :meth:`save` (the image is not stored, so ``image`` is None); ``prefix``
        is read as :meth:`save` reads it (``load("out/cat.json")`` is ``load("out/cat")``)."""
        prefix = _stem_prefix(prefix)
        json_path = prefix.with_name(prefix.name + ".json")
        npz_path = prefix.with_name(prefix.name + ".npz")
        try:
            record = json.loads(json_path.read_text())
            with np.load(npz_path, allow_pickle=False) as data:
                arrays = {key: data[key] for key in data.files}
        except FileNotFoundError as error:
            raise OutputError(f"cannot load explanation {prefix}: {error.filename} not found") from None
        except (OSError, ValueError) as error:
            raise OutputError(f"cannot load explanation {prefix}: {error}") from None
        saliency = arrays.pop("saliency")
        extras: dict[str, Any] = dict(record.get("extras", {}))
        extras.update(arrays)
        return cls(
            saliency=saliency,
            target=record["target"],
            method=record["method"],
            params=record.get("params", {}),
            scores=np.asarray(record.get("scores", []), dtype=np.float32),
            extras=extras,
            timing=record.get("timing", {}),
            labels=record.get("labels", {}),
        )


def _stem_prefix(prefix: str | Path) -> Path:
    """``prefix`` without a suffix of :data:`SAVE_SUFFIXES` (case-insensitive; only the last suffix)."""
    prefix = Path(prefix)
    if prefix.suffix.lower() in SAVE_SUFFIXES and prefix.stem:
        return prefix.with_name(prefix.stem)
    return prefix


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value
