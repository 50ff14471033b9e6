"""`rtstyle cameras` and `--camera NAME` (the V4L2 queries themselves need a device, which CI has not)."""

from __future__ import annotations

import json
import struct

import pytest

from rtstyle.cli.main import main
from rtstyle.errors import InputError
from rtstyle.io.cameras import CAP_DEVICE_CAPS, CAP_VIDEO_CAPTURE, Camera, parse_capability, resolve_camera


def capability(card: bytes, capabilities: int, device_caps: int) -> bytes:
    return struct.pack("16s32s32sIII3I", b"uvcvideo", card, b"usb-0000:00:14.0-1", 0x60000, capabilities,
                       device_caps, 0, 0, 0)


def test_capability_struct_is_read_as_the_kernel_lays_it_out():
    assert struct.calcsize("16s32s32sIII3I") == 104
    raw = capability(b"Integrated Webcam", CAP_DEVICE_CAPS | CAP_VIDEO_CAPTURE, CAP_VIDEO_CAPTURE)
    assert parse_capability(raw) == ("Integrated Webcam", True)
    metadata_node = capability(b"Integrated Webcam", CAP_DEVICE_CAPS | CAP_VIDEO_CAPTURE, 0x00800000)
    assert parse_capability(metadata_node) == ("Integrated Webcam", False)  # device caps win when present


def test_a_camera_is_found_by_name_index_or_path():
    cams = [Camera(0, "Integrated Webcam", "/dev/video0"), Camera(2, "OBS Virtual Camera", "/dev/video2")]
    assert resolve_camera("2") == 2
    assert resolve_camera("/dev/video4") == "/dev/video4"
    assert resolve_camera("OBS Virtual Camera", cams) == 2
    assert resolve_camera("integrated", cams) == 0  # a unique part, any case
    with pytest.raises(InputError, match="no camera named 'Logitech'.*0: Integrated Webcam"):
        resolve_camera("Logitech", cams)
    with pytest.raises(InputError, match="more than one camera"):
        resolve_camera("cam", cams)


def test_cameras_command_on_a_machine_without_any(capsys, tmp_path, monkeypatch):
    import rtstyle.io.cameras as module

    monkeypatch.setattr(module, "list_cameras", lambda devices=tmp_path: module._v4l2_cameras(tmp_path))
    assert main(["cameras"]) == 0
    assert "no cameras found" in capsys.readouterr().out
    assert main(["cameras", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
