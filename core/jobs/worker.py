"""The training worker: one long-lived process with TensorFlow and LiteRT already imported.

The server hands it tasks (`WORKER.submit`), one JSON line each on the worker's stdin: train a
run, make a run's heat map files (`core.serving.heatmap`: the server never imports Keras), assemble a
run's downloads, time a network (`core.model.speed`), convert a backbone for the server's suspects check, keep a
project's embeddings ready. Training goes first, one run at a time; heat
map files and then downloads are made on a thread beside it, so the next run need not wait for
them; photos are embedded on a low-priority thread while nothing trains. The worker exits by
itself once its stdin closes (the server that started it is gone) and the tasks it was given are
done, or after IDLE_EXIT seconds without work; the server starts a fresh one when needed.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import itertools
import json
import os
import queue
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Callable

from core.files import atomic_write
from core.jobs.pipeline import data_from_project, photo_snapshot, train_and_save
from core.jobs.progress import LOG_FILE, SNAPSHOT_DIR, WAITING, Pace, stage_fraction
from core.jobs.turns import turn
from core.model.train import STAGE_FINETUNE, TrainConfig, TrainingStopped
from core.store.project import Project

IDLE_EXIT = 30 * 60  # seconds without any work before the worker ends itself
POLL = 1.0           # seconds between looks for photos to embed
# The longest wait between looks while none was missing: a look costs 0.3 s of CPU at 50,000 photos, and one a second
# kept a third of a core busy in an idle worker. A page asking the worker to watch a project (every page run) wakes it.
IDLE_POLL = 15.0
PRIORITY = {"train": 0, "heatmap": 1, "speed": 1, "backbone": 1, "assemble": 1, "formats": 1, "watch": 2, "exit": 9}  # "exit" comes after everything already sent
PROGRESS_INTERVAL = 0.5  # seconds between progress writes: live enough, cheap for SQLite


# Keras builds models from global state (names, seeded randomness): fine-tuning and download assembly take turns.
KERAS_LOCK = threading.Lock()


def _project(task: dict) -> Project:
    return Project(Path(task["meta"]), Path(task["images"]))


HEAT_MAP, BACKBONE, SPEED, DOWNLOADS, MORE_FORMATS, FINISH = 0, 1, 2, 3, 4, 9  # the Assembler's jobs, in the order it takes them
ANSWERED = {"speed": SPEED, "backbone": BACKBONE}  # the tasks the server waits on an answer file for (`WorkerClient.ask`)


class Assembler(threading.Thread):
    """Makes the LiteRT files of usable runs' heat maps and times networks, then makes runs' downloads, one at a
    time, beside training: a page waiting for a heat map or a timing goes before any download. Training goes
    before all: while a run trains
    (`idle` cleared) the assembler starts nothing new, and it runs at a lower OS priority, so a head-only run
    clicked while the last run's downloads are made does not wait behind them."""

    def __init__(self):
        super().__init__(name="assembler", daemon=True)
        self.tasks: queue.PriorityQueue = queue.PriorityQueue()
        self.pending: set[tuple[int, Path]] = set()
        self.last_work = time.time()
        self.idle = threading.Event()  # set while no run trains
        self.idle.set()
        self._order = itertools.count()

    def add(self, job: int, target: Path, model=None) -> None:
        """Queue a job about `target`: a run folder, or for SPEED and BACKBONE the answer file (`model`: the
        backbone's name)."""
        if (job, target) not in self.pending:
            self.pending.add((job, target))
            self.tasks.put((job, next(self._order), target, model))

    def run(self) -> None:
        from core.model.backbones import REGISTRY, get_backbone
        from core.model.embed import ready_backbone
        from core.model.speed import measure
        from core.serving import heatmap
        from core.serving.export import assemble_downloads, downloads_state
        from core.serving.formats import assemble_more

        with contextlib.suppress(AttributeError, OSError):  # Linux: lower this thread (and the ones it starts) only
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 5)
        while (item := self.tasks.get())[0] != FINISH:
            self.idle.wait()  # a run training goes first
            job, _, target, model = item
            try:
                with turn(alone=False), KERAS_LOCK:
                    if job == HEAT_MAP:
                        heatmap.prepare(target, model)
                    elif job == SPEED:
                        _answer(target, lambda: {"entry": measure(REGISTRY[model])})  # random weights: time any
                    elif job == BACKBONE:
                        _answer(target, lambda: ready_backbone(get_backbone(model)) or {})
                    elif downloads_state(target) != "ready":
                        assemble_downloads(target, model)
                    if job == MORE_FORMATS:  # full-integer TFLite and ONNX, asked for on Results
                        assemble_more(target)
            except Exception:  # downloads: recorded in the run folder for the page; the worker goes on
                traceback.print_exc()
            finally:
                self.pending.discard((job, target))
                if self.tasks.empty() and self.idle.is_set():  # the last job, and no run training
                    with KERAS_LOCK:
                        give_memory_back(keras_too=True)
                self.last_work = time.time()

    def finish(self) -> None:
        self.tasks.put((FINISH, next(self._order), None, None))
        self.join()


def give_memory_back(keras_too: bool = False) -> None:
    """Hand the memory a finished job freed back to the OS; `keras_too` (holding KERAS_LOCK) drops Keras's global
    state first. A TFLite conversion left 1.2 GB in the worker against 0.7 GB before it, and the server's own
    work (the suspects check) came on top of that (issue 23); this gives back most of the difference."""
    if keras_too:
        import keras

        from core.model.embed import CONVERSION_LOCK

        with CONVERSION_LOCK:  # the embedder's thread may be converting a backbone on a fresh cache
            keras.backend.clear_session()
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # glibc only: elsewhere freed memory stays with the process
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _answer(reply: Path, work: Callable[[], dict]) -> None:
    """Do the work and write its outcome to `reply`, where the server waits for it (`WorkerClient.ask`): what
    `work` returns, or {"error": why it failed}. A failure must not stop the worker."""
    try:
        outcome = work()
    except Exception as exc:
        outcome = {"error": f"{type(exc).__name__}: {exc}"}
    atomic_write(reply, json.dumps(outcome).encode())


class Embedder(threading.Thread):
    """Embeds the photos of the projects it watches, at low priority, whenever training is not running."""

    def __init__(self):
        super().__init__(name="embedder", daemon=True)
        self.projects: dict[str, object] = {}
        self.unreadable: set[str] = set()  # content hashes of photos that failed to decode: not retried
        self.allowed = threading.Event()
        self.allowed.set()
        self.stopping = threading.Event()
        self.wake = threading.Event()  # look now: a page asked to watch a project, or the worker is ending
        self.last_work = time.time()

    def watch(self, project) -> None:
        self.projects[str(project.meta_dir)] = project
        self.wake.set()

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()

    def run(self) -> None:
        from core.model.preembed import WORKER_CHUNK, embed_some

        with contextlib.suppress(AttributeError, OSError):  # Linux: lower this thread (and the ones it starts) only
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        wait = POLL
        while not self.stopping.is_set():
            self.allowed.wait()
            done = 0
            for key, project in list(self.projects.items()):
                try:
                    done += embed_some(project, WORKER_CHUNK, unreadable=self.unreadable,
                                       should_stop=lambda: not self.allowed.is_set() or self.stopping.is_set())
                except Exception:  # a deleted or broken project is dropped until a page asks again
                    traceback.print_exc()
                    self.projects.pop(key, None)
                if not self.allowed.is_set():
                    break
            if done:
                self.last_work, wait = time.time(), POLL
            else:  # nothing to embed: look less often the longer nothing comes
                wait = min(wait * 2, IDLE_POLL)
                self.wake.wait(wait)
            self.wake.clear()


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

    from core.serving.export import downloads_state

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
            if task["task"] in ANSWERED:
                assembler.add(ANSWERED[task["task"]], Path(task["reply"]), task["backbone"])
                continue
            project = _project(task)
            if task["task"] == "train":
                embedder.allowed.clear()  # training goes first
                assembler.idle.clear()
                fine_tuning = TrainConfig.from_dict(project.run(task["run"]).config).unfreeze_blocks > 0
                with KERAS_LOCK if fine_tuning else contextlib.nullcontext():
                    usable, model = run_job(project, task["run"])
                if usable:
                    for job in (HEAT_MAP, DOWNLOADS):
                        assembler.add(job, project.run_dir(task["run"]), model)
                give_memory_back()  # Keras's state stays: the assembler may be using it now
            elif task["task"] == "heatmap":
                assembler.add(HEAT_MAP, project.run_dir(task["run"]))
            elif task["task"] == "assemble" and downloads_state(project.run_dir(task["run"])) == "preparing":
                assembler.add(DOWNLOADS, project.run_dir(task["run"]))
            elif task["task"] == "formats":
                assembler.add(MORE_FORMATS, project.run_dir(task["run"]))
            elif task["task"] == "watch":
                embedder.watch(project)
        except Exception:  # one bad task (a deleted project...) must not end the worker
            traceback.print_exc()
        finally:
            embedder.allowed.set()
            assembler.idle.set()
            last_work = time.time()
    embedder.stop()
    assembler.finish()
    print(f"worker {os.getpid()} exits", flush=True)



class StoreListener:
    """Writes a run's progress and per-epoch metrics to the store; reads stop requests from it."""

    def __init__(self, project: Project, run_id: int):
        self.project, self.run_id = project, run_id
        self.stage, self.stage_started = "", time.time()
        self.stage_info: dict = {}
        self._last_write = self._last_check = 0.0
        self._stop = False
        self._pace = Pace()

    def on_stage(self, stage: str, info: dict) -> None:
        self.stage, self.stage_started, self.stage_info = stage, time.time(), info
        self._pace = Pace()
        self._write({"epoch": 0, "epochs": info.get("epochs", 1), "batch": 0, "batches": 0, "logs": {}}, force=True)

    def on_batch(self, stage: str, epoch: int, batch: int, batches: int, logs: dict) -> None:
        epochs = self.stage_info.get("epochs", 1)
        self._write({"epoch": epoch, "epochs": epochs, "batch": batch, "batches": batches, "logs": logs})

    def on_epoch(self, stage: str, epoch: int, epochs: int, logs: dict) -> None:
        self.project.add_epoch(self.run_id, stage, epoch, logs)
        self._write({"epoch": epoch, "epochs": epochs, "batch": 0, "batches": 0, "logs": logs}, force=True)

    def should_stop(self) -> bool:
        now = time.time()
        if not self._stop and now - self._last_check >= PROGRESS_INTERVAL:
            self._last_check = now
            self._stop = self.project.run(self.run_id).stop_requested
        return self._stop

    def _write(self, state: dict, force: bool = False) -> None:
        now = time.time()
        if not force and now - self._last_write < PROGRESS_INTERVAL:
            return
        self._last_write = now
        fraction = stage_fraction(self.stage, state)
        elapsed = now - self.stage_started
        eta = self._pace.left(now, fraction)
        self.project.update_run(self.run_id, progress={
            "stage": self.stage, "fraction": fraction, "stage_elapsed": elapsed, "eta_seconds": eta, "written": now,
            "finetune_planned": self.stage_info.get("blocks", 0) > 0 or self.stage == STAGE_FINETUNE, **state})


def run_job(project: Project, run_id: int) -> tuple[bool, object]:
    """Worker side: train the project's data with the run's settings and record the outcome, usable before its
    downloads exist. Returns whether it left a model, and the fine-tuned Keras model (None: head only)."""
    run = project.run(run_id)
    if run.stop_requested:
        project.update_run(run_id, status="stopped", error="Stopped before training started.")
        return False, None
    project.update_run(run_id, status="running", pid=os.getpid())
    try:
        with turn(alone=False, should_stop=lambda: project.run(run_id).stop_requested,
                  on_wait=lambda: project.update_run(run_id, progress={"waiting": WAITING, "written": time.time()})), \
                photo_snapshot(data_from_project(project), run.dir / SNAPSHOT_DIR) as data:
            metrics, model = train_and_save(data, TrainConfig.from_dict(run.config), run.dir,
                                            StoreListener(project, run_id), assemble=False)
        project.update_run(run_id, status="stopped" if metrics["stopped_early_by_user"] else "completed",
                           summary=metrics)
        return True, model
    except TrainingStopped as exc:
        project.update_run(run_id, status="stopped", error=str(exc))
    except InterruptedError:  # stopped while waiting for its turn
        project.update_run(run_id, status="stopped", error="Stopped before training started.")
    except Exception as exc:  # the page must show the reason, never an endless spinner
        with open(run.dir / LOG_FILE, "a") as log:
            traceback.print_exc(file=log)
        project.update_run(run_id, status="failed", error=f"{type(exc).__name__}: {exc}")
    return False, None


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
