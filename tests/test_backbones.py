"""Backbones: the torch-free checkpoint reader, the EfficientNet-Lite conversion, and the registry."""

from __future__ import annotations

import os
import pickle
import re
import socket
import struct

import numpy as np
import pytest
from PIL import Image

from core.model.backbones import (
    REGISTRY,
    WEIGHTS_HOST,
    BackboneUnavailable,
    get_backbone,
    set_trainable_blocks,
    trainable_summary,
)
from core.model.freeze_depths import FREEZE_OPTIONS, counted, freeze_options
from core.model.torch_pickle import LEGACY_MAGIC, LEGACY_PROTOCOL, load_legacy_checkpoint

OFFLINE = [name for name, spec in REGISTRY.items() if spec.offline]
ONLINE = [name for name, spec in REGISTRY.items() if not spec.offline]


# --- checkpoint reader ----------------------------------------------------------------------------


def legacy_header() -> bytes:
    sys_info = {"protocol_version": LEGACY_PROTOCOL, "little_endian": True, "type_sizes": {"int": 4, "long": 4}}
    return pickle.dumps(LEGACY_MAGIC, 2) + pickle.dumps(LEGACY_PROTOCOL, 2) + pickle.dumps(sys_info, 2)


# Hand-written pickle opcodes: torch is not installed, so its globals can't be pickled the usual way.
def op_str(s: str) -> bytes:
    return b"X" + struct.pack("<I", len(s.encode())) + s.encode()


def op_int(i: int) -> bytes:
    return b"J" + struct.pack("<i", i)


def op_tuple(*items: bytes) -> bytes:
    return b"(" + b"".join(items) + b"t"


def op_global(module: str, name: str) -> bytes:
    return b"c" + f"{module}\n{name}\n".encode()


def op_tensor(key: str, numel: int, offset: int, size: tuple[int, ...], stride: tuple[int, ...]) -> bytes:
    """What torch writes for one tensor: _rebuild_tensor_v2(storage placeholder, offset, size, stride, ...)."""
    storage_type = op_global("torch", "FloatStorage")
    storage = op_tuple(op_str("storage"), storage_type, op_str(key), op_str("cpu"), op_int(numel), b"N") + b"Q"
    hooks = op_global("collections", "OrderedDict") + b")R"
    shape, strides = op_tuple(*map(op_int, size)), op_tuple(*map(op_int, stride))
    args = op_tuple(storage, op_int(offset), shape, strides, b"\x89", hooks)  # \x89: requires_grad=False
    return op_global("torch._utils", "_rebuild_tensor_v2") + args + b"R"


def write_checkpoint(path, tensors: dict[str, bytes], storage: np.ndarray) -> None:
    """A legacy checkpoint whose tensors all view one float32 storage "0"."""
    main = b"\x80\x02" + op_global("collections", "OrderedDict") + b")R("
    main += b"".join(op_str(name) + op for name, op in tensors.items()) + b"u."
    raw = struct.pack("<q", storage.size) + storage.astype("<f4").tobytes()
    path.write_bytes(legacy_header() + main + pickle.dumps(["0"], 2) + raw)


def test_reader_honours_storage_offset_and_strides(tmp_path):
    storage = np.arange(12, dtype=np.float32)
    path = tmp_path / "strided.pth"
    write_checkpoint(
        path,
        {
            "contiguous": op_tensor("0", 12, 0, (3, 4), (4, 1)),
            "transposed_view": op_tensor("0", 12, 2, (2, 3), (1, 2)),
            "scalar": op_tensor("0", 12, 5, (), ()),
        },
        storage,
    )
    state = load_legacy_checkpoint(path)
    assert list(state) == ["contiguous", "transposed_view", "scalar"]
    np.testing.assert_array_equal(state["contiguous"], storage.reshape(3, 4))
    np.testing.assert_array_equal(state["transposed_view"], [[2, 4, 6], [3, 5, 7]])
    assert state["scalar"].shape == () and state["scalar"] == 5
    assert state["transposed_view"].flags.c_contiguous and state["transposed_view"].flags.writeable


def test_reader_rejects_tensor_past_its_storage(tmp_path):
    path = tmp_path / "overrun.pth"
    write_checkpoint(path, {"w": op_tensor("0", 12, 4, (3, 4), (4, 1))}, np.zeros(12, np.float32))
    with pytest.raises(ValueError, match="past the end"):
        load_legacy_checkpoint(path)


class RunsShellCommand:
    """Unpickling this would run a shell command: the classic malicious-pickle payload."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("where", ["header", "state dict"])
def test_restricted_unpickler_refuses_forbidden_global(tmp_path, where):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(RunsShellCommand(marker), 2)
    path = tmp_path / "evil.pth"
    path.write_bytes(payload if where == "header" else legacy_header() + payload)
    with pytest.raises(pickle.UnpicklingError, match="forbidden global.*system"):
        load_legacy_checkpoint(path)
    assert not marker.exists()


def test_restricted_unpickler_refuses_torch_globals_outside_the_list(tmp_path):
    path = tmp_path / "evil.pth"
    path.write_bytes(legacy_header() + b"\x80\x02" + op_global("torch", "load") + b".")
    with pytest.raises(pickle.UnpicklingError, match="torch.load"):
        load_legacy_checkpoint(path)


def real_checkpoint() -> str:
    from core.model.efficientnet_lite import checkpoint_path

    return checkpoint_path(0)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"just some text, not a checkpoint\n",
        b"PK\x03\x04 a zip-format (torch >= 1.6) checkpoint",
        pickle.dumps({"a": 1}),
        pickle.dumps(1234567) * 3,
    ],
    ids=["empty", "text", "zip", "plain-pickle", "wrong-magic"],
)
def test_non_checkpoint_gives_value_error(tmp_path, content):
    path = tmp_path / "not.pth"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="not a legacy PyTorch checkpoint"):
        load_legacy_checkpoint(path)


def test_truncated_checkpoint_gives_value_error(tmp_path):
    data = open(real_checkpoint(), "rb").read()
    path = tmp_path / "truncated.pth"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated"):
        load_legacy_checkpoint(path)


def test_reads_the_real_lite0_checkpoint():
    state = load_legacy_checkpoint(real_checkpoint())
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_fc.weight"].shape == (1000, 1280)
    assert all(v.dtype == np.float32 for k, v in state.items() if not k.endswith("num_batches_tracked"))


# --- EfficientNet-Lite conversion -----------------------------------------------------------------


@pytest.fixture(scope="module", params=[0, 1, 2], ids=["lite0", "lite1", "lite2"])
def imagenet_lite(request):
    from core.model.efficientnet_lite import build_efficientnet_lite

    return request.param, build_efficientnet_lite(request.param, include_top=True)


def pixels(image: np.ndarray, size: int) -> np.ndarray:
    """Exactly what training feeds: the centre square resized to size x size (PIL bilinear), raw 0..255 float32."""
    from core.images import load_rgb

    return load_rgb(Image.fromarray(image), size).astype(np.float32)


@pytest.mark.slow
def test_lite_recognises_imagenet_photos(imagenet_lite):
    import skimage.data

    _, model = imagenet_lite
    size = model.input_shape[1]
    batch = np.stack([pixels(skimage.data.chelsea(), size), pixels(skimage.data.coffee(), size)])
    probs = model.predict(batch, verbose=0)
    cat, coffee = probs.argmax(axis=1)
    assert 281 <= cat <= 285, f"chelsea -> class {cat}"  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    assert coffee in (967, 968, 504), f"coffee -> class {coffee}"  # espresso, cup, coffee mug
    assert probs[0, cat] > 0.3 and probs[1, coffee] > 0.3, probs.max(axis=1)


def same_pad(x: np.ndarray, kernel: int, stride: int) -> np.ndarray:
    """Zero padding of the checkpoint's own PyTorch code (Conv2dStaticSamePadding): extra at bottom/right."""
    size = x.shape[1]
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    pad = (total // 2, total - total // 2)
    return np.pad(x, ((0, 0), pad, pad, (0, 0)))


def taps(x: np.ndarray, kernel: int, stride: int):
    """(i, j, input window) for each kernel tap of a strided convolution over padded NHWC `x`."""
    padded = same_pad(x, kernel, stride)
    out = -(-x.shape[1] // stride)
    for i in range(kernel):
        for j in range(kernel):
            yield i, j, padded[:, i : i + stride * out : stride, j : j + stride * out : stride, :]


def conv_ref(x, weight_oihw, stride):
    return sum(window @ weight_oihw[:, :, i, j].T for i, j, window in taps(x, weight_oihw.shape[-1], stride))


def depthwise_ref(x, weight_c1hw, stride):
    return sum(window * weight_c1hw[:, 0, i, j] for i, j, window in taps(x, weight_c1hw.shape[-1], stride))


def bn_relu6_ref(x, state, prefix):
    mean, var = state[f"{prefix}.running_mean"], state[f"{prefix}.running_var"]
    y = (x - mean) / np.sqrt(var + 1e-3) * state[f"{prefix}.weight"] + state[f"{prefix}.bias"]
    return np.clip(y, 0, 6)


@pytest.mark.slow
def test_lite_strided_layers_match_numpy_reference(imagenet_lite):
    """Stride-2 convs (3x3 and 5x5) against plain numpy on the checkpoint tensors: layouts, BN, and padding."""
    import keras
    import skimage.data

    from core.model.efficientnet_lite import checkpoint_path

    variant, model = imagenet_lite
    state = load_legacy_checkpoint(checkpoint_path(variant))
    names = ["stem_activation", "block2a_expand_activation", "block2a_activation"]
    names += ["block3a_expand_activation", "block3a_activation"]
    probe = keras.Model(model.input, [model.get_layer(n).output for n in names])
    x = pixels(skimage.data.chelsea(), model.input_shape[1])[None]
    stem, expand2, dw2, expand3, dw3 = (np.asarray(t) for t in probe(x, training=False))

    def depthwise_bn_relu6(x, block: int):
        prefix = f"_blocks.{block}"
        return bn_relu6_ref(depthwise_ref(x, state[f"{prefix}._depthwise_conv.weight"], 2), state, f"{prefix}._bn1")

    block3a = 1 + sum(1 for layer in model.layers if re.fullmatch(r"block2[a-z]+_project_bn", layer.name))
    expected = {
        "stem": bn_relu6_ref(conv_ref((x - 127.0) / 128.0, state["_conv_stem.weight"], 2), state, "_bn0"),
        "block2a 3x3/2": depthwise_bn_relu6(expand2, 1),
        "block3a 5x5/2": depthwise_bn_relu6(expand3, block3a),
    }
    for (label, want), got in zip(expected.items(), (stem, dw2, dw3)):
        assert got.shape == want.shape, label
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4, err_msg=label)


def test_unknown_lite_variant():
    from core.model.efficientnet_lite import build_efficientnet_lite

    with pytest.raises(ValueError, match="variant"):
        build_efficientnet_lite(3, weights=False)


# --- registry -------------------------------------------------------------------------------------


def test_registry_order_and_lookup():
    assert list(REGISTRY)[:3] == ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
    assert all(REGISTRY[name].offline for name in OFFLINE) and OFFLINE == list(REGISTRY)[: len(OFFLINE)]
    assert get_backbone("efficientnet_lite0").input_size == 224
    with pytest.raises(ValueError, match="efficientnet_lite0.*convnext_tiny"):
        get_backbone("vgg16")


def check_blocks_and_freezing(spec, model):
    """Blocks name real layers once each, in order; freezing unfreezes exactly the last N blocks minus BatchNorm."""
    import keras

    order = [layer.name for layer in model.layers]
    blocks = spec.blocks(model)
    flat = [name for block in blocks for name in block]
    assert len(flat) == len(set(flat)) and set(flat) <= set(order)
    assert flat == sorted(flat, key=order.index)
    preprocessing = (keras.layers.InputLayer, keras.layers.Rescaling, keras.layers.Normalization)
    assert all(layer.name in flat for layer in model.layers if not isinstance(layer, preprocessing))

    set_trainable_blocks(spec, model, 0)
    assert model.trainable_weights == []
    assert trainable_summary(spec, model, 0) == (0, 0)

    is_bn = {layer.name: isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers}
    for n in (1, 3, len(blocks)):
        layers_, params = trainable_summary(spec, model, n)
        assert model.trainable_weights == [], "trainable_summary must leave the model as it was"
        set_trainable_blocks(spec, model, n)
        expected = {name for block in blocks[len(blocks) - n :] for name in block if not is_bn[name]}
        trainable = {layer.name for layer in model.layers if layer.trainable_weights}
        assert trainable == {name for name in expected if model.get_layer(name).weights}
        assert not any(is_bn[name] for name in trainable)
        assert (layers_, params) == (len(trainable), sum(int(np.prod(w.shape)) for w in model.trainable_weights))
        set_trainable_blocks(spec, model, 0)


@pytest.mark.slow
@pytest.mark.parametrize("name", OFFLINE)
def test_offline_backbone_builds(name):
    spec = get_backbone(name)
    model = spec.build()  # how long it takes: bench/bench_backbones.py
    assert model.name == "backbone"
    assert model.input_shape == (None, spec.input_size, spec.input_size, 3)
    assert len(model.output_shape) == 4 and model.output_shape[-1] == spec.feature_dim
    assert model.count_params() == spec.params
    assert spec.weights_cached()
    blocks = spec.blocks(model)
    assert blocks[-1] == ["top_conv", "top_bn", "top_activation"]
    assert blocks[0][0] == "stem_conv" and blocks[1][0] == "block1a_dwconv"
    check_blocks_and_freezing(spec, model)


@pytest.mark.slow
@pytest.mark.parametrize("name", ONLINE)
def test_online_backbone_graph_and_blocks(name):
    """The same checks on the untrained graph: no download needed to know the layer names."""
    spec = get_backbone(name)
    model = spec.graph(False)
    assert model.name == "backbone"
    assert model.output_shape == (None, 7, 7, spec.feature_dim)
    assert model.count_params() == spec.params
    check_blocks_and_freezing(spec, model)


def test_every_backbone_has_its_freeze_depths_counted():
    assert set(FREEZE_OPTIONS) == set(REGISTRY)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(REGISTRY))
def test_counted_freeze_depths_match_the_built_network(name):
    """The Train page reads layers and parameters per depth from a table; building each network agrees with it."""
    assert freeze_options(name) == counted(name)


@pytest.mark.slow
@pytest.mark.parametrize("name, module", [("mobilenet_v2", "mobilenet_v2"), ("resnet50", "resnet50")])
def test_in_graph_preprocessing_matches_keras(name, module):
    """Our preprocessing layers (incl. ResNet's RGB->BGR folded into conv1) equal keras' preprocess_input."""
    import importlib

    import keras

    spec = get_backbone(name)
    ours = spec.graph(False)
    constructor = {"mobilenet_v2": keras.applications.MobileNetV2, "resnet50": keras.applications.ResNet50}[name]
    reference = constructor(include_top=False, weights=None, input_shape=(224, 224, 3))
    for layer in (layer for layer in reference.layers if layer.weights):
        weights = ours.get_layer(layer.name).get_weights()
        if layer.name == "conv1_conv":  # undo the channel flip: the reference reads BGR
            weights[0] = weights[0][:, :, ::-1, :]
        layer.set_weights(weights)
    preprocess_input = importlib.import_module(f"keras.applications.{module}").preprocess_input
    x = np.random.default_rng(0).uniform(0, 255, (2, 224, 224, 3)).astype(np.float32)
    np.testing.assert_allclose(ours(x), reference(preprocess_input(x.copy())), rtol=1e-4, atol=1e-4)


def weights_host_reachable() -> bool:
    try:
        socket.create_connection((WEIGHTS_HOST, 443), timeout=3).close()
        return True
    except OSError:
        return False


@pytest.mark.parametrize("name", ONLINE)
def test_online_backbone_without_network_explains(name):
    spec = get_backbone(name)
    if spec.weights_cached() or weights_host_reachable():
        pytest.skip("weights are cached or the network is up: the backbone would simply build")
    with pytest.raises(BackboneUnavailable) as info:
        spec.build()
    # ended by the quick reachability probe (a few seconds at most), not by a download left to time out
    assert isinstance(info.value.__cause__, OSError) and WEIGHTS_HOST in str(info.value)
    message = str(info.value)
    assert spec.label in message and "internet" in message
    assert all(get_backbone(n).label in message for n in OFFLINE)
