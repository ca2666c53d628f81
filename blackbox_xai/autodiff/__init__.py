"""Exact gradients of ONNX models, as ONNX: a backward graph of ordinary operators that onnxruntime runs.

Stock onnxruntime has no gradient operators (onnxruntime-training is discontinued), so
:func:`build_gradient_model` appends to the forward graph a backward graph written with ordinary ONNX
operators, one rule per forward operator (:mod:`blackbox_xai.autodiff.rules`, one module per family). The result
is one model: inputs = the forward inputs + ``"seed"``; outputs = the differentiated tensor, then
``"grad:<name>"`` for each requested tensor. Besides exact vector-Jacobian products (``rules="gradient"``), the
same machinery gives Guided Backprop, DeconvNet and LRP (epsilon, alpha-beta, z^B) by swapping rules.

Example::

    from blackbox_xai.autodiff import build_gradient_model
    grad_model = build_gradient_model(model, output="logits", wrt=["input"])
    logits, grad = session.run(None, {"input": x, "seed": one_hot})   # d(seed . logits)/d input

Operators without a rule raise :class:`UnsupportedOpError` (callers fall back to finite differences).
"""

from .builder import GRAD_PREFIX, SEED, build_gradient_model
from .context import UnsupportedOpError
from .rules import RULE_SETS, supported_ops

__all__ = ["GRAD_PREFIX", "RULE_SETS", "SEED", "UnsupportedOpError", "build_gradient_model", "supported_ops"]
