"""What the pages use of a finished run: verdicts on uploads and webcam frames, heat maps, the downloads and the
ways to use them. Pages import serving from here only; the server reads LiteRT files and never loads Keras."""

from core.config import ice_servers
from core.images import ImageRejected, decode_at, dim_outside_square, sha256_hex, unseen_share
from core.serving.evaluate import most_confused
from core.serving.export import TFLITE_FILES, dataset_zip, downloads_error, folder_zip
from core.serving.formats import formats_state, read_report
from core.serving.heatmap import NotConverted, files_needed, load_heat_mapper
from core.serving.live import FrameRecorder, LiveClassifier
from core.serving.predict import NOT_SURE, SURE, UNFAMILIAR, Arrivals, Bar, Prediction, overlay_heatmap, summary_rows
from core.serving.predictor import load_predictor, loading, model_file
from core.serving.snippets import RunFiles, javascript, kotlin, python_keras, python_litert
from core.serving.web_export import PAGE_URL, SERVE_COMMAND, export_web, page_config
from core.serving.web_runtime import RuntimeMissing, runtime_files

__all__ = ["NOT_SURE", "PAGE_URL", "SERVE_COMMAND", "SURE", "TFLITE_FILES", "UNFAMILIAR", "Arrivals", "Bar",
           "FrameRecorder", "ImageRejected", "LiveClassifier", "NotConverted", "Prediction", "RunFiles",
           "RuntimeMissing", "dataset_zip", "decode_at", "dim_outside_square", "downloads_error", "export_web",
           "files_needed", "folder_zip", "formats_state", "ice_servers", "javascript", "kotlin", "load_heat_mapper",
           "load_predictor", "loading", "model_file", "most_confused", "overlay_heatmap", "page_config", "python_keras",
           "python_litert", "read_report", "runtime_files", "sha256_hex", "summary_rows", "unseen_share"]
