"""The command line's grammar: the argument parser, and what is done to ``argv`` before it is parsed.

A usage error (an unknown option, a missing argument, ``--seed three``) is a :class:`UsageError`: one line with a
hint ("see blackbox-xai explain --help"), exit code 1, instead of argparse's usage dump and exit code 2.
"""

from __future__ import annotations

import argparse
import re
from typing import NoReturn, Sequence

from .. import __version__
from ..errors import BlackboxError
from ..methods import METHODS

#: Options whose value may look like a negative number or a negative list ("--std -1,1,1", "--seed -1").
_VALUE_OPTIONS = frozenset({"--seed", "--mean", "--std", "--size", "--target", "--param", "--output", "--layer",
                            "--batch-size", "--n-masks", "--input", "--method", "--metric"})
_DASH_VALUE = re.compile(r"^-[\d.]")


class UsageError(BlackboxError):
    """The command line itself is malformed (argparse's errors), reported in one line with a ``--help`` hint."""


class CliParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one :class:`UsageError` line instead of a usage dump and exit 2, and
    that takes options only as spelled in full (no prefix matching: ``info --out x`` is an error, not
    ``--output x``)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def split_debug(argv: Sequence[str]) -> tuple[list[str], bool]:
    """``argv`` without its ``--debug`` flags, and whether there was one: ``--debug`` is accepted anywhere on
    the command line (before or after the subcommand), but not after a ``--`` separator."""
    args = list(argv)
    end = args.index("--") if "--" in args else len(args)
    debug = "--debug" in args[:end]
    return [a for i, a in enumerate(args) if i >= end or a != "--debug"], debug


def join_dash_values(argv: Sequence[str]) -> list[str]:
    """``--std -1,1,1`` as ``--std=-1,1,1``: argparse takes a value starting with "-" for an option unless it is a
    plain negative number, so a negative list would be "expected one argument" instead of being checked."""
    args = list(argv)
    joined: list[str] = []
    index = 0
    while index < len(args):
        item = args[index]
        if item in _VALUE_OPTIONS and index + 1 < len(args) and _DASH_VALUE.match(args[index + 1]):
            joined.append(f"{item}={args[index + 1]}")
            index += 2
            continue
        joined.append(item)
        index += 1
    return joined


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """Parse ``argv`` (``--debug`` already taken out); a usage error is one :class:`UsageError` line whose hint
    names the subcommand's help."""
    args, extra = build_parser().parse_known_args(join_dash_values(argv))
    if extra:
        raise UsageError(f"unrecognized arguments: {' '.join(extra)} (see blackbox-xai {args.command} --help)")
    return args


def build_parser() -> argparse.ArgumentParser:
    """The ``blackbox-xai`` parser; each subcommand sets ``handler`` (filled in by :mod:`.commands`)."""
    parser = CliParser(prog="blackbox-xai", description="Explain ONNX vision models without their source.")
    parser.add_argument("--version", action="version", version=f"blackbox-xai {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="log details and show tracebacks of internal errors (accepted anywhere)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    explain = commands.add_parser("explain", help="explain images with one or more methods")
    explain.add_argument("model", help="ONNX model file")
    explain.add_argument("images", nargs="+", help="image files, folders or (quoted) glob patterns; .npy arrays")
    _add_image_arguments(explain)
    _add_method_arguments(explain)
    explain.add_argument("--out", default="blackbox-xai-output", help="output folder (default blackbox-xai-output)")
    _add_model_arguments(explain)

    info = commands.add_parser("info", help="describe a model: inputs, outputs, opset, ops, inferred spec")
    info.add_argument("model", help="ONNX model file")
    info.add_argument("--json", action="store_true", help="print JSON")
    _add_model_arguments(info)

    evaluate = commands.add_parser("evaluate", help="explain images and score the explanations with metrics")
    evaluate.add_argument("model", help="ONNX model file")
    evaluate.add_argument("images", nargs="+", help="image files, folders or (quoted) glob patterns; .npy arrays")
    _add_image_arguments(evaluate)
    _add_method_arguments(evaluate)
    evaluate.add_argument("--metric", default="deletion,insertion",
                          help="comma-separated metrics (see the library's list_metrics())")
    evaluate.add_argument("--mask", action="append", default=[],
                          help="ground-truth mask: one file per image (repeat, in image order) or a folder holding "
                               "<output name>.png (the image's stem unless two images share it); bright = object")
    evaluate.add_argument("--out", default="blackbox-xai-evaluation", help="folder for evaluation.csv and .json")
    _add_model_arguments(evaluate)

    layers = commands.add_parser("layers", help="list the candidate target layers of the CAM methods")
    layers.add_argument("model", help="ONNX model file")
    layers.add_argument("--json", action="store_true", help="print JSON")
    _add_model_arguments(layers)

    demo = commands.add_parser("demo", help="build the EfficientNet-Lite0 reference model and explain two photos "
                                            "(RISE, occlusion, Grad-CAM)")
    demo.add_argument("--out", default="demo-output", help="output folder (default demo-output)")
    demo.add_argument("--n-masks", type=int, default=4000, help="RISE masks (default 4000)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--provider", default="cpu", help="cpu (default) or cuda")
    return parser


def _add_image_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--recursive", action="store_true",
                        help="search folders given as images at any depth, and let ** in a pattern match folders")


def _add_method_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", default="rise",
                        help=f"comma-separated methods ({', '.join(sorted(METHODS))}; random and centre are baselines)")
    parser.add_argument("--target", default="top1",
                        help="top1, topK (e.g. top5), a class INDEX or NAME, A,B (several classes) or P:Q (contrast)")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed (a non-negative integer) for the methods that take one; the others ignore it")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="method hyperparameter, e.g. n_masks=2000, rise.n_masks=2000, areas=0.1,0.2, "
                             "score=logit (repeatable; values are read as int, float, true/false, none or lists)")
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
    group.add_argument("--std", help="per-channel std (positive), e.g. 0.229,0.224,0.225")
    group.add_argument("--labels", help="class names file, one per line")
    group.add_argument("--batch-size", type=int, default=32, help="images per onnxruntime call (default 32)")
    group.add_argument("--provider", default="cpu", help="cpu (default) or cuda")
