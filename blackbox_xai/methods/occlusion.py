"""Occlusion: slide a patch over the image and record the score drop (Zeiler and Fergus, ECCV 2014)."""

from __future__ import annotations

import numpy as np

from ..model.base import Model
from ..targets import Target
from . import params as P
from .base import Attribution, Method, Progress, chunks, target_scores
from .fill import fill_image


class Occlusion(Method):
    """Saliency of a pixel = mean score drop over the occluding windows that cover it.

    Windows of ``window`` pixels (at the model's resolution) slide by ``stride``; a last window is added flush
    with the bottom and right borders so that every pixel is covered. Occluded pixels take the ``fill`` image.

    Parameters
    ----------
    window : window size in pixels, an int or (height, width) (default 32 at the model resolution).
    stride : step in pixels, an int or (y, x), at most the window (default 16: overlapping windows, averaged).
    fill : "grey" (default), "zero" (the pixel the model sees as zero), "black", "mean" (the image's mean colour)
        or "blur".
    score : "probability" (default), "logit" or "raw".
    """

    name = "occlusion"
    family = "perturbation"
    parameter_constraints = {
        "window": P.SequenceOf(P.Int(1), length=2, scalar="pair"),
        "stride": P.SequenceOf(P.Int(1), length=2, scalar="pair"),
        "fill": P.fill(),
        "score": P.score(),
    }

    def __init__(
        self,
        window: int | tuple[int, int] = 32,
        stride: int | tuple[int, int] = 16,
        fill: str = "grey",
        score: str = "probability",
    ) -> None:
        self._set_params(locals())
        for axis, (size, step) in enumerate(zip(self.window, self.stride)):
            if step > size:
                raise self._refuse("stride", stride, f"at most the window ({size} pixels along "
                                   f"{'yx'[axis]}): a larger stride never occludes the pixels between windows")

    def planned_passes(self, size: tuple[int, int]) -> int:
        return len(self.positions(*size))

    def positions(self, height: int, width: int) -> list[tuple[int, int]]:
        """Top-left corners (y, x) of the windows on an image of ``height`` x ``width`` (one forward pass each)."""
        win_h, win_w = min(self.window[0], height), min(self.window[1], width)
        return [(y, x) for y in _starts(height, win_h, self.stride[0]) for x in _starts(width, win_w, self.stride[1])]

    def attribute(
        self, model: Model, pixels: np.ndarray, target: Target, clean_outputs: np.ndarray, progress: Progress
    ) -> Attribution:
        height, width = pixels.shape[:2]
        win_h, win_w = min(self.window[0], height), min(self.window[1], width)
        positions = self.positions(height, width)
        baseline = fill_image(pixels, self.fill, model.spec)
        clean = float(target.score(model.convert(clean_outputs[None], self.score))[0])
        total = np.zeros((height, width), dtype=np.float64)
        counts = np.zeros((height, width), dtype=np.float64)
        for start, stop in chunks(len(positions), model.batch_size):
            batch = np.repeat(pixels[None], stop - start, axis=0)
            for image, (y, x) in zip(batch, positions[start:stop]):
                image[y:y + win_h, x:x + win_w] = baseline[y:y + win_h, x:x + win_w]
            drops = clean - target_scores(model, batch, target, self.score)
            for drop, (y, x) in zip(drops, positions[start:stop]):
                total[y:y + win_h, x:x + win_w] += drop
                counts[y:y + win_h, x:x + win_w] += 1
            progress(stop, len(positions))
        saliency = total / counts
        return Attribution(saliency.astype(np.float32), {"clean_score": clean, "windows": len(positions)})


def _starts(length: int, window: int, stride: int) -> list[int]:
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] != length - window:
        starts.append(length - window)
    return starts
