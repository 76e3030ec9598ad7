"""Live webcam frames: classify the newest one, or record a few a second into a class.

Frames arrive on a WebRTC worker thread, not the page's; these objects are what that thread
and the page share, so every field they both read is behind a lock. A frame is an
(H, W, 3) uint8 RGB array; it goes through the same centre crop and resize as training
(`Predictor.predict_images` -> `load_rgb`) and into the project through the same import as
an uploaded photo (`core.intake.ingest.import_files`: validation, duplicate check, atomic write).
"""

from __future__ import annotations

import io
import math
import threading
import time
from collections import deque
from dataclasses import dataclass
import numpy as np
from PIL import Image

from core.intake.ingest import ImportReport, import_files
from core.serving.predict import Prediction
from core.serving.predictor import Predictor
from core.store.project import Project

RATE_WINDOW = 2.0     # seconds of history behind the frames-per-second figure
RECORD_EVERY = 0.25   # seconds between recorded frames: a few a second, different enough to be worth keeping
FRAME_JPEG_QUALITY = 92


@dataclass(frozen=True)
class LiveVerdict:
    """The model's view of one frame, and when that frame arrived and was classified (time.time())."""

    prediction: Prediction
    arrived: float
    classified: float


class LiveClassifier:
    """Classifies the newest of the frames handed to it; older ones waiting behind it are dropped, never queued."""

    def __init__(self, predictor: Predictor, top_k: int = 3):
        self.predictor = predictor
        self.top_k = top_k
        self._lock = threading.Lock()
        self._latest: LiveVerdict | None = None
        self._done: deque[LiveVerdict] = deque(maxlen=256)
        self._clock_offset = math.inf  # our clock minus the camera stream's, for the fastest frame seen

    def classify(self, frame: np.ndarray, captured: float | None = None) -> LiveVerdict:
        """Classify the newest frame (the caller drops those that came while the previous one was classified).

        `captured` is the frame's timestamp on the camera's stream clock (seconds, any origin). The
        frame that reached us fastest so far fixes that clock against ours, so a frame's arrival is
        known without a timestamp of its own: time spent waiting behind a slow frame counts as latency.
        """
        now = time.time()
        if captured is None:
            arrived = now
        else:
            with self._lock:
                self._clock_offset = min(self._clock_offset, now - captured)
                arrived = captured + self._clock_offset
        image = Image.fromarray(np.asarray(frame, dtype=np.uint8), "RGB")
        prediction = self.predictor.predict_images([image], self.top_k)[0]
        verdict = LiveVerdict(prediction, arrived, time.time())
        with self._lock:
            self._latest = verdict
            self._done.append(verdict)
        return verdict

    def latest(self) -> LiveVerdict | None:
        with self._lock:
            return self._latest

    def frames_per_second(self, now: float | None = None) -> float:
        """Frames classified per second over the last couple of seconds."""
        now = time.time() if now is None else now
        with self._lock:
            recent = [v for v in self._done if now - v.classified <= RATE_WINDOW]
        if len(recent) < 2:
            return 0.0
        return (len(recent) - 1) / max(recent[-1].classified - recent[0].classified, 1e-6)


@dataclass(frozen=True)
class RecordingView:
    """What the page shows about a recording: where frames go and what happened to them."""

    class_name: str | None
    recording: bool
    added: int
    duplicates: int
    rejected: int
    last_problem: str | None


class FrameRecorder:
    """Between start() and stop(), saves a webcam frame into a class every RECORD_EVERY seconds."""

    def __init__(self, project: Project, every: float = RECORD_EVERY):
        self.project = project
        self.every = every
        self._lock = threading.Lock()
        self._class: str | None = None
        self._recording = False
        self._last_saved = 0.0
        self._report = ImportReport()

    def start(self, class_name: str) -> None:
        """Start recording into `class_name`; the counts start again at zero."""
        with self._lock:
            self._class, self._recording, self._last_saved = class_name, True, 0.0
            self._report = ImportReport()

    def stop(self) -> None:
        with self._lock:
            self._recording = False

    def offer(self, frame: np.ndarray, now: float | None = None) -> bool:
        """Save `frame` if recording and it is time for the next one; True when it was handed to the store."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if not self._recording or now - self._last_saved < self.every:
                return False
            self._last_saved = now
            class_name, report = self._class, self._report
        name = f"webcam-{time.strftime('%Y%m%d-%H%M%S')}-{int(now * 1000) % 1000:03d}.jpg"
        outcome = import_files(self.project, class_name, [(name, jpeg_bytes(frame))], source="webcam")
        with self._lock:
            if report is self._report:  # not restarted meanwhile: count it in this recording
                report.added += outcome.added
                report.duplicates += outcome.duplicates
                report.rejected += outcome.rejected
                report.per_class.update(outcome.per_class)
        return True

    def view(self) -> RecordingView:
        with self._lock:
            r = self._report
            problem = r.rejected[-1][1] if r.rejected else None
            return RecordingView(self._class, self._recording, r.added, r.duplicates, len(r.rejected), problem)


def jpeg_bytes(frame: np.ndarray) -> bytes:
    """A webcam frame as the JPEG file an uploaded photo would be."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(frame, dtype=np.uint8), "RGB").save(buffer, "JPEG", quality=FRAME_JPEG_QUALITY)
    return buffer.getvalue()
