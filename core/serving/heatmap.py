"""Where the model looked: class activation maps (CAM) read from LiteRT files, without Keras.

Every model the app trains ends in global average pooling and one Dense layer, so a class's
score is the average, over the positions of the last feature map, of `features @ kernel[:, class]`,
plus the bias. That map (CAM, Zhou et al. 2016) is exact for these models: it is the score, laid
out over the photo. The kernel is centred across classes first (softmax ignores what all classes
share), so the map shows what pushed towards this class rather than towards any class. A joined
backbone's score is the sum of its members' scores, so its map is the sum of theirs, each brought
to the same size first.

Where the feature maps come from:
- a head-only run: the pretrained backbone's last feature map, from a LiteRT file cached once per
  backbone (`backbone_map_file`), times the rows of head.npz's kernel that belong to that member;
- a fine-tuned run (its trunk is its own): the run's `heatmap.tflite`, written by the worker from the
  run's Keras model, which returns the class probabilities and each member's class maps.

Converting needs Keras, so it happens only in the worker process (`prepare`, `core.jobs.worker`);
the server only reads the files (`load_heat_mapper`), and says `NotConverted` while they are
being made.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from core.model.backbones import BackboneSpec, get_backbone
from core.model.embed import LiteRTRunner, cache_key, litert_file, litert_path, tflite_bytes
from core.files import atomic_write
from core.model.head import HEAD_FILE, softmax
from core.images import load_rgb
from core.model.novelty import load_novelty, novelty_output
from core.serving.predict import MODEL_FILE
from core.store.run_folder import NotConverted, loading, read_head, read_labels, read_metrics  # noqa: F401

RUN_MAP_FILE = "heatmap.tflite"  # a fine-tuned run's own trunk: probabilities and each member's class maps

ClassMaps = Callable[[Image.Image], tuple[np.ndarray, list[np.ndarray]]]  # photo -> (C,) probabilities, (h, w, C) maps


def members(backbone: str) -> tuple[BackboneSpec, ...]:
    """The networks of a run's backbone as its model runs them: one, or the parts of a joined one ("a+b"), in the
    order their embeddings are concatenated, each reading the photo at the joined size (`core.model.joined`)."""
    return get_backbone(backbone).parts


def run_backbone(run_dir: Path) -> str:
    return read_metrics(run_dir)["backbone"]


def backbone_map_file(spec: BackboneSpec) -> Path:
    """Where the pretrained backbone's feature-map LiteRT file is cached (it may not be there yet)."""
    return litert_path(f"{cache_key(spec)}-map")


def files_needed(run_dir: Path) -> list[Path]:
    """The LiteRT files a run's heat maps are read from."""
    run_dir = Path(run_dir)
    if (run_dir / HEAD_FILE).exists():
        return [backbone_map_file(spec) for spec in members(run_backbone(run_dir))]
    return [run_dir / RUN_MAP_FILE]


def ready(run_dir: Path) -> bool:
    return all(path.exists() for path in files_needed(run_dir))


# ---- reading the maps (the server: no Keras) -----------------------------------------------------


class HeatMapper:
    """A run's heat maps, one photo at a time; thread-safe (a LiteRT interpreter takes one call at a time)."""

    def __init__(self, class_names: list[str], input_size: int, class_maps: ClassMaps):
        self.class_names = class_names
        self.input_size = input_size
        self._class_maps = class_maps
        self._lock = threading.Lock()

    def probabilities_and_maps(self, image: Image.Image) -> tuple[np.ndarray, list[np.ndarray]]:
        """The photo's class probabilities (C,) and each member's class maps (h, w, C)."""
        with self._lock:
            return self._class_maps(image)

    def heat_map(self, image: Image.Image, class_index: int | None = None) -> np.ndarray:
        """Heat map in [0, 1], shape (S, S), of what pushed the model towards a class (default: its top class)."""
        probabilities, maps = self.probabilities_and_maps(image)
        index = int(np.argmax(probabilities)) if class_index is None else class_index
        return combine([m[..., index] for m in maps], self.input_size)


def combine(maps: list[np.ndarray], size: int) -> np.ndarray:
    """Members' maps of one class, each resized to (size, size) and summed; its positive part scaled to [0, 1]."""
    total = sum(np.asarray(Image.fromarray(m.astype(np.float32), "F").resize((size, size), Image.Resampling.BICUBIC))
                for m in maps)
    total = np.maximum(total, 0.0)
    peak = float(total.max())
    return (total / peak if peak > 0 else total).astype(np.float32)


def centred(kernel: np.ndarray) -> np.ndarray:
    """The Dense kernel less what all classes share (softmax's scores do not depend on it)."""
    return kernel - kernel.mean(axis=1, keepdims=True)


def probabilities(outputs: list[np.ndarray]) -> np.ndarray:
    """The (N, C) probabilities among a heat map file's outputs (the class maps are (N, h, w, C))."""
    return next(output for output in outputs if output.ndim == 2)


def load_heat_mapper(run_dir: Path) -> HeatMapper:
    """The run's heat maps from its LiteRT files; NotConverted while the worker is still making them, and
    RunFolderInvalid (`core.store.run_folder`) when a file breaks the run-folder contract."""
    run_dir = Path(run_dir)
    with loading(run_dir):
        missing = [path for path in files_needed(run_dir) if not path.exists()]
        if missing:
            raise NotConverted(", ".join(path.name for path in missing))
        names = read_labels(run_dir)
        if (run_dir / HEAD_FILE).exists():
            return _head_mapper(run_dir, names)
        return _run_mapper(run_dir, names)


def _run_mapper(run_dir: Path, names: list[str]) -> HeatMapper:
    """Fine-tuned run: its own heatmap.tflite gives the probabilities and each member's class maps."""
    runner = LiteRTRunner(run_dir / RUN_MAP_FILE, n_classes=len(names))

    def class_maps(image: Image.Image) -> tuple[np.ndarray, list[np.ndarray]]:
        outputs = runner.all_outputs(load_rgb(image, runner.input_size)[None].astype(np.float32))
        return probabilities(outputs)[0], [o[0] for o in outputs if o.ndim == 4]

    return HeatMapper(names, runner.input_size, class_maps)


def _head_mapper(run_dir: Path, names: list[str]) -> HeatMapper:
    """Head-only run: each member's pretrained feature map times its rows of head.npz's kernel."""
    specs = members(run_backbone(run_dir))
    dims = [spec.feature_dim for spec in specs]
    kernel, bias = read_head(run_dir, sum(dims), len(names))
    rows = np.split(centred(kernel), np.cumsum(dims)[:-1])
    runners = [LiteRTRunner(backbone_map_file(spec)) for spec in specs]

    def class_maps(image: Image.Image) -> tuple[np.ndarray, list[np.ndarray]]:
        features = [runner(load_rgb(image, spec.input_size)[None].astype(np.float32))[0]
                    for runner, spec in zip(runners, specs)]
        logits = np.concatenate([f.mean(axis=(0, 1)) for f in features]) @ kernel + bias
        return softmax(logits[None])[0], [f @ r for f, r in zip(features, rows)]

    return HeatMapper(names, max(spec.input_size for spec in specs), class_maps)


# ---- making the files (the worker: Keras) --------------------------------------------------------


def litert_backbone_map(spec: BackboneSpec) -> Path:
    """The pretrained backbone's feature-map LiteRT file, converted on first use (needs Keras)."""
    def build():
        import keras

        inputs = keras.Input((spec.input_size, spec.input_size, 3), name="pixels")
        return keras.Model(inputs, spec.build()(inputs, training=False), name=f"{spec.name}_feature_map")

    return litert_file(backbone_map_file(spec).stem, spec.input_size, build)


def run_map_model(model, reference=None):
    """The classifier with more outputs: its probabilities, then each member's class maps (the feature map that
    feeds a GlobalAveragePooling2D, through the centred Dense kernel's rows for it, as a 1x1 convolution), then its
    novelty score when it has one."""
    import keras

    kernel = model.get_layer("predictions").get_weights()[0]
    rows = centred(kernel)
    maps, start = [], 0
    for pool in pooling_layers(model):
        features = pool.input
        depth = int(features.shape[-1])
        conv = keras.layers.Conv2D(kernel.shape[1], 1, use_bias=False, name=f"class_map_{len(maps)}")
        maps.append(conv(features))
        conv.set_weights([rows[start:start + depth][None, None]])
        start += depth
    if start != kernel.shape[0]:
        raise ValueError(f"The pooled features ({start}) do not match the Dense kernel's {kernel.shape[0]} rows.")
    # a run with a novelty check keeps its `novelty` output (N,) here too (Try it reads this file first), on the same
    # graph as the probabilities' (a mirror-averaging model's own `novelty` tensor is on another input)
    novelty = [] if reference is None else [novelty_output(model.get_layer("pooled").output, reference)]
    return keras.Model(model.input, [model.get_layer("predictions").output, *maps, *novelty],
                       name="transferlab_heat_map")


def pooling_layers(model) -> list:
    """The GlobalAveragePooling2D layers feeding the Dense head, in the order their outputs are concatenated."""
    import keras

    pools = [layer for layer in model.layers if isinstance(layer, keras.layers.GlobalAveragePooling2D)]
    joins = [layer for layer in model.layers if isinstance(layer, keras.layers.Concatenate)]
    if len(pools) == 1 or not joins:
        return pools

    def source(tensor):
        operation = tensor._keras_history.operation
        while not isinstance(operation, keras.layers.GlobalAveragePooling2D):
            operation = operation.input._keras_history.operation
        return operation

    return [source(tensor) for tensor in joins[0].input]


def write_run_map(run_dir: Path, model=None) -> Path:
    """A fine-tuned run's heatmap.tflite, from its Keras model (needs Keras)."""
    import keras

    from core.model.train import VIEW_AVERAGE

    run_dir = Path(run_dir)
    # A view-averaging model built in memory reaches its layers' first outputs through another input than its own:
    # read back from the file, its plain view is their first call.
    if model is None or any(layer.name == VIEW_AVERAGE for layer in model.layers):
        model = keras.saving.load_model(run_dir / MODEL_FILE, safe_mode=True)
    path = run_dir / RUN_MAP_FILE
    check = load_novelty(run_dir, int(model.get_layer("pooled").output.shape[-1]))
    atomic_write(path, tflite_bytes(run_map_model(model, None if check is None else check[0]),
                                    int(model.input_shape[1])))
    return path


def prepare(run_dir: Path, model=None) -> None:
    """Make the LiteRT files the run's heat maps need, when missing (the worker's job: it needs Keras)."""
    run_dir = Path(run_dir)
    if (run_dir / HEAD_FILE).exists():
        for spec in members(run_backbone(run_dir)):
            litert_backbone_map(spec)
    elif not (run_dir / RUN_MAP_FILE).exists():
        write_run_map(run_dir, model)
