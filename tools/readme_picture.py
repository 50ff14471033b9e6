"""The README's first picture: one photo and four built-in styles side by side, made through the real path.

    python tools/readme_picture.py            # writes docs/images/before_after.png

The photo is the Kodak sample kodim08 (released for unrestricted use; ../shared/data/SOURCES.md), read
from ../shared/data beside the checkout: only the picture made from it is committed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from rtstyle.api import load_stylizer
from rtstyle.config import EngineConfig
from rtstyle.model.styles import StyleChoice

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT.parent / "shared" / "data" / "content" / "kodim08.png"
STYLES = ("mosaic", "starry-swirl", "ink-wash", "stained-glass")
PANEL = 300
LABEL = 26


def panel(image: np.ndarray, label: str) -> Image.Image:
    tile = Image.new("RGB", (PANEL, PANEL + LABEL), "white")
    tile.paste(Image.fromarray(image).resize((PANEL, PANEL), Image.LANCZOS), (0, LABEL))
    font = ImageFont.load_default(size=17)
    ImageDraw.Draw(tile).text((6, 3), label, fill="black", font=font)
    return tile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", default=str(ROOT / "docs" / "images" / "before_after.png"))
    args = parser.parse_args()
    photo = np.asarray(Image.open(PHOTO).convert("RGB"))
    tiles = [panel(photo, "photo")]
    for style in STYLES:
        stylizer = load_stylizer("quality", StyleChoice({style: 1.0}), EngineConfig(device="cpu"))
        tiles.append(panel(stylizer.stylize_image(photo), style))
    strip = Image.new("RGB", (len(tiles) * PANEL + (len(tiles) - 1) * 4, PANEL + LABEL), "white")
    for index, tile in enumerate(tiles):
        strip.paste(tile, (index * (PANEL + 4), 0))
    strip.save(args.output, optimize=True)
    print(args.output)


if __name__ == "__main__":
    main()
