"""The command-line face of blackbox-xai: parse, call the library, print, exit code.

Exit codes: 0 success; 1 bad input -- one line on stderr says what and what to do (a malformed command line
included: one line with a ``--help`` hint), also when some explanations of a run failed (the others are written,
the failures listed in that line); 3 a bug in blackbox-xai (one line asking to report it; the traceback with
``--debug``, which is accepted anywhere on the command line); 130 interrupted (Ctrl-C: the outputs of the image
being explained are removed, those of the images before it are complete).

Modules: :mod:`.parser` (grammar), :mod:`.options` (values: parameters, seed, model flags), :mod:`.commands` (the
subcommands), :mod:`.outputs` (an image's files complete or absent).
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
import warnings
from typing import Any, Sequence

from ..errors import BlackboxError
from .commands import HANDLERS, decode_images, explain_images
from .options import load_model_from_args, method_params, parse_value
from .parser import build_parser, parse, split_debug

__all__ = ["build_parser", "decode_images", "explain_images", "load_model_from_args", "main", "method_params",
           "parse_value"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit code (see the module docstring).
    ``--help`` and ``--version`` exit through ``SystemExit(0)`` as argparse does."""
    argv, debug = split_debug(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(message)s")
    _print_plans()
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _warning_line
            args = parse(argv)
            args.debug = debug
            return int(HANDLERS[args.command](args) or 0)
    except BlackboxError as error:
        return _fail(f"error: {_one_line(error)}", 1)
    except KeyboardInterrupt:
        return _fail("interrupted (the files of the image being explained were removed)", 130)
    except BrokenPipeError:  # output piped into a program that stopped reading (e.g. head)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except MemoryError:
        return _fail("error: out of memory: lower --batch-size or the method's budget (--param), or use a smaller "
                     "image", 1)
    except UnicodeDecodeError as error:
        return _fail(f"error: a file that should be text is not UTF-8 text ({error.reason} at byte {error.start})", 1)
    except OSError as error:
        if error.filename is None:
            return _internal(error, debug)
        return _fail(f"error: cannot use {error.filename}: {error.strerror or error}", 1)
    except Exception as error:  # a bug: one line asking for a report; the traceback with --debug
        return _internal(error, debug)


def _internal(error: BaseException, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    hint = "" if debug else "; rerun with --debug for the traceback"
    return _fail(f"internal error: {type(error).__name__}: {_one_line(error)} (a bug in blackbox-xai: please report "
                 f"it{hint})", 3)


def _fail(line: str, code: int) -> int:
    sys.stdout.flush()
    print(f"blackbox-xai: {line}", file=sys.stderr)
    return code


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


def _print_plans() -> None:
    """The methods' estimates before long runs (passes and time, logger ``blackbox_xai.plan``) as one stderr line
    each."""
    plan = logging.getLogger("blackbox_xai.plan")
    if not any(getattr(handler, "_blackbox_plan", False) for handler in plan.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("blackbox-xai: %(message)s"))
        handler._blackbox_plan = True  # type: ignore[attr-defined]
        plan.addHandler(handler)
    plan.setLevel(logging.INFO)
    plan.propagate = False


def _warning_line(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> None:
    """Warnings as one line on stderr, without the source file and line."""
    print(f"blackbox-xai: warning: {_one_line(message) if isinstance(message, BaseException) else message}",
          file=sys.stderr)
