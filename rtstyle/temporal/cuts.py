"""Scene-cut detection for the smoothers: a cut makes any blend with the past a ghost.

The score is PySceneDetect's ContentDetector's: the mean absolute change of hue, saturation and
value between consecutive frames, on OpenCV's 0..255 (hue 0..179) scale, here on a copy whose
long side is `side` pixels (the mean barely moves with the size; the cost drops to about 0.1 ms).
A frame is a cut when its score passes `threshold` (ContentDetector's default, 27), or when it
passes `min_score` (AdaptiveDetector's 15) and is `ratio` times the mean of the last `window`
scores (once there are two). A live stream cannot look ahead, so the adaptive test uses past frames
only; it catches softer cuts inside calm shots without firing on a pan that is busy all along.
A false cut costs one frame that is not smoothed; a missed one, a ghost (where the flow smoother's
confidence does not reject it by itself).

Measured on ../shared/data/video/big_buck_bunny_cut.mp4 (640x360, 240 frames, one hard cut): the
cut scores 57, every other frame at most 3.5.

numpy and OpenCV only: the torch and the host smoothers share it (the frames are on the host).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class CutSettings:
    threshold: float = 27.0  # a cut whatever came before (ContentDetector)
    min_score: float = 15.0  # below it never a cut (AdaptiveDetector's min_content_val)
    ratio: float = 3.0  # ... and between the two, a cut when this many times the recent mean
    window: int = 8  # frames of recent scores
    side: int = 160  # long side of the copy the score is computed on


class CutDetector:
    """Feed every frame in order; `__call__` says whether it starts a new shot."""

    def __init__(self, settings: CutSettings | None = None):
        self.settings = settings or CutSettings()
        self._last: np.ndarray | None = None
        self._scores: deque[float] = deque(maxlen=self.settings.window)
        self.last_score = 0.0

    def reset(self) -> None:
        self._last = None
        self._scores.clear()

    def __call__(self, frame: np.ndarray) -> bool:
        """`frame`: H x W x 3 uint8 RGB. The first frame, or one of a new size, is not a cut (nothing
        is blended into it anyway)."""
        hsv = self._hsv(frame)
        last, self._last = self._last, hsv
        if last is None or last.shape != hsv.shape:
            self._scores.clear()
            self.last_score = 0.0
            return False
        score = content_score(hsv, last)
        self.last_score = score
        s = self.settings
        recent = float(np.mean(self._scores)) if self._scores else 0.0
        # The adaptive test needs a baseline: right after a cut or a start only the threshold counts
        # (a fast pan over fine texture scores 20 and more at this size).
        adaptive = len(self._scores) >= 2 and score >= s.min_score and score >= s.ratio * recent
        cut = score >= s.threshold or adaptive
        if cut:
            self._scores.clear()  # a new shot: its own motion sets the next baseline
        else:
            self._scores.append(score)
        return cut

    def _hsv(self, frame: np.ndarray) -> np.ndarray:
        height, width = frame.shape[:2]
        scale = self.settings.side / max(height, width)
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
        return cv2.cvtColor(frame, cv2.COLOR_RGB2HSV)


def content_score(hsv: np.ndarray, previous: np.ndarray) -> float:
    """ContentDetector's frame score: mean |dH|, |dS|, |dV| averaged (weights 1, 1, 1)."""
    diff = cv2.absdiff(hsv, previous)
    return float(np.mean(cv2.mean(diff)[:3]))
