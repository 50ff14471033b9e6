"""The preview window's cost per frame: SDL2 (pygame-ce, rtstyle's window) against OpenCV's HighGUI window
(what rtstyle used before, Qt 5 in opencv-python), at 640x480 and 1280x720, under Xvfb.

`show` is what the window costs the live loop for one frame: for SDL, `Window.show` (events, blit into the
window's surface, present); for OpenCV, what the old window did (RGB to BGR, `imshow`, `waitKey(1)`).
`cpu_ms` is the CPU time of the calling thread in it (the rest of `show` is waiting: SDL waits for the X
server to take each frame, XShmPutImage then XSync, so on a loaded CPU it waits for the server to be
scheduled; Qt hands the frame over and goes on); `xserver_ms` is the X server's CPU time per frame.
`overlay` is the preview's own drawing (the fps / style text, `PreviewSink.compose`), the same whichever
window shows it. Frames are a photo shifted a little each time, so no frame repeats the last one.

Needs Xvfb (a display of its own is started) and, for the OpenCV rows, OpenCV's GUI build; rows it
cannot run are left out and said so. Software drawing on both sides: Xvfb has no GPU.

Run: python benchmarks/preview_window.py [--frames 300]
Writes benchmarks/results/preview_window.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
SIZES = [(640, 480), (1280, 720)]
SCREEN = (1920, 1080)


def xvfb() -> subprocess.Popen:
    if not shutil.which("Xvfb"):
        raise SystemExit("needs Xvfb (apt-get install xvfb)")
    read, write = os.pipe()
    server = subprocess.Popen(["Xvfb", f":{random.randint(300, 899)}", "-displayfd", str(write), "-screen", "0",
                               f"{SCREEN[0]}x{SCREEN[1]}x24", "-nolisten", "tcp", "-noreset"], pass_fds=(write,),
                              stderr=subprocess.DEVNULL)
    os.close(write)
    with os.fdopen(read) as pipe:
        os.environ["DISPLAY"] = f":{pipe.readline().strip()}"
    return server


def frames(size: tuple[int, int], count: int) -> list[np.ndarray]:
    import cv2

    from rtstyle.io.images import read_image

    shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "content" / "kodim23.png"
    if shared.exists():
        photo = read_image(shared)
    else:
        from rtstyle.io.synthetic import scene_frame

        photo = scene_frame(0, 768, 512, 30)
    base = cv2.resize(photo, (size[0] + 16, size[1] + 16), interpolation=cv2.INTER_AREA)
    return [np.ascontiguousarray(base[i % 16:i % 16 + size[1], i % 13:i % 13 + size[0]]) for i in range(count)]


SERVER: subprocess.Popen | None = None


def server_cpu() -> float:
    """The X server's CPU seconds so far (user + system)."""
    if SERVER is None:
        return 0.0
    fields = Path(f"/proc/{SERVER.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stats(seconds: list[float], server: float = 0.0, cpu: float = 0.0) -> dict:
    ms = np.array(seconds[10:]) * 1000  # the first frames map the window
    return {"median_ms": round(float(np.median(ms)), 3), "p95_ms": round(float(np.percentile(ms, 95)), 3),
            "mean_ms": round(float(ms.mean()), 3), "cpu_ms": round(cpu * 1000 / len(seconds), 3),
            "xserver_ms": round(server * 1000 / len(seconds), 3)}


def sdl(size: tuple[int, int], pictures: list[np.ndarray]) -> dict:
    from rtstyle.io.sinks import Window

    window = Window("rtstyle", size)
    try:
        assert window.display_size((size[1], size[0])) == size
        times, cpu, used = [], server_cpu(), 0.0
        for picture in pictures:
            start, thread = time.perf_counter(), time.thread_time()
            window.show(picture)
            times.append(time.perf_counter() - start)
            used += time.thread_time() - thread
        cpu = server_cpu() - cpu
    finally:
        window.close()
    return stats(times, cpu, used)


def opencv(size: tuple[int, int], pictures: list[np.ndarray]) -> dict | None:
    import cv2

    if re.search(r"GUI:\s+NONE", cv2.getBuildInformation()):
        return None
    title = "rtstyle-cv"
    cv2.namedWindow(title, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO | cv2.WINDOW_GUI_NORMAL)
    cv2.resizeWindow(title, *size)
    times, cpu, used = [], server_cpu(), 0.0
    try:
        for picture in pictures:
            start, thread = time.perf_counter(), time.thread_time()
            cv2.imshow(title, cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
            cv2.waitKey(1)
            times.append(time.perf_counter() - start)
            used += time.thread_time() - thread
        time.sleep(0.2)  # what was handed over reaches the screen
        cpu = server_cpu() - cpu
    finally:
        cv2.destroyWindow(title)
        cv2.waitKey(1)
    return stats(times, cpu, used)


def overlay(size: tuple[int, int], pictures: list[np.ndarray]) -> dict:
    from rtstyle.io.sinks import PreviewSink
    from rtstyle.io.sources import Frame
    from rtstyle.live.controls import LiveControls
    from rtstyle.pipeline.metrics import Metrics

    class Shown:  # a window that shows pictures at their own size
        def fit(self, shape):
            pass

        def display_size(self, shape):
            return shape[1], shape[0]

    preview = PreviewSink(LiveControls(["mosaic"]), Metrics(), Shown())
    times = []
    for picture in pictures:
        start = time.perf_counter()
        preview.compose(Frame(picture, 0, 0), picture)
        times.append(time.perf_counter() - start)
    return stats(times)


def versions() -> dict:
    import cv2

    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    import pygame

    gui = re.search(r"GUI:\s+(\S+)", cv2.getBuildInformation())
    return {"pygame-ce": pygame.version.ver, "sdl": ".".join(map(str, pygame.get_sdl_version())),
            "opencv": cv2.__version__, "opencv_gui": gui.group(1) if gui else "?"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    args = parser.parse_args()
    global SERVER
    SERVER = server = xvfb()
    try:
        rows = []
        for size in SIZES:
            pictures = frames(size, args.frames)
            for _ in range(2):  # interleaved, twice: the CPU is shared
                rows.append({"window": "sdl2 (pygame-ce)", "size": f"{size[0]}x{size[1]}", **sdl(size, pictures)})
                cv = opencv(size, pictures)
                if cv is not None:
                    rows.append({"window": "opencv highgui", "size": f"{size[0]}x{size[1]}", **cv})
            rows.append({"window": "overlay text (either)", "size": f"{size[0]}x{size[1]}", **overlay(size, pictures)})
    finally:
        server.terminate()
        server.wait(10)
    report = {"what": "preview window cost per frame, Xvfb (software), median/p95 ms over "
                      f"{args.frames - 10} frames, two interleaved runs each",
              "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores", "load_avg_1m": os.getloadavg()[0],
              "versions": versions(), "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "preview_window.json").write_text(json.dumps(report, indent=1) + "\n")
    for row in rows:
        print(f"{row['window']:24} {row['size']:>9}  median {row['median_ms']:7.2f} ms  p95 {row['p95_ms']:7.2f} ms"
              f"  cpu {row['cpu_ms']:6.2f} ms  X server {row['xserver_ms']:6.2f} ms")


if __name__ == "__main__":
    main()
