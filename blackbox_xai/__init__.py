"""blackbox-xai: explain deployed vision models (ONNX files or any scoring function) without their source.

    import blackbox_xai as bx
    model = bx.load_model("resnet.onnx", spec=bx.InputSpec(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)))
    exp = bx.explain(model, "cat.jpg", method="rise", target="top1", seed=0)
    exp.save("out/cat")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from . import evaluation, graph, groundtruth, methods, zoo
from .errors import BlackboxError
from .evaluation import evaluate, list_metrics
from .explanation import Explanation
from .image import ImageSource, load_image
from .methods import applicability, list_methods, make_method
from .methods.base import Progress
from .model import CallableModel, InputSpec, Model, OnnxModel, describe, format_description
from .targets import TargetLike

__version__ = "0.1.0"


def load_model(
    path: str | Path,
    spec: InputSpec | str | Path | None = None,
    providers: str | Sequence[str] | None = None,
    batch_size: int = 32,
    **options: Any,
) -> OnnxModel:
    """Load an ONNX classifier. ``spec`` is an :class:`InputSpec` or the path of a JSON spec file; what the graph
    states (input name, layout, size, dtype) is inferred. ``providers``: "cpu" (default), "cuda" or a list.
    Other options go to :class:`~blackbox_xai.model.OnnxModel`."""
    if isinstance(spec, (str, Path)):
        spec = InputSpec.from_json(spec)
    return OnnxModel(path, spec=spec, providers=providers, batch_size=batch_size, **options)


def explain(
    model: Model,
    image: ImageSource,
    method: str = "rise",
    target: TargetLike = "top1",
    progress: Progress | None = None,
    **params: Any,
) -> Explanation:
    """Explain ``model``'s decision on ``image`` with ``method`` (see :func:`list_methods`; ``list_methods(model)``
    gives those that apply to ``model``); ``params`` are the method's hyperparameters (e.g. ``seed=0``,
    ``n_masks=4000``, ``quadrature="gausslegendre"``), in the vocabulary of README's glossary."""
    return make_method(method, **params).explain(model, image, target=target, progress=progress)


__all__ = [
    "BlackboxError",
    "CallableModel",
    "Explanation",
    "InputSpec",
    "Model",
    "OnnxModel",
    "applicability",
    "describe",
    "format_description",
    "evaluate",
    "evaluation",
    "explain",
    "graph",
    "groundtruth",
    "list_methods",
    "list_metrics",
    "load_image",
    "load_model",
    "methods",
    "zoo",
]
