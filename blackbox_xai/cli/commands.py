"""The subcommands: each reads its parsed arguments, calls the library, prints, and returns an exit code.

``explain`` checks everything it can before any work (methods and their parameters, image arguments, the model,
the target with the model's labels, what the methods require of the model, the output folder, then it decodes
every image), then explains image after image; each method's files appear as soon as it finishes, an image's set
of files is complete or absent (:class:`~blackbox_xai.fileio.FileSet`), and the methods that fail are listed at the end (exit code 1).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import BlackboxError, ParameterError
from ..explanation import record_provenance
from ..fileio import FileSet, write_all_atomic
from ..image import load_image
from ..inputs import expand_image_arguments, unique_output_stems
from ..methods import make_method
from ..model import Model
from ..model.capabilities import check_requirements
from ..targets import parse_target
from .options import load_model_from_args, method_names, method_params
from .outputs import prepare_folder, remove_if_empty


@dataclass
class Failure:
    """A method that failed on an image: the image's output name, the method, the one-line reason."""

    name: str
    method: str
    error: str


def _methods_and_model(args: argparse.Namespace) -> tuple[list, list[Path], list[str], Model, Any]:
    """What explain and evaluate check before any work: methods, images, model, target, requirements."""
    names = method_names(args.method)
    params = method_params(names, args.param, args.seed, args.layer)
    methods = [make_method(name, **params[name]) for name in names]
    paths = expand_image_arguments(args.images, recursive=args.recursive)
    stems = unique_output_stems(paths)
    model = load_model_from_args(args)
    target = parse_target(args.target, labels=model.labels)  # a bad class name fails here, before any work
    for method in methods:
        check_requirements(model, method.requires, method.name)
    return methods, paths, stems, model, target


def run_explain(args: argparse.Namespace) -> int:
    methods, paths, stems, model, target = _methods_and_model(args)
    decoded = decode_images(paths)  # fails before any work on an image that cannot be decoded
    failures = explain_images(model, list(zip(stems, decoded)), methods, target, Path(args.out), sources=paths)
    raise_failures(failures, len(paths) * len(methods))
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


def explain_images(model: Model, images: list[tuple[str, Any]], methods: list, target: Any, out: Path,
                   sources: list[Path] | None = None) -> list[Failure]:
    """Explain each (name, image) with each method, writing ``<name>_<method>.{png,npz,json}`` as each method
    finishes and ``<name>_methods.png`` (side by side) after the last; returns the failures (a
    :class:`~blackbox_xai.errors.BlackboxError` or an out-of-memory error of one method on one image).

    ``sources`` (default None) are the files the images were decoded from, recorded with their sha256 in each
    JSON (:func:`~blackbox_xai.explanation.record_provenance`), with the model's sha256 and spec. An image's
    files are complete or absent (:class:`~blackbox_xai.fileio.FileSet`): a write error, Ctrl-C or a bug while
    an image is explained or written takes its files away again before the exception goes on.
    """
    from ..render import encode_png, side_by_side

    created = prepare_folder(out)
    failures: list[Failure] = []
    try:
        for index, (name, image) in enumerate(images):
            source = sources[index] if sources is not None else None
            outputs = FileSet(out, name)
            try:
                first = None  # the first explanation: its image and provenance serve the others
                maps: list[tuple[str, Any]] = []
                for method in methods:
                    explanation = _explain_one(method, model, image, target, name, failures)
                    if explanation is None:
                        continue
                    if first is None:
                        first = record_provenance(explanation, image=image, model=model, source=source)
                    else:  # the same image and model: hashed once
                        explanation.source, explanation.image_sha256 = first.source, first.image_sha256
                        explanation.model_sha256, explanation.spec = first.model_sha256, first.spec
                    prefix = f"{name}_{explanation.method}"
                    outputs.add({prefix + suffix: data for suffix, data in explanation.encode().items()})
                    maps.append((explanation.method, explanation.saliency))
                    timing = explanation.timing
                    print(f"{name}: {explanation.method} target {_target_text(explanation)}: "
                          f"{timing['forward_passes']} passes, {timing['seconds']:.2f} s -> "
                          f"{out / prefix}.{{png,npz,json}}", flush=True)
                    del explanation  # its copy of the pixels is not kept while the next method runs
                if first is not None:
                    panel = side_by_side(first.image, [m for _, m in maps], [t for t, _ in maps])
                    outputs.add({f"{name}_methods.png": encode_png(panel)})
            except BaseException:
                outputs.discard()
                raise
            outputs.finish()
    finally:
        if created:
            remove_if_empty(out)
    return failures


def _explain_one(method: Any, model: Model, image: Any, target: Any, name: str, failures: list[Failure]) -> Any:
    """``method.explain`` on one image; None (and a :class:`Failure` appended) when it fails for a reason
    the user can act on."""
    try:
        with _progress_bar(f"{name} {method.name}") as progress:
            return method.explain(model, image, target=target, progress=progress)
    except BlackboxError as error:
        failures.append(Failure(name, method.name, str(error)))
    except MemoryError:
        failures.append(Failure(name, method.name, "out of memory: lower --batch-size or the method's budget "
                                                   "(--param), or use a smaller image"))
    return None


def raise_failures(failures: list[Failure], total: int) -> None:
    """One error line for the failed explanations (nothing when none failed): the reason alone when the run was a
    single explanation, else how many failed, which, and the first reason."""
    if not failures:
        return
    if total == 1:
        raise BlackboxError(failures[0].error)
    which = ", ".join(f"{f.name} {f.method}" for f in failures[:4]) + (", ..." if len(failures) > 4 else "")
    first = failures[0]
    written = "; the others were written" if len(failures) < total else ""
    raise BlackboxError(f"{len(failures)} of {total} explanations failed ({which}){written}; "
                        f"{first.name} {first.method}: {first.error}")


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


def _masks_for(images: list[Path], stems: list[str], masks: list[str]) -> list[Path | None]:
    """One mask per image: ``--mask`` files in image order, or ``<output name>.png`` in a ``--mask`` folder."""
    if not masks:
        return [None] * len(images)
    if len(masks) == 1 and Path(masks[0]).is_dir():
        folder = Path(masks[0])
        found = [folder / f"{stem}.png" for stem in stems]
        missing = [str(path) for path in found if not path.exists()]
        if missing:
            raise ParameterError(f"no mask for {len(missing)} image(s) in {folder}, e.g. {missing[0]}")
        return list(found)
    if len(masks) != len(images):
        raise ParameterError(f"got {len(masks)} --mask files for {len(images)} images: give one per image or a folder")
    return [Path(mask) for mask in masks]


def run_evaluate(args: argparse.Namespace) -> int:
    from ..evaluation import _metric_names as metric_names
    from ..evaluation import evaluate, load_mask

    metrics = metric_names(args.metric.split(","))
    methods, paths, stems, model, target = _methods_and_model(args)
    masks = _masks_for(paths, stems, args.mask)
    decoded = decode_images(paths)
    rows: list[dict[str, Any]] = []
    failures: list[Failure] = []
    for path, stem, image, mask in zip(paths, stems, decoded, masks):
        if mask is not None:  # decoded once for all the methods
            shape = image.shape[:2] if isinstance(image, np.ndarray) else load_image(path).shape[:2]
            mask = load_mask(mask, shape)
        for method in methods:
            explanation = _explain_one(method, model, image, target, stem, failures)
            if explanation is None:
                continue
            try:
                scores = evaluate(model, image, explanation, metrics=metrics, mask=mask)
            except BlackboxError as error:
                failures.append(Failure(stem, method.name, str(error)))
                continue
            rows.append({"image": str(path), "method": method.name, "target": json.dumps(explanation.target),
                         **{m: scores[m] for m in metrics}})
    if not rows:
        raise_failures(failures, len(paths) * len(methods))
    out = Path(args.out)
    header = ["image", "method", "target", *metrics]
    csv_lines = [",".join(header)] + [",".join(_csv_field(row[h]) for h in header) for row in rows]
    write_all_atomic({out / "evaluation.csv": ("\n".join(csv_lines) + "\n").encode(),
                      out / "evaluation.json": json.dumps(rows, indent=2).encode()})
    print(_table(header, rows))
    print(f"wrote {out / 'evaluation.csv'} and {out / 'evaluation.json'}")
    raise_failures(failures, len(paths) * len(methods))  # the rows that succeeded are written; exit 1 for the rest
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
    """Describe the model: as a classifier when it loads as one (inputs, outputs, classes, the resolved spec and
    where each value came from, what it offers and which methods apply); any other ONNX file is described as it
    is, with one line saying why blackbox-xai cannot explain it (exit 0: the description is the answer). A spec the
    caller gave that contradicts the model stays an error (exit 1)."""
    from ..errors import SpecError
    from ..methods import applicability
    from ..model import describe, format_description
    from ..model.capabilities import CAPABILITIES
    from .options import spec_from_args

    try:
        model = load_model_from_args(args)
    except BlackboxError as error:
        spec = spec_from_args(args)
        if isinstance(error, SpecError) and spec is not None:
            raise  # the caller's own spec or flags contradict the model
        description = describe(args.model, spec=spec, providers=args.provider, methods=applicability)
        print(json.dumps(description, indent=2) if args.json else format_description(description))
        return 0
    info = model.info()
    info["capabilities"] = {name: model.capability_gap(name) for name in CAPABILITIES}
    info["methods"] = applicability(model)
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
    sources: dict[str, list[str]] = {}
    for name, source in info["spec_source"].items():
        sources.setdefault(source, []).append(name)
    print("from      " + "; ".join(f"{source}: {', '.join(names)}" for source, names in sources.items()))
    for line in info["assumptions"]:
        print(f"warning   {line}")
    print("offers    " + ", ".join(name for name, gap in info["capabilities"].items() if gap is None))
    for name, gap in info["capabilities"].items():
        if gap is not None:
            print(f"lacks     {name}: {gap}")
    applicable = [name for name, reason in info["methods"].items() if reason is None]
    print("methods   " + (", ".join(applicable) or "none"))
    for name, reason in info["methods"].items():
        if reason is not None:
            print(f"not       {name}: {reason}")
    return 0


def run_layers(args: argparse.Namespace) -> int:
    from .. import graph

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
    from .. import zoo
    from ..methods import RISE, GradCAM, Occlusion

    model = zoo.efficientnet_lite0(providers=args.provider)
    print(f"model: {model.path} ({model.n_classes} ImageNet classes)")
    out = Path(args.out)
    images = [(name, zoo.sample_image(name)) for name in ("chelsea", "coffee")]
    for name, image in images:
        probabilities = model.scores(_model_view(model, image), "probability")[0]
        top = np.argsort(probabilities)[::-1][:5]
        print(f"{name}: top-5 " + "; ".join(f"{i} {model.class_name(i)} {probabilities[i]:.3f}" for i in top))
    methods = [RISE(n_masks=args.n_masks, seed=args.seed), Occlusion(), GradCAM()]
    raise_failures(explain_images(model, images, methods, "top1", out), len(images) * len(methods))
    print(f"wrote {out}/")
    return 0


def _model_view(model: Model, image: Any) -> np.ndarray:
    from ..image import resize_pixels

    pixels = load_image(image)
    return resize_pixels(pixels, model.input_size) if model.input_size else pixels


HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "explain": run_explain, "info": run_info, "evaluate": run_evaluate, "layers": run_layers, "demo": run_demo}
