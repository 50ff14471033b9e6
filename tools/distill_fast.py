"""Distil the fast base model and its built-in styles from the quality model.

The fast network is trained as a conditional-instance-norm net (Dumoulin et al. 2017): one set
of conv weights shared by all styles plus one norm scale/shift set per style, including the
neutral set of the quality base. Targets are the quality model's outputs for the same crop and
style (exact teacher weights, see build_styles.py), so the fast styles are as close to the
quality ones as the smaller network allows; benchmarks/styles_vs_teacher.py measures how close.

Afterwards the neutral set becomes the fast base's norm weights and every other set minus the
neutral one becomes that style's adapter, in the same format as the quality styles.

Run: python tools/distill_fast.py --minutes 40   (CPU; resumable from its checkpoint)
"""

from __future__ import annotations

import argparse
import glob
import logging
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from teachers import original_style
from torch import nn

from rtstyle.model.adapters import Adapter
from rtstyle.model.loader import BaseModel, load_base, save_base
from rtstyle.model.network import BUILTIN_SPECS, StyleNet
from rtstyle.model.styles import builtin_styles, styles_dir
from rtstyle.model.weights import builtin_model_path

log = logging.getLogger("distill_fast")
DATA = Path(__file__).parents[1] / "../shared/data"


class ConditionalNorm(nn.Module):
    """Instance norm whose scale and shift are picked per sample from a table of styles."""

    def __init__(self, scale: torch.Tensor, shift: torch.Tensor, eps: float, selector: dict):
        super().__init__()
        self.scale = nn.Parameter(scale.clone())  # (styles, C)
        self.shift = nn.Parameter(shift.clone())
        self.eps = eps
        self.selector = selector

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        index = self.selector["styles"]
        x = F.instance_norm(x, eps=self.eps)
        return x * self.scale[index][:, :, None, None] + self.shift[index][:, :, None, None]


def conditional(net: StyleNet, tables: dict[str, tuple[torch.Tensor, torch.Tensor]], selector: dict) -> StyleNet:
    for name, module in list(net.named_modules()):
        if isinstance(module, nn.InstanceNorm2d):
            parent_name, _, child = name.rpartition(".")
            scale, shift = tables[name]
            setattr(net.get_submodule(parent_name), child, ConditionalNorm(scale, shift, module.eps, selector))
    return net


def teacher_tables(base: BaseModel, styles: list[Adapter]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Row 0: the neutral base; row i: style i-1 (base + its deltas)."""
    tables = {}
    for key in base.state:
        if key.endswith(".norm.weight"):
            layer = key.removesuffix(".weight")
            scale0, shift0 = base.state[f"{layer}.weight"], base.state[f"{layer}.bias"]
            scales = [scale0] + [scale0 + torch.from_numpy(s.norm[layer][0]) for s in styles]
            shifts = [shift0] + [shift0 + torch.from_numpy(s.norm[layer][1]) for s in styles]
            tables[layer] = (torch.stack(scales), torch.stack(shifts))
    return tables


def load_images(size: int) -> list[torch.Tensor]:
    from PIL import Image

    paths = sorted(glob.glob(str(DATA / "content/*"))) + sorted(glob.glob(str(DATA / "frames/*/*.png")))
    images = []
    for path in paths:
        image = Image.open(path).convert("RGB")
        scale = size * 1.5 / min(image.size)
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS)
        images.append(torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1))
    return images


def sample(images: list[torch.Tensor], batch: int, crop: int, gen: torch.Generator) -> torch.Tensor:
    crops = []
    for index in torch.randint(0, len(images), (batch,), generator=gen).tolist():
        image = images[index]
        top = torch.randint(0, image.shape[1] - crop + 1, (1,), generator=gen).item()
        left = torch.randint(0, image.shape[2] - crop + 1, (1,), generator=gen).item()
        patch = image[:, top:top + crop, left:left + crop]
        if torch.rand(1, generator=gen).item() < 0.5:
            patch = patch.flip(-1)
        crops.append(patch)
    return torch.stack(crops)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=40)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--checkpoint", type=Path, default=Path("/tmp/rtstyle_distill_fast.pt"))
    parser.add_argument("--export-only", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)

    base = load_base("quality")
    # The styles as converted: the steadied ones (tools/steady_styles.py) carry LoRA updates, which the
    # conditional norm tables cannot hold, so their teacher is the original kept in tools/originals.
    names = builtin_styles("quality")
    styles = [original_style(name) for name in names]
    tables = teacher_tables(base, styles)
    selector: dict = {"styles": torch.zeros(1, dtype=torch.long)}
    teacher = conditional(base.build(), tables, selector).requires_grad_(False)
    student = StyleNet(BUILTIN_SPECS["fast"])
    rows = len(names) + 1
    student = conditional(student, {name: (torch.ones(rows, m.num_features), torch.zeros(rows, m.num_features))
                                    for name, m in student.named_modules() if isinstance(m, nn.InstanceNorm2d)},
                          selector)
    optimizer = torch.optim.Adam(student.parameters(), lr=args.lr)
    step = 0
    if args.checkpoint.exists():
        state = torch.load(args.checkpoint, weights_only=True)
        student.load_state_dict(state["student"])
        optimizer.load_state_dict(state["optimizer"])
        for group in optimizer.param_groups:  # a resumed run may anneal with a lower rate
            group["lr"] = args.lr
        step = state["step"]
        log.info("resumed at step %d", step)

    if not args.export_only:
        images = load_images(args.crop)
        deadline = time.monotonic() + args.minutes * 60
        running = None
        while time.monotonic() < deadline:
            batch = sample(images, args.batch, args.crop, gen)
            selector["styles"] = torch.randint(0, len(names) + 1, (args.batch,), generator=gen)
            with torch.no_grad():
                target = teacher(batch)
            out = student(batch)
            loss = (out - target).abs().mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
            if step % 200 == 0:
                log.info("step %d L1 %.4f", step, running)
                torch.save({"student": student.state_dict(), "optimizer": optimizer.state_dict(), "step": step},
                           args.checkpoint)
        torch.save({"student": student.state_dict(), "optimizer": optimizer.state_dict(), "step": step},
                   args.checkpoint)
    export(student, names, styles, step)


def export(student: StyleNet, names: list[str], styles: list[Adapter], step: int) -> None:
    state, norm_rows = {}, {}
    for key, value in student.state_dict().items():
        layer, _, kind = key.rpartition(".")
        if kind in ("scale", "shift") and isinstance(student.get_submodule(layer), ConditionalNorm):
            norm_rows[(layer, kind)] = value.detach()
            state[f"{layer}.{'weight' if kind == 'scale' else 'bias'}"] = value[0].detach().clone()
        else:
            state[key] = value.detach().clone()
    base = BaseModel("fast", BUILTIN_SPECS["fast"], state,
                     f"distilled from the quality model by tools/distill_fast.py ({step} steps)")
    save_base(base, builtin_model_path("fast"))
    out_dir = styles_dir("fast")
    out_dir.mkdir(parents=True, exist_ok=True)
    layers = sorted({layer for layer, _ in norm_rows})
    for row, (name, source) in enumerate(zip(names, styles), start=1):
        norm = {layer: ((norm_rows[(layer, "scale")][row] - norm_rows[(layer, "scale")][0]).numpy(),
                        (norm_rows[(layer, "shift")][row] - norm_rows[(layer, "shift")][0]).numpy())
                for layer in layers}
        Adapter(name=name, base_id="fast", base_hash=base.weight_hash, norm=norm, description=source.description,
                provenance={**source.provenance, "method": "distilled from the quality model",
                            "distill_steps": step}).save(out_dir / f"{name}.safetensors")
    log.info("exported fast base (hash %s) and %d styles after %d steps", base.weight_hash, len(names), step)


if __name__ == "__main__":
    main()
