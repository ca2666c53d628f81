"""InputSpec: how 8-bit RGB pixels become the tensor a model expects.

The spec records what the graph cannot always tell (value range, mean/std, channel order) together with what it
can (input name, layout, size, dtype). :func:`infer_spec` fills the fields the ONNX graph states; the caller
supplies the rest from Python arguments, CLI flags or a JSON file (:meth:`InputSpec.from_json`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ParameterError, SpecError

LAYOUTS = ("NCHW", "NHWC")
CHANNEL_ORDERS = ("RGB", "BGR")
DTYPES = ("float32", "float16", "uint8")
JSON_KEYS = (
    "input", "output", "size", "layout", "channel_order", "value_range", "mean", "std", "dtype", "labels",
)


@dataclass(frozen=True)
class InputSpec:
    """Preprocessing contract between pixel space and a model input.

    Pixels enter as float arrays in [0, 255], HWC, RGB. The model input is computed as
    ``((pixels * value_range[1] / 255) - mean) / std`` in ``channel_order``, arranged in ``layout`` and cast to
    ``dtype``.

    Parameters
    ----------
    input : name of the image input; None = the graph's only (first) input.
    output : name or index of the output that holds the class scores; default 0.
    size : model (height, width); None = the graph's fixed size.
    layout : "NCHW" or "NHWC"; None = inferred from a channel dimension of 1 or 3.
    channel_order : "RGB" (default) or "BGR".
    value_range : (0, 1) or (0, 255): what 8-bit pixels are scaled to before mean/std. Default (0, 1) for a float
        input, (0, 255) for a uint8 input (bytes: scaled to 0..1 they would be a black image).
    mean, std : per-channel statistics in ``value_range`` units; default 0 and 1 (no normalisation).
    dtype : "float32", "float16" or "uint8"; None = the graph's element type. A dtype given explicitly must match
        the graph's (a contradiction is a :class:`~blackbox_xai.errors.SpecError`).
    labels : optional path to a text file of class names, one per line.
    channels : 3 for colour models, 1 for grayscale models (inferred from the graph).

    The fields given to the constructor (and not None) count as explicit: inference, a spec file beside the model
    and the model's metadata never override them (see :mod:`blackbox_xai.model.resolve`). An unknown keyword is a
    :class:`~blackbox_xai.errors.ParameterError`; a value of the wrong kind a :class:`SpecError`.
    """

    input: str | None = None
    output: str | int = 0
    size: tuple[int, int] | None = None
    layout: str | None = None
    channel_order: str = "RGB"
    value_range: tuple[float, float] = (0.0, 1.0)
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    dtype: str | None = None
    labels: str | None = None
    channels: int = 3
    # Fields set explicitly by the user; inference never overrides them.
    explicit: frozenset[str] = field(default=frozenset(), compare=False, repr=False)

    def __post_init__(self) -> None:
        try:
            self._check_fields()
        except (TypeError, ValueError) as error:  # a value of the wrong type, e.g. size="big" or mean="x"
            raise SpecError(f"invalid spec value ({error}); see InputSpec's fields") from None

    def _check_fields(self) -> None:
        if self.size is not None:
            if (isinstance(self.size, (str, bytes)) or len(self.size) != 2
                    or any(isinstance(s, bool) or float(s) != int(s) or int(s) <= 0 for s in self.size)):
                raise SpecError(f"spec size must be [height, width] of positive integers, got {list(self.size)}")
            object.__setattr__(self, "size", (int(self.size[0]), int(self.size[1])))
        if self.layout is not None and self.layout.upper() not in LAYOUTS:
            raise SpecError(f"spec layout must be one of {LAYOUTS}, got {self.layout!r}")
        if self.layout is not None:
            object.__setattr__(self, "layout", self.layout.upper())
        if self.channel_order.upper() not in CHANNEL_ORDERS:
            raise SpecError(f"spec channel_order must be RGB or BGR, got {self.channel_order!r}")
        object.__setattr__(self, "channel_order", self.channel_order.upper())
        value_range = tuple(float(v) for v in self.value_range)
        if value_range not in ((0.0, 1.0), (0.0, 255.0)):
            raise SpecError(f"spec value_range must be [0, 1] or [0, 255], got {list(self.value_range)}")
        object.__setattr__(self, "value_range", value_range)
        if self.dtype is not None and self.dtype not in DTYPES:
            raise SpecError(f"spec dtype must be one of {DTYPES}, got {self.dtype!r}")
        for name in ("mean", "std"):
            values = getattr(self, name)
            values = (float(values),) if isinstance(values, (int, float)) else tuple(float(v) for v in values)
            if len(values) == 1:
                values = values * 3
            if len(values) != 3:
                raise SpecError(f"spec {name} must have 1 or 3 values, got {len(values)}")
            object.__setattr__(self, name, values)
        if any(s == 0 for s in self.std):
            raise SpecError("spec std must not contain zeros")
        if self.channels not in (1, 3):
            raise SpecError(f"a model image input has 1 or 3 channels, got {self.channels}")
        if not all(np.isfinite(v) for v in (*self.mean, *self.std)):
            raise SpecError("spec mean and std must be finite numbers")

    def replace(self, **changes: Any) -> "InputSpec":
        """A copy with some fields changed; changed fields count as explicit."""
        explicit = self.explicit | {k for k in changes if k != "explicit"}
        return dataclasses.replace(self, explicit=frozenset(explicit), **changes)

    @classmethod
    def create(cls, **fields: Any) -> "InputSpec":
        """Build a spec from the given fields, remembering them as explicitly set (None values are ignored)."""
        given = {k: v for k, v in fields.items() if v is not None}
        unknown = set(given) - set(JSON_KEYS) - {"channels"}
        if unknown:
            raise SpecError(f"unknown spec keys {sorted(unknown)}; valid keys: {', '.join(JSON_KEYS)}")
        if "size" in given and isinstance(given["size"], int):
            given["size"] = (given["size"], given["size"])
        return cls(explicit=frozenset(given), **given)

    @classmethod
    def from_dict(cls, data: dict[str, Any], base_dir: str | Path | None = None) -> "InputSpec":
        """Build a spec from JSON-like data; a relative ``labels`` path is taken relative to ``base_dir``."""
        if not isinstance(data, dict):
            raise SpecError("a spec must be a JSON object with keys like input, size, mean, std")
        data = dict(data)
        if data.get("labels") and base_dir is not None and not Path(data["labels"]).is_absolute():
            data["labels"] = str(Path(base_dir) / data["labels"])
        return cls.create(**data)

    @classmethod
    def from_json(cls, path: str | Path) -> "InputSpec":
        """Read a spec file (keys: input, output, size, layout, channel_order, value_range, mean, std, dtype,
        labels)."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise SpecError(f"spec file not found: {path}") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise SpecError(f"cannot read spec file {path}: {error}") from None
        return cls.from_dict(data, base_dir=path.parent)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary of the spec."""
        return {
            "input": self.input,
            "output": self.output,
            "size": list(self.size) if self.size else None,
            "layout": self.layout,
            "channel_order": self.channel_order,
            "value_range": list(self.value_range),
            "mean": list(self.mean),
            "std": list(self.std),
            "dtype": self.dtype,
            "labels": self.labels,
            "channels": self.channels,
        }

    def merged_with_graph(self, graph_input: "GraphInput") -> "InputSpec":
        """Fill the fields the graph states, keeping the explicit ones; raise when they contradict the graph."""
        values: dict[str, Any] = {}
        if "input" not in self.explicit or self.input is None:
            values["input"] = graph_input.name
        if len(graph_input.dims) != 4:
            what = {5: " (a video or a volume?)", 2: " (a feature vector?)"}.get(len(graph_input.dims), "")
            raise SpecError(
                f"input {graph_input.name!r} has shape {graph_input.shape_text}: not an image input; it has "
                f"{len(graph_input.dims)} dimensions{what} and blackbox-xai explains models whose image input has 4 "
                "(batch, channels, height, width in either layout)"
            )
        layout = self.layout if "layout" in self.explicit else graph_input.layout
        if layout is None:
            raise SpecError(
                f"cannot tell the layout of input {graph_input.name!r} with shape {graph_input.shape_text}: "
                "it is not an image input (no channel dimension of 1 or 3); pass layout NCHW or NHWC in the spec"
            )
        values["layout"] = layout
        channel_axis = 1 if layout == "NCHW" else 3
        spatial_axes = (2, 3) if layout == "NCHW" else (1, 2)
        dims = graph_input.dims
        channels = dims[channel_axis]
        if isinstance(channels, int):
            if channels not in (1, 3):
                raise SpecError(
                    f"input {graph_input.name!r} has {channels} channels in layout {layout}: not an image input; "
                    "check the layout in the spec"
                )
            values["channels"] = channels
        graph_size = tuple(dims[a] for a in spatial_axes)
        fixed_size = all(isinstance(d, int) and d > 0 for d in graph_size)
        if "size" in self.explicit and self.size is not None:
            if fixed_size and tuple(self.size) != graph_size:
                raise SpecError(
                    f"spec size {list(self.size)} contradicts the model's fixed input size {list(graph_size)}"
                )
        elif fixed_size:
            values["size"] = graph_size
        elif self.size is None:
            raise SpecError(
                f"input {graph_input.name!r} has no fixed size ({graph_input.shape_text}); give size [H, W] in the "
                "spec (--spec FILE or InputSpec(size=...))"
            )
        if "dtype" in self.explicit and self.dtype is not None and self.dtype != graph_input.dtype:
            raise SpecError(
                f"spec dtype {self.dtype} contradicts the graph: input {graph_input.name!r} takes "
                f"{graph_input.dtype}; remove dtype from the spec (it follows the graph) or fix it"
            )
        if "dtype" not in self.explicit or self.dtype is None:
            if graph_input.dtype not in DTYPES:
                raise SpecError(
                    f"input {graph_input.name!r} has element type {graph_input.dtype}: not an image input "
                    f"(supported: {', '.join(DTYPES)})"
                )
            values["dtype"] = graph_input.dtype
        if values.get("dtype", self.dtype) == "uint8" and "value_range" not in self.explicit:
            values["value_range"] = (0.0, 255.0)  # a uint8 input holds bytes: 0..1 would be a black image
        merged = dataclasses.replace(self, **values)
        if merged.dtype == "uint8" and (any(m != 0 for m in merged.mean) or any(s != 1 for s in merged.std)):
            raise SpecError("a uint8 model input cannot take mean/std normalisation; remove mean and std")
        return merged


_FIELDS = tuple(f.name for f in dataclasses.fields(InputSpec))
_dataclass_init = InputSpec.__init__


@functools.wraps(_dataclass_init)
def _init(self: InputSpec, *args: Any, **kwargs: Any) -> None:
    """The dataclass's ``__init__``, with an unknown keyword refused as a :class:`ParameterError` (not a raw
    TypeError) and the fields given (not None) remembered as explicit when ``explicit`` is not passed."""
    unknown = sorted(set(kwargs) - set(_FIELDS))
    if unknown:
        raise ParameterError(f"InputSpec has no field {', '.join(map(repr, unknown))}; its fields are "
                             f"{', '.join(_FIELDS[:-1])}")
    if len(args) > len(_FIELDS) - 1:
        raise ParameterError(f"InputSpec takes at most {len(_FIELDS) - 1} positional values, got {len(args)}")
    if "explicit" not in kwargs:
        given = {**dict(zip(_FIELDS, args)), **kwargs}
        kwargs["explicit"] = frozenset(name for name, value in given.items() if value is not None)
    _dataclass_init(self, *args, **kwargs)


InputSpec.__init__ = _init  # type: ignore[method-assign]


@dataclass(frozen=True)
class GraphInput:
    """What an ONNX graph says about one of its inputs."""

    name: str
    dims: tuple[int | str | None, ...]
    dtype: str

    @property
    def shape_text(self) -> str:
        return "[" + ", ".join("?" if d is None else str(d) for d in self.dims) + "]"

    @property
    def layout(self) -> str | None:
        """NCHW or NHWC when a channel dimension of 1 or 3 tells it (NCHW wins a tie), else None."""
        if len(self.dims) != 4:
            return None
        if self.dims[1] in (1, 3):
            return "NCHW"
        if self.dims[3] in (1, 3):
            return "NHWC"
        return None

    @property
    def fixed_batch(self) -> int | None:
        first = self.dims[0] if self.dims else None
        return first if isinstance(first, int) and first > 0 else None

