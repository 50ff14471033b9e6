"""Frames at the transitions of a style schedule that mixes built-in styles and a picture.

`--style-schedule "0:mosaic,4:starry-swirl,8:klimt_the_kiss.jpg"` on the 10 s Big Buck Bunny cut
(../shared/data/video), at 320x180: mosaic -> starry-swirl is a blend on the quality model's one
engine; starry-swirl -> the picture crosses from the quality model to the arbitrary one, so both
engines run over 4-8 s and their frames are cross-faded by the schedule's share.

Run: python benchmarks/schedule_crossfade.py
Writes benchmarks/results/schedule_crossfade.png: one row of frames, each labelled with its time
and what made it.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw

from rtstyle.api import load_scheduled_stylizer
from rtstyle.config import EngineConfig
from rtstyle.stylizers.schedule import StyleSchedule

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data"
OUT = ROOT / "benchmarks" / "results" / "schedule_crossfade.png"
TIMES = (2.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0)
SIZE = (320, 180)


def frames_at(path: Path, times: tuple[float, ...]) -> dict[float, np.ndarray]:
    wanted, found = list(times), {}
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            if wanted and frame.time >= wanted[0] - 1e-3:
                found[wanted.pop(0)] = np.asarray(frame.to_image().resize(SIZE, Image.LANCZOS))
    return found


def main() -> None:
    picture = DATA / "styles" / "klimt_the_kiss.jpg"
    schedule = StyleSchedule.parse(f"0:mosaic,4:starry-swirl,8:{picture}")
    stylizer = load_scheduled_stylizer("arbitrary", schedule, engine=EngineConfig(device="cpu"))
    tiles = []
    for seconds, frame in frames_at(DATA / "video" / "big_buck_bunny_cut.mp4", TIMES).items():
        stylizer.before_batch(seconds)
        tile = Image.fromarray(stylizer([frame])[0])
        blend = schedule.blend_at(seconds)
        text = " + ".join(f"{w:.0%} {Path(n).stem[:12]}" for n, w in blend.items() if w > 1e-3)
        engines = " x ".join(stylizer.mix)
        draw = ImageDraw.Draw(tile)
        draw.rectangle((0, 0, SIZE[0], 30), fill=(0, 0, 0))
        draw.text((4, 2), f"t={seconds:g} s  engines: {engines}", fill=(255, 255, 255))
        draw.text((4, 16), text, fill=(255, 255, 0))
        tiles.append(tile)
    strip = Image.new("RGB", (SIZE[0] * len(tiles), SIZE[1]))
    for i, tile in enumerate(tiles):
        strip.paste(tile, (i * SIZE[0], 0))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    strip.save(OUT)
    print(f"wrote {OUT} ({len(tiles)} frames at {', '.join(f'{t:g}' for t in TIMES)} s)")


if __name__ == "__main__":
    main()
