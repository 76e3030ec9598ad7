"""Driving the real app in headless Chromium: a Streamlit server on a free port with its own workspace.

Uses Debian's /usr/bin/chromium through Playwright (no downloaded browser). Tests skip when
Chromium is missing on a developer machine, and fail in CI (CI=true), where it must be there.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def require_chromium() -> None:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing; .ci/run installs Debian's chromium package")
        pytest.skip("Chromium is not installed (apt-get install chromium)")


def free_port() -> int:
    """A loopback port nothing listens on (for a server to take, or for a test of a refused connection)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def streamlit_server(workspace: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """Start `streamlit run app.py` against `workspace`; yields the base URL; stops it afterwards."""
    port = free_port()
    log = open(workspace / "streamlit.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true", "--server.fileWatcherType", "none"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "TRANSFERLAB_HOME": str(workspace), "STREAMLIT_CLIENT_SHOW_ERROR_DETAILS": "full",
             **(env or {})},  # a test that fails on a page error shows the traceback in its screenshot
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/_stcore/health", timeout=2)
                break
            except OSError:
                if time.time() > deadline or process.poll() is not None:
                    raise RuntimeError(f"Streamlit did not start:\n{(workspace / 'streamlit.log').read_text()}")
                time.sleep(0.5)
        yield url
    finally:
        workers = _children(process.pid)  # the training worker it started: ends once its server is gone
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
        _wait_or_kill(workers, 120)
        log.close()


def _children(pid: int) -> list:
    import psutil

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _wait_or_kill(processes: list, seconds: float) -> None:
    """Wait for processes to exit on their own; kill the ones still there after `seconds` (none is left behind)."""
    import psutil

    _, alive = psutil.wait_procs(processes, timeout=seconds)
    for process in alive:
        process.kill()
    psutil.wait_procs(alive, timeout=10)


def write_y4m(path: Path, pictures: list[Image.Image], seconds_each: float = 1.0, fps: int = 20,
              size: tuple[int, int] = (640, 480)) -> Path:
    """A raw 4:2:0 video for Chromium's fake camera (it loops it): each picture, cropped to `size`, shown for
    `seconds_each`."""
    width, height = size
    frames = []
    for picture in pictures:
        y, cb, cr = ImageOps.fit(picture.convert("RGB"), size).convert("YCbCr").split()
        half = (width // 2, height // 2)
        frames += [b"FRAME\n" + y.tobytes() + cb.resize(half).tobytes() + cr.resize(half).tobytes()] * int(
            fps * seconds_each)
    path.write_bytes(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode() + b"".join(frames))
    return path


def loaded_libraries(pid: int) -> str:
    """The shared libraries a process has mapped (Linux), one path a line."""
    return Path(f"/proc/{pid}/maps").read_text()


def server_pid(url: str) -> int:
    """The process id of the Streamlit server this process started at `url`."""
    import psutil

    port = url.rsplit(":", 1)[1]
    for process in psutil.Process().children(recursive=True):
        if "streamlit" in " ".join(process.cmdline()) and port in process.cmdline():
            return process.pid
    raise LookupError(f"no Streamlit server of this test serves {url}")


def fake_camera_args(video_file: Path | None = None) -> list[str]:
    """Chromium flags for a fake webcam, allowed without asking: its test pattern, or a .y4m/.mjpeg file."""
    args = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
    return args + ([f"--use-file-for-fake-video-capture={video_file}"] if video_file else [])


@contextmanager
def browser_page(width: int = 1400, height: int = 1000, extra_args: list[str] | None = None):
    """A Playwright page in Debian's headless Chromium."""
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS + (extra_args or []))
        page = browser.new_page(viewport={"width": width, "height": height})
        try:
            yield page
        finally:
            browser.close()


# The app's own record of its script run (Streamlit keeps it on the stApp element): "initial" until the first run
# starts, then "running"/"rerunRequested", then "notRunning" (a fragment's run flips it too). The running icon cannot be
# waited on: with the toolbar in "minimal" mode (.streamlit/config.toml) it is never drawn, and skeletons come and go
# while a long run draws, so "no icon, no skeleton" held mid-run. bench/bench_pages waits on the same signal.
SETTLED = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  return app !== null && app.getAttribute('data-test-script-state') === 'notRunning'
    && !document.querySelector('[data-testid="stSkeleton"]');
}"""


def wait_idle(page, timeout: float = 60_000) -> None:
    """Wait until Streamlit has finished the current script run: its script-run state is 'notRunning' and nothing
    is left drawing, then still so after a short pause (a click's rerun reaches the server and starts a few ms after
    the click, so the first 'notRunning' can be the moment before it)."""
    page.wait_for_function(SETTLED, timeout=timeout, polling=50)
    page.wait_for_timeout(300)
    page.wait_for_function(SETTLED, timeout=timeout, polling=50)


def assert_no_errors(page) -> None:
    """Fail on any Streamlit error box or Python exception shown in the page."""
    for selector in ('[data-testid="stException"]', '[data-testid="stAlertContentError"]'):
        boxes = page.query_selector_all(selector)
        assert not boxes, f"error shown in the page: {boxes[0].inner_text()[:2000]}"


def screenshot(page, name: str) -> Path:
    """Full-page PNG kept under test-artifacts/ for people to look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def new_class(page, name: str) -> None:
    """On the Collect page: send added photos to a new class of this name."""
    page.get_by_role("combobox", name="Add photos to class").click()
    page.get_by_role("option", name="➕ New class…").click()
    box = page.get_by_role("textbox", name="New class name")
    box.fill(name)
    box.press("Enter")
    wait_idle(page)
