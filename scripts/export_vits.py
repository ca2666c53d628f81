"""Export the coverage transformers: standard layouts with random weights, for the token-layer and attention tests.

Torch is used here only (``scripts/vit_nets.py``). Run in the project venv::

    .venv/bin/python scripts/export_vits.py            # writes tests/data/vits/*.onnx

Each model takes a 32 x 48 RGB image (a non-square grid catches transposed reshapes), normalised with mean 0.5 and
std 0.25 on [0, 1] pixels, and returns 5 logits. Every export is checked against torch on a random input.

=================  ============================================================================================
``vit_cls``        ViT with a class token, timm-style attention (qkv reshaped to (B, N, 3, heads, d)), opset 17
``deit_dist``      DeiT layout: class and distillation tokens, the two heads averaged, opset 17
``vit_gap``        no extra token, global average pooling of the tokens; opset 20, so GELU is one ``Gelu`` node
``vit_mha``        ``nn.MultiheadAttention`` blocks (batch_first=True; the export puts the sequence first inside)
``swin_like``      two windowed stages on a channels-last (B, H, W, C) grid with patch merging between them
=================  ============================================================================================

The dynamo exporter (``torch.onnx.export(..., dynamo=True)``) needs the ``onnxscript`` package; when it is not
installed the script says so and writes the TorchScript exports only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from vit_nets import SwinLike, ViT, export  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SIZE = (32, 48)

MODELS = {
    "vit_cls": (lambda: ViT(SIZE, extra=1), 17),
    "deit_dist": (lambda: ViT(SIZE, extra=2), 17),
    "vit_gap": (lambda: ViT(SIZE, extra=0), 20),
    "vit_mha": (lambda: ViT(SIZE, extra=1, mha=True), 17),
    "swin_like": (lambda: SwinLike(), 17),
}


def check(net: torch.nn.Module, path: Path) -> float:
    import onnxruntime as ort

    x = torch.randn(2, 3, *SIZE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = net(x).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x.numpy()})[0]
    return float(np.abs(got - expected).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "data" / "vits")
    parser.add_argument("--only", choices=sorted(MODELS), action="append")
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    for stem in args.only or MODELS:
        build, opset = MODELS[stem]
        torch.manual_seed(0)
        net = build().eval()
        path = args.out / f"{stem}.onnx"
        export(net, SIZE, path, opset=opset)
        print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: {path.stat().st_size} bytes, "
              f"opset {opset}, max |onnx - torch| = {check(net, path):.2e}")
    try:
        import onnxscript  # noqa: F401
    except ImportError:
        print("dynamo exporter skipped: it needs the onnxscript package, which is not installed")
        return
    torch.manual_seed(0)
    net = ViT(SIZE, extra=1).eval()
    path = args.out / "vit_dynamo.onnx"
    torch.onnx.export(net, (torch.randn(1, 3, *SIZE),), str(path), dynamo=True, input_names=["input"],
                      output_names=["logits"])
    print(f"{path}: dynamo export, max |onnx - torch| = {check(net, path):.2e}")


if __name__ == "__main__":
    main()
