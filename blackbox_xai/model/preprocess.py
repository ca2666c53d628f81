"""Pixel batches to model inputs, defined once: the :class:`Preprocessor` of an :class:`InputSpec`.

Every step between pixels and the model lives here: resize, channel order (RGB, BGR, or one luma channel), value
range, mean/std, layout and dtype (:meth:`Preprocessor.forward`); the chain rule back to pixel space
(:meth:`Preprocessor.vjp`, and :meth:`Preprocessor.relevance` for conserved LRP relevances); the pixel the model
sees as zero (:meth:`Preprocessor.zero_pixel`); and the normalisation as ONNX nodes
(:meth:`Preprocessor.with_pixel_input`), so that a graph can take pixels and normalise them itself.

For a float model input, channel ``c`` of the model input is ``x_c = p_c * value_range[1] / (255 std_c) -
mean_c / std_c``, where ``p`` are the pixels in the model's channel order (``luma = 0.299 R + 0.587 G + 0.114 B``,
ITU-R BT.601, for a one-channel model) and layout. ``value_range[0]`` does not enter: a model whose inputs start
elsewhere than 0 says so with ``mean``. A uint8 input is ``clip(rint(p * value_range[1] / 255), 0, 255)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import GradientUnavailableError, ModelError
from ..image import resize_pixels
from .spec import InputSpec

# ITU-R BT.601 luma weights, used when a model takes one channel.
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)

PIXEL_FEED = "blackbox_xai/pixels"
"""The name of the pixel input that :meth:`Preprocessor.with_pixel_input` adds to a graph."""

_DTYPES = {"float32": np.float32, "float16": np.float16, "uint8": np.uint8}


class Preprocessor:
    """The preprocessing of one :class:`InputSpec`, with its adjoint and its ONNX form.

    Parameters
    ----------
    spec : the model's input specification (size, layout, channel order, channels, value range, mean/std, dtype).

    Attributes
    ----------
    factor, offset : float32 (channels,): the float input is ``ordered_pixels * factor - offset``, with
        ``factor = value_range[1] / 255 / std`` and ``offset = mean / std``, computed in float32 exactly as
        :meth:`forward` uses them.
    """

    def __init__(self, spec: InputSpec) -> None:
        self.spec = spec
        self.channels = int(spec.channels)
        self.scale = spec.value_range[1] / 255.0
        std = np.asarray(spec.std[:self.channels], dtype=np.float32)
        mean = np.asarray(spec.mean[:self.channels], dtype=np.float32)
        self.factor, self.offset = self.scale / std, mean / std

    # -- forward -------------------------------------------------------------------------------------------------

    def forward(self, pixels: np.ndarray) -> np.ndarray:
        """The model input for pixels (N, H, W, 3), float in [0, 255], RGB.

        Images not at ``spec.size`` are resized first. The result is contiguous, in ``spec.layout`` (NHWC when
        None) and ``spec.dtype`` (float32 when None).
        """
        spec = self.spec
        if pixels.ndim != 4 or pixels.shape[3] != 3:
            raise ValueError(f"pixel batch must be (N, H, W, 3), got {pixels.shape}")
        if spec.size is not None and pixels.shape[1:3] != tuple(spec.size):
            pixels = np.stack([resize_pixels(image, spec.size) for image in pixels])
        x = self._reorder_channels(pixels.astype(np.float32, copy=False))
        if spec.dtype == "uint8":
            x = np.clip(np.rint(x * self.scale), 0, 255)
            if spec.layout == "NCHW":
                x = x.transpose(0, 3, 1, 2)
        else:
            # (x * scale - mean) / std as one multiply-add, written straight into a contiguous float32 array in
            # the final layout: no temporaries, and no separate NHWC -> NCHW copy (a strided copy that costs
            # several times the arithmetic). The same float32 operations in the same order, so the same values.
            factor, offset = self.factor, self.offset
            if spec.layout == "NCHW":
                x = x.transpose(0, 3, 1, 2)
                factor, offset = factor[:, None, None], offset[:, None, None]
            out = np.empty(x.shape, dtype=np.float32)
            np.multiply(x, factor, out=out)
            x = np.subtract(out, offset, out=out)
        return np.ascontiguousarray(x, dtype=_DTYPES[spec.dtype or "float32"])

    __call__ = forward

    def ordered_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """Pixels (N, H, W, 3) in [0, 255] as the model orders them (luma or channel order, then layout), before
        the value range and mean/std: the feed of :meth:`with_pixel_input`. float16 for a float16 model, else
        float32; not resized."""
        x = self._reorder_channels(pixels.astype(np.float32, copy=False))
        if self.spec.layout == "NCHW":
            x = x.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(x, dtype=np.float16 if self.spec.dtype == "float16" else np.float32)

    def _reorder_channels(self, x: np.ndarray) -> np.ndarray:
        if self.channels == 1:
            return (x @ LUMA)[..., None]
        if self.spec.channel_order == "BGR":
            return x[..., ::-1]
        return x

    # -- adjoint -------------------------------------------------------------------------------------------------

    def vjp(self, grad: np.ndarray) -> np.ndarray:
        """The vector-Jacobian product of :meth:`forward`: a gradient with respect to the model input (N, ...) in
        the model's layout, brought to pixel space (N, H, W, 3) RGB float32.

        Each channel is multiplied by ``factor_c = value_range[1] / (255 std_c)`` (the mean does not matter), the
        layout and channel order are undone, and a luma input is spread by the luma weights. Resizing is not
        differentiated (the gradient must be at the model size), nor is uint8 rounding (no gradient:
        :class:`~blackbox_xai.errors.GradientUnavailableError`).
        """
        if self.spec.dtype == "uint8":
            raise GradientUnavailableError("the model takes uint8 pixels, and rounding to integers has no gradient")
        g = self._to_pixel_layout(grad) * self.factor
        if self.channels == 1:
            g = g * LUMA
        elif self.spec.channel_order == "BGR":
            g = g[..., ::-1]
        return np.ascontiguousarray(g, dtype=np.float32)

    def relevance(self, relevance: np.ndarray, pixels: np.ndarray | None = None) -> np.ndarray:
        """An LRP relevance of the model input (N, ...) in the model's layout, brought to pixel space
        (N, H, W, 3) RGB float32 without the chain rule: relevance is conserved.

        Each element's relevance goes back to its pixel (layout and channel order undone). A luma input's relevance
        is split over R, G, B in proportion to ``luma_weight_c * pixel_c`` (``pixels`` (N, H, W, 3)), by the luma
        weights where the pixel is black or when ``pixels`` is None.
        """
        g = self._to_pixel_layout(relevance)
        if self.channels == 1:
            share = np.broadcast_to(LUMA, (*g.shape[:3], 3))
            if pixels is not None:
                weighted = np.asarray(pixels, np.float32) * LUMA
                total = weighted.sum(axis=-1, keepdims=True)
                share = np.where(total > 0, weighted / np.where(total > 0, total, 1.0), LUMA)
            g = g * share
        elif self.spec.channel_order == "BGR":
            g = g[..., ::-1]
        return np.ascontiguousarray(g, dtype=np.float32)

    def _to_pixel_layout(self, grad: np.ndarray) -> np.ndarray:
        g = np.asarray(grad, dtype=np.float32)
        if g.ndim != 4:
            raise ModelError(f"the model input's gradient has shape {list(g.shape)}; expected a 4-D image batch")
        return g.transpose(0, 2, 3, 1) if self.spec.layout == "NCHW" else g

    # -- the zero pixel ------------------------------------------------------------------------------------------

    def zero_pixel(self) -> np.ndarray:
        """The RGB pixel (3,) float32 that :meth:`forward` maps to zero: ``mean * 255 / value_range[1]`` per channel
        in RGB order (the mean grey on all three for a luma model; 0 when the spec has no mean), clipped to
        [0, 255]."""
        spec = self.spec
        mean = np.asarray(spec.mean, dtype=np.float64) * (255.0 / spec.value_range[1])
        if self.channels == 1:
            mean = np.full(3, mean[0])
        elif spec.channel_order == "BGR":
            mean = mean[::-1]
        return np.clip(mean, 0.0, 255.0).astype(np.float32)

    # -- ONNX form -----------------------------------------------------------------------------------------------

    def onnx_nodes(self, feed: str, output: str) -> tuple[list[Any], list[Any]]:
        """The normalisation as ONNX ``(nodes, initializers)``: ``output = feed * factor - offset``, ``feed``
        holding :meth:`ordered_pixels` (values in [0, 255]); the constants are :attr:`factor` and :attr:`offset`
        (in the feed's dtype), broadcast over the layout, so that onnxruntime computes the same float32 values as
        :meth:`forward`."""
        from onnx import helper, numpy_helper

        shape = (1, self.channels, 1, 1) if self.spec.layout == "NCHW" else (1, 1, 1, self.channels)
        dtype = np.float16 if self.spec.dtype == "float16" else np.float32
        initializers = [numpy_helper.from_array(self.factor.reshape(shape).astype(dtype), feed + "/factor"),
                        numpy_helper.from_array(self.offset.reshape(shape).astype(dtype), feed + "/offset")]
        nodes = [helper.make_node("Mul", [feed, feed + "/factor"], [feed + "/scaled"]),
                 helper.make_node("Sub", [feed + "/scaled", feed + "/offset"], [output])]
        return nodes, initializers

    def with_pixel_input(self, proto: Any, feed: str = PIXEL_FEED) -> Any:
        """``proto`` (edited in place and returned) with its input ``spec.input`` replaced by ``feed``, which takes
        :meth:`ordered_pixels` and is normalised by :meth:`onnx_nodes` at the start of the graph.

        Used by the LRP builder, which carries the z^B box [0, 255] through that Mul and Sub to the first layer,
        so that layer gets the exact per-channel bounds of the normalised input."""
        if self.spec.dtype == "uint8":
            raise GradientUnavailableError("the model takes uint8 pixels: rounding to integers is not a graph of "
                                           "Mul and Sub")
        original = next((value for value in proto.graph.input if value.name == self.spec.input), None)
        if original is None:
            raise ModelError(f"the graph has no input {self.spec.input!r}")
        pixel_input = type(original)()
        pixel_input.CopyFrom(original)
        pixel_input.name = feed
        kept = [value for value in proto.graph.input if value.name != self.spec.input]
        del proto.graph.input[:]
        proto.graph.input.extend([pixel_input, *kept])
        nodes, initializers = self.onnx_nodes(feed, self.spec.input)
        proto.graph.initializer.extend(initializers)
        for node in reversed(nodes):
            proto.graph.node.insert(0, node)
        return proto


def to_model_input(pixels: np.ndarray, spec: InputSpec) -> np.ndarray:
    """``Preprocessor(spec).forward(pixels)``: the model input for pixels (N, H, W, 3), float in [0, 255], RGB."""
    return Preprocessor(spec).forward(pixels)
