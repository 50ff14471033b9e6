"""Train a style adapter on a frozen base network.

Only adapter tensors train (LoRA factors on the target convs and, optionally, instance-norm
scale/shift deltas); the base weights stay bit-identical. Two modes:

* ``perceptual``: content + Gram style + TV (+ contrastive) losses on a frozen VGG.
* ``distill``: targets from the Ghiasi et al. arbitrary-style teacher, with the style vector
  the mean embedding of the style folder. Works offline.

Either mode can add the face term (`face_weight`): faces found in the crops keep their shape
(losses.face_structure_loss), so the adapter learns to leave them recognisable by itself.

AdamW, cosine schedule with linear warm-up, gradient clipping, mixed precision on CUDA,
checkpoints with `resume`, sample grids, and a JSON summary beside the adapter. Under torchrun
each process trains on its own data stream and DDP averages the adapter gradients.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..backends.base import resolve_device
from ..errors import InputError
from ..io.files import check_writable
from ..model.loader import TRAINING, add_trainable_adapter, load_base, trained_adapter
from .config import TrainConfig
from .data import ImageSet, RandomCrops, crop_short_side, load_folder, outlier_report, to_tensor
from .losses import (
    FeatureNet,
    PerceptualLoss,
    face_structure_loss,
    gram,
    load_vgg,
    synthetic_motion,
    temporal_loss,
)

log = logging.getLogger(__name__)

ADAPTER = TRAINING  # the trainable adapter's name, as checkpoints know it
POOL_CHUNK = 64


@dataclass
class TrainResult:
    adapter: Path
    steps: int
    seconds: float
    images_per_second: float
    losses: list[float]
    summary: Path


Progress = Callable[[int, int, dict[str, float], float], None]  # step, total, loss terms, images/s


def default_targets(net: nn.Module) -> list[str]:
    """Every conv. seeds/000 adapts only mid and deep convs of a large network; our networks are
    small, and with only the residual convs adapted a fast-model adapter plateaued ~2 dB lower
    against its teacher (benchmarks/train_eval.py)."""
    return [name for name, module in net.named_modules() if isinstance(module, nn.Conv2d)]


def attach_trainable(net: nn.Module, config: TrainConfig) -> list[nn.Parameter]:
    """The trainable adapter `config` asks for, on `net` (see loader.add_trainable_adapter)."""
    return add_trainable_adapter(net, list(config.conv_targets or default_targets(net)), config.rank, config.alpha,
                                 config.norm_adapters)


def cosine_with_warmup(warmup: int, total: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return factor


class Distiller:
    """Teacher targets: a pool of (content crop, teacher output) pairs made once, deterministic
    from the seed (so a resumed run sees the same pool), sampled with random flips."""

    def __init__(self, styles: ImageSet, contents: ImageSet, config: TrainConfig, seed: int):
        from .teachers import ArbitraryStyleTeacher

        self.teacher = ArbitraryStyleTeacher()
        style_tensors = [to_tensor(image) for image in styles.images]
        self.style_embeddings = torch.cat([self.teacher.embed(s[None]) for s in style_tensors])
        self.style_vector = self.style_embeddings.mean(0)
        crops = RandomCrops(contents.images, config.size, seed=seed)
        started = time.perf_counter()
        # Made in chunks and held as 8-bit, like the frames the adapter will see: a 2048 pool at
        # 256 px is 0.8 GB instead of 3.2 GB of float, with no float copy of it all on the way.
        inputs, targets = [], []
        for start in range(0, config.pool, POOL_CHUNK):
            chunk = _to_uint8(crops.batch(min(POOL_CHUNK, config.pool - start)))
            inputs.append(chunk)
            targets.append(_to_uint8(self.teacher.stylize(_to_float(chunk), self.style_vector)))
        self.inputs, self.targets = torch.cat(inputs), torch.cat(targets)
        log.info("distill pool: %d teacher targets in %.1f s", config.pool, time.perf_counter() - started)
        self.generator = torch.Generator().manual_seed(seed + 1)

    def batch(self, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.randint(len(self.inputs), (count,), generator=self.generator)
        flip = torch.rand(count, generator=self.generator) < 0.5
        inputs, targets = _to_float(self.inputs[index]), _to_float(self.targets[index])
        inputs[flip], targets[flip] = inputs[flip].flip(-1), targets[flip].flip(-1)
        return inputs, targets


def _face_masks(images: torch.Tensor) -> torch.Tensor:
    """The faces in a batch of crops (found on the CPU by the face stage's detectors), as masks."""
    from ..pipeline.faces import face_masks

    pictures = _to_uint8(images.detach().cpu()).permute(0, 2, 3, 1).contiguous().numpy()
    return torch.from_numpy(face_masks(pictures))


def _to_uint8(images: torch.Tensor) -> torch.Tensor:
    return images.clamp(0, 1).mul(255).round().to(torch.uint8)


def _to_float(images: torch.Tensor) -> torch.Tensor:
    return images.float().div(255)


def _distributed() -> tuple[int, int]:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    if torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def train(config: TrainConfig, progress: Progress | None = None, loss_network: FeatureNet | None = None
          ) -> TrainResult:
    """Train and save the adapter. `loss_network` replaces the ImageNet VGG (tests pass a tiny one)."""
    rank, world = _distributed()
    device = resolve_device(config.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
        torch.cuda.set_device(device)
    check_writable(config.out)
    torch.manual_seed(config.seed + rank)
    styles = load_folder(config.style_dir, min_count=config.min_style_images, what="style images")
    contents = load_folder(config.content_dir, min_count=config.min_content_images, what="content images",
                           short_side=crop_short_side(config.size))
    base = load_base(config.model)
    net = base.build()
    base_state = {k: v.clone() for k, v in net.state_dict().items()}
    params = attach_trainable(net, config)
    net.to(device).train()

    loss_fn, distiller, crops = _objective(config, styles, contents, device, rank, loss_network)
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_with_warmup(config.warmup, config.steps))
    checkpoint = config.out.with_suffix(".ckpt.pt")
    step, history = 0, []
    if config.resume:
        step, history = _load_checkpoint(checkpoint, net, optimizer, schedule, distiller, crops, rank, world,
                                         config.seed)
    model = nn.parallel.DistributedDataParallel(net) if world > 1 else net
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda")
    samples = RandomCrops(contents.images[:1], config.size, augment=False, seed=config.seed).batch(1)
    # The synthetic motion draws from the data's generator, which checkpoints save and resume.
    motion = distiller.generator if distiller is not None else crops.generator
    started, done_images = time.perf_counter(), 0
    last = config.steps if config.stop_after is None else min(config.steps, step + config.stop_after)
    while step < last:
        if distiller is not None:
            inputs, targets = distiller.batch(config.batch)
        else:
            inputs, targets = crops.batch(config.batch), None
        inputs = inputs.to(device)
        with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
            output = model(inputs)
        terms = loss_fn(output.float(), inputs, None if targets is None else targets.to(device))
        if config.temporal_weight > 0:
            terms = _with_temporal(terms, model, inputs, output, config.temporal_weight, motion, device)
        if config.face_weight > 0:
            terms["face"] = face_structure_loss(output.float(), inputs, _face_masks(inputs).to(device))
            terms["total"] = terms["total"] + config.face_weight * terms["face"]
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(terms["total"]).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, config.clip)
        scaler.step(optimizer)
        scaler.update()
        schedule.step()
        step += 1
        done_images += config.batch * world
        values = {k: float(v.detach()) for k, v in terms.items()}
        history.append(values["total"])
        rate = done_images / (time.perf_counter() - started)
        if progress is not None and rank == 0:
            progress(step, config.steps, values, rate)
        if step % config.checkpoint_every == 0 or step == last:  # every rank: each hands in its random state
            rng = _gathered_rng_states(world, distiller, crops)
            if rank == 0:
                _save_checkpoint(checkpoint, step, history, net, optimizer, schedule, rng, config)
        if rank == 0 and config.sample_every and (step % config.sample_every == 0 or step == config.steps):
            _save_samples(net, samples, device, config.out.with_suffix(".samples") / f"step_{step:06d}.png")
    seconds = time.perf_counter() - started
    if world > 1:
        torch.distributed.barrier()
    _check_base_untouched(net, base_state)
    summary = config.out.with_suffix(".json")
    if rank == 0:
        training = _training_metadata(config, styles, contents, step, world, distiller)
        trained_adapter(net, base, config.name or config.out.stem, config.alpha, training).save(config.out)
        summary.write_text(json.dumps({"adapter": str(config.out), "seconds": round(seconds, 1),
                                       "images_per_second": round(done_images / max(seconds, 1e-9), 2),
                                       "first_loss": history[0] if history else None,
                                       "final_loss": history[-1] if history else None, **training}, indent=2))
    return TrainResult(config.out, step, seconds, done_images / max(seconds, 1e-9), history, summary)


def _with_temporal(terms: dict[str, torch.Tensor], model: nn.Module, inputs: torch.Tensor, output: torch.Tensor,
                   weight: float, motion: torch.Generator, device: torch.device) -> dict[str, torch.Tensor]:
    """Add the temporal term: the batch moved by a known motion, stylized, against the output warped."""
    moved, grid, valid = synthetic_motion(inputs, generator=motion)
    with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
        second = model(moved)
    terms["temporal"] = temporal_loss(output, second.float(), grid, valid)
    terms["total"] = terms["total"] + weight * terms["temporal"]
    return terms


def _objective(config: TrainConfig, styles: ImageSet, contents: ImageSet, device: torch.device, rank: int,
               loss_network: FeatureNet | None):
    """The loss function, and the data source (teacher pool or random crops)."""
    vgg = loss_network
    if vgg is None and (config.mode == "perceptual" or config.feature_weight > 0):
        vgg = load_vgg(config.vgg, config.vgg_weights)
    if vgg is not None:
        vgg = vgg.to(device)
    if config.mode == "distill":
        distiller = Distiller(styles, contents, config, config.seed + 1000 * rank)

        def distill_loss(output, inputs, targets):
            error = output - targets
            terms = {"pixel": error.abs().mean() if config.pixel_loss == "l1" else error.square().mean()}
            if vgg is not None:
                out_f, tgt_f = vgg(output), vgg(targets)
                terms["feature"] = sum(F.mse_loss(out_f[k], tgt_f[k]) for k in out_f)
            terms["total"] = config.pixel_weight * terms["pixel"] + config.feature_weight * terms.get("feature", 0.0)
            return terms

        return distill_loss, distiller, None
    style_tensors = torch.stack([F.interpolate(to_tensor(s)[None], size=(config.size, config.size), mode="bilinear",
                                               antialias=True, align_corners=False)[0] for s in styles.images])
    perceptual = PerceptualLoss(vgg, style_tensors.to(device), config.perceptual)
    crops = RandomCrops(contents.images, config.size, seed=config.seed + 1000 * rank)
    return (lambda output, inputs, targets: perceptual(output, inputs)), None, crops


def _rng_state(distiller: Distiller | None, crops: RandomCrops | None) -> dict:
    """This process's random state: torch's, and its data stream's (which crops, flips and targets it draws)."""
    generator = distiller.generator if distiller else crops.generator
    return {"torch_rng": torch.get_rng_state(), "data_rng": generator.get_state()}


def _gathered_rng_states(world: int, distiller: Distiller | None, crops: RandomCrops | None) -> list[dict]:
    """Every rank's random state, in rank order (a collective call: every rank makes it)."""
    mine = _rng_state(distiller, crops)
    if world == 1:
        return [mine]
    states: list = [None] * world
    torch.distributed.all_gather_object(states, mine)
    return states


def _save_checkpoint(path: Path, step: int, history: list[float], net: nn.Module, optimizer, schedule,
                     rng: list[dict], config: TrainConfig) -> None:
    adapter_state = {k: v for k, v in net.state_dict().items() if ADAPTER in k.split(".")}
    state = {"step": step, "history": history, "adapter": adapter_state, "optimizer": optimizer.state_dict(),
             "schedule": schedule.state_dict(), **rng[0], "rank_rng": rng,
             "config": {k: str(v) for k, v in asdict(config).items()}}
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def _load_checkpoint(path: Path, net: nn.Module, optimizer, schedule, distiller, crops, rank: int = 0,
                     world: int = 1, seed: int = 0) -> tuple[int, list[float]]:
    if not path.is_file():
        raise InputError(f"nothing to resume: {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        missing = set(state["adapter"]) - set(net.state_dict())
        if missing:
            raise KeyError(sorted(missing)[0])
        net.load_state_dict(state["adapter"], strict=False)
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
    except (KeyError, RuntimeError, ValueError) as exc:
        raise InputError(f"{path} does not match this training setup ({exc.__class__.__name__}: {exc})") from exc
    generator = distiller.generator if distiller else crops.generator
    ranks = state.get("rank_rng") or [{"torch_rng": state["torch_rng"], "data_rng": state["data_rng"]}]
    if len(ranks) == world or world == 1:
        torch.set_rng_state(ranks[rank]["torch_rng"])  # each rank its own: rank 0's would give all the same crops
        generator.set_state(ranks[rank]["data_rng"])
    else:  # saved by another number of processes: a stream of its own for each rank, from the seed and step
        if rank == 0:
            log.warning("%s was saved by %d training processes, resumed by %d: each starts a fresh random stream",
                        path.name, len(ranks), world)
        torch.manual_seed(seed + rank + 7919 * state["step"])
        generator.manual_seed(seed + 1000 * rank + 7919 * state["step"])
    log.info("resumed from step %d", state["step"])
    return state["step"], list(state["history"])


@torch.no_grad()
def _save_samples(net: nn.Module, samples: torch.Tensor, device: torch.device, path: Path) -> None:
    from PIL import Image

    was_training = net.training
    net.eval()
    out = net(samples.to(device)).float().cpu()
    net.train(was_training)
    grid = torch.cat([samples, out], dim=-1)[0].permute(1, 2, 0).clamp(0, 1).mul(255).round().byte().numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(path)


def _check_base_untouched(net: nn.Module, base_state: dict[str, torch.Tensor]) -> None:
    """Wrapping moves base tensors to `<layer>.base.<param>`; every one must be bit-identical."""
    current = {k.replace(".base.", "."): v for k, v in net.state_dict().items() if ADAPTER not in k.split(".")}
    for key, value in base_state.items():
        if not torch.equal(current[key].cpu(), value):
            raise RuntimeError(f"base weight {key} changed during training")


def _training_metadata(config: TrainConfig, styles: ImageSet, contents: ImageSet, steps: int, world: int,
                       distiller: Distiller | None) -> dict:
    meta = {"mode": config.mode, "model": config.model, "steps": steps, "batch": config.batch, "size": config.size,
            "lr": config.lr, "rank": config.rank, "alpha": config.alpha, "processes": world,
            "style_images": len(styles.images), "style_skipped": len(styles.skipped),
            "content_images": len(contents.images), "content_skipped": len(contents.skipped),
            "style_dir": str(config.style_dir), "content_dir": str(config.content_dir),
            "face_weight": config.face_weight}
    if config.mode == "perceptual":
        meta["loss_weights"] = {**asdict(config.perceptual), "temporal": config.temporal_weight}
    else:
        meta["loss_weights"] = {"pixel": config.pixel_weight, "feature": config.feature_weight,
                                "temporal": config.temporal_weight}
        meta["pixel_loss"] = config.pixel_loss
        meta["style_vector"] = [round(float(v), 5) for v in distiller.style_vector]
    return meta


def style_report(style_dir: Path, config: TrainConfig) -> list[dict]:
    """Flag style images that do not fit the set (Gram features of a VGG, or teacher embeddings)."""
    styles = load_folder(style_dir, min_count=2, what="style images")
    if config.mode == "distill":
        from .teachers import ArbitraryStyleTeacher

        teacher = ArbitraryStyleTeacher()
        features = torch.cat([teacher.embed(to_tensor(s)[None]) for s in styles.images])
    else:
        vgg = load_vgg(config.vgg, config.vgg_weights)
        with torch.no_grad():
            features = torch.stack([torch.cat([gram(f).flatten() for f in vgg(
                F.interpolate(to_tensor(s)[None], size=(256, 256), mode="bilinear", antialias=True,
                              align_corners=False)).values()]) for s in styles.images])
    return outlier_report(features, styles.names)
