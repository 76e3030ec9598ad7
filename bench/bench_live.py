"""Try it, measured through the real app: the live webcam fed by Chromium's fake camera, and one uploaded photo.

    python -m bench.bench_live [SECONDS] [--backbone NAME[,NAME...]]

Trains a head-only run on ants vs. bees (hymenoptera), starts the app on a free port, and takes
a newcomer's steps in their order: one photo uploaded and its heat map drawn (timed: the first
heat map of the server), then the live webcam, fed by Chromium's fake camera playing a video
made of two real photos (an ant, then a bee, a second each). It reads the live caption every
100 ms: frames classified per second, and how far behind the camera the shown verdict is (from
the frame's arrival at the server to the moment the page draws it; the browser's own capture and
encoding are not in it), and notes a dropped connection (the camera's Start button back). Then it
uploads photos one at a time and times the click to the verdict on screen. Beside the app figures, the same photos
go through each predictor in this process: backbone LiteRT + numpy head, the run's TFLite
file, and Keras.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from unittest import mock

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from PIL import Image  # noqa: E402

from bench.common import dataset, table, try_it_ms  # noqa: E402
from core.serving.export import export_tflite  # noqa: E402
from core.intake.ingest import import_folder  # noqa: E402
from core.serving.export import TFLITE_FILES  # noqa: E402
from core.model.head import HEAD_FILE  # noqa: E402
from core.model.novelty import NOVELTY_FILE, NOVELTY_SETTINGS  # noqa: E402
from core.serving.predictor import load_predictor  # noqa: E402
from core.model.backbones import backbone_label  # noqa: E402
from core.store.project import create_project  # noqa: E402
from core.model.train import TrainConfig  # noqa: E402
from tests.browser import CHROMIUM, browser_page, fake_camera_args, streamlit_server, write_y4m  # noqa: E402
from tests.runs import finished_run  # noqa: E402

PER_CLASS = 40          # training photos per class: enough for a confident model, quick to embed
FPS, WIDTH, HEIGHT = 20, 640, 480
CAPTION = re.compile(r"(\d+) pictures? a second · (\d+) ms behind the camera")
VERDICT = re.compile(r"Looks like|Not sure")


def small_training_set(root: Path) -> Path:
    """PER_CLASS hymenoptera training photos per class, as an ImageFolder tree."""
    source = dataset("hymenoptera") / "train"
    for folder in sorted(p for p in source.iterdir() if p.is_dir()):
        (root / folder.name).mkdir(parents=True)
        for photo in sorted(folder.glob("*.jpg"))[:PER_CLASS]:
            shutil.copy(photo, root / folder.name / photo.name)
    return root


def cpu_seconds() -> dict[str, float]:
    """CPU time used so far by the app server and by the browser (the processes this one started)."""
    import psutil

    used = {"server": 0.0, "browser": 0.0}
    for child in psutil.Process().children(recursive=True):
        try:
            times, command = child.cpu_times(), " ".join(child.cmdline())
        except psutil.Error:
            continue
        kind = "server" if "streamlit" in command else "browser" if "chrom" in command else None
        if kind:
            used[kind] += times.user + times.system
    return used


def first_heat_map(page, url: str, photo: Path) -> float:
    """Seconds from choosing a photo to its heat map on screen, on a server that has drawn none yet; the photo is
    then taken off the list again."""
    page.goto(f"{url}/predict?project=bench")
    uploader = page.locator('[data-testid="stFileUploaderDropzoneInput"]')
    uploader.wait_for(state="attached", timeout=120_000)
    start = time.perf_counter()
    uploader.set_input_files(str(photo))
    page.get_by_text("Where it looked").first.wait_for(timeout=300_000)
    seconds = time.perf_counter() - start
    page.locator('[data-testid="stFileChipDeleteBtn"]').first.click()
    page.get_by_text("Where it looked").first.wait_for(state="detached", timeout=120_000)
    return seconds


def live_figures(page, seconds: float) -> tuple[list[int], list[int], int, dict[str, float], int]:
    """Sample the live caption for `seconds` (on Try it, where a heat map was just drawn): frames per second, ms
    behind the camera, label changes seen, the CPU seconds the server and the browser used meanwhile, and how
    many times the camera connection dropped (its Start button came back)."""
    page.get_by_text("Use the webcam").click(timeout=120_000)
    page.frame_locator("iframe").first.get_by_role("button", name="Start the camera").click(timeout=120_000)
    caption = page.get_by_text(CAPTION)
    caption.wait_for(timeout=120_000)
    page.wait_for_timeout(3000)  # past the first frames, which carry the connection's start-up
    rates, behind, labels, drops = [], [], [], 0
    start_button = page.frame_locator("iframe").first.get_by_role("button", name="Start the camera")
    cpu_before = cpu_seconds()
    end = time.time() + seconds
    while time.time() < end:
        found = CAPTION.search(caption.inner_text()) if caption.count() else None
        if found:
            rates.append(int(found.group(1)))
            behind.append(int(found.group(2)))
        bars = page.locator(".st-key-predict_live_bars p")
        labels.append(bars.first.inner_text().split(" · ")[0] if bars.count() else "")
        if start_button.count():  # the WebRTC connection failed: the widget is back to its start state
            drops += 1
            start_button.click()
        page.wait_for_timeout(100)
    cpu = {k: v - cpu_before[k] for k, v in cpu_seconds().items()}
    changes = sum(a != b for a, b in zip(labels, labels[1:]) if a and b)
    page.frame_locator("iframe").first.get_by_role("button", name="Stop the camera").click()
    return rates, behind, changes, cpu, drops


def upload_figures(page, url: str, photos: list[Path]) -> list[tuple[float, float]]:
    """Seconds from choosing each photo in the uploader to its verdict, and to its heat map, on screen."""
    page.goto(f"{url}/predict?project=bench")
    uploader = page.locator('[data-testid="stFileUploaderDropzoneInput"]')
    uploader.wait_for(state="attached", timeout=120_000)
    seconds = []
    for photo in photos:
        start = time.perf_counter()
        uploader.set_input_files(str(photo))
        page.get_by_text(VERDICT).first.wait_for(timeout=120_000)
        verdict = time.perf_counter() - start
        page.get_by_text("Where it looked").first.wait_for(timeout=300_000)
        seconds.append((verdict, time.perf_counter() - start))
        page.locator('[data-testid="stFileChipDeleteBtn"]').first.click()
        page.get_by_text(VERDICT).first.wait_for(state="detached", timeout=120_000)
    return seconds


def engine_figures(run_dir: Path, photos: list[Path]) -> list[list]:
    """Load time and one-photo prediction time of each predictor the run folder can give, in this process."""
    variants = {"LiteRT backbone + numpy head + novelty": (HEAD_FILE, NOVELTY_FILE, NOVELTY_SETTINGS),
                "LiteRT backbone + numpy head, no novelty check": (HEAD_FILE,),
                "run's TFLite file": (TFLITE_FILES[False],), "Keras model.keras": ()}
    export_tflite(run_dir)
    images = [Image.open(p).convert("RGB") for p in photos]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n, (name, keep) in enumerate(variants.items()):
            folder = Path(tmp) / str(n)
            folder.mkdir()
            for file in ("labels.txt", "metrics.json", "model.keras", *keep):
                shutil.copy(run_dir / file, folder / file)
            start = time.perf_counter()
            predictor = load_predictor(folder)
            loaded = time.perf_counter() - start
            rows.append([name, predictor.kind, loaded, try_it_ms(predictor, images)])
    return rows


def measure(backbone: str, seconds: float, tmp: Path) -> dict:
    """Every figure of one backbone: a head-only run trained in its own home, its own server and browser."""
    val = dataset("hymenoptera") / "val"
    ant, bee = sorted((val / "ants").glob("*.jpg"))[0], sorted((val / "bees").glob("*.jpg"))[0]
    tries = sorted((val / "ants").glob("*.jpg"))[1:4] + sorted((val / "bees").glob("*.jpg"))[1:4]
    with mock.patch.dict(os.environ, {"TRANSFERLAB_HOME": f"{tmp}/home"}):
        project = create_project("bench", tmp / "home")
        import_folder(project, small_training_set(tmp / "train"))
        run_dir = project.run_dir(finished_run(project, TrainConfig(backbone=backbone)))
        video = write_y4m(tmp / "ant-then-bee.y4m", [Image.open(ant), Image.open(bee)], fps=FPS, size=(WIDTH, HEIGHT))
        with streamlit_server(tmp / "home") as url, browser_page(extra_args=fake_camera_args(video)) as page:
            heat_seconds = first_heat_map(page, url, tries[-1])
            rates, behind, changes, cpu, drops = live_figures(page, seconds)
            uploads = upload_figures(page, url, tries)
        engine = engine_figures(run_dir, tries)
        sizes = {name: (run_dir / name).stat().st_size / 1e6 for name in (TFLITE_FILES[False], "model.keras")}
    return dict(backbone=backbone, video=video, tries=tries, heat_seconds=heat_seconds, rates=rates, behind=behind,
                changes=changes, cpu=cpu, drops=drops, uploads=uploads, engine=engine, sizes=sizes)


def report(f: dict, seconds: float) -> None:
    """One backbone's figures, as measured."""
    print(f"\n== {backbone_label(f['backbone'])} head-only run on {2 * PER_CLASS} hymenoptera photos")
    print(f"\nFirst heat map on the server (choose a photo -> heat map on screen): {f['heat_seconds']:.2f} s")
    print(f"\nLive webcam after that heat map, Chromium's fake camera playing {f['video'].name} ({WIDTH}x{HEIGHT}, "
          f"{FPS} fps), {len(f['rates'])} samples over {seconds:.0f} s (targets: >= 10 frames/s, < 1000 ms behind):")
    print(table(["figure", "median", "10th pct", "90th pct"], [
        ["frames classified per second", *_spread(f["rates"])],
        ["ms from frame arrival to verdict on screen", *_spread(f["behind"])],
    ]))
    print(f"top class changed {f['changes']} times in {seconds:.0f} s (the video switches between the ant and the bee "
          f"every second); the camera connection dropped {f['drops']} times")
    cpu = {k: f"{100 * v / seconds:.0f}%" for k, v in f["cpu"].items()}
    print(f"CPU while live: server {cpu['server']} of one core, browser {cpu['browser']} (decoding every camera frame, "
          "classifying the newest, sending the picture back)")
    print("\nOne uploaded photo, choose -> verdict on screen (target <= 1 s warm), and -> heat map:")
    print(table(["photo", "verdict s", "heat map s"], [[p.name, *s] for p, s in zip(f["tries"], f["uploads"])]))
    print(f"first (loads the predictor): {f['uploads'][0][0]:.2f} s; warm median: {warm_verdict(f):.2f} s")
    print("\nThe same photos through each predictor, in this process:")
    print(table(["predictor", "kind", "load s", "ms per photo"], f["engine"]))
    (_, _, head_load, head), keras = f["engine"][0], f["engine"][-1]
    print(f"head path vs. Keras for one photo: {keras[3] / head:.1f}x faster; load {keras[2] / head_load:.1f}x "
          f"faster; the novelty check costs {head - f['engine'][1][3]:+.1f} ms a photo")


def warm_verdict(f: dict) -> float:
    return statistics.median(v for v, _ in f["uploads"][1:])


def main(seconds: float = 60.0, backbones: tuple[str, ...] = ("efficientnet_lite0",)) -> None:
    """Each backbone measured in turn in this one run (its own project, server and browser), then side by side."""
    if not Path(CHROMIUM).exists():
        print(f"skipped: this benchmark drives {CHROMIUM} (apt-get install chromium)")
        return
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        figures = [measure(backbone, seconds, Path(tmp) / str(i)) for i, backbone in enumerate(backbones)]
    print(f"Try it on a warm server, {os.cpu_count()} CPU cores, load average {load:.1f} before and "
          f"{os.getloadavg()[0]:.1f} after")
    for f in figures:
        report(f, seconds)
    print("\nSide by side (measured one after the other in this run):")
    print(table(["backbone", "live frames a second (median)", "ms behind (median)", "Try it verdict s (warm)",
                 "head path ms a photo", "model.tflite MB", "model.keras MB"],
                [[backbone_label(f["backbone"]), _spread(f["rates"])[0], _spread(f["behind"])[0],
                  f"{warm_verdict(f):.2f}", f"{f['engine'][0][3]:.1f}", f"{f['sizes'][TFLITE_FILES[False]]:.1f}",
                  f"{f['sizes']['model.keras']:.1f}"] for f in figures]))


def _spread(values: list[int]) -> list[float]:
    if not values:
        return [float("nan")] * 3
    ordered = sorted(values)
    return [float(statistics.median(ordered)), float(ordered[len(ordered) // 10]),
            float(ordered[min(len(ordered) - 1, len(ordered) * 9 // 10)])]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("seconds", nargs="?", type=float, default=60.0)
    parser.add_argument("--backbone", default="efficientnet_lite0",
                        help="a name from `python -m core backbones`, or several separated by commas: measured in "
                             "turn and shown side by side")
    args = parser.parse_args()
    main(args.seconds, tuple(args.backbone.split(",")))
