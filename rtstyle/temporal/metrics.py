"""Warping error (Lai et al. 2018): how much an output video changes where its input did not."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .flow import FlowEstimator, valid_mask, warp


def warping_error(inputs: Sequence[np.ndarray], outputs: Sequence[np.ndarray], flow_max_side: int | None = None
                  ) -> float:
    """Mean over consecutive pairs of sum(M * ||O_t - warp(O_{t-1})||^2) / sum(M).

    Flow comes from the *inputs* (DIS, medium preset), so the metric does not reward an output
    for agreeing with itself; M masks occlusions and motion boundaries. Frames are H x W x 3
    uint8; outputs are compared in 0..1.
    """
    if len(inputs) != len(outputs) or len(inputs) < 2:
        raise ValueError("need two or more input frames and as many outputs")
    flow = FlowEstimator("medium", flow_max_side)
    errors = []
    for t in range(1, len(inputs)):
        backward = flow(inputs[t], inputs[t - 1])
        forward = flow(inputs[t - 1], inputs[t])
        mask = valid_mask(backward, forward)
        current = outputs[t].astype(np.float32) / 255.0
        moved = warp(outputs[t - 1].astype(np.float32) / 255.0, backward)
        squared = np.sum((current - moved) ** 2, axis=-1)
        errors.append(float(np.sum(mask * squared) / max(np.sum(mask), 1.0)))
    return float(np.mean(errors))


def pair_flows(inputs: Sequence[np.ndarray], method: str = "farneback") -> list[tuple[np.ndarray, np.ndarray]]:
    """(backward flow, valid mask) for each consecutive pair of `inputs`, for `warping_error_from`.

    `method`: "farneback" (OpenCV's polynomial-expansion flow, an estimator independent of the
    smoothers' DIS) or "dis" (DIS, medium preset, as `warping_error` uses). Computed once per
    clip, the flows serve every output made from it.
    """
    import cv2

    from .flow import to_gray

    if method == "dis":
        estimate = FlowEstimator("medium")
    elif method == "farneback":
        def estimate(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            return cv2.calcOpticalFlowFarneback(to_gray(a), to_gray(b), None, 0.5, 4, 15, 3, 5, 1.2, 0)
    else:
        raise ValueError(f"unknown flow method {method!r}")
    pairs = []
    for t in range(1, len(inputs)):
        backward = estimate(inputs[t], inputs[t - 1])
        forward = estimate(inputs[t - 1], inputs[t])
        pairs.append((backward, valid_mask(backward, forward)))
    return pairs


def warping_error_from(pairs: Sequence[tuple[np.ndarray, np.ndarray]], outputs: Sequence[np.ndarray]) -> float:
    """`warping_error` with the input flows and masks given (`pair_flows`)."""
    if len(outputs) != len(pairs) + 1:
        raise ValueError("need one output more than flow pairs")
    errors = []
    for t, (backward, mask) in enumerate(pairs, start=1):
        current = outputs[t].astype(np.float32) / 255.0
        moved = warp(outputs[t - 1].astype(np.float32) / 255.0, backward)
        squared = np.sum((current - moved) ** 2, axis=-1)
        errors.append(float(np.sum(mask * squared) / max(np.sum(mask), 1.0)))
    return float(np.mean(errors))
