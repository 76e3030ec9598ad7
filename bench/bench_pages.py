"""Time to a settled page for every page of the app, on a warm server, with a 1,000-photo project.

    python -m bench.bench_pages [PHOTOS] [--rounds N]

Builds a project of synthetic 1600×1200 (phone-sized) photos in two classes (a temporary workspace), starts
`streamlit run app.py`, visits every page once to warm the server (first imports, thumbnails),
(the first visit's time is printed as "cold"), then loads each page N times and prints the median time
from navigation until Streamlit's own script-run state says the run has finished and no skeleton is left
(the running indicator is never drawn with the toolbar in "minimal" mode, so it cannot be waited on). For a
"before" figure, run the same command on the older checkout (`git stash`, or the merge-base).
"""

from __future__ import annotations

import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from bench.common import table
from core.store.project import create_project
from tests.browser import SETTLED, browser_page, streamlit_server

PAGES = ["start", "collect", "review", "train", "results", "predict"]


def synthetic_jpeg(rng: np.random.Generator) -> bytes:
    """A 1600×1200 JPEG: smooth colour fields, different for every seed; big enough that decoding costs."""
    coarse = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    img = Image.fromarray(coarse, "RGB").resize((1600, 1200), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def build_project(workspace: Path, photos: int) -> None:
    project = create_project("bench", workspace)
    rng = np.random.default_rng(0)
    for i in range(photos):
        project.add_image(("alpaca", "llama")[i % 2], synthetic_jpeg(rng), source="upload",
                          original_name=f"photo{i}.jpg")


def settle_time(page, url: str, timeout: float = 120.0) -> float:
    """Seconds from navigation to a settled page (the page's script run finished and nothing left drawing: a new
    session per navigation, so the first such moment ends this page's own run); playwright's TimeoutError past
    `timeout` seconds."""
    start = time.perf_counter()
    page.goto(url, timeout=timeout * 1000)
    page.wait_for_function(SETTLED, timeout=timeout * 1000, polling=50)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    rounds = int(args[args.index("--rounds") + 1]) if "--rounds" in args else 3
    photos = int(next((a for a in args if a.isdigit() and a != str(rounds)), 1000))
    with tempfile.TemporaryDirectory() as tmp:
        workspace = Path(tmp)
        t0 = time.perf_counter()
        build_project(workspace, photos)
        print(f"built a project of {photos:,} photos in {time.perf_counter() - t0:.0f} s", flush=True)
        with streamlit_server(workspace) as url, browser_page(height=1200) as page:
            settle_time(page, f"{url}/?project=bench")  # the server's first run: imports
            cold = {name: settle_time(page, f"{url}/{name}?project=bench") for name in PAGES}
            rows = []
            for name in PAGES:
                times = [settle_time(page, f"{url}/{name}?project=bench") for _ in range(rounds)]
                rows.append([name, cold[name], statistics.median(times), max(times)])
                print(f"{name}: {statistics.median(times):.2f} s", flush=True)
    print(table(["page", "first visit s", "median s", "worst s"], rows))


if __name__ == "__main__":
    main()
