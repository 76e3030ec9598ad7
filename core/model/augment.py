"""Photo augmentation for fine-tuning, from stateless random ops.

Each photo's flips, turn, zoom and contrast are drawn from a seed that travels with it through
tf.data, so the same photos and settings give the same augmented photos whatever order the
parallel loader runs in. Stateful random layers would force op determinism to run the whole
pipeline one photo at a time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

ROTATION = 0.08  # of a full turn either way, as keras.layers.RandomRotation(0.08)
ZOOM = 0.15  # in or out, as keras.layers.RandomZoom(0.15)
CONTRAST = 0.2  # factor in [0.8, 1.2] around each channel's mean, as keras.layers.RandomContrast(0.2)


@dataclass(frozen=True)
class Augmentation:
    """The random changes chosen for a run (a field of `TrainConfig`). Mirroring also gives the head mirrored
    copies and the run its mirror-averaged answers; the others apply only while fine-tuning on streamed photos."""

    flip: bool = True
    rotation: bool = True
    zoom: bool = True
    contrast: bool = True

    @classmethod
    def from_dict(cls, values: dict) -> "Augmentation":
        """From `asdict`, unknown keys left out (a newer version's)."""
        return cls(**{k: bool(v) for k, v in values.items() if k in cls.__dataclass_fields__})

    @property
    def any(self) -> bool:
        return any(getattr(self, name) for name in self.__dataclass_fields__)


def augment(image, seed, choice: Augmentation):
    """One (H, W, 3) float image in 0..255, changed by draws from `seed` (an int64 tensor of shape [2])."""
    import tensorflow as tf

    flip_seed, turn_seed, zoom_seed, contrast_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 4))
    if choice.flip:
        image = tf.image.stateless_random_flip_left_right(image, flip_seed)
    if choice.rotation or choice.zoom:
        angle = tf.random.stateless_uniform([], turn_seed, -ROTATION, ROTATION) * 2 * math.pi if choice.rotation else 0.0
        scale = 1.0 + tf.random.stateless_uniform([], zoom_seed, -ZOOM, ZOOM) if choice.zoom else 1.0
        image = _turn_and_zoom(image, angle, scale)
    if choice.contrast:
        image = tf.image.stateless_random_contrast(image, 1 - CONTRAST, 1 + CONTRAST, contrast_seed)
    return tf.clip_by_value(image, 0.0, 255.0)


def _turn_and_zoom(image, angle, scale):
    """Rotate by `angle` radians and zoom by `scale` about the centre; edges are filled by reflection."""
    import tensorflow as tf

    height, width = tf.cast(tf.shape(image)[0], tf.float32), tf.cast(tf.shape(image)[1], tf.float32)
    cx, cy = (width - 1) / 2, (height - 1) / 2
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    # The transform maps each output pixel to the input point it samples from.
    transform = tf.stack([cos, -sin, cx - cos * cx + sin * cy, sin, cos, cy - sin * cx - cos * cy, 0.0, 0.0])
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None], transforms=transform[None], output_shape=tf.shape(image)[:2], fill_value=0.0,
        interpolation="BILINEAR", fill_mode="REFLECT")[0]
