"""The command-line face of blackbox-xai: parse, call the library, print, exit code.

Exit codes: 0 success, 1 bad input (one line on stderr says what and what to do), 2 bad command line,
3 internal error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import __version__
from .errors import BlackboxError, ParameterError
from .image import load_image
from .methods import METHODS, canonical_name, make_method
from .model import InputSpec, Model, OnnxModel
from .targets import parse_target

log = logging.getLogger("blackbox_xai")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING, format="%(message)s")
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _warning_line
            return int(args.handler(args) or 0)
    except BlackboxError as error:
        print(f"blackbox-xai: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("blackbox-xai: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into a program that stopped reading (e.g. head)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as error:  # a bug: still one line unless --debug asks for the traceback
        if args.debug:
            raise
        print(f"blackbox-xai: internal error: {type(error).__name__}: {error} (rerun with --debug for details)",
              file=sys.stderr)
        return 3


def _warning_line(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> None:
    """Warnings as one line on stderr, without the source file and line."""
    print(f"blackbox-xai: warning: {message}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="blackbox-xai", description="Explain ONNX vision models without their source.")
    parser.add_argument("--version", action="version", version=f"blackbox-xai {__version__}")
    parser.add_argument("--debug", action="store_true", help="log details and show tracebacks of internal errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    explain = commands.add_parser("explain", help="explain images with one or more methods")
    explain.add_argument("model", help="ONNX model file")
    explain.add_argument("images", nargs="+", help="image files")
    _add_method_arguments(explain)
    explain.add_argument("--out", default="blackbox-xai-output", help="output folder (default blackbox-xai-output)")
    _add_model_arguments(explain)
    explain.set_defaults(handler=run_explain)

    info = commands.add_parser("info", help="describe a model: inputs, outputs, opset, ops, inferred spec")
    info.add_argument("model", help="ONNX model file")
    info.add_argument("--json", action="store_true", help="print JSON")
    _add_model_arguments(info)
    info.set_defaults(handler=run_info)

    evaluate = commands.add_parser("evaluate", help="explain images and score the explanations with metrics")
    evaluate.add_argument("model", help="ONNX model file")
    evaluate.add_argument("images", nargs="+", help="image files")
    _add_method_arguments(evaluate)
    evaluate.add_argument("--metric", default="deletion,insertion",
                          help="comma-separated metrics (see the library's list_metrics())")
    evaluate.add_argument("--mask", action="append", default=[],
                          help="ground-truth mask: one file per image (repeat, in image order) or a folder holding "
                               "<image stem>.png; bright = object")
    evaluate.add_argument("--out", default="blackbox-xai-evaluation", help="folder for evaluation.csv and .json")
    _add_model_arguments(evaluate)
    evaluate.set_defaults(handler=run_evaluate)

    layers = commands.add_parser("layers", help="list the candidate target layers of the CAM methods")
    layers.add_argument("model", help="ONNX model file")
    layers.add_argument("--json", action="store_true", help="print JSON")
    _add_model_arguments(layers)
    layers.set_defaults(handler=run_layers)

    demo = commands.add_parser("demo", help="build the EfficientNet-Lite0 reference model and explain two photos "
                                            "(RISE, occlusion, Grad-CAM)")
    demo.add_argument("--out", default="demo-output", help="output folder (default demo-output)")
    demo.add_argument("--n-masks", type=int, default=4000, help="RISE masks (default 4000)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--provider", default="cpu", help="cpu (default) or cuda")
    demo.set_defaults(handler=run_demo)
    return parser


def _add_method_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", default="rise",
                        help=f"comma-separated methods ({', '.join(sorted(METHODS))}; random and centre are baselines)")
    parser.add_argument("--target", default="top1", help="top1, a class INDEX, A,B (several classes) or P:Q (contrast)")
    parser.add_argument("--seed", type=int, default=None, help="seed for the stochastic methods")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="method hyperparameter, e.g. n_masks=2000 or rise.n_masks=2000 (repeatable)")
    parser.add_argument("--layer", help="target layer (tensor name) of the CAM methods; see: blackbox-xai layers")


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model input specification (override the --spec file)")
    group.add_argument("--spec", help="JSON spec file (keys: input, output, size, layout, channel_order, "
                                      "value_range, mean, std, dtype, labels)")
    group.add_argument("--input", dest="input_name", help="name of the image input")
    group.add_argument("--output", dest="output_name", help="name or index of the score output")
    group.add_argument("--size", help="model input size H,W")
    group.add_argument("--layout", choices=["NCHW", "NHWC"])
    group.add_argument("--channel-order", choices=["RGB", "BGR"])
    group.add_argument("--value-range", choices=["0,1", "0,255"], help="what 8-bit pixels are scaled to")
    group.add_argument("--mean", help="per-channel mean, e.g. 0.485,0.456,0.406")
    group.add_argument("--std", help="per-channel std, e.g. 0.229,0.224,0.225")
    group.add_argument("--labels", help="class names file, one per line")
    group.add_argument("--batch-size", type=int, default=32, help="images per onnxruntime call (default 32)")
    group.add_argument("--provider", default="cpu", help="cpu (default) or cuda")


def _numbers(text: str | None, name: str) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise ParameterError(f"--{name} must be comma-separated numbers, got {text!r}") from None


def load_model_from_args(args: argparse.Namespace) -> OnnxModel:
    """The model named on the command line, with the spec file and flags applied."""
    spec = InputSpec.from_json(args.spec) if args.spec else InputSpec()
    size = _numbers(args.size, "size")
    overrides: dict[str, Any] = {
        "input": args.input_name,
        "output": int(args.output_name) if args.output_name and args.output_name.isdigit() else args.output_name,
        "size": tuple(int(v) for v in size) if size else None,
        "layout": args.layout,
        "channel_order": args.channel_order,
        "value_range": _numbers(args.value_range, "value-range"),
        "mean": _numbers(args.mean, "mean"),
        "std": _numbers(args.std, "std"),
        "labels": args.labels,
    }
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if overrides:
        spec = spec.replace(**overrides)
    return OnnxModel(args.model, spec=spec, providers=args.provider, batch_size=args.batch_size)


def method_params(names: list[str], param_args: list[str], seed: int | None, layer: str | None = None
                  ) -> dict[str, dict[str, Any]]:
    """Hyperparameters per method from ``--param KEY=VALUE`` (or ``METHOD.KEY=VALUE``), ``--seed`` and
    ``--layer``."""
    accepted = {name: set(METHODS[name]().get_params()) for name in names}
    params: dict[str, dict[str, Any]] = {name: {} for name in names}
    for item in param_args:
        if "=" not in item:
            raise ParameterError(f"--param takes KEY=VALUE, got {item!r}")
        key, raw = item.split("=", 1)
        value = _parse_value(raw)
        scope, _, key = key.rpartition(".")
        targets = [scope] if scope else [n for n in names if key in accepted[n]]
        if scope and scope not in params:
            raise ParameterError(f"--param {item}: method {scope!r} is not among --method {','.join(names)}")
        if not targets or any(key not in accepted[t] for t in targets):
            raise ParameterError(f"--param {item}: no selected method takes {key!r}")
        for name in targets:
            params[name][key] = value
    for key, value in (("seed", seed), ("layer", layer)):
        if value is None:
            continue
        takers = [name for name in names if key in accepted[name]]
        if not takers:
            raise ParameterError(f"--{key} given but no selected method takes a {key}")
        for name in takers:
            params[name][key] = value
    return params


def _parse_value(raw: str) -> Any:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        return raw
    return tuple(value) if isinstance(value, list) else value


def _method_names(text: str) -> list[str]:
    return list(dict.fromkeys(canonical_name(n) for n in text.split(",") if n.strip()))


def run_explain(args: argparse.Namespace) -> int:
    names = _method_names(args.method)
    params = method_params(names, args.param, args.seed, args.layer)
    methods = [make_method(name, **params[name]) for name in names]
    target = parse_target(args.target)
    images = [Path(p) for p in args.images]
    decoded = decode_images(images)  # fails before any work on an image that cannot be decoded
    model = load_model_from_args(args)
    explain_images(model, [(path.stem, image) for path, image in zip(images, decoded)], methods, target,
                   Path(args.out))
    return 0


def decode_images(paths: list[Path]) -> list[Any]:
    """Decode every image file once, up front (a file that cannot be decoded fails before any work is done), into
    what the methods and metrics are then given instead of the path.

    That is an array which :func:`~blackbox_xai.image.load_image` turns back into exactly the pixels it decodes
    from the file: uint8 for 8-bit images (a quarter of the float32 pixels' memory), else the float32 pixels. The
    one exception keeps the path: non-8-bit pixels that are all <= 1, which ``load_image`` would take for a [0, 1]
    float image and scale by 255 (a nearly black 16-bit image, decoded again where used).
    """
    decoded: list[Any] = []
    for path in paths:
        pixels = load_image(path)
        compact = pixels.astype(np.uint8)
        if np.array_equal(compact, pixels):
            decoded.append(compact)
        elif pixels.max(initial=0.0) > 1.0:
            decoded.append(pixels)
        else:
            decoded.append(path)
    return decoded


def explain_images(model: Model, images: list[tuple[str, Any]], methods: list, target: Any, out: Path) -> None:
    """Explain each (name, image) with each method; write per-method files and a side-by-side PNG per image.

    An image's files are written only once all its methods have succeeded, each file atomically.
    """
    from .fileio import write_atomic
    from .render import encode_png, side_by_side

    for stem, image in images:
        explanations = []
        for method in methods:
            with _progress_bar(f"{stem} {method.name}") as progress:
                explanations.append(method.explain(model, image, target=target, progress=progress))
        for explanation in explanations:
            prefix = out / f"{stem}_{explanation.method}"
            explanation.save(prefix)
            timing = explanation.timing
            print(f"{stem}: {explanation.method} target {_target_text(explanation)}: {timing['forward_passes']} "
                  f"passes, {timing['seconds']:.2f} s -> {prefix}.{{png,npz,json}}")
        panel = side_by_side(explanations[0].image, [e.saliency for e in explanations],
                             [e.method for e in explanations])
        write_atomic(out / f"{stem}_methods.png", encode_png(panel))


def _target_text(explanation: Any) -> str:
    names = explanation.labels
    return ", ".join(f"{c} ({n})" if n != c else c for c, n in names.items())


class _progress_bar:
    """A tqdm bar on stderr (only on a terminal) fed by the methods' progress callback."""

    def __init__(self, description: str) -> None:
        self.description = description
        self.bar = None

    def __enter__(self):
        return self.update

    def update(self, done: int, total: int) -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=self.description, leave=False, disable=None, file=sys.stderr)
        self.bar.update(done - self.bar.n)

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.close()


def _masks_for(images: list[Path], masks: list[str]) -> list[Path | None]:
    if not masks:
        return [None] * len(images)
    if len(masks) == 1 and Path(masks[0]).is_dir():
        folder = Path(masks[0])
        found = [folder / f"{image.stem}.png" for image in images]
        missing = [str(path) for path in found if not path.exists()]
        if missing:
            raise ParameterError(f"no mask for {len(missing)} image(s) in {folder}, e.g. {missing[0]}")
        return list(found)
    if len(masks) != len(images):
        raise ParameterError(f"got {len(masks)} --mask files for {len(images)} images: give one per image or a folder")
    return [Path(mask) for mask in masks]


def run_evaluate(args: argparse.Namespace) -> int:
    from .evaluation import evaluate, load_mask
    from .evaluation import _metric_names as metric_names
    from .fileio import write_atomic

    names = _method_names(args.method)
    params = method_params(names, args.param, args.seed, args.layer)
    methods = [make_method(name, **params[name]) for name in names]
    metrics = metric_names(args.metric.split(","))
    target = parse_target(args.target)
    images = [Path(p) for p in args.images]
    masks = _masks_for(images, args.mask)
    decoded = decode_images(images)
    model = load_model_from_args(args)
    rows = []
    for path, image, mask in zip(images, decoded, masks):
        if mask is not None:  # decoded once for all the methods
            shape = image.shape[:2] if isinstance(image, np.ndarray) else load_image(path).shape[:2]
            mask = load_mask(mask, shape)
        for method in methods:
            with _progress_bar(f"{path.stem} {method.name}") as progress:
                explanation = method.explain(model, image, target=target, progress=progress)
            scores = evaluate(model, image, explanation, metrics=metrics, mask=mask)
            rows.append({"image": str(path), "method": method.name, "target": json.dumps(explanation.target),
                         **{m: scores[m] for m in metrics}})
    out = Path(args.out)
    header = ["image", "method", "target", *metrics]
    csv_lines = [",".join(header)] + [",".join(_csv_field(row[h]) for h in header) for row in rows]
    write_atomic(out / "evaluation.csv", ("\n".join(csv_lines) + "\n").encode())
    write_atomic(out / "evaluation.json", json.dumps(rows, indent=2).encode())
    print(_table(header, rows))
    print(f"wrote {out / 'evaluation.csv'} and {out / 'evaluation.json'}")
    return 0


def _csv_field(value: Any) -> str:
    text = f"{value:.6g}" if isinstance(value, float) else str(value)
    return f'"{text.replace(chr(34), chr(34) * 2)}"' if any(c in text for c in ',"\n') else text


def _table(header: list[str], rows: list[dict[str, Any]]) -> str:
    cells = [[Path(str(row[h])).name if h == "image" else (f"{row[h]:.4f}" if isinstance(row[h], float) else str(row[h]))
              for h in header] for row in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(line, widths)) for line in cells]
    return "\n".join(lines)


def run_info(args: argparse.Namespace) -> int:
    info = load_model_from_args(args).info()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"model     {info['path']}")
    print(f"producer  {info['producer'] or '-'}  (IR {info['ir_version']}, opset "
          + ", ".join(f"{d} {v}" for d, v in info["opset"].items()) + ")")
    for kind in ("inputs", "outputs"):
        for value in info[kind]:
            shape = "x".join("?" if d is None else str(d) for d in value["shape"])
            print(f"{kind[:-1]:9} {value['name']}  {value['dtype']}  [{shape}]")
    print(f"classes   {info['classes']} ({info['output_kind']})" + ("  fixed batch 1" if info["fixed_batch"] else ""))
    print(f"nodes     {info['nodes']}: " + ", ".join(f"{op} {n}" for op, n in info["ops"].items()))
    spec = {k: v for k, v in info["spec"].items() if v is not None}
    print("spec      " + json.dumps(spec))
    return 0


def run_layers(args: argparse.Namespace) -> int:
    from . import graph

    model = load_model_from_args(args)
    proto = graph.move_initializers_out_of_inputs(model.proto())
    candidates = graph.candidate_layers(proto, model.spec.input)
    default = graph.default_layer(proto, model.spec.input, layers=candidates) if candidates else None
    rows = [{"tensor": layer.tensor, "op": layer.op_type, "node": layer.node,
             "shape": [d if isinstance(d, int) else None for d in layer.shape],
             "default": default is not None and layer.tensor == default.tensor,
             "layout": layer.layout, "grid": list(layer.grid) if layer.grid else None, "extra_tokens": layer.extra}
            for layer in candidates]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no candidate layer: the model has no 4-D activation with a spatial extent")
        return 0
    for row in rows:
        shape = "x".join("?" if d is None else str(d) for d in row["shape"])
        grid = ""
        if row["grid"]:
            extra = f"{row['extra_tokens']} extra + " if row["extra_tokens"] else ""
            grid = f"  {row['layout']}: {extra}{row['grid'][0]}x{row['grid'][1]} grid"
        print(f"{'*' if row['default'] else ' '} {row['tensor']}  {row['op']}  {shape}{grid}")
    transformer = any(row["grid"] for row in rows)
    print("* = default layer of the CAM methods (" + ("a transformer's residual stream)" if transformer else
                                                    "the last spatial layer before global pooling)"))
    return 0


def run_demo(args: argparse.Namespace) -> int:
    from . import zoo
    from .methods import RISE, GradCAM, Occlusion

    model = zoo.efficientnet_lite0(providers=args.provider)
    print(f"model: {model.path} ({model.n_classes} ImageNet classes)")
    out = Path(args.out)
    images = [(name, zoo.sample_image(name)) for name in ("chelsea", "coffee")]
    for name, image in images:
        probabilities = model.scores(_model_view(model, image), "probability")[0]
        top = np.argsort(probabilities)[::-1][:5]
        print(f"{name}: top-5 " + "; ".join(f"{i} {model.class_name(i)} {probabilities[i]:.3f}" for i in top))
    methods = [RISE(n_masks=args.n_masks, seed=args.seed), Occlusion(), GradCAM()]
    explain_images(model, images, methods, "top1", out)
    print(f"wrote {out}/")
    return 0


def _model_view(model: Model, image: Any) -> np.ndarray:
    from .image import resize_pixels

    pixels = load_image(image)
    return resize_pixels(pixels, model.input_size) if model.input_size else pixels


if __name__ == "__main__":
    sys.exit(main())
