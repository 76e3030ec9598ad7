"""core.serving.live without a browser: the newest frame is classified like an upload, frames are recorded like uploads."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PIL import Image

from core.images import dim_outside_square, load_rgb
from core.serving.live import FrameRecorder, LiveClassifier, jpeg_bytes
from core.serving.predictor import Predictor
from tests.photos import class_photo, photo


class MeanColour:
    """A stand-in model that remembers what it was shown: 'warm' when red beats blue."""

    def __init__(self):
        self.seen: list[np.ndarray] = []

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        self.seen.extend(pixels)
        warm = (pixels[..., 0].mean(axis=(1, 2)) > pixels[..., 2].mean(axis=(1, 2))).astype(np.float32)
        return np.stack([0.1 + 0.8 * warm, 0.9 - 0.8 * warm], axis=1)


def frame(label: int, seed: int, size=(640, 480)) -> np.ndarray:
    """A camera picture: warm (label 0) or cool (label 1) light on a varied scene."""
    tint = np.array([1.3, 1.0, 0.6] if label == 0 else [0.6, 1.0, 1.3])
    return (np.asarray(class_photo(label, seed, size=size), np.float32) * 0.5 * tint + 40).clip(0, 255).astype(np.uint8)


def test_a_frame_is_cropped_and_resized_exactly_like_an_uploaded_photo():
    model = MeanColour()
    live = LiveClassifier(Predictor(["warm", "cool"], 32, model, "test"), top_k=2)
    wide = frame(0, 1)
    verdict = live.classify(wide)
    assert np.array_equal(model.seen[0], load_rgb(Image.fromarray(wide), 32))  # centre square, as in training
    assert verdict.prediction.label == "warm" and verdict.prediction.confidence == pytest.approx(0.9)
    assert live.latest() is verdict and verdict.classified >= verdict.arrived


def test_arrival_is_read_from_the_stream_clock_so_waiting_counts_as_latency():
    live = LiveClassifier(Predictor(["warm", "cool"], 32, MeanColour(), "test"))
    first = live.classify(frame(0, 1), captured=100.0)
    # A frame captured 0.04 s later on the camera's clock that reaches us 0.5 s later waited 0.46 s somewhere.
    import time

    time.sleep(0.5)
    second = live.classify(frame(1, 2), captured=100.04)
    assert second.arrived == pytest.approx(first.arrived + 0.04, abs=1e-6)
    assert second.classified - second.arrived >= 0.45
    assert second.prediction.label == "cool"


def test_frames_per_second_counts_recent_verdicts_only():
    live = LiveClassifier(Predictor(["warm", "cool"], 32, MeanColour(), "test"))
    assert live.frames_per_second() == 0.0
    for i in range(5):
        live.classify(frame(i % 2, i, size=(64, 48)))
    latest = live.latest().classified
    assert live.frames_per_second(now=latest) > 0
    assert live.frames_per_second(now=latest + 10) == 0.0


def test_recording_saves_a_few_frames_a_second_through_the_upload_checks(project):
    recorder = FrameRecorder(project, every=0.25)
    assert not recorder.offer(np.asarray(photo(1)), now=0.0)  # not recording yet
    recorder.start("me")
    clock = [10.0 + 0.1 * i for i in range(12)]  # 1.1 s of frames at 10 a second
    saved = [recorder.offer(np.asarray(photo(seed)), now=t) for seed, t in enumerate(clock)]
    assert sum(saved) == 4  # at 10.0, 10.3, 10.6, 10.9: one per 0.25 s at most
    view = recorder.view()
    assert (view.class_name, view.recording, view.added) == ("me", True, 4)
    records = project.images("me")
    assert len(records) == 4 and {r.source for r in records} == {"webcam"}

    recorder.offer(np.asarray(photo(0)), now=20.0)  # the very first picture again: a duplicate, not stored twice
    assert recorder.view().duplicates == 1 and len(project.images("me")) == 4
    recorder.offer(np.zeros((8, 8, 3), np.uint8), now=30.0)  # smaller than any photo may be
    view = recorder.view()
    assert view.rejected == 1 and "32 pixels" in view.last_problem and len(project.images("me")) == 4

    recorder.stop()
    assert not recorder.offer(np.asarray(photo(40)), now=40.0) and not recorder.view().recording
    recorder.start("other")
    assert recorder.view().added == 0  # a new recording counts from zero


def test_recording_from_several_threads_loses_nothing(project):
    recorder = FrameRecorder(project, every=0.0)
    recorder.start("me")

    def feed(offset: int) -> None:
        for seed in range(offset, offset + 5):
            recorder.offer(np.asarray(photo(seed)))

    threads = [threading.Thread(target=feed, args=(100 * n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert recorder.view().added == 15 == len(project.images("me"))


def test_a_frame_becomes_the_jpeg_an_upload_would_be():
    data = jpeg_bytes(frame(0, 3))
    assert data[:2] == b"\xff\xd8" and Image.open(__import__("io").BytesIO(data)).size == (640, 480)


def test_the_shown_picture_is_darker_outside_what_the_model_looks_at():
    picture = np.full((480, 640, 3), 200, np.uint8)
    shown = dim_outside_square(picture)
    assert (shown[:, 80:560] == 200).all()  # the centre 480 x 480 square, untouched
    assert (shown[:, :80] < 100).all() and (shown[:, 560:] < 100).all()
