"""The live webcam on Try it and Collect: streamlit-webrtc wired to `core.serving.live`.

The browser streams the camera to this server over WebRTC; streamlit-webrtc hands the frames
to a callback on its own worker thread (never the page's), newest last, and drops the ones a
slow callback could not take. The callbacks here only pass the newest frame to `core.serving.live`,
whose objects the page then reads, under their locks, in a fragment that redraws a few times a
second. No STUN/TURN server is used unless TRANSFERLAB_ICE_SERVERS names one.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Awaitable, Callable

import av
import streamlit as st
from streamlit_webrtc import WebRtcMode, webrtc_streamer

from core.store.api import Project
from core.serving.api import Bar, FrameRecorder, LiveClassifier, Prediction, dim_outside_square, ice_servers
from pages import ui

REDRAW_EVERY = 0.2  # seconds between redraws of the live bars: about as fast as people read them
TRANSLATIONS = {
    "start": "Start the camera",
    "stop": "Stop the camera",
    "select_device": "Choose a camera",
    "device_ask_permission": "Your browser is asking whether this page may use the camera: allow it.",
    "device_access_denied": "The camera was refused. Allow it for this page in the browser's address bar, "
                            "or use a still photo instead",
    "device_not_available": "No camera was found, or another program is using it. Use a still photo instead",
    "media_api_not_available": "This browser cannot share a camera with this page (browsers allow it only on "
                               "localhost or https). Use a still photo instead.",
}


def camera(key: str, on_frames: Callable[[list], Awaitable[list]], fallback: str):
    """A camera widget streaming to this server; the coroutine `on_frames` gets the frames waiting, newest last,
    and returns the frames to show (streamlit-webrtc logs, and then stops on, an exception raised there).
    `fallback` names the still-photo choice to offer when the camera does not work."""
    try:
        servers = ice_servers()
    except ValueError as exc:
        st.error(f"The live webcam is switched off: {ui.md(exc)} Use **{fallback}** instead.")
        return None
    context = webrtc_streamer(
        key=key, mode=WebRtcMode.SENDRECV, rtc_configuration={"iceServers": servers},
        media_stream_constraints={"video": True, "audio": False}, queued_video_frames_callback=on_frames,
        async_processing=True, translations=TRANSLATIONS, video_html_attrs={
            "autoPlay": True, "muted": True, "playsInline": True, "style": {"width": "100%"}})
    if not context.state.playing:
        # The widget reports a failed start in the browser's own words; say what they mean.
        st.caption(f"No picture? **NotAllowedError** means the browser refused the camera: allow it with the "
                   f"camera icon in the address bar, then start again. **NotFoundError** or **NotReadableError**: "
                   f"no camera was found, or another program is using it. **{fallback}** works without the live "
                   f"camera.")
    return context


def camera_beside(key: str, on_frames: Callable[[list], Awaitable[list]], fallback: str):
    """The camera in the left half; returns its context (None when switched off) and the right half."""
    video, panel = st.columns([1, 1], gap="large")
    with video:
        context = camera(key, on_frames, fallback)
    return context, panel


def _session_object(key: str, make: Callable[[], object], fits: Callable[[object], bool]):
    """One object per browser session, shared with that session's webcam thread; replaced when it no longer fits."""
    current = st.session_state.get(key)
    if current is None or not fits(current):
        current = st.session_state[key] = make()
    return current


# ---- Try it: classify the live picture ------------------------------------------------------


def live_verdicts(run_dir: Path, bar: Bar, show_verdict: Callable[[Prediction, Bar], None]) -> None:
    """The camera beside the model's top-3 classes for what it sees, updated as it sees it."""
    predictor = ui.load_predictor(run_dir)
    live: LiveClassifier = _session_object("predict_live_classifier", lambda: LiveClassifier(predictor),
                                           lambda obj: obj.predictor is predictor)

    async def on_frames(frames: list) -> list:  # on streamlit-webrtc's worker thread, in its own event loop
        newest = frames[-1]
        pixels = newest.to_ndarray(format="rgb24")
        live.classify(pixels, captured=newest.time)
        return [av.VideoFrame.from_ndarray(dim_outside_square(pixels), format="rgb24")]

    context, bars = camera_beside("predict_live", on_frames, fallback="Still photo")
    if context is None:
        return
    playing = context.state.playing
    with bars:
        st.fragment(_live_bars, run_every=REDRAW_EVERY if playing else None)(live, bar, show_verdict, playing)


def _live_bars(live: LiveClassifier, bar: Bar, show_verdict: Callable[[Prediction, Bar], None],
               playing: bool) -> None:
    latest = live.latest()
    if not playing:
        st.info("Click **Start the camera** and hold things up to it: the model's top guesses follow the "
                "picture here. It looks only at the bright centre square of the picture, as in training.")
        return
    if latest is None:
        st.caption("Waiting for the first picture from the camera…")
        return
    prediction = latest.prediction
    show_verdict(prediction, bar)
    with st.container(key="predict_live_bars"):
        for name, p in prediction.top:
            st.progress(p, text=f"**{ui.md(name)}** · {ui.percent(p)}")
    behind = time.time() - latest.arrived  # what is on screen now is this far behind the camera picture
    st.caption(f"{ui.plural(round(live.frames_per_second()), 'picture')} a second · {behind * 1000:.0f} ms behind the camera")


# ---- Collect: record frames into a class ----------------------------------------------------


def live_recording(project: Project, target: str | None) -> None:
    """The camera with Record/Stop: while recording, a few frames a second go into the chosen class."""
    recorder: FrameRecorder = _session_object("collect_recorder", lambda: FrameRecorder(project),
                                              lambda obj: obj.project.meta_dir == project.meta_dir)

    async def on_frames(frames: list) -> list:  # on streamlit-webrtc's worker thread, in its own event loop
        newest = frames[-1]
        recorder.offer(newest.to_ndarray(format="rgb24"))
        return [newest]

    context, controls = camera_beside("collect_live", on_frames, fallback="One photo at a time")
    if context is None:
        return
    playing = context.state.playing
    if not playing and recorder.view().recording:
        recorder.stop()  # the camera went off: nothing more can come in
    with controls:
        if not playing:
            st.info("Click **Start the camera**, then **Record** to add a few frames a second to the class "
                    "chosen above. Move the object around and change the background between frames: "
                    "variety makes a better model.")
        elif target is None:
            st.info("Choose a class above, or type the name of a new one, first.")
        else:
            recording = recorder.view().recording
            if recording:
                st.button("Stop recording", key="collect_record_stop", icon=":material/stop_circle:",
                          on_click=recorder.stop, type="primary", width="stretch")
            else:
                st.button(f"Record into {target}", key="collect_record_start", icon=":material/fiber_manual_record:",
                          on_click=recorder.start, args=(target,), type="primary", width="stretch")
        st.fragment(_recording_counter, run_every=0.5 if recorder.view().recording else None)(recorder)


def _recording_counter(recorder: FrameRecorder) -> None:
    view = recorder.view()
    if view.class_name is None:
        return
    state = "Recording…" if view.recording else "Recorded:"
    text = f"{'🔴' if view.recording else '📸'} {state} **{ui.plural(view.added, 'frame')}** added to " \
           f"**{ui.md(view.class_name)}**"
    extra = []
    if view.duplicates:
        extra.append(f"{ui.plural(view.duplicates, 'frame')} identical to a photo already there, skipped")
    if view.rejected:
        extra.append(f"{ui.plural(view.rejected, 'frame')} could not be used ({view.last_problem})")
    with st.container(key="collect_record_counter"):
        st.markdown(text + (" · " + " · ".join(extra) if extra else "") + ".")
