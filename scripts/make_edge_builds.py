"""Edge builds of the zoo EfficientNet-Lite0: int8 (onnxruntime.quantization) and float16 variants.

Usage::

    python scripts/make_edge_builds.py [--out DIR] [--builds qdq,qop,dynamic,...] [--force]

Each build is written beside the zoo model (default: the folder of ``bx.zoo.efficientnet_lite0_path()``) as
``efficientnet_lite0.<build>.onnx`` with a spec file ``efficientnet_lite0.<build>.spec.json`` (the zoo model's
spec; ``dtype`` follows the build's input type). A build already there is kept unless ``--force``.

Builds (:data:`BUILDS`):

* ``qdq`` / ``qdq-pertensor``: static int8, QDQ format (QuantizeLinear/DequantizeLinear pairs around float ops),
  uint8 activations, int8 weights, per-channel / per-tensor weight scales;
* ``qdq-s8``: static QDQ with int8 activations (symmetric), per-channel;
* ``qop`` / ``qop-pertensor``: static int8, QOperator format (QLinearConv, QLinearAdd, ... with uint8 tensors
  between them), per-channel / per-tensor;
* ``dynamic``: dynamic quantisation (DynamicQuantizeLinear, ConvInteger/MatMulInteger), uint8 weights;
* ``fp16``: every float tensor float16, float16 input and output;
* ``fp16-inside``: float16 inside with float32 input and output (Cast nodes at the edges).

Static builds are calibrated (min/max) on the sample photographs of ``bx.zoo.sample_image`` (real photos from
``skimage.data``) preprocessed as the model's spec says. The fp16 builds use ``onnxconverter-common``
(``float16.convert_float_to_float16``); without it they are skipped with a message.

The library itself never imports onnxruntime outside ``blackbox_xai/model/``, so this lives in ``scripts/``;
tests import :func:`make_edge_builds` from here.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

#: build name -> (kind, options)
BUILDS: dict[str, dict] = {
    "qdq": {"kind": "static", "format": "QDQ", "per_channel": True, "activations": "uint8"},
    "qdq-pertensor": {"kind": "static", "format": "QDQ", "per_channel": False, "activations": "uint8"},
    "qdq-s8": {"kind": "static", "format": "QDQ", "per_channel": True, "activations": "int8"},
    "qop": {"kind": "static", "format": "QOperator", "per_channel": True, "activations": "uint8"},
    "qop-pertensor": {"kind": "static", "format": "QOperator", "per_channel": False, "activations": "uint8"},
    "dynamic": {"kind": "dynamic"},
    "fp16": {"kind": "fp16", "keep_io_types": False},
    "fp16-inside": {"kind": "fp16", "keep_io_types": True},
}
CALIBRATION_IMAGES = ("chelsea", "coffee", "astronaut", "rocket", "motorcycle")


def build_path(folder: Path, build: str) -> Path:
    """``<folder>/efficientnet_lite0.<build>.onnx``."""
    return Path(folder) / f"efficientnet_lite0.{build}.onnx"


def calibration_inputs(spec_path: Path, names=CALIBRATION_IMAGES) -> np.ndarray:
    """The sample photos resized and normalised as the zoo spec says: float32 (N, 3, 224, 224)."""
    from blackbox_xai.image import resize_pixels
    from blackbox_xai.model import InputSpec
    from blackbox_xai.model.preprocess import Preprocessor
    from blackbox_xai.zoo import sample_image

    spec = InputSpec.from_json(spec_path)
    pre = Preprocessor(spec)
    pixels = np.stack([resize_pixels(sample_image(n).astype(np.float32), tuple(spec.size)) for n in names])
    return pre.forward(pixels).astype(np.float32)


def _static(source: Path, target: Path, options: dict, inputs: np.ndarray, input_name: str) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{input_name: x[None]} for x in inputs])

        def get_next(self):
            return next(self.items, None)

    activation = QuantType.QUInt8 if options["activations"] == "uint8" else QuantType.QInt8
    extra = {"ActivationSymmetric": options["activations"] == "int8"}
    quantize_static(str(source), str(target), Reader(),
                    quant_format=QuantFormat.QDQ if options["format"] == "QDQ" else QuantFormat.QOperator,
                    per_channel=options["per_channel"], activation_type=activation, weight_type=QuantType.QInt8,
                    extra_options=extra)


def _dynamic(source: Path, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(target), weight_type=QuantType.QUInt8)


def _fp16(source: Path, target: Path, keep_io_types: bool) -> None:
    from onnxconverter_common import float16

    model = onnx.load(str(source))
    converted = float16.convert_float_to_float16(model, keep_io_types=keep_io_types)
    onnx.save(converted, str(target))


def op_counts(path: Path) -> dict[str, int]:
    """How many nodes of each operator (``domain.op`` outside the default domain) a model has."""
    model = onnx.load(str(path), load_external_data=False)
    return dict(Counter((f"{n.domain}." if n.domain not in ("", "ai.onnx") else "") + n.op_type
                        for n in model.graph.node))


def make_edge_builds(builds=None, folder: Path | None = None, force: bool = False) -> dict[str, Path]:
    """Make the requested builds (default all of :data:`BUILDS`) of the zoo model in ``folder`` (default: the
    zoo model's folder, which builds it first if needed); returns build name -> path. Builds already there are
    kept unless ``force``."""
    from blackbox_xai.zoo import SPEC_FILE, efficientnet_lite0_path

    source = efficientnet_lite0_path(folder)
    folder = source.parent
    spec_path = folder / SPEC_FILE
    names = list(BUILDS) if builds is None else list(builds)
    unknown = [b for b in names if b not in BUILDS]
    if unknown:
        raise ValueError(f"unknown builds {unknown}; choose from {', '.join(BUILDS)}")
    result: dict[str, Path] = {}
    inputs = None
    for name in names:
        options = BUILDS[name]
        target = build_path(folder, name)
        spec_target = target.with_name(target.name[:-len(".onnx")] + ".spec.json")
        if force or not target.is_file():
            tmp = target.with_name(target.name + ".tmp")
            if options["kind"] == "static":
                if inputs is None:
                    inputs = calibration_inputs(spec_path)
                input_name = onnx.load(str(source), load_external_data=False).graph.input[0].name
                _static(source, tmp, options, inputs, input_name)
            elif options["kind"] == "dynamic":
                _dynamic(source, tmp)
            else:
                _fp16(source, tmp, options["keep_io_types"])
            tmp.replace(target)
        spec = json.loads(spec_path.read_text())
        spec["dtype"] = "float16" if options.get("kind") == "fp16" and not options["keep_io_types"] else "float32"
        spec_target.write_text(json.dumps(spec, indent=2) + "\n")
        result[name] = target
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="folder (default: the zoo model's folder)")
    parser.add_argument("--builds", default=",".join(BUILDS), help="comma-separated build names")
    parser.add_argument("--force", action="store_true", help="rebuild builds already there")
    args = parser.parse_args(argv)
    paths = make_edge_builds([b for b in args.builds.split(",") if b], args.out, args.force)
    for name, path in paths.items():
        counts = op_counts(path)
        ops = ", ".join(f"{op} {n}" for op, n in sorted(counts.items(), key=lambda kv: -kv[1]))
        print(f"{name}: {path} ({path.stat().st_size / 1e6:.1f} MB): {ops}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
