"""Offline backbones joined by "+": one photo, each member's embedding at its own input size, concatenated.

`efficientnet_lite0+efficientnet_lite2` is a backbone like any other for the rest of the app: a
`JoinedSpec` whose `members` are ordinary registry specs, in the order named. Its embedding is the
members' pooled embeddings side by side (that order). One head is solved on the concatenation.

One photo, one size: every member reads the photo at the joined size (the largest member's, made by
PIL like any photo the app reads); a smaller member resizes it to its own size inside its graph
(`member_resize`: bilinear, as TFLite's RESIZE_BILINEAR). The downloads (`joined_classifier`: one
input, one model file, no Lambda layers) and the app's cached path (`JoinedSpec.parts`: each smaller
member as a `ResizedMember`, whose LiteRT file has that resize in it) run the same layer on the same
pixels, so Try it, evaluation, the heat map and the downloads agree to float rounding. Until
2026-12-04 the app fed each member PIL's own resize of the decoded photo instead: the downloads then
disagreed with the app's top class on up to 4.6 % of photos (docs/benchmarks.md). A `ResizedMember`'s
vectors differ from its member's own, so they are cached under a key naming both sizes
(`efficientnet_lite0@224from260v4`); the largest member's are its own (shared with it alone), and single
backbones' keys are unchanged. The resize in the graph costs the joined head a little against PIL's direct resize
(groceries25 0.849 → 0.842): the photo is resampled twice. A smoothing reduce in the graph (Pillow's own, as two
matrix products) was measured on 2026-12-04: worse on groceries25 and flowers5, level on hymenoptera
(docs/benchmarks.md).
Fine-tuning a joined backbone is refused with a message (`refuse_fine_tuning`): only its head is trained.

The head on the concatenation (`search_joined_head`) first puts every dimension on a like scale (`feature_scales`),
so that no feature, of whichever member, is penalised more than another for being measured in smaller numbers; the
scales are folded into the kernel, so head.npz stays a (kernel, bias) pair on the raw concatenated embedding.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    import keras

    from core.model.head import HeadSearch

# This module never imports core.model.backbones (which imports it, for `get_backbone`): the registry of single
# backbones comes in as an argument, and `members` holds that module's BackboneSpec objects.

JOIN = "+"
# The joined choices the app offers, the one recommended first at the top (`python -m bench.bench_joined methods`,
# 15-20 splits per shared set, with the head of `search_joined_head`): all three together are the most accurate offline
# choice on 25 groceries (0.849 against Lite0+Lite2's 0.833 and Lite0's 0.781) and 5 flowers (0.903 against 0.890 and
# 0.888), and level on ants vs bees (0.971 against 0.970), for a third network's time per photo.
OFFERED = ("efficientnet_lite0+efficientnet_lite1+efficientnet_lite2", "efficientnet_lite0+efficientnet_lite2")
RECOMMENDED = OFFERED[0]


class JoinRefused(ValueError):
    """A joined name that cannot be a backbone (unknown, online or repeated members), or fine-tuning one."""


@dataclass(frozen=True)
class JoinedSpec:
    """Offline backbones side by side: what the app asks a backbone (name, sizes, dimension, members)."""

    members: tuple  # core.model.backbones.BackboneSpec objects, in name order

    @property
    def name(self) -> str:
        return JOIN.join(m.name for m in self.members)

    @property
    def label(self) -> str:
        return " + ".join(m.label if i == 0 else m.label.removeprefix("EfficientNet-")
                          for i, m in enumerate(self.members))

    @property
    def input_size(self) -> int:
        """The side of the photo the one-model form takes: the largest member's (the others resize it down)."""
        return max(m.input_size for m in self.members)

    @property
    def feature_dim(self) -> int:
        return sum(m.feature_dim for m in self.members)

    @property
    def params(self) -> int:
        return sum(m.params for m in self.members)

    @property
    def offline(self) -> bool:
        return True

    @property
    def description(self) -> str:
        smaller = [m for m in self.members if m.input_size < self.input_size]
        shrunk = (f" All read the photo at {self.input_size} px; "
                  + " and ".join(m.label.removeprefix("EfficientNet-") for m in smaller)
                  + f" shrink{'s' if len(smaller) == 1 else ''} it to "
                  + " and ".join(f"{m.input_size}" for m in smaller) + " px inside the model.") if smaller else ""
        return (f"{self.label} side by side: each looks at the photo and one head reads them all. Usually the most "
                f"accurate offline choice, at the cost of {len(self.members)} networks' time per photo; only the "
                f"new head is trained.{shrunk}")

    def weights_cached(self) -> bool:
        return True

    @property
    def parts(self) -> tuple:
        """The networks as the joined model runs them, each reading the photo at `input_size`: the largest members
        themselves, the smaller ones as `ResizedMember`s (what their embeddings are made and cached with)."""
        return tuple(m if m.input_size == self.input_size else ResizedMember(m, self.input_size)
                     for m in self.members)


@dataclass(frozen=True)
class ResizedMember:
    """A smaller member of a joined backbone as the joined model runs it: fed the photo at the joined size (the
    largest member's, made by PIL like any photo) and resizing it to its own size inside its graph (`member_resize`,
    the very layer the downloads have), so the app's cached embeddings and the downloads see the same pixels.
    Asked like a backbone (name, sizes, build); cached under its own key (`cache_name`), never the member's."""

    member: object  # core.model.backbones.BackboneSpec
    input_size: int  # the side it reads photos at: the joined size

    @property
    def name(self) -> str:
        return self.member.name

    @property
    def label(self) -> str:
        return self.member.label

    @property
    def cache_name(self) -> str:
        """What the embedding cache and the LiteRT files call it: the member's size and the size it resizes from."""
        return f"{self.member.name}@{self.member.input_size}from{self.input_size}"

    @property
    def feature_dim(self) -> int:
        return self.member.feature_dim

    @property
    def params(self) -> int:
        return self.member.params

    @property
    def offline(self) -> bool:
        return self.member.offline

    @property
    def members(self) -> tuple:
        return (self,)

    @property
    def parts(self) -> tuple:
        return (self,)

    def weights_cached(self) -> bool:
        return self.member.weights_cached()

    def build(self, weights: bool = True) -> "keras.Model":
        """Raw RGB 0..255 at the joined size -> the member's 4-D feature map, resized in the graph first."""
        import keras

        inputs = keras.Input((self.input_size, self.input_size, 3), name="pixels")
        trunk = self.member.build(weights)
        return keras.Model(inputs, trunk(member_resize(self.member)(inputs), training=False), name="backbone")


def member_resize(member, name: str = "resize") -> "keras.Layer":
    """The one resize from the joined size to a smaller member's, in the downloads' graph and in the app's cached
    path alike (`ResizedMember`): bilinear, half-pixel centres, no antialiasing (TFLite's RESIZE_BILINEAR)."""
    import keras

    return keras.layers.Resizing(member.input_size, member.input_size, interpolation="bilinear", name=name)


def is_joined(name: str) -> bool:
    return JOIN in name


def joined_spec(name: str, registry: dict) -> JoinedSpec:
    """The JoinedSpec for `a+b[+c]` from `registry` (core.model.backbones.REGISTRY); JoinRefused when a member is
    unknown, online or named twice."""
    names = [part.strip() for part in name.split(JOIN)]
    unknown = [n for n in names if n not in registry]
    if unknown or len(names) < 2:
        offline = ", ".join(n for n, s in registry.items() if s.offline)
        raise JoinRefused(f"unknown backbone {name!r}: join two or more of the offline backbones with '+' "
                          f"({offline}), e.g. {RECOMMENDED}")
    online = [registry[n].label for n in names if not registry[n].offline]
    if online:
        raise JoinRefused(f"only offline backbones can be joined; {', '.join(online)} needs a download.")
    if len(set(names)) < len(names):
        raise JoinRefused(f"{name!r} names a backbone twice: each member sees the photo once.")
    return JoinedSpec(tuple(registry[n] for n in names))


def feature_scales(x: np.ndarray, sizes: Sequence[int] | None = None) -> np.ndarray:
    """(D,) float32 factors putting each dimension of the training vectors `x` (N, D) on a like scale: one over the
    root of the mean of the dimension's own variance and the mean variance of its member's dimensions (`sizes`: each
    member's width, in order; default one member), a standardisation shrunk halfway to the member's common scale.

    The head's L2 penalty treats all weights alike, so on raw embeddings a dimension that varies little needs a large,
    heavily penalised weight to count. Full standardisation (one over the dimension's own spread) lifts such dimensions
    to a par, noise too, which cost log loss on a set of 480 photos; halfway keeps most of its gain where photos are
    many and costs nothing measurable where they are few (`python -m bench.bench_joined methods`). It depends on the
    training vectors only, never on labels."""
    variance = np.asarray(x, dtype=np.float64).var(axis=0)
    common = np.concatenate([np.full(size, part.mean()) for size, part in
                             zip(sizes or [len(variance)], np.split(variance, np.cumsum(sizes or [len(variance)])[:-1]))])
    return (1.0 / np.sqrt((variance + common) / 2 + 1e-12)).astype(np.float32)


def search_joined_head(x: np.ndarray, labels: np.ndarray, n_classes: int, groups: np.ndarray, *,
                       sizes: Sequence[int] | None = None, val: tuple[np.ndarray, np.ndarray] | None = None,
                       **options) -> "HeadSearch":
    """`core.model.head.search_head` on the concatenated embeddings with each dimension scaled by `feature_scales`
    (`sizes`: the members' widths); the head it returns is on the raw embedding (the scales folded into its kernel's
    rows), the rows of `tried` scored on the scaled vectors (the same predictions)."""
    from core.model.head import LinearHead, search_head

    scales = feature_scales(x, sizes)
    search = search_head(np.asarray(x, dtype=np.float32) * scales, labels, n_classes, groups,
                         val=None if val is None else (np.asarray(val[0], dtype=np.float32) * scales, val[1]),
                         **options)
    head = LinearHead((search.head.kernel * scales[:, None]).astype(np.float32), search.head.bias)
    return replace(search, head=head)


def refuse_fine_tuning(spec, unfreeze_blocks: int) -> None:
    """JoinRefused when a joined backbone is asked to retrain blocks (only its head is trained)."""
    if unfreeze_blocks and len(spec.members) > 1:
        raise JoinRefused(f"{spec.label} trains only the new head: retraining blocks of joined networks is not "
                          "offered. Choose 'head only', or one network to fine-tune.")


def joined_classifier(spec: JoinedSpec, n_classes: int, dropout: float = 0.0) -> "keras.Model":
    """Pixels at the largest member's size -> each member (resized for the smaller ones) -> pooled -> concatenated
    in member order -> dropout -> softmax; BatchNorm in inference mode, standard layers only."""
    import keras

    inputs = keras.Input((spec.input_size, spec.input_size, 3), name="pixels")
    pooled = []
    for i, member in enumerate(spec.members):
        x = inputs
        if member.input_size != spec.input_size:
            # the same resize as the app's cached path (`ResizedMember`): agreement measured by bench_joined costs
            x = member_resize(member, f"resize_{i}")(x)
        trunk = member.build()
        trunk.name = f"backbone_{i}"  # Keras needs unique layer names; `metrics.json`'s backbone names the members
        pooled.append(keras.layers.GlobalAveragePooling2D(name=f"pooled_{i}")(trunk(x, training=False)))
    joined = keras.layers.Concatenate(name="pooled")(pooled)
    dropped = keras.layers.Dropout(dropout, name="dropout")(joined)
    outputs = keras.layers.Dense(n_classes, activation="softmax", name="predictions")(dropped)
    return keras.Model(inputs, outputs, name="transferlab_classifier")
