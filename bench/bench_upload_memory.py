"""Try it's memory for a batch of forged photos: small files that decode to tens of megabytes each.

    python -m bench.bench_upload_memory [--photos 40]

Builds a project with a finished head-only run, then in a fresh process per line: loads the Try it page
(Streamlit's AppTest runs the page in that process, as the server does), uploads the photos and waits for
every verdict, sampling the process's resident memory. Beside it, the same photos decoded the way the page
did before (all decoded, then judged in one batch), so the two figures come from one run on one machine.
Uses TRANSFERLAB_CACHE for the backbone's LiteRT file (set it to a warm cache).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from PIL import Image, ImageDraw

from bench.common import table

ROOT = Path(__file__).resolve().parents[1]
LIMIT_MB = 600
SIDE = 4100  # a grey progressive JPEG this big is ~67 KB and decodes to ~50 MB as RGB


def forged_photo(seed: int) -> bytes:
    """A ~67 KB progressive JPEG of a flat picture 4,100 pixels a side: tiny on disk, huge once decoded."""
    image = Image.new("L", (SIDE, SIDE), 100 + seed % 100)
    ImageDraw.Draw(image).rectangle((seed * 40, 30, seed * 40 + 30, 60), fill=250)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=75, progressive=True, optimize=True)
    return buffer.getvalue()


def make_project(home: Path) -> None:
    """A project whose finished run is a head-only model over the offline default backbone (its LiteRT file
    converted here if the cache lacks it, so the measured processes never load TensorFlow)."""
    import numpy as np

    from core.model.backbones import get_backbone
    from core.model.embed import litert_backbone
    from core.store.project import create_project

    project = create_project("memory", home)
    spec = get_backbone("efficientnet_lite0")
    litert_backbone(spec)
    run_id = project.create_run({})
    run = project.run_dir(run_id)
    (run / "labels.txt").write_text("dark\nlight\n")
    rng = np.random.default_rng(0)
    np.savez(run / "head.npz", kernel=rng.normal(size=(spec.feature_dim, 2)).astype(np.float32) * 0.01,
             bias=np.zeros(2, np.float32))
    (run / "metrics.json").write_text(json.dumps({"backbone": spec.name}))
    project.update_run(run_id, status="completed", summary={"classes": ["dark", "light"], "val_accuracy": 0.5})


SAMPLER = """
    import json, sys, threading, time
    import psutil
    from pathlib import Path
    process, peak, done = psutil.Process(), [0], threading.Event()
    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.01)
    photos = [p.read_bytes() for p in sorted(Path(sys.argv[1]).glob("*.jpg"))]
"""

PAGE = SAMPLER + """
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_file("app.py", default_timeout=600)
    at.session_state["project"] = "memory"
    at.switch_page("pages/predict.py")
    at.run()
    before = process.memory_info().rss
    threading.Thread(target=sample, daemon=True).start()
    at.file_uploader(key="predict_uploads").set_value([(f"{i}.jpg", p, "image/jpeg") for i, p in enumerate(photos)])
    at.run()
    done.set()
    rows = at.dataframe[0].value if at.dataframe else None
    judged = int(rows["verdict"].isin(["sure", "not sure"]).sum()) if rows is not None else 0
    print(json.dumps({"before": before, "peak": peak[0], "judged": judged, "errors": [e.value for e in at.exception]}))
"""

ALL_AT_ONCE = SAMPLER + """
    from core.serving.predict import decode_upload
    from core.serving.predictor import load_predictor
    predictor = load_predictor(Path(sys.argv[2]))
    predictor.predict_uploads(photos[:1])
    before = process.memory_info().rss
    threading.Thread(target=sample, daemon=True).start()
    judged = len(predictor.predict_images([decode_upload(p) for p in photos]))
    done.set()
    print(json.dumps({"before": before, "peak": peak[0], "judged": judged, "errors": []}))
"""


def measure(code: str, photos: Path, home: Path, run_dir: Path) -> dict:
    env = {**os.environ, "TRANSFERLAB_HOME": str(home), "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code), str(photos), str(run_dir)], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=1800)
    if out.returncode:
        raise SystemExit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home, photos = Path(tmp) / "home", Path(tmp) / "photos"
        photos.mkdir()
        sizes = []
        for i in range(args.photos):
            data = forged_photo(i)
            sizes.append(len(data))
            (photos / f"{i:03d}.jpg").write_bytes(data)
        os.environ["TRANSFERLAB_HOME"] = str(home)
        make_project(home)
        run_dir = home / "memory" / "runs" / "run-0001"
        rows = []
        for label, code in (("Try it page (a few at a time)", PAGE), ("all decoded at once (before)", ALL_AT_ONCE)):
            got = measure(code, photos, home, run_dir)
            rows.append([label, got["judged"], round(got["before"] / 2 ** 20), round(got["peak"] / 2 ** 20),
                         round((got["peak"] - got["before"]) / 2 ** 20)])
            if got["errors"]:
                print(f"{label}: {got['errors']}")
    print(f"{args.photos} forged photos, {min(sizes) // 1024}-{max(sizes) // 1024} KB each, "
          f"{SIDE}x{SIDE} pixels (~{SIDE * SIDE * 3 / 2 ** 20:.0f} MB each decoded as RGB)")
    print(table(["path", "judged", "RSS before MB", "peak RSS MB", "added MB"], rows))
    page = rows[0]
    print(f"Try it peak {page[3]} MB: {'within' if page[3] <= LIMIT_MB else 'OVER'} the {LIMIT_MB} MB target; "
          f"{rows[1][4] / max(page[4], 1):.1f}x less added than decoding all at once")


if __name__ == "__main__":
    main()
