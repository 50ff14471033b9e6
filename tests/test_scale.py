"""Stylizing at a fraction of the frame's size (--scale): sizes, pixels, the CLI, serve's options, the hint."""

from __future__ import annotations

import time

import numpy as np
import pytest

from rtstyle.api import load_stylizer
from rtstyle.config import EngineConfig
from rtstyle.errors import InputError
from rtstyle.io.sinks import Sink
from rtstyle.io.sources import SyntheticSource
from rtstyle.model.styles import StyleChoice
from rtstyle.pipeline.runner import StreamConfig, run_stream
from rtstyle.pipeline.scale import check_scale, enlarge, scale_to_fit, shrink, working_size


class Keep(Sink):
    def __init__(self):
        self.frames = []

    def write(self, frame, image):
        self.frames.append((frame.image.copy(), image.copy()))

    def close(self):
        pass


class Watched:
    """A stylizer that notes the sizes it is warmed up for and given."""

    def __init__(self, stylizer):
        self.stylizer, self.warmed, self.given = stylizer, [], []

    def warm_up(self, batch, height, width):
        self.warmed.append((width, height))
        self.stylizer.warm_up(batch, height, width)

    def submit(self, images, after=None, layout="rgb24"):
        self.given += [image.shape for image in images]
        return self.stylizer.submit(images, after, layout)


def test_working_size_is_a_multiple_of_four_and_16_at_least():
    assert working_size(640, 480, 1.0) == (640, 480)
    assert working_size(641, 479, 1.0) == (641, 479)  # full size is the frame's own: the engine pads it
    assert working_size(640, 480, 0.5) == (320, 240)
    assert working_size(641, 479, 0.75) == (480, 360)
    assert working_size(1280, 720, 0.6) == (768, 432)
    assert working_size(40, 30, 0.25) == (16, 16)


@pytest.mark.parametrize("bad", [0.0, 0.1, 1.5, -1.0])
def test_scales_outside_a_quarter_to_one_are_refused(bad):
    with pytest.raises(InputError, match="between 0.25 and 1"):
        check_scale(bad)
    with pytest.raises(InputError, match="between 0.25 and 1"):
        StreamConfig(scale=bad)


def test_the_stream_stylizes_small_frames_and_hands_on_full_size_ones():
    stylizer = load_stylizer("fast", StyleChoice({"mosaic": 1.0}), EngineConfig(device="cpu", threads=1))
    watched = Watched(stylizer)
    sink = Keep()
    run_stream(SyntheticSource(160, 120, frames=4, realtime=False), watched, sink, StreamConfig(batch=1, scale=0.5))
    assert watched.warmed == [(80, 60)] and set(watched.given) == {(60, 80, 3)}
    assert len(sink.frames) == 4
    for original, image in sink.frames:
        assert image.shape == original.shape == (120, 160, 3)
        expected = enlarge(stylizer(shrink([original], 0.5)), [original])[0]
        assert np.abs(image.astype(int) - expected).max() <= 1
        full = stylizer([original])[0]  # and it is not the full-size stylization
        assert np.abs(image.astype(int) - full).mean() > 4


def test_webcam_cli_scale(capsys, tmp_path):
    import json

    from rtstyle.cli.main import main

    stats = tmp_path / "stats.json"
    code = main(["webcam", "--synthetic", "--size", "96x64", "--fps", "20", "--no-preview", "--duration", "1.5",
                 "--model", "fast", "--scale", "0.5", "--stats-json", str(stats), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "96x64 @ 20 fps (stylized at 48x32)" in err
    assert json.loads(stats.read_text())["frames"] > 5
    for bad in ("0.1", "big"):
        assert main(["webcam", "--synthetic", "--no-preview", "--duration", "1", "--scale", bad]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and "--scale" in lines[0], lines


def test_the_hint_suggests_a_scale_only_when_frames_are_lost():
    from rtstyle.cli.webcam import scale_hint

    hint = scale_hint(13.5, 30, 1.0)
    assert "--scale 0.55 " in hint  # sqrt(0.7 * 13.5 / 30) = 0.56: 70% of a frame's time
    assert "--scale 0.35 " in scale_hint(10, 30, 0.8)
    assert scale_hint(27, 30, 1.0) is None
    assert scale_hint(5, 30, 0.25) is None  # nothing smaller to offer


def test_serve_takes_a_scale_from_its_config_and_each_viewer():
    pytest.importorskip("aiortc")
    from rtstyle.serve.server import ServeConfig
    from rtstyle.serve.viewer import ViewerOptions

    defaults = ViewerOptions("mosaic", scale=0.75)
    assert ViewerOptions.parse({}, ["mosaic"], defaults).scale == 0.75
    assert ViewerOptions.parse({"scale": 0.5}, ["mosaic"], defaults).scale == 0.5
    assert ViewerOptions.parse({"scale": "auto"}, ["mosaic"], defaults).scale == "auto"
    assert ServeConfig().scale == ViewerOptions("mosaic").scale == "auto"
    for bad in ("x", 3, None):
        with pytest.raises(InputError):
            ViewerOptions.parse({"scale": bad}, ["mosaic"], defaults)
    with pytest.raises(InputError, match="between 0.25 and 1"):
        ServeConfig(scale=0.1)


def test_a_fitted_scale_gives_the_stylizer_its_share_of_a_frame():
    from rtstyle.pipeline.scale import FRAME_SHARE, fitted_scale

    def taking(seconds_at_full_size):
        def stylize(images):  # a stylizer whose time goes with its pixels
            time.sleep(seconds_at_full_size * images[0].size / (480 * 640 * 3))
            return images
        return stylize

    budget = FRAME_SHARE / 30
    assert fitted_scale(taking(budget / 2), 640, 480, 30)[0] == 1.0
    scale, full_ms = fitted_scale(taking(4 * budget), 640, 480, 30)
    assert scale == 0.45 and full_ms >= 4 * budget * 1000  # sqrt(1/4) = 0.5, less the sleep's overshoot: 0.45
    assert scale_to_fit(1.0, 0.36) == 0.6 and scale_to_fit(0.8, 2.0) == 0.8
    assert fitted_scale(taking(1.0), 640, 480, 30)[0] == 0.25  # never below a quarter


def test_webcam_scale_auto_fits_and_says_what_it_chose(capsys, tmp_path):
    import json

    from rtstyle.cli.main import main

    stats = tmp_path / "stats.json"
    code = main(["webcam", "--synthetic", "--size", "96x64", "--fps", "20", "--no-preview", "--duration", "1.5",
                 "--model", "fast", "--scale", "auto", "--stats-json", str(stats), "--device", "cpu"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "the scale fitted to it at the start" in captured.err
    assert "at --scale 1 (auto: stylized at 96x64)" in captured.out  # a tiny frame: full size keeps up
    assert json.loads(stats.read_text())["frames"] > 5


def test_files_take_a_scale_video_photo_and_cli(tmp_path, capsys):
    import av
    from PIL import Image

    from rtstyle.cli.main import main
    from rtstyle.config import ConvertConfig
    from rtstyle.io.synthetic import scene_frame, write_clip
    from rtstyle.jobs.convert import convert_file

    stylizer = load_stylizer("fast", StyleChoice({"mosaic": 1.0}), EngineConfig(device="cpu", threads=1))
    clip = write_clip(tmp_path / "c.mp4", seconds=0.5, width=160, height=96, fps=24)
    result = convert_file(clip, tmp_path / "half.mp4", stylizer, ConvertConfig(scale=0.5))
    with av.open(str(tmp_path / "half.mp4")) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
        assert container.streams.audio  # the rest of the conversion is as ever
    assert result.frames == len(frames) == 12 and frames[0].shape == (96, 160, 3)

    photo = tmp_path / "p.png"
    Image.fromarray(scene_frame(10, 200, 120)).save(photo)
    convert_file(photo, tmp_path / "p_half.png", stylizer, ConvertConfig(scale=0.5))
    half = np.array(Image.open(tmp_path / "p_half.png"))
    picture = np.array(Image.open(photo))
    expected = enlarge(stylizer(shrink([picture], 0.5)), [picture])[0]
    assert half.shape == (120, 200, 3) and np.abs(half.astype(int) - expected).max() <= 1

    assert main(["stylize", str(photo), "-o", str(tmp_path / "cli.png"), "--model", "fast", "--style", "mosaic",
                 "--scale", "0.5", "--device", "cpu", "-q"]) == 0
    assert np.abs(np.array(Image.open(tmp_path / "cli.png")).astype(int) - half).max() <= 1
    assert main(["stylize", str(photo), "-o", str(tmp_path / "x.png"), "--scale", "auto"]) == 2
    assert "a file takes a number" in capsys.readouterr().err
    with pytest.raises(InputError, match="between 0.25 and 1"):
        ConvertConfig(scale=2.0)


def test_live_on_a_cpu_defaults_to_the_fast_model():
    from rtstyle.cli.common import style_options
    from rtstyle.cli.main import build_parser

    def model(*argv):
        return style_options(build_parser().parse_args(list(argv))).model

    assert model("webcam", "--device", "cpu") == model("serve", "--device", "cpu", "--styles", "mosaic") == "fast"
    assert model("webcam", "--device", "cpu", "--blend", "mosaic:0.5,woodcut:0.5") == "fast"
    assert model("webcam", "--device", "cpu", "--model", "quality") == "quality"  # asked for
    assert model("stylize", "a.mp4", "--device", "cpu") == "quality"  # files: every pixel, no hurry
    assert model("webcam", "--device", "cpu", "--styles", "mine.safetensors") == "quality"  # a file names its base
    assert model("webcam", "--device", "cuda") == "quality"
