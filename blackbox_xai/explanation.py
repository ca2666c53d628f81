"""Explanation: the one result type every method returns."""

from __future__ import annotations

import hashlib
import io
import json
import os
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
    source : where the image came from: its file path as given, or ``"array HxWxC dtype"`` for an array; None
        when not recorded (see :func:`record_provenance`).
    image_sha256 : sha256 (hex) of the image file's bytes, or of an array's C-order bytes; None when not recorded.
    model_sha256 : sha256 (hex) of the model file (of the serialised graph for a model built in memory); None for
        a model that is not an ONNX graph, or when not recorded.
    spec : the input specification used (:meth:`~blackbox_xai.model.InputSpec.to_dict`), or None.
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
    source: str | None = None
    image_sha256: str | None = None
    model_sha256: str | None = None
    spec: dict[str, Any] | None = None

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
            "source": self.source,
            "image_sha256": self.image_sha256,
            "model_sha256": self.model_sha256,
            "spec": _jsonable(self.spec),
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
        files = {prefix.with_name(prefix.name + suffix): data for suffix, data in self.encode().items()}
        return write_all_atomic(files)

    def encode(self) -> dict[str, bytes]:
        """The bytes :meth:`save` writes, by suffix: ``.png`` (the overlay, bounded in size as
        :mod:`blackbox_xai.render` says), ``.npz`` (``saliency`` and the array extras) and ``.json``
        (:meth:`to_json`)."""
        arrays = {"saliency": self.saliency.astype(np.float32)}
        for key, value in self.extras.items():
            if isinstance(value, np.ndarray):
                if key == "saliency":
                    raise OutputError("an extra array may not be called 'saliency'")
                arrays[key] = value
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        return {
            ".png": encode_png(self.overlay()),
            ".npz": buffer.getvalue(),
            ".json": json.dumps(self.to_json(), indent=2).encode(),
        }

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
            source=record.get("source"),
            image_sha256=record.get("image_sha256"),
            model_sha256=record.get("model_sha256"),
            spec=record.get("spec"),
        )


def record_provenance(explanation: Explanation, image: Any = None, model: Any = None,
                      source: str | os.PathLike[str] | None = None) -> Explanation:
    """Fill ``explanation``'s provenance fields (``source``, ``image_sha256``, ``model_sha256``, ``spec``) in place
    and return it.

    ``image`` is what was explained: a file path (its bytes are hashed, streamed) or an array (its C-order bytes
    are hashed); ``source`` (default None) overrides the recorded source, e.g. the file an array was decoded from,
    whose file hash is then recorded. ``model`` (default None) gives ``model_sha256`` (see :func:`model_sha256`)
    and ``spec`` (its ``spec.to_dict()``). Fields whose argument is None are left as they are.
    """
    if source is not None:
        explanation.source = str(source)
        explanation.image_sha256 = file_sha256(source)
    elif isinstance(image, (str, os.PathLike)):
        explanation.source = str(image)
        explanation.image_sha256 = file_sha256(image)
    elif isinstance(image, np.ndarray):
        explanation.source = f"array {'x'.join(str(d) for d in image.shape)} {image.dtype}"
        explanation.image_sha256 = array_sha256(image)
    if model is not None:
        explanation.model_sha256 = model_sha256(model)
        spec = getattr(model, "spec", None)
        if spec is not None and hasattr(spec, "to_dict"):
            explanation.spec = _jsonable(spec.to_dict())
    return explanation


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 (hex) of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def array_sha256(array: np.ndarray) -> str:
    """sha256 (hex) of an array's bytes in C order (the shape and dtype are not part of it)."""
    return hashlib.sha256(memoryview(np.ascontiguousarray(array)).cast("B")).hexdigest()


_MODEL_HASHES: dict[tuple, str] = {}


def model_sha256(model: Any) -> str | None:
    """sha256 (hex) of ``model``'s ONNX file (``model.path``), computed once per file version; of the serialised
    graph (``model.proto()``) for a model built in memory; None for a model that is neither."""
    path = getattr(model, "path", None)
    if path is not None:
        status = os.stat(path)
        key = (os.path.abspath(path), status.st_size, status.st_mtime_ns)
        if key not in _MODEL_HASHES:
            _MODEL_HASHES[key] = file_sha256(path)
        return _MODEL_HASHES[key]
    proto = getattr(model, "proto", None)
    if callable(proto):
        return hashlib.sha256(proto().SerializeToString()).hexdigest()
    return None


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
