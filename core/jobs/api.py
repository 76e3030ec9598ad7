"""What the pages use of work that outlives a redraw: training runs in the worker process (`core.jobs.server`),
their progress (`core.jobs.progress`), web collections (`core.jobs.collect`), the server's background threads
(`core.jobs.background`) and timing the networks in the worker (`core.jobs.timing`). Pages import jobs from here
only; nothing here imports TensorFlow."""

from core.jobs.background import Busy, Task, TaskView
from core.jobs.collect import CollectBusy, CollectJob, JobView, parse_class_names
from core.jobs.collect import current as current_collection
from core.jobs.collect import forget as forget_collection
from core.jobs.collect import start as start_collecting
from core.jobs.pipeline import finished_runs, has_model
from core.jobs.progress import time_left
from core.jobs.server import (ACTIVE, JobRefused, active_run, downloads, heat_map_ready, more_formats, prepare,
                              refresh, request_formats, retry_downloads, start_training, stop)
from core.jobs.timing import forget_measuring, measuring, start_measuring

__all__ = ["ACTIVE", "Busy", "CollectBusy", "CollectJob", "JobRefused", "JobView", "Task", "TaskView", "active_run",
           "current_collection", "downloads", "finished_runs", "forget_collection", "forget_measuring", "has_model",
           "heat_map_ready", "measuring", "more_formats", "parse_class_names", "prepare", "refresh", "request_formats",
           "retry_downloads", "start_collecting", "start_measuring", "start_training", "stop", "time_left"]
