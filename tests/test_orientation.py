"""Display matrices: every one of the eight orientations stands upright, mirrors included."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from rtstyle.io.video import VideoReader

# Where a marker coded at the top-left corner is seen, per (degrees counter-clockwise, mirrored):
# what FFmpeg's own autorotation shows (transpose/hflip/vflip chosen from the same matrix).
SEEN_AT = {(0, False): "top left", (0, True): "top right", (90, False): "bottom left", (90, True): "bottom right",
           (180, False): "bottom right", (180, True): "bottom left", (270, False): "top right",
           (270, True): "top left"}


def clip_with_orientation(path, degrees: int, mirrored: bool):
    image = np.zeros((48, 64, 3), np.uint8)
    image[:8, :16] = 255  # the marker, top-left as coded
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.set_display_rotation(degrees, hflip=mirrored)
        for index in range(3):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = index, Fraction(1, 24)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def corner(image: np.ndarray) -> str:
    ys, xs = np.nonzero(image[..., 0] > 128)
    vertical = "top" if ys.mean() < image.shape[0] / 2 else "bottom"
    return f"{vertical} {'left' if xs.mean() < image.shape[1] / 2 else 'right'}"


@pytest.mark.parametrize("degrees, mirrored", list(SEEN_AT))
def test_each_orientation_is_applied_whole(tmp_path, degrees, mirrored):
    path = clip_with_orientation(tmp_path / "o.mp4", degrees, mirrored)
    with VideoReader(path) as reader:
        image = next(iter(reader)).image
        assert (reader.info.rotation, reader.info.mirrored) == (degrees, mirrored)
    assert image.shape == ((64, 48, 3) if degrees % 180 else (48, 64, 3))
    assert corner(image) == SEEN_AT[(degrees, mirrored)]


def test_a_vertical_flip_is_a_half_turn_and_a_mirror(tmp_path):
    """Written as a vflip; PyAV alone calls it `rotation = 0` and a plain hflip `-180`."""
    path = tmp_path / "v.mp4"
    image = np.zeros((48, 64, 3), np.uint8)
    image[:8, :16] = 255
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.set_display_rotation(0, vflip=True)
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts, frame.time_base = 0, Fraction(1, 24)
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with VideoReader(path) as reader:
        assert corner(next(iter(reader)).image) == "bottom left"


def test_side_data_entries_whichever_way_pyav_iterates_them():
    """PyAV's side data container yielded its entries up to 18.1.0 and yields their types (its keys)
    from 18.1.1 on; the entries come out either way."""
    from types import SimpleNamespace

    from rtstyle.io.video import side_data

    entry = SimpleNamespace(type="DISPLAYMATRIX")

    class KeysContainer(dict):  # 18.1.1: a plain Mapping
        pass

    class EntriesContainer(dict):  # up to 18.1.0: iteration gave the entries themselves
        def __iter__(self):
            return iter(self.values())

    for container in (KeysContainer({"DISPLAYMATRIX": entry}), EntriesContainer({"DISPLAYMATRIX": entry})):
        assert side_data(SimpleNamespace(side_data=container)) == [entry]
