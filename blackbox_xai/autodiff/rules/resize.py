"""Resize (and Upsample, which :func:`blackbox_xai.graph.normalise_opset` turns into Resize).

Resize is linear in its input and separable: along each resized axis the output is ``A x`` for a fixed
(output, input) matrix. The matrices are built at build time by :func:`resize_matrix`, which follows
onnxruntime's CPU kernel (coordinates in float32; ``align_corners`` uses the integer output length, where
``onnx.reference`` uses ``length * scale`` and disagrees with onnxruntime), and the adjoint applies their
transposes (:mod:`.separable`). Modes nearest (each rounding), linear and cubic (``cubic_coeff_a``,
``exclude_outside``), every coordinate transformation; ``tf_crop_and_resize`` extrapolated elements carry no
gradient. Needs the resized axes' input sizes and the scales or sizes as constants (or a static output shape from
shape inference). ``antialias`` and ``keep_aspect_ratio_policy`` other than ``stretch`` are refused.
"""

from __future__ import annotations

import math

import numpy as np

from ..context import attributes
from .registry import register
from .separable import apply_adjoint

f32 = np.float32


def _original_coordinate(x: int, scale: float, size: int, out: int, mode: str, roi: tuple[float, float]) -> float:
    """Input coordinate of output index ``x`` (onnxruntime's float32 arithmetic)."""
    xr, s, n, m = f32(x), f32(scale), f32(size), f32(out)
    if mode == "half_pixel":
        return float((xr + f32(0.5)) / s - f32(0.5))
    if mode == "asymmetric":
        return float(xr / s)
    if mode == "pytorch_half_pixel":
        return float((xr + f32(0.5)) / s - f32(0.5)) if out > 1 else 0.0
    if mode == "tf_half_pixel_for_nn":
        return float((xr + f32(0.5)) / s)
    if mode == "align_corners":
        return float(xr * (n - f32(1)) / (m - f32(1))) if out > 1 else 0.0
    if mode == "half_pixel_symmetric":
        adjustment = m / (s * n)
        centre = n / f32(2)
        offset = centre * (f32(1) - adjustment)
        return float(offset + (xr + f32(0.5)) / s - f32(0.5))
    if mode == "tf_crop_and_resize":
        start, end = f32(roi[0]), f32(roi[1])
        if out > 1:
            return float(start * (n - f32(1)) + (xr * (end - start) * (n - f32(1))) / (m - f32(1)))
        return float(f32(0.5) * (start + end) * (n - f32(1)))
    raise ValueError(f"unknown coordinate_transformation_mode {mode!r}")


def _nearest(value: float, rounding: str) -> int:
    low = math.floor(value)
    if rounding == "round_prefer_floor":
        return low if value - low <= 0.5 else low + 1
    if rounding == "round_prefer_ceil":
        return low + 1 if value - low >= 0.5 else low
    if rounding == "floor":
        return math.floor(value)
    if rounding == "ceil":
        return math.ceil(value)
    raise ValueError(f"unknown nearest_mode {rounding!r}")


def _cubic_weights(ratio: float, a: float) -> list[float]:
    def kernel(t: float) -> float:
        t = abs(t)
        if t <= 1:
            return (a + 2) * t**3 - (a + 3) * t**2 + 1
        if t < 2:
            return a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a
        return 0.0

    return [kernel(1 + ratio), kernel(ratio), kernel(1 - ratio), kernel(2 - ratio)]


def resize_matrix(size: int, out: int, scale: float, attrs: dict, roi: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """The (out, size) matrix of onnxruntime's 1-D Resize along one axis."""
    mode = attrs.get("mode", "nearest")
    transform = attrs.get("coordinate_transformation_mode", "half_pixel")
    matrix = np.zeros((out, size))
    for x in range(out):
        original = _original_coordinate(x, scale, size, out, transform, roi)
        if transform == "tf_crop_and_resize" and (original < 0 or original > size - 1):
            continue  # extrapolation_value: no dependence on the input
        if mode == "nearest":
            index = _nearest(original, attrs.get("nearest_mode", "round_prefer_floor"))
            matrix[x, min(max(index, 0), size - 1)] += 1.0
        elif mode == "linear":
            position = min(max(original, 0.0), size - 1.0)
            low = min(int(position), size - 1)
            high = min(low + 1, size - 1)
            if low == high:
                matrix[x, low] += 1.0
            else:
                matrix[x, low] += high - position
                matrix[x, high] += position - low
        elif mode == "cubic":
            base = math.floor(original)
            weights = _cubic_weights(original - base, float(attrs.get("cubic_coeff_a", -0.75)))
            taps = [base - 1, base, base + 1, base + 2]
            if int(attrs.get("exclude_outside", 0)):
                weights = [w if 0 <= t < size else 0.0 for w, t in zip(weights, taps)]
                total = sum(weights)
                weights = [w / total for w in weights]
            for w, t in zip(weights, taps):
                matrix[x, min(max(t, 0), size - 1)] += w
        else:
            raise ValueError(f"unknown Resize mode {mode!r}")
    return matrix


@register("Resize", inputs=(0,))
def resize(ctx, node, grads, needed):
    attrs = attributes(node)
    if attrs.get("keep_aspect_ratio_policy", "stretch") != "stretch":
        raise ctx.unsupported("keep_aspect_ratio_policy other than 'stretch'")
    if int(attrs.get("antialias", 0)):
        raise ctx.unsupported("antialiased Resize")
    x, y = node.input[0], node.output[0]
    rank = ctx.rank(x)
    names = [node.input[i] if len(node.input) > i and node.input[i] else None for i in range(1, 4)]
    roi_name, scales_name, sizes_name = names
    scales = ctx.const_value(scales_name) if scales_name else None
    sizes = ctx.const_value(sizes_name) if sizes_name else None
    roi = ctx.const_value(roi_name) if roi_name else None
    if roi_name and roi is None:
        raise ctx.unsupported("roi given by a computed tensor")
    axes = [int(a) % rank for a in attrs.get("axes", range(rank))]
    x_shape, y_shape = ctx.static_shape(x), ctx.static_shape(y)
    if scales is not None and scales.size:
        per_axis = {a: ("scale", float(s)) for a, s in zip(axes, scales.reshape(-1))}
    elif sizes is not None and sizes.size:
        per_axis = {a: ("size", int(s)) for a, s in zip(axes, sizes.reshape(-1))}
    elif y_shape is not None and x_shape is not None:
        # sizes computed at run time (Concat(Shape(x)[:2], (h, w)) in torch exports): the output sizes from shape
        # inference; axes of unknown size on both sides (the batch) are taken as not resized
        per_axis = {a: ("size", y_shape[a]) for a in axes if not (x_shape[a] is None and y_shape[a] is None)}
        if any(v is None for _, v in per_axis.values()):
            raise ctx.unsupported("scales and sizes are computed at run time and the output shape is unknown")
    else:
        raise ctx.unsupported("scales and sizes are computed at run time and the output shape is unknown")
    if roi is not None and roi.size:
        roi = roi.reshape(-1)
        n = len(axes)
        roi_per_axis = {a: (float(roi[i]), float(roi[n + i])) for i, a in enumerate(axes)}
    else:
        roi_per_axis = {}
    tf_crop = attrs.get("coordinate_transformation_mode", "half_pixel") == "tf_crop_and_resize"
    matrices = {}
    for axis, (kind, value) in per_axis.items():
        axis_roi = roi_per_axis.get(axis, (0.0, 1.0)) if tf_crop else (0.0, 1.0)
        shape = ctx.static_shape(x)
        if shape is None or shape[axis] is None:
            if kind == "scale" and float(np.float32(value)) == 1.0 and not tf_crop:
                continue  # an unresized axis of unknown size (the batch)
            raise ctx.unsupported(f"the size of axis {axis} of {x!r} is not known statically")
        size = int(shape[axis])
        if ((kind == "scale" and float(np.float32(value)) == 1.0) or (kind == "size" and value == size)) and not tf_crop:
            continue  # onnxruntime leaves unscaled axes as they are (even for tf_half_pixel_for_nn)
        if kind == "scale":
            out, scale = int(np.float32(size) * np.float32(value)), float(np.float32(value))
        else:
            out, scale = int(value), float(np.float32(value) / np.float32(size))
        matrices[axis] = resize_matrix(size, out, scale, attrs, axis_roi)
    return [apply_adjoint(ctx, grads[0], x, matrices)] + [None] * (len(node.input) - 1)
