"""The state a backward rule works with: fresh names, emitted nodes and constants, tensor types and shapes.

A rule never touches the model directly. It reads the forward node it differentiates, asks :class:`Context` for
what it needs (the rank or static shape of a forward tensor, a ``Shape`` of it, a constant of the right dtype)
and emits ordinary ONNX nodes with :meth:`Context.node`. Every name it creates is unique and starts with
``bwd/``. Shapes in the backward graph come from ``Shape`` nodes on forward tensors wherever the batch (or any
other dimension) might be dynamic; static shapes from shape inference are used only where they cannot change
from run to run (kernel sizes, spatial sizes of pooling and resize matrices).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from onnx import NodeProto, TensorProto, helper, numpy_helper

from ..errors import GradientUnavailableError
from ..graph.analysis import TensorInfo

__all__ = ["Context", "UnsupportedOpError", "attributes"]

FLOAT_TYPES = frozenset({TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16})


class UnsupportedOpError(GradientUnavailableError):
    """No backward rule for an operator (or for one of its configurations) in the chosen rule set.

    ``op_type``, ``node`` (the node name, or "" when unnamed) and ``reason`` say what is missing. Callers fall
    back to finite differences.
    """

    def __init__(self, op_type: str, node: str = "", reason: str = "", rules: str = "gradient") -> None:
        self.op_type, self.node, self.reason, self.rules = op_type, node, reason, rules
        where = f" (node {node!r})" if node else ""
        why = f": {reason}" if reason else ""
        super().__init__(
            f"no {rules!r} backward rule for operator {op_type}{where}{why}; use finite differences instead"
        )


def attributes(node: NodeProto) -> dict[str, object]:
    """The node's attributes as Python values (strings decoded)."""
    result: dict[str, object] = {}
    for attribute in node.attribute:
        value = helper.get_attribute_value(attribute)
        if isinstance(value, bytes):
            value = value.decode()
        result[attribute.name] = value
    return result


class Context:
    """Emits the backward graph for :func:`~blackbox_xai.autodiff.build_gradient_model`.

    Parameters
    ----------
    infos : types and shapes of the forward tensors (from shape inference); backward tensors are added as rules
        declare them with :meth:`like`.
    taken : every name already used in the forward model.
    constants : values of the forward constants that rules may read (initializers and ``Constant`` outputs):
        anything with ``get(name) -> array or None``.
    opset : the default-domain opset of the model being built.
    rules, epsilon, alpha, beta : the rule set and its parameters (read by the LRP rules).
    """

    def __init__(
        self,
        infos: dict[str, TensorInfo],
        taken: Iterable[str],
        constants: Any,
        opset: int,
        rules: str = "gradient",
        epsilon: float = 1e-6,
        alpha: float = 1.0,
        beta: float = 0.0,
    ) -> None:
        self.infos = dict(infos)
        self.taken = set(taken)
        self.constants = constants
        self.opset = opset
        self.rules, self.epsilon, self.alpha, self.beta = rules, float(epsilon), float(alpha), float(beta)
        self.nodes: list[NodeProto] = []
        self.initializers: list[TensorProto] = []
        self.current: NodeProto | None = None  # the forward node being differentiated (for error messages)
        self.extra: dict[Any, Any] = {}  # per-build data shared by rules (z^B bounds, flipped weights...)
        self._counter = 0
        self._values: dict[str, np.ndarray] = {}  # constants emitted by rules, readable through const_value
        self._const_cache: dict[tuple, str] = {}
        self._shape_cache: dict[str, str] = {}

    # ----------------------------------------------------------------------------------------------------------
    # Names, nodes, constants

    def fresh(self, hint: str = "t") -> str:
        """A new unique tensor name ``bwd/<hint>_<n>``."""
        hint = hint.replace("/", "_")[:60] or "t"
        while True:
            self._counter += 1
            name = f"bwd/{hint}_{self._counter}"
            if name not in self.taken:
                self.taken.add(name)
                return name

    def node(self, op_type: str, inputs: Sequence[str], outputs: int | Sequence[str] = 1, hint: str | None = None,
             **attrs: object) -> str | list[str]:
        """Emit one node; returns its output name (or the list of names when ``outputs`` is not 1)."""
        if isinstance(outputs, int):
            names = [self.fresh(hint or op_type.lower()) for _ in range(outputs)]
        else:
            names = list(outputs)
            self.taken.update(names)
        attrs = {k: v for k, v in attrs.items() if v is not None}
        self.nodes.append(helper.make_node(op_type, list(inputs), names, name=self.fresh(f"node_{op_type}"), **attrs))
        return names[0] if isinstance(outputs, int) and outputs == 1 else names

    def const(self, value: np.ndarray | float | Sequence, dtype=None, hint: str = "const") -> str:
        """An initializer holding ``value`` (small constants are shared)."""
        array = np.asarray(value, dtype=dtype)
        key = None
        if array.size <= 64:
            key = (array.dtype.str, array.shape, array.tobytes())
            if key in self._const_cache:
                return self._const_cache[key]
        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(array, name))
        self._values[name] = array
        if key is not None:
            self._const_cache[key] = name
        self.infos[name] = TensorInfo(name, helper.np_dtype_to_tensor_dtype(array.dtype), array.shape)
        return name

    def ints(self, values: Iterable[int], hint: str = "ints") -> str:
        """A 1-D int64 constant."""
        return self.const(np.asarray(list(values), dtype=np.int64).reshape(-1), hint=hint)

    def scalar(self, value: float, like: str) -> str:
        """A 0-d constant with the element type of tensor ``like``."""
        return self.const(np.asarray(value, dtype=self.dtype(like)), hint="scalar")

    def const_value(self, name: str) -> np.ndarray | None:
        """The value of a forward constant (initializer or ``Constant`` output) or of a constant emitted with
        :meth:`const`, or None."""
        if not name:
            return None
        if name in self._values:
            return self._values[name]
        return self.constants.get(name)

    # ----------------------------------------------------------------------------------------------------------
    # Types and shapes

    def info(self, name: str) -> TensorInfo | None:
        return self.infos.get(name)

    def like(self, name: str, like: str) -> str:
        """Declare that backward tensor ``name`` has the type and shape of tensor ``like``; returns ``name``.

        The gradient of an integer tensor of a quantised graph is float32 (straight-through convention,
        :mod:`.rules.quantisation`): ``like`` an integer tensor declares float32 with its shape."""
        info = self.infos.get(like)
        if info is not None:
            elem = info.elem_type if not info.elem_type or info.elem_type in FLOAT_TYPES else TensorProto.FLOAT
            self.infos[name] = TensorInfo(name, elem, info.shape)
        return name

    def grad_dtype(self, name: str) -> np.dtype:
        """The dtype of the gradient of tensor ``name``: its own for float tensors, float32 for integer ones."""
        info = self.infos.get(name)
        if info is not None and info.elem_type and info.elem_type not in FLOAT_TYPES:
            return np.dtype(np.float32)
        return self.dtype(name)

    def dtype(self, name: str) -> np.dtype:
        """The numpy dtype of a tensor (float32 when unknown)."""
        info = self.infos.get(name)
        if info is not None and info.dtype is not None:
            return info.dtype
        return np.dtype(np.float32)

    def elem_type(self, name: str) -> int:
        return helper.np_dtype_to_tensor_dtype(self.dtype(name))

    def rank(self, name: str) -> int:
        """The rank of a tensor; raises :class:`UnsupportedOpError` when shape inference does not know it."""
        info = self.infos.get(name)
        if info is None or info.shape is None:
            raise self.unsupported(f"the rank of {name!r} is unknown")
        return len(info.shape)

    def static_shape(self, name: str) -> tuple[int | None, ...] | None:
        """The shape with ints where known and None elsewhere (None when even the rank is unknown)."""
        info = self.infos.get(name)
        if info is None or info.shape is None:
            return None
        return tuple(d if isinstance(d, int) else None for d in info.shape)

    def symbolic_shape(self, name: str) -> tuple | None:
        info = self.infos.get(name)
        return None if info is None else info.shape

    def static_dims(self, name: str, axes: Sequence[int]) -> list[int]:
        """Static sizes of some axes of a tensor; raises :class:`UnsupportedOpError` when one is unknown."""
        shape = self.static_shape(name)
        if shape is None or any(shape[a] is None for a in axes):
            raise self.unsupported(f"the sizes of axes {list(axes)} of {name!r} are not known statically")
        return [int(shape[a]) for a in axes]

    def unsupported(self, reason: str) -> UnsupportedOpError:
        node = self.current
        return UnsupportedOpError(node.op_type if node is not None else "?", node.name if node is not None else "",
                                  reason, self.rules)

    # ----------------------------------------------------------------------------------------------------------
    # Common building blocks

    def shape(self, name: str) -> str:
        """``Shape(name)`` (one node per tensor)."""
        if name not in self._shape_cache:
            self._shape_cache[name] = self.node("Shape", [name], hint="shape")
        return self._shape_cache[name]

    def zeros_like(self, name: str) -> str:
        """Zeros with the shape of ``name`` and the element type of its gradient (:meth:`grad_dtype`)."""
        value = numpy_helper.from_array(np.zeros(1, dtype=self.grad_dtype(name)), "value")
        return self.like(self.node("ConstantOfShape", [self.shape(name)], hint="zeros", value=value), name)

    def reshape_like(self, tensor: str, like: str) -> str:
        """``Reshape(tensor, Shape(like))``."""
        return self.like(self.node("Reshape", [tensor, self.shape(like)], hint="reshape"), like)

    def reduce(self, op_type: str, tensor: str, axes: Sequence[int], keepdims: int = 1) -> str:
        """A reduction over constant ``axes`` (as an input from opset 13 for ReduceSum, 18 for the others)."""
        if op_type == "ReduceSum" or self.opset >= 18:
            return self.node(op_type, [tensor, self.ints(axes)], hint=op_type.lower(), keepdims=keepdims)
        return self.node(op_type, [tensor], hint=op_type.lower(), axes=[int(a) for a in axes], keepdims=keepdims)

    def masked(self, grad: str, condition: str, like: str) -> str:
        """``grad`` where ``condition`` holds, else 0, as ``grad * Cast(condition)`` (onnxruntime's CPU ``Where``
        with a broadcast scalar is about four times slower)."""
        mask = self.node("Cast", [condition], hint="mask", to=self.elem_type(like))
        return self.like(self.node("Mul", [grad, mask], hint="masked"), like)

    def scatter_add(self, target: str, flat_indices: str, updates: str) -> str:
        """Zeros shaped like ``target`` plus ``updates`` added at the flat positions ``flat_indices`` (any
        shapes with as many elements as ``updates``): the adjoint of gathering by flat index."""
        size = self.node("Size", [target], hint="size")
        size = self.node("Reshape", [size, self.ints([1])], hint="size1")
        value = numpy_helper.from_array(np.zeros(1, dtype=self.dtype(target)), "value")
        zeros = self.node("ConstantOfShape", [size], hint="zeros_flat", value=value)
        flat_idx = self.node("Reshape", [flat_indices, self.ints([-1])], hint="flat_idx")
        flat_upd = self.node("Reshape", [updates, self.ints([-1])], hint="flat_upd")
        scattered = self.node("ScatterElements", [zeros, flat_idx, flat_upd], hint="scatter", axis=0,
                              reduction="add")
        return self.reshape_like(scattered, target)

    def flat_index(self, name: str) -> str:
        """An int64 tensor shaped like ``name`` holding 0, 1, 2... (flat positions in row-major order)."""
        size = self.node("Size", [name], hint="size")
        flat = self.node("Range", [self.const(np.asarray(0, np.int64)), size, self.const(np.asarray(1, np.int64))],
                         hint="range")
        return self.node("Reshape", [flat, self.shape(name)], hint="index")

    def unbroadcast(self, grad: str, target: str) -> str:
        """Sum ``grad`` (the gradient of a broadcast result) down to the shape of operand ``target``."""
        grad_shape = self.symbolic_shape(grad)
        target_shape = self.symbolic_shape(target)
        if grad_shape is None or target_shape is None:
            raise self.unsupported(f"broadcasting {target!r}: ranks unknown")
        extra = len(grad_shape) - len(target_shape)
        if extra < 0:
            raise self.unsupported(f"the gradient of {target!r} has a lower rank than the tensor")
        if extra == 0 and _same_dims(grad_shape, target_shape):
            return grad
        out = grad
        if extra > 0:
            out = self.node("ReduceSum", [out, self.ints(range(extra))], hint="unbroadcast", keepdims=0)
        rest = grad_shape[extra:]
        if all(isinstance(d, int) for d in target_shape):
            axes = [i for i, d in enumerate(target_shape) if d == 1 and rest[i] != 1]
            if axes:
                out = self.node("ReduceSum", [out, self.ints(axes)], hint="unbroadcast", keepdims=1)
            if any(not isinstance(d, int) for d in rest) or axes or extra:
                out = self.node("Reshape", [out, self.ints(target_shape)], hint="unbroadcast")
            self.infos[out] = TensorInfo(out, self.elem_type(target), tuple(target_shape))
            return out
        # dynamic: reduce over the axes where the operand has size 1 (keeping them)
        ones = self.node("Equal", [self.shape(target), self.ints([1])], hint="is_one")
        axes = self.node("NonZero", [ones], hint="axes")
        axes = self.node("Reshape", [axes, self.ints([-1])], hint="axes")
        out = self.node("ReduceSum", [out, axes], hint="unbroadcast", keepdims=1, noop_with_empty_axes=1)
        return self.like(out, target)


def _same_dims(a: Sequence, b: Sequence) -> bool:
    return len(a) == len(b) and all(x == y and x is not None for x, y in zip(a, b))
