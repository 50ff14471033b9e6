"""The virtual camera, faked at pyvirtualcam's boundary (frames, size, rate, order), and for real where a
v4l2loopback device exists."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest

from rtstyle.cli.main import main


class FakeCamera:
    opened: list[FakeCamera] = []
    fail_with: str | None = None

    def __init__(self, width, height, fps, fmt=None, device=None):
        if FakeCamera.fail_with is not None:
            raise RuntimeError(FakeCamera.fail_with)
        self.width, self.height, self.fps, self.fmt, self.device = width, height, fps, fmt, device or "/dev/video9"
        self.frames: list[np.ndarray] = []
        self.closed = False
        FakeCamera.opened.append(self)

    def send(self, frame):
        assert frame.shape == (self.height, self.width, 3) and frame.dtype == np.uint8 and frame.flags.c_contiguous
        self.frames.append(frame.copy())

    def close(self):
        self.closed = True


@pytest.fixture
def fake_pyvirtualcam(monkeypatch):
    module = types.SimpleNamespace(Camera=FakeCamera, PixelFormat=types.SimpleNamespace(RGB="RGB"))
    monkeypatch.setitem(sys.modules, "pyvirtualcam", module)
    FakeCamera.opened, FakeCamera.fail_with = [], None
    return FakeCamera


def webcam(*extra) -> int:
    return main(["webcam", "--synthetic", "--size", "160x96", "--fps", "15", "--no-preview", "--duration", "1.5",
                 "--model", "fast", "--virtual-cam", *extra])


def test_stylized_frames_reach_the_virtual_camera_in_order(fake_pyvirtualcam, capsys):
    assert webcam() == 0
    (camera,) = fake_pyvirtualcam.opened
    assert (camera.width, camera.height, camera.fps, camera.fmt) == (160, 96, 15, "RGB") and camera.closed
    assert 10 <= len(camera.frames) <= 25  # about 1.5 s at 15 fps
    assert any(np.abs(a.astype(int) - b).mean() > 0.5 for a, b in zip(camera.frames, camera.frames[1:]))  # moving
    assert "virtual camera: /dev/video9" in capsys.readouterr().err


def test_the_mirror_option_flips_what_call_apps_receive(fake_pyvirtualcam, tmp_path):
    assert webcam("--virtual-cam-mirror", "--record", str(tmp_path / "rec.mp4")) == 0
    import av

    with av.open(str(tmp_path / "rec.mp4")) as recording:
        recorded = next(recording.decode(video=0)).to_ndarray(format="rgb24").astype(int)
    sent = fake_pyvirtualcam.opened[0].frames[0].astype(int)
    assert np.abs(sent[:, ::-1] - recorded).mean() < np.abs(sent - recorded).mean()  # mirrored against the file


def test_no_virtual_camera_device_is_one_line_with_the_fix(fake_pyvirtualcam, capsys):
    fake_pyvirtualcam.fail_with = "'v4l2loopback' backend: No v4l2 loopback device found at /dev/video[0-99]."
    assert webcam() == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no virtual camera" in err[0]
    if sys.platform.startswith("linux"):
        assert "sudo modprobe v4l2loopback exclusive_caps=1" in err[0]


def test_without_pyvirtualcam_says_how_to_get_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "pyvirtualcam", None)
    assert webcam() == 2
    assert "pip install 'rtstyle[live]'" in capsys.readouterr().err


def test_a_real_v4l2loopback_device():
    loopbacks = [p for p in Path("/sys/devices/virtual/video4linux").glob("video*")] if Path(
        "/sys/devices/virtual/video4linux").is_dir() else []
    if not loopbacks or pytest.importorskip("pyvirtualcam") is None:
        pytest.skip("no v4l2loopback device here")
    assert webcam() == 0
