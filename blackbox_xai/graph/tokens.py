"""Token grids: the activations of vision transformers seen as maps, and the tensors that only look like maps.

A vision transformer cuts the image into patches (a strided Conv, the *patch embedding*, whose output is a 4-D map
(B, D, h, w)), flattens them into a sequence of tokens (B, N, D) with ``N = h * w + k`` (``k`` extra tokens in
front: a class token, DeiT's distillation token, register tokens; ``k = 0`` for globally pooled ViTs), and mixes
the tokens with attention. Swin-style models keep the grid channels-last, (B, h, w, C), and attend inside windows.
Three kinds of layer follow (``Layer.layout``):

* ``"NCHW"``: a spatial map, as in a CNN;
* ``"tokens"``: (B, N, D) with the grid (h, w) of the patch embedding upstream and ``extra = N - h * w`` in
  [0, :data:`MAX_EXTRA`]; as a map it is ``tokens[:, extra:]`` reshaped to (D, h, w), the extra tokens dropped;
* ``"NHWC"``: (B, h, w, C) channels-last below a patch embedding, with (h, w) the patch grid or the grid divided
  by a power of two (Swin's patch merging).

Downstream of the first token tensor (or of a channels-last grid), a 4-D tensor is a map only where its trailing
axes (or, channels-last, its middle axes) are the grid: attention internals such as (B, N, heads, head_dim),
(B, heads, N, N) or Swin's windows look 4-D but are not images, and are never candidates. Graphs without tokens
keep every 4-D activation (what :func:`blackbox_xai.graph.layers.candidate_layers` finds), so CNNs are unchanged.

Shapes come from shape inference only, so a dimension that inference leaves unknown is not matched (a token
sequence needs known N and D; its batch axis may be unknown). A (B * heads, N, N) attention tensor has N = D and
is never taken for tokens; a sequence-first (N, B, D) tensor has its known N first and is not either.

The default layer of a transformer (:func:`default_token_layer`) is a residual-stream tensor (the output of an
``Add`` of two token tensors of the same shape): the last block's output when the model has no extra token
(global average pooling reads every token); with extra tokens, the last block's *input*: the class token is read
after the last block, whose MLP works per token, so the grid tokens of the last block's output never reach the
score (their gradient is exactly zero and every gradient CAM would be constant); they do through the last
attention. :func:`attention_probabilities` finds the Softmax over keys of each attention block
(:func:`blackbox_xai.graph.attention.attention_layout` keeps those over the whole grid).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from onnx import ModelProto, NodeProto

from .analysis import TensorInfo, ancestor_nodes, real_inputs, info_from_value

Layer = Any  # a blackbox_xai.graph.layers.Layer (passed in as ``layer_class``: importing it would be a cycle)

__all__ = ["MAX_EXTRA", "AttentionTensor", "TokenAnalysis", "analyse_tokens", "attention_probabilities",
           "default_token_layer", "refine_layers"]

MAX_EXTRA = 8
"""The largest number of extra tokens (class, distillation, registers) in front of the grid tokens."""
DOWNSAMPLING = (1, 2, 4, 8)
"""Grid reductions accepted for channels-last stages (Swin's patch merging halves the grid at each stage)."""


@dataclass(frozen=True)
class GridInfo:
    """How one tensor is a grid: ``layout`` ("tokens", "NHWC" or "NCHW"), ``grid`` (h, w), ``extra`` tokens."""

    layout: str
    grid: tuple[int, int]
    extra: int = 0


@dataclass
class TokenAnalysis:
    """What :func:`analyse_tokens` found: ``grids`` (tensor -> :class:`GridInfo` for every token / channels-last
    tensor and every 4-D map below them), ``internal`` (4-D tensors below tokens that are not grids), and
    ``residual`` (token tensors that are the output of a residual Add), in topological order."""

    grids: dict[str, GridInfo]
    internal: set[str]
    residual: list[str]

    @property
    def has_tokens(self) -> bool:
        return any(info.layout != "NCHW" for info in self.grids.values())


@dataclass(frozen=True)
class AttentionTensor:
    """An attention probability tensor: the output of the Softmax over keys in one block, of shape
    (B, heads, N, N) (``layout`` "BHNN") or (B * heads, N, N) (``layout`` "(BH)NN", ``nn.MultiheadAttention``
    exports); ``tokens`` is N."""

    tensor: str
    node: str
    layout: str
    tokens: int


def _ints(shape: Sequence[object]) -> bool:
    return all(isinstance(d, int) for d in shape)


def _batch_like(dim: object, batch: object) -> bool:
    """A leading dimension that can be the batch: unknown, symbolic, or the input's own batch size."""
    return dim is None or isinstance(dim, str) or dim == batch


def _variants(grid: tuple[int, int]) -> list[tuple[int, int]]:
    h, w = grid
    return [(h // f, w // f) for f in DOWNSAMPLING if h % f == 0 and w % f == 0 and h // f * (w // f) > 1]


def analyse_tokens(model: ModelProto, order: Sequence[NodeProto], infos: dict[str, TensorInfo],
                   dependent: set[str], input_name: str | None = None) -> TokenAnalysis:
    """Walk the graph once in topological order and classify tensors (see the module docstring).

    ``grid_of`` carries, for every tensor, the grid of the last map computed before it: the model input's
    (H, W) at first, then each NCHW map's (h, w) above the tokens. ``below`` marks tensors downstream of a token
    sequence or of a channels-last grid."""
    inputs = real_inputs(model)
    first = next((v for v in inputs if v.name == input_name), inputs[0] if inputs else None)
    batch: object = None
    grid_of: dict[str, tuple[int, int]] = {}
    if first is not None:
        shape = info_from_value(first).shape or ()
        batch = shape[0] if shape else None
        if len(shape) == 4 and _ints(shape[2:]):
            grid_of[first.name] = (int(shape[2]), int(shape[3]))
    grids: dict[str, GridInfo] = {}
    internal: set[str] = set()
    below: set[str] = set()
    residual: list[str] = []
    for node in order:
        upstream = [grid_of[name] for name in node.input if name in grid_of]
        source = upstream[-1] if upstream else None
        after = any(name in below for name in node.input)
        for name in node.output:
            info = infos.get(name)
            if source is not None:
                grid_of[name] = source
            if after:
                below.add(name)
            if not name or name not in dependent or info is None or info.shape is None or not info.is_float:
                continue
            shape = info.shape
            if info.rank == 4 and not _ints(shape[1:]):
                if after:
                    internal.add(name)  # below the tokens, with unknown extent: never read as a map
            elif info.rank == 4:
                found = _four_d(shape, source, after, node)
                if found is None and after:
                    internal.add(name)
                elif found is not None:
                    grids[name] = found
                    if found.layout == "NHWC":
                        below.add(name)
                    else:
                        grid_of[name] = found.grid
            elif info.rank == 3 and _ints(shape[1:]) and source is not None and _batch_like(shape[0], batch):
                tokens, channels = int(shape[1]), int(shape[2])
                extra = tokens - source[0] * source[1]
                if channels != tokens and 0 <= extra <= MAX_EXTRA:
                    grids[name] = GridInfo("tokens", source, extra)
                    below.add(name)
            if name in grids and grids[name].layout != "NCHW" and node.op_type == "Add" and len(node.input) == 2:
                shapes = [infos.get(i).shape if infos.get(i) is not None else None for i in node.input]
                if all(i in grids for i in node.input) and shapes[0] == shapes[1] == shape:
                    residual.append(name)
    # Maps above the first token tensor stay as they are (a patch embedding is a genuine map).
    return TokenAnalysis(grids, internal, residual)


def _four_d(shape: Sequence[object], source: tuple[int, int] | None, after: bool, node: NodeProto
            ) -> GridInfo | None:
    """A 4-D tensor: an NCHW map, a channels-last grid, or (None) neither."""
    trailing = (int(shape[2]), int(shape[3]))  # type: ignore[arg-type]
    middle = (int(shape[1]), int(shape[2]))  # type: ignore[arg-type]
    if source is None:
        return GridInfo("NCHW", trailing) if not after and trailing[0] * trailing[1] > 1 else None
    variants = _variants(source)
    channels_last = node.op_type == "Transpose" and _perm(node) == (0, 2, 3, 1)
    if after or channels_last:
        if trailing in variants and not channels_last:
            return GridInfo("NCHW", trailing)
        if middle in variants:
            return GridInfo("NHWC", middle)
        return None
    return GridInfo("NCHW", trailing) if trailing[0] * trailing[1] > 1 else None


def _perm(node: NodeProto) -> tuple[int, ...]:
    for attribute in node.attribute:
        if attribute.name == "perm":
            return tuple(attribute.ints)
    return ()


def refine_layers(layers: list[Layer], model: ModelProto, order: Sequence[NodeProto], infos: dict[str, TensorInfo],
                  dependent: set[str], input_name: str | None, layer_class: type) -> list[Layer]:
    """The 4-D ``layers`` of :func:`~blackbox_xai.graph.layers.candidate_layers` with the token grids added (as
    ``layer_class``, the :class:`~blackbox_xai.graph.layers.Layer`) and the 4-D tensors below the tokens that are
    not grids removed (unchanged when the graph has no token grid)."""
    analysis = analyse_tokens(model, order, infos, dependent, input_name)
    if not analysis.has_tokens:
        return layers
    kept = [layer for layer in layers if layer.tensor not in analysis.internal
            and not (layer.tensor in analysis.grids and analysis.grids[layer.tensor].layout == "NHWC")]
    known = {layer.tensor for layer in kept}
    for position, node in enumerate(order):
        for name in node.output:
            found = analysis.grids.get(name)
            if found is None or found.layout == "NCHW" or name in known:
                continue
            kept.append(layer_class(name, node.op_type, node.name, tuple(infos[name].shape), position,
                                    layout=found.layout, grid=found.grid, extra=found.extra))
    return sorted(kept, key=lambda layer: layer.position)


def default_token_layer(model: ModelProto, layers: Sequence[Layer], order: Sequence[NodeProto],
                        infos: dict[str, TensorInfo], dependent: set[str], input_name: str | None = None
                        ) -> Layer | None:
    """The default CAM layer of a transformer (see the module docstring), or None when the graph has no token
    grid or ends in spatial maps (a CNN with a token block in the middle, a hybrid with a convolutional head: the
    CNN rule applies)."""
    tokens = [layer for layer in layers if layer.layout != "NCHW"]
    if not tokens or layers[-1].layout == "NCHW":
        return None
    analysis = analyse_tokens(model, order, infos, dependent, input_name)
    by_tensor = {layer.tensor: layer for layer in tokens}
    residual = [by_tensor[name] for name in analysis.residual if name in by_tensor]
    pool = residual or tokens
    if max(layer.extra for layer in pool) == 0:
        return pool[-1]
    attention = attention_probabilities(model, infos, dependent, order)
    if not attention:
        return pool[-1]
    upstream = {name for node in ancestor_nodes(model, [attention[-1].tensor]) for name in node.output}
    before = [layer for layer in pool if layer.tensor in upstream]
    return before[-1] if before else pool[-1]


def attention_probabilities(model: ModelProto, infos: dict[str, TensorInfo], dependent: set[str],
                            order: Sequence[NodeProto]) -> list[AttentionTensor]:
    """The Softmax nodes over keys, in topological order: a Softmax over the last axis of a (B, heads, N, N) or
    (B * heads, N, N) tensor computed from the input, N known (Softmax before opset 13 flattens from ``axis``;
    both spellings of the last axis are accepted)."""
    found: list[AttentionTensor] = []
    for node in order:
        if node.op_type != "Softmax" or node.domain not in ("", "ai.onnx") or not node.output:
            continue
        name = node.output[0]
        info = infos.get(name)
        if name not in dependent or info is None or info.shape is None or info.rank not in (3, 4):
            continue
        axis = next((a.i for a in node.attribute if a.name == "axis"), -1)
        if axis not in (-1, info.rank - 1):
            continue
        keys, queries = info.shape[-1], info.shape[-2]
        if not (isinstance(keys, int) and keys == queries and keys > 1):
            continue
        layout = "BHNN" if info.rank == 4 else "(BH)NN"
        found.append(AttentionTensor(name, node.name, layout, int(keys)))
    return found

