"""Results' second row of downloads: the web page, full-integer TFLite and ONNX, and code to use each file."""

from __future__ import annotations

import streamlit as st

from core.serving import api as serving
from core.jobs import api as jobs
from core.store.api import Project, RunRecord
from core.serving.api import PAGE_URL, SERVE_COMMAND, RuntimeMissing, export_web, page_config, runtime_files
from pages import ui


def web_page(project: Project, run: RunRecord, name: str) -> None:
    st.markdown("**A web page that is the model**")
    try:
        runtime_files()
    except RuntimeMissing as exc:
        st.warning(str(exc), icon="⚠️")
        return
    path = project.meta_dir / "exports" / f"{name}-web.zip"

    def zipped() -> bytes:  # made when clicked: a few seconds, ~20 MB
        path.parent.mkdir(parents=True, exist_ok=True)
        return export_web(run.dir, path, title=project.name).read_bytes()

    st.download_button("Web page (.zip)", data=zipped, file_name=path.name, key="download_web",
                       mime="application/zip", icon="⬇️", on_click="ignore", width="stretch")
    st.caption(f"Classifies photos and the webcam in any browser, offline: nothing leaves the computer. Unzip it, "
               f"run `{SERVE_COMMAND}` in its folder and open {PAGE_URL} (opened straight from disk, browsers "
               "refuse to run it). Put the folder on any web server to share it.")


def _figures(report: dict, learned: bool) -> None:
    int8, onnx = report.get("tflite-int8", {}), report.get("onnx", {})
    rows = []
    if "accuracy" in int8:
        rows.append(f"| Float model (.tflite, as on this page) | {ui.percent(int8['app_accuracy'])} | — |")
        rows.append(f"| Full-integer (.tflite, int8) | {ui.percent(int8['accuracy'])} | {ui.percent(int8['agreement'])} |")
    if "accuracy" in onnx:
        rows.append(f"| ONNX | {ui.percent(onnx['accuracy'])} | {ui.percent(onnx['agreement'])} |")
    if rows:
        photos = int8.get("photos") or onnx.get("photos")
        st.markdown(f"On the {photos} validation photos still in the project:\n\n"
                    "| model | right | same answer as the app |\n|---|---|---|\n" + "\n".join(rows))
        if learned:
            st.caption("The saved model learned these photos too, so “right” here compares the files with each "
                       "other; the validation accuracy above is the honest figure for new photos.")


def more_formats(project: Project, run: RunRecord, name: str) -> None:
    """Full-integer TFLite and ONNX: made on request by the worker, each checked on the validation photos."""
    st.markdown("**For microcontrollers and other runtimes** (full-integer TFLite, ONNX)")
    state = jobs.more_formats(project, run)
    if state == "none":
        st.button("Make full-integer TFLite and ONNX files", key="make_formats", icon="🛠️",
                  on_click=jobs.request_formats, args=(project, run),
                  help="A minute or two in the background: each file is checked on the validation photos.")
        st.caption("Made in the background in a minute or two. Each file is checked on the validation photos, and "
                   "its accuracy then shows here beside the float model's.")
        return
    if state == "preparing":
        st.info("⏳ Making the full-integer TFLite and ONNX files and checking them on the validation photos…")
        return
    report = serving.read_report(run.dir)
    _figures(report, ui.learned_validation(run.summary))
    for key, label, suffix, explanation in (
            ("tflite-int8", "Full-integer model (int8 .tflite)", "-int8.tflite",
             "Integer weights and arithmetic, 8-bit pixels in and probabilities out (divide by 256): for "
             "microcontrollers and Edge TPU-style accelerators."),
            ("onnx", "Model (.onnx)", ".onnx", "For onnxruntime and other ONNX runtimes: input `pixels`, raw RGB.")):
        figures = report.get(key, {})
        if "error" in figures:
            st.warning(f"{label}: not made. {figures['error']}", icon="⚠️")
            continue
        path = run.dir / figures["file"]
        st.download_button(f"{label} ({ui.file_size(path.stat().st_size)})", data=path.read_bytes,
                           file_name=f"{name}{suffix}", key=f"download_{key}", mime="application/octet-stream",
                           icon="⬇️", on_click="ignore", width="stretch")
        st.caption(explanation)
    st.button("Make them again", key="remake_formats", type="tertiary", on_click=jobs.request_formats,
              args=(project, run), help="With the photos as they are now.")


def code(run: RunRecord, name: str) -> None:
    """Code to use each download, filled in with this run's file names, input size and class order."""
    st.markdown("")  # a gap: the heading belongs to the whole section, not to the web page's column above it
    st.markdown("**Code to use it**")
    files = serving.RunFiles.of(run.dir, name)
    python, keras, javascript, kotlin = st.tabs(["Python (LiteRT)", "Python (Keras)", "JavaScript (web page)",
                                                 "Android (Kotlin)"])
    python.code(serving.python_litert(files), language="python")
    keras.code(serving.python_keras(files), language="python")
    javascript.caption("In a page beside the web export's files (litertjs/, preprocess.js, model.tflite).")
    javascript.code(serving.javascript(page_config(run.dir, name)), language="html")
    kotlin.code(serving.kotlin(files), language="kotlin")


def section(project: Project, run: RunRecord, name: str) -> None:
    """Below the .keras and TFLite downloads, once they are made."""
    page, more = st.columns(2, gap="large")
    with page:
        web_page(project, run, name)
    with more:
        waiting = serving.formats_state(run.dir) == "preparing"
        st.fragment(run_every=3 if waiting else None)(_polled)(project, run, name, waiting)
    code(run, name)


def _polled(project: Project, run: RunRecord, name: str, waiting: bool) -> None:
    if waiting != (serving.formats_state(run.dir) == "preparing"):
        st.rerun()  # asked for or made meanwhile: redraw, polling while the files are made
    more_formats(project, run, name)
