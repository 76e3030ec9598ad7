"""Results' exports: the web page download, full-integer TFLite and ONNX made by the worker on request and shown
with their accuracy beside the float model's, and the code to use each file, filled in for the run."""

from __future__ import annotations

import time

import pytest

from core.serving import formats

from core.jobs import server as jobs
from tests.test_exports import require_runtime
from tests.runs import finished_run
from tests.apptest import no_exceptions
from tests.test_train_page import RUN_TIMEOUT, page, texts, two_classes  # noqa: F401

pytestmark = pytest.mark.slow


def test_results_offers_the_web_page_more_formats_and_code(two_classes):  # noqa: F811
    require_runtime()
    run_id = finished_run(two_classes)
    run = two_classes.run(run_id)
    at = no_exceptions(page(two_classes, "pages/results.py"))
    assert "download_web" in {b.key for b in at.get("download_button")}
    assert "python3 -m http.server 8000" in texts(at)
    codes = [c.value for c in at.code]
    assert len(codes) == 4 and all('"blobs", "stripes"' in c for c in codes), codes
    assert f"test-project-run{run_id}.tflite" in codes[0] and f"test-project-run{run_id}.keras" in codes[1]
    assert "photoPixels" in codes[2] and "runSignature" in codes[3]
    web = next(b for b in at.get("download_button") if b.key == "download_web")
    assert web.proto.label.startswith("Web page")

    at.button(key="make_formats").click().run()
    assert formats.formats_state(run.dir) == "preparing"
    assert "Making the full-integer TFLite and ONNX files" in texts(no_exceptions(at))
    deadline = time.time() + 2 * RUN_TIMEOUT
    while jobs.more_formats(two_classes, run) != "ready":  # the worker makes and checks them
        assert time.time() < deadline, "full-integer TFLite and ONNX not made"
        time.sleep(1)
    report = formats.read_report(run.dir)
    assert "error" not in report["tflite-int8"] and "error" not in report["onnx"], report
    done = no_exceptions(page(two_classes, "pages/results.py"))
    assert {"download_tflite-int8", "download_onnx"} <= {b.key for b in done.get("download_button")}
    shown = texts(done)
    assert "| Full-integer (.tflite, int8) |" in shown and "| Float model (.tflite, as on this page) |" in shown
    assert f"On the {report['tflite-int8']['photos']} validation photos" in shown
    assert "compares the files with each other" in shown  # the saved head learned those photos too
