"""Command line: the app's capabilities without the browser (and the contract the benchmarks use).

    python -m core train DATA_DIR --out RUN_DIR [--backbone NAME] [--unfreeze-blocks N] [--epochs N]
                         [--learning-rate R] [--val-dir DIR | --val-split F] [--no-refit] [--seed N]
    python -m core evaluate RUN_DIR TEST_DIR [--json] [--unknown-dir DIR]
    python -m core predict RUN_DIR IMAGE... [--top-k K]
    python -m core export RUN_DIR --format {web,tflite-int8,onnx,tflite,tflite-quant,keras} [--out PATH]
    python -m core collect OUT_DIR "class one" "class two" ... [--per-class N] [--filter photo]
                           [--extra-words WORDS] [--no-safe-search]
    python -m core backbones
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter off the terminal


class TerminalProgress:
    """A one-line progress bar on stderr per training stage; also a TrainingListener."""

    def __init__(self):
        from core.jobs.progress import Pace

        self._last = 0.0
        self._stage, self._epochs, self._pace = "", 1, Pace()

    def bar(self, label: str, done: int, total: int, extra: str = "") -> None:
        now = time.time()
        if done < total and now - self._last < 0.2:
            return
        self._last = now
        width = 30
        filled = int(width * done / total) if total else width
        print(f"\r{label:<12} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} {extra}".ljust(90),
              end="\n" if done >= total else "", file=sys.stderr, flush=True)

    def on_stage(self, stage, info):
        from core.jobs.progress import Pace

        self._stage, self._epochs, self._pace = stage, info.get("epochs", 1), Pace()

    def on_batch(self, stage, epoch, batch, batches, logs):
        from core.jobs.progress import stage_fraction

        if batches:
            state = {"epoch": epoch, "epochs": self._epochs, "batch": batch, "batches": batches}
            left = self._pace.left(time.time(), stage_fraction(stage, state))
            self.bar(stage if stage == "embedding" else f"{stage} e{epoch}", batch, batches,
                     "" if left is None else f"~{left:.0f} s left in this stage")

    def on_epoch(self, stage, epoch, epochs, logs):
        shown = " ".join(f"{k}={v:.3g}" for k, v in logs.items() if isinstance(v, float))
        step = "strength" if stage == "head" else "epoch"
        print(f"\r{stage} {step} {epoch}/{epochs}: {shown}".ljust(90), file=sys.stderr, flush=True)

    def should_stop(self):
        return False


def cmd_train(args) -> int:
    from core.jobs.pipeline import data_from_folders, train_and_save
    from core.model.train import TrainConfig

    data = data_from_folders(Path(args.data_dir), Path(args.val_dir) if args.val_dir else None, args.val_split)
    cfg = TrainConfig(backbone=args.backbone, unfreeze_blocks=args.unfreeze_blocks, finetune_epochs=args.epochs,
                      finetune_learning_rate=args.learning_rate, refit=not args.no_refit, seed=args.seed)
    metrics, _ = train_and_save(data, cfg, Path(args.out), TerminalProgress())
    fine_tuning = ("finetune_path", "finetune_kept_head", "finetune_learning_rate", "finetune_epochs",
                   "boundary_seconds", "finetune_seconds", "finetune_refit_epochs") \
        if cfg.unfreeze_blocks else ()
    shown = {k: metrics[k] for k in ("val_accuracy", "val_accuracy_averaged", "images_used", "images_rejected",
                                     "embed_seconds", "embed_images_per_second", *fine_tuning, "head_refit",
                                     "train_seconds")}
    print(json.dumps(shown, indent=2))
    return 0


def cmd_evaluate(args) -> int:
    from core.serving.evaluate import evaluate_folder

    evaluation = evaluate_folder(Path(args.run_dir), Path(args.test_dir),
                                 Path(args.unknown_dir) if args.unknown_dir else None)
    if args.json:
        print(json.dumps({k: v for k, v in evaluation.to_dict().items()
                          if k != "misclassified" and (k != "unknown" or v is not None)}, indent=2))
    else:
        print(f"accuracy {evaluation.accuracy:.3f} on {evaluation.n} photos")
        if evaluation.unknown:
            u = evaluation.unknown
            print(f"photos of other kinds: {u['caught']:.1%} of {u['photos']} caught, {u['false_alarms']:.1%} false "
                  f"alarms on the test photos (threshold {u['threshold']:.3f}), AUROC {u['auroc']:.3f}")
        for row in evaluation.per_class:
            print(f"  {row['class']:<20} precision {row['precision']:.2f}  recall {row['recall']:.2f}  "
                  f"f1 {row['f1']:.2f}  ({row['support']} photos)")
    return 0


def cmd_predict(args) -> int:
    from core.images import ImageRejected
    from core.serving.predict import decode_upload
    from core.serving.predictor import load_predictor

    from core.model.novelty import NoveltySettings

    predictor = load_predictor(Path(args.run_dir))
    settings = NoveltySettings.load(Path(args.run_dir))
    threshold = settings.threshold if settings else None
    failures = 0
    for path in args.images:
        try:
            image = decode_upload(Path(path).read_bytes())
        except (OSError, ImageRejected) as exc:
            print(f"{path}: {exc}", file=sys.stderr)
            failures += 1
            continue
        prediction = predictor.predict_images([image], top_k=args.top_k)[0]
        ranked = ", ".join(f"{name} {p:.1%}" for name, p in prediction.top)
        if prediction.unfamiliar(threshold):
            print(f"{path}: not one of the classes (novelty {prediction.novelty:.3f} > {threshold:.3f}); "
                  f"closest: {ranked}")
        else:
            print(f"{path}: {ranked}")
    return 1 if failures else 0


def cmd_export(args) -> int:
    import shutil

    from core.serving import export

    from core.serving import formats
    from core.serving.predict import MODEL_FILE

    run_dir = Path(args.run_dir)
    if not (run_dir / export.METRICS_FILE).exists():
        raise ValueError(f"{run_dir} is not a finished run folder (no {export.METRICS_FILE}).")
    if args.format == "web":
        from core.serving.web_export import export_web

        print(export_web(run_dir, Path(args.out) if args.out else run_dir / f"{run_dir.name}-web.zip"))
        return 0
    if args.format in ("tflite-int8", "onnx"):
        export.assemble_downloads(run_dir)  # the .keras and float TFLite files they are made from
        figures = formats.make_int8(run_dir) if args.format == "tflite-int8" else formats.make_onnx(run_dir)
        print(json.dumps(figures, indent=2), file=sys.stderr)
        if "error" in figures:
            raise RuntimeError(figures["error"])
        made = run_dir / figures["file"]
    elif args.format == "keras":
        export.assemble_downloads(run_dir)
        made = run_dir / MODEL_FILE
    else:
        made = export.export_tflite(run_dir, quantize=args.format == "tflite-quant")
    if args.out:
        made = Path(shutil.copyfile(made, args.out))
    print(made)
    return 0


def cmd_collect(args) -> int:
    from core.intake.collect import CollectRequest, collect
    from core.intake.search import SearchUnavailable
    from core.store.project import Project

    out = Path(args.out_dir)
    project = Project(out / ".transferlab", out, create=True)  # the ImageFolder tree is OUT_DIR itself
    progress = TerminalProgress()

    def on_event(event):
        if event.kind in ("image_saved", "class_finished"):
            progress.bar(event.class_name[:12], event.saved, event.wanted)

    request = CollectRequest(args.classes, per_class=args.per_class, image_type=args.filter,
                             safe_search=not args.no_safe_search, extra_words=args.extra_words)
    try:
        report = collect(project, request, on_event=on_event)
    except SearchUnavailable as exc:
        raise SearchUnavailable(f"{exc} You can still put your own photos into one folder per class under {out}.") \
            from exc
    print(json.dumps(report.to_dict(), indent=2))
    return 0


def cmd_backbones(args) -> int:
    from core.model.backbones import REGISTRY, get_backbone
    from core.model.joined import OFFERED, RECOMMENDED

    for spec in REGISTRY.values():
        where = "offline" if spec.offline else ("cached" if spec.weights_cached() else "needs download")
        print(f"{spec.name:<20} {spec.input_size}px  {spec.params / 1e6:5.1f}M params  {where}")
    print("joined (offline networks side by side, head only; recommended first):")
    for name in OFFERED:
        spec = get_backbone(name)
        inside = "/".join(str(m.input_size) for m in spec.shrunk_members)
        note = "  recommended" if name == RECOMMENDED else ""
        print(f"{name}  {spec.input_size}px (shrunk to {inside}px inside)  {spec.params / 1e6:5.1f}M params  "
              f"offline{note}")
    return 0


def positive_rate(text: str) -> float:
    """A learning rate typed on the command line: a number above 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a learning rate: give a number above 0, such as 1e-4")
    return value


def parser() -> argparse.ArgumentParser:
    from core.model.backbones import DEFAULT_BACKBONE

    p = argparse.ArgumentParser(prog="python -m core", description="TransferLab from the command line.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a classifier on an ImageFolder tree")
    t.add_argument("data_dir")
    t.add_argument("--out", required=True, help="run folder to write model.keras, labels.txt, metrics.json into")
    t.add_argument("--backbone", default=DEFAULT_BACKBONE,
                   help="a name from `backbones`, or offline ones joined by '+' (head only), e.g. "
                        "efficientnet_lite0+efficientnet_lite2")
    t.add_argument("--unfreeze-blocks", type=int, default=0)
    t.add_argument("--epochs", type=int, help="maximum fine-tuning epochs (default: automatic, chosen for the number "
                   "of training photos; the head is solved, not trained in epochs)")
    t.add_argument("--learning-rate", type=positive_rate, help="peak fine-tuning rate (default: automatic, chosen "
                   "for the number of training photos)")
    group = t.add_mutually_exclusive_group()
    group.add_argument("--val-dir")
    group.add_argument("--val-split", type=float, default=0.2)
    t.add_argument("--no-refit", action="store_true",
                   help="save the model as validated: by default the model the run keeps then learns the validation "
                        "photos too, a head solved again with them, a model fine-tuned on cached activations trained "
                        "again on every photo for its best epoch count (the printed figures are always the model's "
                        "before, on photos it had not seen)")
    t.add_argument("--seed", type=int, default=0)
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="evaluate a run on an ImageFolder tree")
    e.add_argument("run_dir")
    e.add_argument("test_dir")
    e.add_argument("--json", action="store_true")
    e.add_argument("--unknown-dir", help="photos of other kinds (any tree, folder names ignored): how many the "
                                         "novelty check flags, and how many of TEST_DIR's it flags")
    e.set_defaults(func=cmd_evaluate)

    pr = sub.add_parser("predict", help="top-k classes for photos")
    pr.add_argument("run_dir")
    pr.add_argument("images", nargs="+")
    pr.add_argument("--top-k", type=int, default=3)
    pr.set_defaults(func=cmd_predict)

    x = sub.add_parser("export", help="export a run's model")
    x.add_argument("run_dir")
    x.add_argument("--format", choices=["web", "tflite-int8", "onnx", "tflite", "tflite-quant", "keras"],
                   default="tflite", help="web: a zip with a page that runs the model offline in a browser")
    x.add_argument("--out", help="where to write it (default: in the run folder)")
    x.set_defaults(func=cmd_export)

    c = sub.add_parser("collect", help="gather photos by web image search into an ImageFolder tree")
    c.add_argument("out_dir")
    c.add_argument("classes", nargs="+")
    c.add_argument("--per-class", type=int, default=50)
    c.add_argument("--filter", default="photo", help="photo, clipart, linedrawing, gif, transparent or '' for any")
    c.add_argument("--extra-words", default="")
    c.add_argument("--no-safe-search", action="store_true")
    c.set_defaults(func=cmd_collect)

    b = sub.add_parser("backbones", help="list the backbones")
    b.set_defaults(func=cmd_backbones)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one clear line, not a traceback, for anything the user can fix
        print(f"error: {exc}", file=sys.stderr)
        if os.environ.get("TRANSFERLAB_DEBUG"):
            raise
        return 2


if __name__ == "__main__":
    sys.exit(main())
