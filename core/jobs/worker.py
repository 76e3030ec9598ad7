"""The training worker: one long-lived process with TensorFlow and LiteRT already imported.

The server hands it tasks (`WORKER.submit`), one JSON line each on the worker's stdin: train a
run, make a run's heat map files (`core.serving.heatmap`: the server never imports Keras), assemble a
run's downloads, keep a project's embeddings ready. Training goes first, one run at a time; heat
map files and then downloads are made on a thread beside it, so the next run need not wait for
them; photos are embedded on a low-priority thread while nothing trains. The worker exits by
itself once its stdin closes (the server that started it is gone) and the tasks it was given are
done, or after IDLE_EXIT seconds without work; the server starts a fresh one when needed.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import queue
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

from core import config

IDLE_EXIT = 30 * 60  # seconds without any work before the worker ends itself
POLL = 1.0           # seconds between looks for photos to embed
PRIORITY = {"train": 0, "heatmap": 1, "assemble": 1, "formats": 1, "watch": 2, "exit": 9}  # "exit" comes after everything already sent
LOG_NAME = "worker.log"


# ---- server side ----------------------------------------------------------------------------------


class WorkerClient:
    """The server's handle on its worker: started on first use, restarted when it has died."""

    def __init__(self):
        self._process: subprocess.Popen | None = None
        self._cache: str | None = None
        self._lock = threading.Lock()

    def submit(self, task: str, project, **fields) -> int:
        """Hand the worker a task about a project; returns the worker's process id."""
        line = json.dumps({"task": task, "meta": str(project.meta_dir), "images": str(project.images_dir),
                           **fields}) + "\n"
        with self._lock:
            for _ in range(2):  # a worker that died since it was last used is replaced once
                process = self._running()
                try:
                    process.stdin.write(line.encode())
                    process.stdin.flush()
                    return process.pid
                except OSError:
                    self._release()
        raise RuntimeError(f"The training worker stops as soon as it starts; see {log_path()}.")

    def _running(self) -> subprocess.Popen:
        # A worker reads the cache setting once (projects come with each task): when it changes, start another.
        cache = str(config.cache_dir())
        if self._process is not None and (self._process.poll() is not None or self._cache != cache):
            self._release()
        if self._process is None:
            log_path().parent.mkdir(parents=True, exist_ok=True)
            with open(log_path(), "ab") as log:
                self._process = subprocess.Popen(
                    [sys.executable, "-m", "core.jobs.worker"], stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
                    env={**os.environ, "TRANSFERLAB_CACHE": cache},
                    cwd=Path(__file__).resolve().parents[2], start_new_session=True)  # a Ctrl-C in the terminal spares a run
            self._cache = cache
        return self._process

    def _release(self) -> subprocess.Popen | None:
        """Close the worker's stdin (it finishes what it has and exits) and forget it."""
        process, self._process = self._process, None
        if process is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
            threading.Thread(target=process.wait, daemon=True).start()  # reaped when it ends: no zombie
        return process

    def shutdown(self, timeout: float = 120.0) -> None:
        """Let the worker finish its tasks and wait for it to exit; kill it after `timeout` seconds."""
        with self._lock:
            process = self._release()
        if process is not None:
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None and self._process.poll() is None else None


WORKER = WorkerClient()


def log_path() -> Path:
    return config.cache_dir() / LOG_NAME


# ---- worker side ----------------------------------------------------------------------------------

# Keras builds models from global state (names, seeded randomness): fine-tuning and download assembly take turns.
KERAS_LOCK = threading.Lock()


def _project(task: dict):
    from core.store.project import Project

    return Project(Path(task["meta"]), Path(task["images"]))


HEAT_MAP, DOWNLOADS, MORE_FORMATS, FINISH = 0, 1, 2, 9  # the Assembler's jobs, in the order it takes them


class Assembler(threading.Thread):
    """Makes the LiteRT files of usable runs' heat maps, then their downloads, one at a time, beside training:
    a page waiting for a heat map goes before any download."""

    def __init__(self):
        super().__init__(name="assembler", daemon=True)
        self.tasks: queue.PriorityQueue = queue.PriorityQueue()
        self.pending: set[tuple[int, Path]] = set()
        self.last_work = time.time()
        self._order = itertools.count()

    def add(self, job: int, run_dir: Path, model=None) -> None:
        if (job, run_dir) not in self.pending:
            self.pending.add((job, run_dir))
            self.tasks.put((job, next(self._order), run_dir, model))

    def run(self) -> None:
        from core.serving import heatmap
        from core.serving.export import assemble_downloads, downloads_state
        from core.serving.formats import assemble_more

        while (item := self.tasks.get())[0] != FINISH:
            job, _, run_dir, model = item
            try:
                with KERAS_LOCK:
                    if job == HEAT_MAP:
                        heatmap.prepare(run_dir, model)
                    elif downloads_state(run_dir) != "ready":
                        assemble_downloads(run_dir, model)
                    if job == MORE_FORMATS:  # full-integer TFLite and ONNX, asked for on Results
                        assemble_more(run_dir)
            except Exception:  # downloads: recorded in the run folder for the page; the worker goes on
                traceback.print_exc()
            finally:
                self.pending.discard((job, run_dir))
                self.last_work = time.time()

    def finish(self) -> None:
        self.tasks.put((FINISH, next(self._order), None, None))
        self.join()


class Embedder(threading.Thread):
    """Embeds the photos of the projects it watches, at low priority, whenever training is not running."""

    def __init__(self):
        super().__init__(name="embedder", daemon=True)
        self.projects: dict[str, object] = {}
        self.unreadable: set[str] = set()  # content hashes of photos that failed to decode: not retried
        self.allowed = threading.Event()
        self.allowed.set()
        self.stopping = threading.Event()
        self.last_work = time.time()

    def run(self) -> None:
        from core.model.preembed import embed_some

        with contextlib.suppress(AttributeError, OSError):  # Linux: lower this thread (and the ones it starts) only
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        while not self.stopping.is_set():
            self.allowed.wait()
            done = 0
            for key, project in list(self.projects.items()):
                try:
                    done += embed_some(project, unreadable=self.unreadable)
                except Exception:  # a deleted or broken project is dropped until a page asks again
                    traceback.print_exc()
                    self.projects.pop(key, None)
                if not self.allowed.is_set():
                    break
            if done:
                self.last_work = time.time()
            else:
                self.stopping.wait(POLL)


def _read_tasks(tasks: queue.PriorityQueue) -> None:
    """Stdin lines into the task queue; end of input (the server is gone) queues the exit."""
    order = itertools.count()
    for raw in sys.stdin.buffer:
        with contextlib.suppress(ValueError, KeyError):
            task = json.loads(raw)
            tasks.put((PRIORITY[task["task"]], next(order), task))
    tasks.put((PRIORITY["exit"], next(order), {"task": "exit"}))


def main() -> None:
    import keras  # noqa: F401  imported here, once: the reason this process exists
    from ai_edge_litert import interpreter  # noqa: F401

    from core.jobs import server as jobs
    from core.serving.export import downloads_state
    from core.model.train import TrainConfig

    tasks: queue.PriorityQueue = queue.PriorityQueue()
    threading.Thread(target=_read_tasks, args=(tasks,), daemon=True).start()
    assembler, embedder = Assembler(), Embedder()
    assembler.start()
    embedder.start()
    last_work = time.time()
    print(f"worker {os.getpid()} ready", flush=True)
    while True:
        try:
            _, _, task = tasks.get(timeout=POLL)
        except queue.Empty:
            if time.time() - max(last_work, assembler.last_work, embedder.last_work) > IDLE_EXIT:
                break
            continue
        if task["task"] == "exit":
            break
        try:
            project = _project(task)
            if task["task"] == "train":
                embedder.allowed.clear()  # training goes first
                fine_tuning = TrainConfig.from_dict(project.run(task["run"]).config).unfreeze_blocks > 0
                with KERAS_LOCK if fine_tuning else contextlib.nullcontext():
                    usable, model = jobs.run_job(project, task["run"])
                if usable:
                    for job in (HEAT_MAP, DOWNLOADS):
                        assembler.add(job, project.run_dir(task["run"]), model)
            elif task["task"] == "heatmap":
                assembler.add(HEAT_MAP, project.run_dir(task["run"]))
            elif task["task"] == "assemble" and downloads_state(project.run_dir(task["run"])) == "preparing":
                assembler.add(DOWNLOADS, project.run_dir(task["run"]))
            elif task["task"] == "formats":
                assembler.add(MORE_FORMATS, project.run_dir(task["run"]))
            elif task["task"] == "watch":
                embedder.projects[str(project.meta_dir)] = project
        except Exception:  # one bad task (a deleted project...) must not end the worker
            traceback.print_exc()
        finally:
            embedder.allowed.set()
            last_work = time.time()
    embedder.stopping.set()
    assembler.finish()
    print(f"worker {os.getpid()} exits", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
