"""Huge images on the lean path, in bounded memory: tiles that agree with each other.

A whole 8000 x 8000 image through the network needs gigabytes of activations (12 GB measured
for the fast model). Here it goes through in tiles instead, and the tiles agree because:

- every instance norm uses one set of statistics for the whole image, measured on a thumbnail
  (thumbnail instance normalisation: Chen et al., "Towards Ultra-Resolution Neural Style Transfer
  via Thumbnail Instance Normalization", AAAI 2022), through a graph whose norms take their scale
  and shift as inputs (model/templates.py);
- each tile is computed with `MARGIN` pixels of real context on every side, more than the
  network's receptive field reaches (about 62 pixels for the quality model), and tiles start on
  multiples of 4, so the stride-2 layers sample the same grid as the whole image would. Given the
  same statistics, a tiled result equals the untiled one up to float rounding; no join can show.
"""

from __future__ import annotations

import numpy as np

from ..model.spec import INPUT, OUTPUT
from .lean import pad_to_multiple, to_batch

TILE = 512  # output pixels per tile side
MARGIN = 64  # context on each side; a multiple of 4, above the receptive field
# The long side of the image the norm statistics are measured on. A thumbnail loses fine detail, so
# the first layers' variances come out lower (19% at 512 px for a 1676 x 1204 photo); measured
# against the untiled result there: 20 dB at 512, 26 dB at 1024, for about 0.5 s more.
THUMBNAIL_SIDE = 1024
TILE_ABOVE_PIXELS = 2048 * 2048  # images larger than this are tiled


class TiledStylizer:
    """One image at a time, tile by tile, with norm statistics from a thumbnail."""

    def __init__(self, base_id: str, state: dict[str, np.ndarray], session_factory):
        from ..model.templates import fixed_norm_graph, norm_parameters, norm_stats_graph

        stats_graph, self._stat_names = norm_stats_graph(base_id)
        tile_graph, _, used = fixed_norm_graph(base_id)
        self._norms = norm_parameters(base_id, state)
        self._stats = session_factory(stats_graph, state)
        self._tiles = session_factory(tile_graph, {name: state[name] for name in used})

    def statistics(self, image: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """(mean, variance) of each norm's input, (1, C, 1, 1) each, measured on `image` as given."""
        batch = np.ascontiguousarray(pad_to_multiple(to_batch([image])))
        values = self._stats.run(self._stat_names, {INPUT: batch})
        return [(mean, np.maximum(meansq - mean * mean, 0.0)) for mean, meansq in zip(values[::2], values[1::2])]

    def thumbnail_statistics(self, image: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        import cv2

        height, width = image.shape[:2]
        scale = THUMBNAIL_SIDE / max(height, width)
        if scale >= 1.0:
            return self.statistics(image)
        size = (max(16, round(width * scale)), max(16, round(height * scale)))
        return self.statistics(cv2.resize(image, size, interpolation=cv2.INTER_AREA))

    def __call__(self, image: np.ndarray, stats: list[tuple[np.ndarray, np.ndarray]] | None = None,
                 tile: int | None = None, as_float: bool = False) -> np.ndarray:
        """Stylize one H x W x 3 image (uint8 or uint16) tile by tile; `stats` default to the thumbnail's.

        `as_float`: H x W x 3 float32 in 0..1 instead of the input's depth (for a smoother to work on).
        """
        stats = stats or self.thumbnail_statistics(image)
        tile = tile or TILE
        feeds = {}
        for index, ((weight, bias, eps), (mean, var)) in enumerate(zip(self._norms, stats)):
            scale = weight.reshape(1, -1, 1, 1) / np.sqrt(var + eps)
            feeds[f"norm{index}_scale"] = scale.astype(np.float32)
            feeds[f"norm{index}_shift"] = (bias.reshape(1, -1, 1, 1) - mean * scale).astype(np.float32)
        height, width = image.shape[:2]
        top = float(np.iinfo(image.dtype).max)
        out = np.empty(image.shape, np.float32) if as_float else np.empty_like(image)
        for y0 in range(0, height, tile):
            for x0 in range(0, width, tile):
                y1, x1 = min(y0 + tile, height), min(x0 + tile, width)
                cy0, cx0 = max(0, y0 - MARGIN), max(0, x0 - MARGIN)
                cy1, cx1 = min(height, y1 + MARGIN), min(width, x1 + MARGIN)
                batch = np.ascontiguousarray(pad_to_multiple(to_batch([image[cy0:cy1, cx0:cx1]])))
                styled = self._tiles.run([OUTPUT], {INPUT: batch, **feeds})[0][0]
                block = styled[:, y0 - cy0:y1 - cy0, x0 - cx0:x1 - cx0].transpose(1, 2, 0)
                out[y0:y1, x0:x1] = block if as_float else (np.clip(block, 0.0, 1.0) * top + 0.5).astype(image.dtype)
        return out

