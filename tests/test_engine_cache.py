"""The engine cache: keys, reuse without re-exporting, and rebuilding corrupt files (ONNX Runtime on CPU)."""

from __future__ import annotations

import copy
import logging

import pytest
import torch

from rtstyle.backends import onnxrt
from rtstyle.backends.base import create_engine
from rtstyle.backends.cache import load_or_build, read_cached
from rtstyle.backends.onnx_export import graph_key
from rtstyle.config import EngineConfig
from rtstyle.model.loader import fuse, load_base
from rtstyle.model.styles import StyleChoice

pytest.importorskip("onnxruntime")
CPU_ONNX = EngineConfig(backend="onnx", device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def base():
    return load_base("fast")


def fused(base, strength: float = 1.0, style: str = "mosaic"):
    return fuse(base, StyleChoice({style: 1.0}, strength=strength).resolve(base.base_id))


@pytest.fixture
def frame():
    return torch.rand(2, 3, 40, 56, generator=torch.Generator().manual_seed(1))


def test_graph_key_follows_weights_and_precision_only(base):
    net = fused(base)
    assert graph_key(net, torch.float32) == graph_key(copy.deepcopy(net), torch.float32)
    others = {graph_key(fused(base, strength=0.9), torch.float32),
              graph_key(fused(base, style="woodcut"), torch.float32),
              graph_key(net, torch.float16), graph_key(net, torch.float32)}
    assert len(others) == 4


def test_cached_graph_is_reused_without_exporting(base, frame, engine_cache, monkeypatch):
    net = fused(base)
    first = create_engine(net, CPU_ONNX)
    assert first.path.parent == engine_cache and first.path.exists()

    def no_export(*args):
        raise AssertionError("exported again although the graph was cached")

    monkeypatch.setattr(onnxrt, "export_onnx", no_export)
    second = create_engine(copy.deepcopy(net), CPU_ONNX)
    assert second.path == first.path
    assert torch.equal(second(frame), first(frame))


@pytest.mark.parametrize("damage", ["flip a byte", "truncate", "empty"])
def test_corrupt_cached_graph_is_rebuilt_with_a_warning(base, frame, damage, caplog):
    net = fused(base, strength=0.8)
    path = create_engine(net, CPU_ONNX).path
    data = bytearray(path.read_bytes())
    if damage == "flip a byte":
        data[len(data) // 2] ^= 0x01  # inside the weights: ONNX Runtime alone would load it and run wrong
        path.write_bytes(bytes(data))
    else:
        path.write_bytes(bytes(data[: len(data) // 2] if damage == "truncate" else b""))
    with caplog.at_level(logging.WARNING, logger="rtstyle.backends.cache"):
        engine = create_engine(net, CPU_ONNX)
    assert "unusable" in caplog.text and "rebuilding" in caplog.text
    read_cached(path)  # the rebuilt file passes its checksum
    with torch.no_grad():
        expected = net(frame)
    assert (engine(frame) - expected).abs().max().item() <= 1e-3


def test_load_or_build_reports_a_build_that_cannot_load(tmp_path):
    def refuse(data: bytes):
        raise RuntimeError("cannot load")

    with pytest.raises(RuntimeError, match="cannot load"):
        load_or_build(tmp_path / "x.bin", refuse, lambda: b"payload", "test artefact")
    assert not (tmp_path / "x.bin").exists()
    assert load_or_build(tmp_path / "x.bin", bytes.upper, lambda: b"payload", "test artefact") == b"PAYLOAD"
    assert load_or_build(tmp_path / "x.bin", bytes.upper, lambda: b"other", "test artefact") == b"PAYLOAD"


def test_cache_is_pruned_least_recently_used_first(tmp_path, monkeypatch):
    import os

    for age, name in enumerate(["old.bin", "middle.bin", "new.bin"]):
        load_or_build(tmp_path / name, bytes, lambda: b"x" * 1000, "test artefact")
        os.utime(tmp_path / name, (1000 + age, 1000 + age))
    load_or_build(tmp_path / "old.bin", bytes, lambda: b"unused", "test artefact")  # a cache hit counts as use
    monkeypatch.setenv("RTSTYLE_ENGINE_CACHE_MB", str(2500 / 2**20))  # room for two of the 1032-byte files
    load_or_build(tmp_path / "fresh.bin", bytes, lambda: b"y" * 1000, "test artefact")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh.bin", "old.bin"]


def test_a_malformed_cache_limit_is_an_error_not_a_silent_fallback(base, tmp_path, monkeypatch):
    from rtstyle.errors import InputError

    monkeypatch.setenv("RTSTYLE_ENGINE_DIR", str(tmp_path))
    monkeypatch.setenv("RTSTYLE_ENGINE_CACHE_MB", "two gigs")
    with pytest.raises(InputError, match="RTSTYLE_ENGINE_CACHE_MB"):
        create_engine(fused(base, strength=0.7), EngineConfig(backend="auto", device="cpu"))
