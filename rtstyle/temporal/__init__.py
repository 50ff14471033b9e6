"""Temporal consistency: smoothers for video output and the warping-error metric."""
