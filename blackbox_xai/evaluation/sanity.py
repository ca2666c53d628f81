"""Sanity checks by model parameter randomisation (Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018).

An explanation that does not change when the model's learned weights are destroyed explains the input, not the
model. The weights of the parameterised layers (Conv, ConvTranspose, Gemm, MatMul) are replaced by random draws
of the same shape and scale, either cascading from the top layer (the one nearest the output) down, or one layer
at a time (independent). The map of each randomised model is compared with the original map by Spearman rank
correlation (of absolute and signed values), SSIM and the similarity of HOG features. A method passes when its
map decorrelates once the whole model is randomised.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..errors import ParameterError
from ..explanation import Explanation
from ..image import ImageSource, load_image
from ..methods.base import Method
from ..model.onnx_model import OnnxModel
from ..targets import TargetLike

PARAMETERISED_OPS = {"Conv": (1, 2), "ConvTranspose": (1, 2), "Gemm": (1, 2), "MatMul": (0, 1)}


@dataclass(frozen=True)
class Layer:
    """A parameterised layer: its node name, op type and the initializers holding its weights and bias."""

    node: str
    op_type: str
    initializers: tuple[str, ...]


@dataclass
class SanityResult:
    """Similarity of randomised-model maps to the original map, per randomisation stage.

    ``stages`` lists, for each stage, the number of layers randomised (cascading: the top k layers; independent:
    the layer's name) and the similarities ``spearman_abs``, ``spearman``, ``ssim`` and ``hog``.
    ``passes`` is True when the fully randomised model's map has ``|spearman_abs|`` below ``threshold``.
    """

    method: str
    mode: str
    layers: list[str]
    stages: list[dict[str, Any]] = field(default_factory=list)
    threshold: float = 0.3

    @property
    def final(self) -> dict[str, Any]:
        return self.stages[-1]

    @property
    def passes(self) -> bool:
        return bool(abs(self.final["spearman_abs"]) < self.threshold)


def parameterised_layers(proto: Any) -> list[Layer]:
    """Layers whose weights are initializers, in topological (graph) order: input side first."""
    initializers = {init.name for init in proto.graph.initializer}
    layers = []
    for index, node in enumerate(proto.graph.node):
        if node.op_type not in PARAMETERISED_OPS:
            continue
        positions = PARAMETERISED_OPS[node.op_type]
        names = tuple(node.input[i] for i in positions if i < len(node.input) and node.input[i] in initializers)
        if node.op_type == "MatMul" and len(names) != 1:
            continue  # a MatMul of two activations has no weights
        if names:
            layers.append(Layer(node.name or f"{node.op_type}_{index}", node.op_type, names))
    return layers


def randomise(proto: Any, layers: Sequence[Layer], seed: int = 0) -> Any:
    """A copy of ``proto`` whose ``layers`` have random weights: normal draws with each tensor's own standard
    deviation (so activations keep their scale), zero-mean."""
    from onnx import numpy_helper

    randomised = type(proto)()
    randomised.CopyFrom(proto)
    names = {name for layer in layers for name in layer.initializers}
    rng = np.random.default_rng(seed)
    for position, init in enumerate(randomised.graph.initializer):
        if init.name not in names:
            continue
        original = numpy_helper.to_array(init)
        scale = float(original.std()) or 1e-2
        draw = rng.normal(0.0, scale, size=original.shape).astype(original.dtype)
        randomised.graph.initializer[position].CopyFrom(numpy_helper.from_array(draw, init.name))
    return randomised


def similarity(original: np.ndarray, other: np.ndarray) -> dict[str, float]:
    """Spearman rank correlation of absolute and signed maps, SSIM and HOG similarity (Pearson correlation of the
    HOG descriptors) of min-max normalised maps."""
    from scipy.stats import spearmanr
    from skimage.feature import hog
    from skimage.metrics import structural_similarity

    a = np.asarray(original, np.float64)
    b = np.asarray(other, np.float64)
    result = {
        "spearman_abs": _spearman(spearmanr, np.abs(a), np.abs(b)),
        "spearman": _spearman(spearmanr, a, b),
    }
    a01, b01 = _unit(a), _unit(b)
    result["ssim"] = float(structural_similarity(a01, b01, data_range=1.0))
    cell = max(4, min(a.shape) // 16)
    hog_a = hog(a01, pixels_per_cell=(cell, cell), cells_per_block=(2, 2))
    hog_b = hog(b01, pixels_per_cell=(cell, cell), cells_per_block=(2, 2))
    result["hog"] = _pearson(hog_a, hog_b)
    return result


def model_randomisation(
    model: OnnxModel,
    image: ImageSource,
    method: Method,
    target: TargetLike = "top1",
    mode: str = "cascading",
    stages: int | Sequence[int] = 5,
    threshold: float = 0.3,
    seed: int = 0,
) -> SanityResult:
    """Run the model parameter randomisation test for ``method`` on ``image``.

    Parameters
    ----------
    model : an :class:`OnnxModel` (its graph is edited; a callable black box has no weights to randomise).
    method : the explanation method to check.
    target : explained on the original model and kept fixed (by class index) on the randomised ones; default
        "top1" of the original model.
    mode : "cascading" (randomise the top k layers, k growing) or "independent" (one layer at a time, then all
        of them as the last stage).
    stages : cascading: the number of evenly spaced stages (default 5, always ending with every layer) or an
        explicit list of k; independent: ignored (every layer is a stage).
    threshold : a method passes when the magnitude of the fully randomised map's Spearman correlation (of
        absolute values) is below this (default 0.3).
    seed : seed of the random weights.
    """
    if mode not in ("cascading", "independent"):
        raise ParameterError(f"mode must be 'cascading' or 'independent', got {mode!r}")
    if not isinstance(model, OnnxModel):
        raise ParameterError("model randomisation needs an OnnxModel: a black-box callable has no weights")
    proto = model.proto()
    layers = parameterised_layers(proto)
    if not layers:
        raise ParameterError("the model has no parameterised layers (Conv, Gemm, MatMul) with initializer weights")
    pixels = load_image(image)
    reference = method.explain(model, pixels, target=target)
    fixed_target = _fixed_target(reference)
    result = SanityResult(method.name, mode, [layer.node for layer in layers], threshold=threshold)
    top_down = layers[::-1]
    if mode == "cascading":
        counts = _stage_counts(len(layers), stages)
        groups = [(count, top_down[:count]) for count in counts]
    else:
        groups = [(layer.node, [layer]) for layer in top_down] + [("all", top_down)]
    for label, group in groups:
        randomised_model = OnnxModel(randomise(proto, group, seed), spec=model.spec, batch_size=model.batch_size,
                                     providers=model.providers)
        explanation = method.explain(randomised_model, pixels, target=fixed_target)
        stage = {"randomised": label, **similarity(reference.saliency, explanation.saliency)}
        result.stages.append(stage)
    return result


def _fixed_target(explanation: Explanation) -> TargetLike:
    target = explanation.target
    if isinstance(target, dict):
        return tuple(target["contrast"])
    return target


def _stage_counts(total: int, stages: int | Sequence[int]) -> list[int]:
    if isinstance(stages, int):
        if stages < 1:
            raise ParameterError(f"stages must be at least 1, got {stages}")
        counts = sorted({max(1, int(round(total * (i + 1) / stages))) for i in range(stages)})
    else:
        counts = sorted({int(k) for k in stages})
        if not counts or counts[0] < 1 or counts[-1] > total:
            raise ParameterError(f"stages must be layer counts between 1 and {total}, got {list(stages)}")
    if counts[-1] != total:
        counts.append(total)
    return counts


def _unit(values: np.ndarray) -> np.ndarray:
    low, high = values.min(), values.max()
    return np.zeros_like(values) if high - low < 1e-12 else (values - low) / (high - low)


def _spearman(spearmanr: Any, a: np.ndarray, b: np.ndarray) -> float:
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(spearmanr(a.ravel(), b.ravel()).statistic)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if np.std(a) == 0 or np.std(b) == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])
