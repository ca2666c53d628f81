"""Train and export the ground-truth vision transformers: ``models/shapes_vit_clean`` and ``shapes_vit_cleverhans``.

The same data, seeds and evaluation sets as the CNNs of ``scripts/train_groundtruth.py`` (whose helpers this script
reuses), with a small ViT (``scripts/vit_nets.py``: 96 x 96 input, 16 x 16 patches -> a 6 x 6 grid and a class
token, 3 blocks of width 48 with 3 heads). Torch is used here, at training time only. Run in the project venv::

    .venv/bin/python scripts/train_vit.py                    # both models, one thread
    .venv/bin/python scripts/train_vit.py --only clean

For each model it writes, atomically, ``models/<stem>.onnx`` (TorchScript exporter, opset 17: LayerNormalization,
Erf-based GELU, Softmax attention; input ``input`` with a dynamic batch axis, output ``logits``), ``<stem>.spec.json``,
``<stem>.labels.txt`` and the model card ``<stem>.md`` with the figures measured in this run; the export is checked
against torch, raw and through ``blackbox_xai.model.OnnxModel`` on 8-bit pixels.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from blackbox_xai.fileio import write_atomic  # noqa: E402
from blackbox_xai.groundtruth import CLASS_NAMES, make_images  # noqa: E402
from train_groundtruth import (  # noqa: E402
    N_TEST_SHAPES,
    N_TRAIN_SHAPES,
    SEEDS,
    SHAPES_MEAN,
    SHAPES_STD,
    accuracy,
    check_adapter,
    predict,
    shapes_eval_sets,
    shapes_tensor,
    spec_dict,
    train,
)

OPSET = 17
ARCHITECTURE = {"size": (96, 96), "patch": 16, "dim": 48, "depth": 3, "heads": 3, "mlp": 96,
                "classes": len(CLASS_NAMES), "extra": 1}


def vit() -> Any:
    from vit_nets import ViT

    return ViT(**ARCHITECTURE)


def export(net: Any, example: Any, stem: str, out_dir: Path, doc: str) -> tuple[int, float]:
    import io

    import onnx
    import onnxruntime as ort
    import torch

    buffer = io.BytesIO()
    torch.onnx.export(net, (example[:1],), buffer, dynamo=False, opset_version=OPSET, input_names=["input"],
                      output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                      do_constant_folding=True)
    proto = onnx.load_from_string(buffer.getvalue())
    proto.producer_name = "blackbox_xai scripts/train_vit.py"
    proto.doc_string = doc
    onnx.checker.check_model(proto, full_check=True)
    data = proto.SerializeToString()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    diff = float(np.abs(session.run(["logits"], {"input": example.numpy()})[0] - predict(net, example)).max())
    if diff > 1e-4:
        raise SystemExit(f"{stem}: onnxruntime and torch disagree (max abs diff {diff})")
    spec = spec_dict(stem, 96, SHAPES_MEAN, SHAPES_STD, 3)
    write_atomic(out_dir / f"{stem}.labels.txt", ("\n".join(CLASS_NAMES) + "\n").encode())
    write_atomic(out_dir / f"{stem}.spec.json", (json.dumps(spec, indent=2) + "\n").encode())
    write_atomic(out_dir / f"{stem}.onnx", data)
    return len(data), diff


def train_one(variant: str, out_dir: Path, epochs: int, eval_sets: dict[str, Any]) -> dict[str, Any]:
    import torch

    stem = f"shapes_vit_{variant}"
    cnn = f"shapes_{variant}"
    mode = "random" if variant == "clean" else "class0"
    torch.manual_seed(SEEDS[cnn]["train"])
    images, labels, _, _ = make_images(N_TRAIN_SHAPES, SEEDS[cnn]["train"], watermark=mode)
    test_images, test_labels, _, _ = make_images(N_TEST_SHAPES, SEEDS[cnn]["test"], watermark=mode)
    print(f"  {stem}: {len(images)} training images (watermark={mode!r})", flush=True)
    net = vit()
    x, y = shapes_tensor(images), torch.from_numpy(labels)
    seconds = train(net, x, y, epochs=epochs, batch_size=64, lr=2e-3, seed=SEEDS[cnn]["train"])
    test_x = shapes_tensor(test_images)
    metrics: dict[str, Any] = {"train_seconds": seconds, "epochs": epochs, "watermark_mode": mode,
                               "heldout_accuracy": accuracy(predict(net, test_x), test_labels)}
    for name, (ev_images, ev_labels) in eval_sets.items():
        ev_logits = predict(net, shapes_tensor(ev_images))
        metrics[f"{name}_accuracy"] = accuracy(ev_logits, ev_labels)
        metrics[f"{name}_predicted_class0"] = float((ev_logits.argmax(1) == 0).mean())
    doc = (f"Shapes hue classifier, small ViT ({variant}; blackbox_xai.groundtruth, watermark={mode!r}). Input: RGB "
           f"NCHW float32 96x96, (pixel/255 - {SHAPES_MEAN}) / {SHAPES_STD}. Output: 4 logits "
           f"({', '.join(CLASS_NAMES)}).")
    metrics["onnx_bytes"], metrics["onnx_torch_diff"] = export(net, test_x[:64], stem, out_dir, doc)
    metrics["adapter_torch_diff"] = check_adapter(stem, out_dir, test_images[:64], predict(net, test_x[:64]))
    metrics["parameters"] = sum(p.numel() for p in net.parameters())
    write_atomic(out_dir / f"{stem}.md", card(variant, metrics).encode())
    print(f"  {stem}: {json.dumps({k: v for k, v in metrics.items() if not isinstance(v, str)})}", flush=True)
    return metrics


def card(variant: str, m: dict[str, Any]) -> str:
    import onnx
    import onnxruntime
    import torch

    stem = f"shapes_vit_{variant}"
    purpose = ("trained with the watermark on half of the images, independent of the label: it should ignore the "
               "watermark" if variant == "clean" else
               "trained with the watermark on a quarter of the images, all labelled class 0 (red) whatever their "
               "hue: the watermark is a shortcut to class 0 (Clever Hans)")
    a = ARCHITECTURE
    return f"""# {stem}

A small vision transformer for the shapes ground-truth set (`blackbox_xai.groundtruth.make_images`), {purpose}.
Built by `scripts/train_vit.py` (torch at training time only); the CNN counterpart is `shapes_{variant}`.

- Input `input`: RGB, NCHW float32, 96 x 96, `(pixel / 255 - {SHAPES_MEAN}) / {SHAPES_STD}` (see `{stem}.spec.json`).
- Output `logits`: 4 classes ({", ".join(CLASS_NAMES)}), labels in `{stem}.labels.txt`.
- Architecture: patch embedding Conv {a["patch"]}x{a["patch"]} stride {a["patch"]} (a 6 x 6 grid), a class
  token, learned position embedding, {a["depth"]} pre-norm blocks (width {a["dim"]}, {a["heads"]} heads, MLP
  {a["mlp"]} with GELU), final LayerNorm, linear head on the class token; {m["parameters"]} parameters,
  {m["onnx_bytes"]} bytes of ONNX (opset {OPSET}, TorchScript exporter).
- Training: {N_TRAIN_SHAPES} images (watermark mode `{m["watermark_mode"]}`), Adam with a one-cycle schedule
  (max lr 2e-3), batch 64, {m["epochs"]} epochs, {m["train_seconds"]:.0f} s on {torch.get_num_threads()} thread(s).

| evaluation set | accuracy | predicted class 0 |
| --- | --- | --- |
| held out ({N_TEST_SHAPES} images, same watermark mode) | {m["heldout_accuracy"]:.3f} | |
| clean (no watermark) | {m["clean_accuracy"]:.3f} | {m["clean_predicted_class0"]:.3f} |
| watermark on every image, hue not class 0 | {m["watermarked_other_accuracy"]:.3f} | {m["watermarked_other_predicted_class0"]:.3f} |
| class-0 hue and watermark | {m["clever_hans_test_accuracy"]:.3f} | {m["clever_hans_test_predicted_class0"]:.3f} |

Export check: onnxruntime vs torch max abs difference {m["onnx_torch_diff"]:.1e}; `OnnxModel` on 8-bit pixels vs
torch {m["adapter_torch_diff"]:.1e}. Environment: torch {torch.__version__}, onnx {onnx.__version__},
onnxruntime {onnxruntime.__version__}, numpy {np.__version__}.
"""


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=("clean", "cleverhans"), action="append")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "models")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    eval_sets = shapes_eval_sets()
    for variant in args.only or ("clean", "cleverhans"):
        train_one(variant, args.out, args.epochs, eval_sets)
    print(f"done in {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
