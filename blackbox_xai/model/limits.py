"""Memory bounds of the model adapter: the largest model input it runs, and how many images go in one chunk.

A model's declared input size is checked before anything is allocated (a graph that declares a 50000 x 50000
input would need 28 GiB for its first float32 image): the budget is ``max_input_pixels`` when given (an
:class:`~blackbox_xai.model.OnnxModel` argument), else the environment variable ``BLACKBOX_XAI_MAX_INPUT_PIXELS``,
else :data:`DEFAULT_MAX_INPUT_PIXELS` (4096 x 4096). Above it the model is refused in one line that says how to
go past it. Chunks of images are limited to :data:`CHUNK_BYTES` of model input, so that a large input size lowers
the batch size instead of multiplying the memory.
"""

from __future__ import annotations

from ..errors import ModelError
from ..limits import positive_limit

DEFAULT_MAX_INPUT_PIXELS = 4096 * 4096
"""The default budget of a model input: height x width pixels (one float32 RGB image is then 192 MiB)."""
MAX_INPUT_PIXELS_ENV = "BLACKBOX_XAI_MAX_INPUT_PIXELS"
CHUNK_BYTES = 512 * 2**20
"""The most bytes of model input (float32 equivalent) that one forward chunk holds (512 MiB)."""


def input_pixel_budget(max_input_pixels: int | None = None) -> int:
    """``max_input_pixels`` if given, else ``$BLACKBOX_XAI_MAX_INPUT_PIXELS``, else
    :data:`DEFAULT_MAX_INPUT_PIXELS`; a value that is not a positive integer is a :class:`ParameterError`."""
    return positive_limit(max_input_pixels, "max_input_pixels", MAX_INPUT_PIXELS_ENV, DEFAULT_MAX_INPUT_PIXELS,
                          "pixels")


def check_input_size(size: tuple[int, int], channels: int, name: str, budget: int) -> None:
    """Refuse a model input of ``size`` (height, width) above ``budget`` pixels, before anything is allocated."""
    height, width = int(size[0]), int(size[1])
    if height * width <= budget:
        return
    gib = height * width * channels * 4 / 2**30
    raise ModelError(
        f"{name} takes {height}x{width} images ({height * width:,} pixels, {gib:.1f} GiB per float32 image), above "
        f"the limit of {budget:,} pixels: if the model really needs them and the memory is there, raise the limit "
        f"with {MAX_INPUT_PIXELS_ENV}=N (or max_input_pixels=N)"
    )


def chunk_size(batch_size: int, size: tuple[int, int] | None, channels: int) -> int:
    """``batch_size`` lowered so that one chunk of model inputs stays within :data:`CHUNK_BYTES` (at least 1)."""
    if size is None or batch_size < 1:  # a batch size below 1 is refused by the model with its own message
        return batch_size
    per_image = int(size[0]) * int(size[1]) * channels * 4
    return max(1, min(batch_size, CHUNK_BYTES // max(per_image, 1)))
