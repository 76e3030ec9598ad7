"""The frozen part of a fine-tuned backbone, run once per photo: activations at the freeze boundary, cached.

Unfreezing the last N blocks leaves everything below them frozen, so its output (the boundary
activation) never changes during fine-tuning. It is computed once per photo and view through a
LiteRT file of the backbone cut at the boundary, stored as float16 and keyed by content like the
embeddings; epochs then run only through the top N blocks (`top_model`), whose layers are the
classifier's own, so training them trains the full model in place.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from core import config
from core.model.backbones import BackboneSpec
from core.model.embed import (EmbeddingCache, EmbedResult, LiteRTRunner, Progress, View, as_is, cache_key, cached_views,
                        keras_runner, litert_file, mirrored, on_gpu)

if TYPE_CHECKING:
    import keras

ACTIVATION_DTYPE = np.float16
# Above this many bytes of activations for one run (held in memory while training, and tf.data copies them;
# a tensor past 2 GB cannot be one), caching costs more memory than it saves time: the
# boundary is early in the network, so most of the work is above it anyway. Fine-tuning then streams photos.
CACHE_BUDGET_BYTES = 1_000_000_000


def activation_cache() -> EmbeddingCache:
    """The shared float16 cache of boundary activations, beside the embeddings."""
    return EmbeddingCache(config.cache_dir() / "activations.sqlite", ACTIVATION_DTYPE)


def boundary_layer(spec: BackboneSpec, backbone: "keras.Model", unfreeze_blocks: int) -> str | None:
    """Name of the last frozen layer (the boundary's output); None when nothing below the unfrozen blocks is frozen."""
    groups = spec.blocks(backbone)
    return groups[-unfreeze_blocks - 1][-1] if 0 < unfreeze_blocks < len(groups) else None


def split(spec: BackboneSpec, backbone: "keras.Model", unfreeze_blocks: int):
    """(bottom, top) Keras models sharing `backbone`'s layers: pixels -> boundary, boundary -> feature map;
    None when the blocks above the boundary need more than its one tensor (a skip connection across it)."""
    import keras

    name = boundary_layer(spec, backbone, unfreeze_blocks)
    if name is None:
        return None
    boundary = backbone.get_layer(name).output
    try:
        return (keras.Model(backbone.input, boundary, name="frozen_part"),
                keras.Model(boundary, backbone.output, name="unfrozen_part"))
    except ValueError:
        return None


@functools.lru_cache(maxsize=32)
def boundary_shape(spec: BackboneSpec, unfreeze_blocks: int) -> tuple[int, ...] | None:
    """Shape of one photo's boundary activation, from the untrained graph (no weights needed); None if uncacheable."""
    parts = split(spec, spec.build(weights=False), unfreeze_blocks)
    return tuple(parts[1].input_shape[1:]) if parts else None


def cacheable(shape: tuple[int, ...] | None, photos: int, views: int) -> bool:
    """Whether a run's activations fit the budget (float16)."""
    return shape is not None and int(np.prod(shape)) * 2 * photos * views <= CACHE_BUDGET_BYTES


def top_features(classifier: "keras.Model", spec: BackboneSpec, unfreeze_blocks: int) -> "keras.Model":
    """Boundary activation -> pooled features through the classifier's own unfrozen blocks and pooling: what its
    Dense layer reads."""
    import keras

    _, upper = split(spec, classifier.get_layer("backbone"), unfreeze_blocks)
    inputs = keras.Input(upper.input_shape[1:], name="boundary")
    pooled = classifier.get_layer("pooled")(upper(inputs, training=False))  # BatchNorm in inference mode, as in the classifier
    return keras.Model(inputs, pooled, name="unfrozen_features")


def top_model(classifier: "keras.Model", spec: BackboneSpec, unfreeze_blocks: int) -> "keras.Model":
    """Boundary activation -> class probabilities through the classifier's own unfrozen blocks, pooling, dropout
    and Dense layer: weights trained here are the classifier's weights."""
    import keras

    features = top_features(classifier, spec, unfreeze_blocks)
    inputs = keras.Input(features.input_shape[1:], name="boundary")
    x = classifier.get_layer("dropout")(features(inputs))
    return keras.Model(inputs, classifier.get_layer("predictions")(x), name="unfrozen_classifier")


ZOOM = 0.8  # the zoomed views show the middle 80 % of the photo, enlarged back to the input size


def zoom_margin(size: int) -> int:
    """Pixels cut from each side of a `size`-pixel photo for its zoomed view."""
    return int(round(size * (1 - ZOOM) / 2))


def zoomed(pixels: np.ndarray) -> np.ndarray:
    """The middle of each photo, enlarged: a fixed stand-in for the random zoom of streamed fine-tuning."""
    from PIL import Image

    size = pixels.shape[1]
    margin = zoom_margin(size)
    crops = [Image.fromarray(p.clip(0, 255).astype(np.uint8)).crop((margin, margin, size - margin, size - margin))
             .resize((size, size), Image.Resampling.BILINEAR) for p in pixels]
    return np.stack([np.asarray(c, dtype=np.float32) for c in crops]) if crops else pixels


VIEWS: dict[str, View] = {"": as_is, "-flip": mirrored, "-zoom": zoomed, "-zoom-flip": lambda p: mirrored(zoomed(p))}


def zoomed_in_graph(pixels: "keras.KerasTensor") -> "keras.KerasTensor":
    """`zoomed` inside a model (the crop, then bilinear resizing with half-pixel centres as PIL's), so that a model
    fine-tuned on zoomed views can answer with them in every file it is exported to."""
    import keras

    size = int(pixels.shape[1])
    margin = zoom_margin(size)
    middle = pixels[:, margin:size - margin, margin:size - margin, :]
    return keras.ops.image.resize(middle, (size, size), interpolation="bilinear")


def activation_key(spec: BackboneSpec, unfreeze_blocks: int, view: str) -> str:
    return f"{cache_key(spec)}-cut{unfreeze_blocks}{view}"


def litert_frozen_part(spec: BackboneSpec, unfreeze_blocks: int) -> Path:
    """The pretrained backbone cut at the boundary, as a cached LiteRT file."""
    return litert_file(f"{cache_key(spec)}-cut{unfreeze_blocks}", spec.input_size,
                       lambda: split(spec, spec.build(), unfreeze_blocks)[0])


def frozen_part_runner(spec: BackboneSpec, unfreeze_blocks: int) -> Callable[[np.ndarray], np.ndarray]:
    """The frozen part as pixels -> activations: LiteRT on the CPU, Keras on a GPU when TensorFlow sees one."""
    if on_gpu():
        return keras_runner(split(spec, spec.build(), unfreeze_blocks)[0])
    return LiteRTRunner(litert_frozen_part(spec, unfreeze_blocks))


def boundary_activations(paths: Sequence[Path], shas: Sequence[str], spec: BackboneSpec, unfreeze_blocks: int,
                         views: Sequence[str] = ("", "-flip"), *, cache: EmbeddingCache | None = None,
                         on_progress: Progress | None = None,
                         should_stop: Callable[[], bool] | None = None) -> tuple[list[EmbedResult], tuple[int, ...]]:
    """One result per view (names from VIEWS: as is, mirrored, zoomed...) with one flattened float16 activation
    per readable photo, and the activation's shape; unreadable photos are reported per photo, as for embeddings."""
    shape = boundary_shape(spec, unfreeze_blocks)
    if shape is None:
        raise ValueError(f"{spec.label} with {unfreeze_blocks} blocks unfrozen has no frozen part to cache.")
    results = cached_views(paths, shas, spec.input_size,
                           {activation_key(spec, unfreeze_blocks, view): VIEWS[view] for view in views},
                           functools.partial(frozen_part_runner, spec, unfreeze_blocks),
                           cache or activation_cache(), on_progress=on_progress, should_stop=should_stop)
    return results, shape
