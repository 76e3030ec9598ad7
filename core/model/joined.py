"""Offline backbones joined by "+": one photo, each member's embedding at its own input size, concatenated.

`efficientnet_lite0+efficientnet_lite2` is a backbone like any other for the rest of the app: a
`JoinedSpec` whose `members` are ordinary registry specs, in the order named. Its embedding is the
members' pooled embeddings side by side (that order). One head is solved on the concatenation.

One photo, one size: every member reads the photo at the joined size (the largest member's, made by
PIL like any photo the app reads); a smaller member shrinks it to its own size inside its graph
(`member_resize`: a fixed matrix per axis, as two matrix products, fitted to give what PIL's direct
resize of the original photo would have: `shrink_matrix`). The downloads (`joined_classifier`: one
input, one model file, built-in layers only) and the app's cached path (`JoinedSpec.parts`: each
smaller member as a `ResizedMember`, whose LiteRT file has that resize in it) run the same layer on the
same pixels, so Try it, evaluation, the heat map and the downloads agree to float rounding. Until
2026-12-04 the app fed each member PIL's own resize of the decoded photo instead: the downloads then
disagreed with the app's top class on up to 4.6 % of photos (docs/benchmarks.md). A `ResizedMember`'s
vectors differ from its member's own, so they are cached under a key naming both sizes and the resize
(`efficientnet_lite0@224from260fitv4`); the largest member's are its own (shared with it alone), and
single backbones' keys are unchanged.
Fine-tuning a joined backbone is refused with a message (`refuse_fine_tuning`): only its head is trained.

The head on the concatenation (`search_joined_head`) first puts every dimension on a like scale (`feature_scales`),
so that no feature, of whichever member, is penalised more than another for being measured in smaller numbers; the
scales are folded into the kernel, so head.npz stays a (kernel, bias) pair on the raw concatenated embedding.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    import keras

    from core.model.head import HeadSearch, LinearHead

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
    def shrunk_members(self) -> tuple:
        """The members smaller than the joined size: they shrink the photo inside their graph (`member_resize`)."""
        return tuple(m for m in self.members if m.input_size < self.input_size)

    @property
    def description(self) -> str:
        smaller = self.shrunk_members
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
        """What the embedding cache and the LiteRT files call it: the member's size, the size it resizes from, and
        the resize (`fit`: `shrink_matrix`; the keys of the plain bilinear resize it replaced ended `from260v4`)."""
        return f"{self.member.name}@{self.member.input_size}from{self.input_size}fit"

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
        pixels = member_resize(self.member, self.input_size)(inputs)
        return keras.Model(inputs, trunk(pixels, training=False), name="backbone")


def resample_matrix(in_size: int, out_size: int) -> np.ndarray:
    """(in_size, out_size) float32: Pillow's BILINEAR resize of one axis as a matrix, `x @ matrix` along that axis.

    The coefficients of Pillow's ImagingResample (libImaging/Resample.c, `precompute_coeffs`): output pixel i is
    centred at (i + 0.5) * scale in the input; a triangle filter whose support grows with the scale when reducing (so
    a reduce smooths, as a plain bilinear sample does not) weighs the input pixels within reach; the weights of each
    output pixel sum to one. Equal to Pillow's own resize of a float ("F") picture to float rounding."""
    scale = in_size / out_size
    stretch = max(scale, 1.0)  # the filter's width in input pixels: wider when reducing
    matrix = np.zeros((in_size, out_size))
    for i in range(out_size):
        centre = (i + 0.5) * scale
        first = max(int(centre - stretch + 0.5), 0)
        last = min(int(centre + stretch + 0.5), in_size)
        pixels = np.arange(first, last)
        weights = np.clip(1.0 - np.abs((pixels - centre + 0.5) / stretch), 0.0, None)
        matrix[first:last, i] = weights / weights.sum()
    return matrix.astype(np.float32)


# The photos `shrink_matrix` is fitted for: originals from the smallest member's size to 1024 px a side (larger
# ones are draft-decoded near these), with neighbouring pixels correlated as in natural photos.
FIT_SIZES = (224, 240, 256, 288, 320, 384, 448, 512, 640, 800, 1024)
FIT_CORRELATION = 0.95  # between neighbouring pixels of an original
FIT_RIDGE = 1e-3


@lru_cache(maxsize=8)
def shrink_matrix(from_size: int, size: int) -> np.ndarray:
    """(from_size, size) float32: the linear shrink of one axis that best recovers, from a photo PIL resized to
    `from_size`, the photo PIL would have resized straight to `size` from the original (least squares over originals
    of FIT_SIZES with FIT_CORRELATION between neighbours, ridge FIT_RIDGE).

    Shrinking the joined-size photo with Pillow's own reduce (`resample_matrix`) resamples twice and blurs: a 224 px
    original enlarged to 260 and reduced back is smoother than itself. Measured 2026-12-04 (joined head,
    mirror-averaged, Lite0+1+2; PIL direct / plain bilinear / Pillow's reduce / this): groceries25 (3 splits) 0.849 /
    0.842 / 0.840 / 0.845, flowers5 (5 splits) 0.901 / 0.897 / 0.896 / 0.902, hymenoptera 0.980 for all; log loss
    lower than the bilinear's on all three (docs/benchmarks.md)."""
    taken = np.zeros((size, from_size))
    seen = np.zeros((from_size, from_size))
    for original in FIT_SIZES:
        i = np.arange(original)
        covariance = FIT_CORRELATION ** np.abs(i[:, None] - i[None, :])
        joined = resample_matrix(original, from_size).T.astype(np.float64)  # original -> joined-size photo
        direct = resample_matrix(original, size).T.astype(np.float64)  # original -> the member's size, directly
        taken += direct @ covariance @ joined.T
        seen += joined @ covariance @ joined.T
    return (taken @ np.linalg.inv(seen + FIT_RIDGE * np.eye(from_size))).T.astype(np.float32)


def member_resize(member, from_size: int, name: str = "resize") -> "keras.Model":
    """The one resize from the joined size to a smaller member's, in the downloads' graph and in the app's cached
    path alike (`ResizedMember`): `shrink_matrix` along each axis as two matrix products (width first), built-in
    layers only: Permute and Dense without bias, which LiteRT runs as TRANSPOSE and FULLY_CONNECTED under XNNPACK.
    Until 2026-12-04 it was `keras.layers.Resizing` (a plain bilinear sample), which cost the joined head 0.7 points
    on groceries25 against PIL's direct resize; this recovers 0.3 of them, and 0.5 on flowers5."""
    import keras

    size = member.input_size
    width, height = (keras.layers.Dense(size, use_bias=False, trainable=False, name=f"{name}_{axis}")
                     for axis in ("width", "height"))
    resize = keras.Sequential([keras.Input((from_size, from_size, 3)),
                               keras.layers.Permute((1, 3, 2)), width,  # (h, 3, w): the width axis resampled
                               keras.layers.Permute((3, 2, 1)), height,  # (w', 3, h): then the height axis
                               keras.layers.Permute((3, 1, 2))], name=name)  # (h', w', 3)
    matrix = shrink_matrix(from_size, size)
    width.set_weights([matrix])
    height.set_weights([matrix])
    resize.trainable = False
    return resize


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
    from core.model.head import search_head

    scales = feature_scales(x, sizes)
    search = search_head(np.asarray(x, dtype=np.float32) * scales, labels, n_classes, groups,
                         val=None if val is None else (np.asarray(val[0], dtype=np.float32) * scales, val[1]),
                         **options)
    return replace(search, head=_unscaled(search.head, scales))


def refit_joined_head(head: LinearHead, x: np.ndarray, labels: np.ndarray, n_classes: int, strength: float, *,
                      sizes: Sequence[int] | None = None, **options) -> LinearHead:
    """`core.model.head.refit_head` on the concatenated embeddings scaled as `search_joined_head` scales them (the
    scales taken from the vectors it is solved on); the head it returns is on the raw embedding."""
    from core.model.head import LinearHead, refit_head

    scales = feature_scales(x, sizes)
    start = LinearHead((head.kernel / scales[:, None]).astype(np.float32), head.bias)
    return _unscaled(refit_head(start, np.asarray(x, dtype=np.float32) * scales, labels, n_classes, strength,
                                **options), scales)


def _unscaled(head: LinearHead, scales: np.ndarray) -> LinearHead:
    """A head on scaled vectors as the same head on raw ones: the scales folded into its kernel's rows."""
    from core.model.head import LinearHead

    return LinearHead((head.kernel * scales[:, None]).astype(np.float32), head.bias)


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
            x = member_resize(member, spec.input_size, f"resize_{i}")(x)
        trunk = member.build()
        trunk.name = f"backbone_{i}"  # Keras needs unique layer names; `metrics.json`'s backbone names the members
        pooled.append(keras.layers.GlobalAveragePooling2D(name=f"pooled_{i}")(trunk(x, training=False)))
    joined = keras.layers.Concatenate(name="pooled")(pooled)
    dropped = keras.layers.Dropout(dropout, name="dropout")(joined)
    outputs = keras.layers.Dense(n_classes, activation="softmax", name="predictions")(dropped)
    return keras.Model(inputs, outputs, name="transferlab_classifier")
