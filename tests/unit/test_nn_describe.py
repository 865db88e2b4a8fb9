"""What the web page shows of a network, computed by the engine: `Sequential.describe` (each
layer's output shape and parameter count) and `Sequential.first_convolution` (the first Conv2D's
filters and feature maps), checked against the layers' own arrays and a convolution written out
by loops."""

from __future__ import annotations

import numpy as np

from shared.config import TrainConfig
from shared.nn.model import Sequential
from tests.nn_support import randomise_trained_state
from tests.unit.test_nn_conv_model import small_cnn

RNG = np.random.default_rng(5)


def _checked_against_arrays(model: Sequential) -> list[dict]:
    """describe()'s shapes are those of each layer's actual output for a batch of 3 (inference
    mode), its params the sizes of each layer's trainable arrays, adding up to the model's."""
    layers = model.describe()
    assert [entry["kind"] for entry in layers] == [layer.kind for layer in model.layers]
    x = RNG.random((3, model.input_size)).astype(np.float32)
    for entry, layer in zip(layers, model.layers, strict=True):
        x = layer.forward(x, training=False)
        assert entry["output_shape"] == list(x.shape[1:]), entry
        assert entry["params"] == sum(getattr(layer, name).size for name in layer.trainable)
        assert entry["settings"] == layer.config()
    assert sum(entry["params"] for entry in layers) == model.n_params
    return layers


def test_describe_a_perceptron():
    model = TrainConfig(hidden_layers=[32, 16], batch_norm=True, dropout=0.2).build_model()
    layers = _checked_against_arrays(model)
    rows = [(e["kind"], e["output_shape"], e["params"]) for e in layers]
    assert rows == [
        ("standardize", [784], 0),
        ("dense", [32], 784 * 32),  # no bias before batch norm
        ("batchnorm1d", [32], 2 * 32),
        ("relu", [32], 0),
        ("dropout", [32], 0),
        ("dense", [16], 32 * 16),
        ("batchnorm1d", [16], 2 * 16),
        ("relu", [16], 0),
        ("dropout", [16], 0),
        ("dense", [10], 16 * 10 + 10),
    ]


def test_describe_a_convolutional_network():
    network = [{"conv": 4, "kernel": 5}, {"pool": 2}, {"conv": 8, "kernel": 3, "padding": "same"},
               {"dense": 16}, {"dropout": 0.3}]  # fmt: skip
    model = TrainConfig(network=network).build_model()
    layers = _checked_against_arrays(model)
    rows = [(e["kind"], e["output_shape"], e["params"]) for e in layers]
    assert rows == [
        ("standardize", [784], 0),
        ("reshape", [1, 28, 28], 0),
        ("conv2d", [4, 24, 24], 5 * 5 * 1 * 4 + 4),
        ("maxpool2d", [4, 12, 12], 0),
        ("relu", [4, 12, 12], 0),  # after the pool (`build_network`)
        ("conv2d", [8, 12, 12], 3 * 3 * 4 * 8 + 8),
        ("relu", [8, 12, 12], 0),
        ("flatten", [8 * 12 * 12], 0),
        ("dense", [16], 8 * 12 * 12 * 16 + 16),
        ("relu", [16], 0),
        ("dropout", [16], 0),
        ("dense", [10], 16 * 10 + 10),
    ]
    assert layers[2]["settings"]["kernel_size"] == 5
    assert layers[10]["settings"] == {"p": 0.3}


def _conv_by_loops(images: np.ndarray, w: np.ndarray, b: np.ndarray, pad: int) -> np.ndarray:
    """[N, C, H, W] * W (k, k, C, O) + b, stride 1, `pad` zeros each side: the textbook sum."""
    n, c, h, width = images.shape
    k, out = w.shape[0], w.shape[3]
    x = np.pad(images, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    ho, wo = h + 2 * pad - k + 1, width + 2 * pad - k + 1
    y = np.zeros((n, out, ho, wo))
    for o in range(out):
        for p in range(ho):
            for q in range(wo):
                window = x[:, :, p : p + k, q : q + k]  # (N, C, k, k)
                y[:, o, p, q] = np.einsum("ncij,ijc->n", window, w[:, :, :, o]) + b[o]
    return y


def test_first_convolution_is_what_its_activation_outputs():
    """small_cnn: standardize -> 1x10x10 -> conv 3x3 same -> batch norm -> ReLU -> ...: the maps
    are the ReLU's output with batch norm on its running statistics; the filters the kernels."""
    model = small_cnn(seed=3)
    randomise_trained_state(model, np.random.default_rng(4))
    x = RNG.random((2, 100)).astype(np.float32)
    seen = model.first_convolution(x)
    assert seen is not None and seen.layer == 2
    conv, norm = model.layers[2], model.layers[3]
    w = conv.W.astype(np.float64)
    assert seen.filters.shape == (3, 1, 3, 3) and seen.filters.dtype == np.float32
    for o in range(3):
        np.testing.assert_array_equal(seen.filters[o, 0], w[:, :, 0, o])
    images = (x - model.layers[0].mean).astype(np.float64).reshape(2, 1, 10, 10)
    y = _conv_by_loops(images, w, conv.b.astype(np.float64), pad=1)
    scale, shift = norm.inference_affine()
    want = np.maximum(y * scale[:, None, None] + shift[:, None, None], 0)
    assert seen.feature_maps.shape == (2, 3, 10, 10) and seen.feature_maps.dtype == np.float32
    assert seen.feature_maps.flags.c_contiguous and seen.filters.flags.c_contiguous
    np.testing.assert_allclose(seen.feature_maps, want, rtol=1e-4, atol=1e-5)
    assert (seen.feature_maps == 0).any() and (seen.feature_maps > 0).any()  # after the ReLU


def test_first_convolution_applies_the_batch_norm_and_activation_placed_after_its_pool():
    """`build_network` puts a pooled conv's batch norm and activation after the pool; the maps
    shown are still the unpooled ones, with that batch norm (running statistics) and activation
    applied to every pixel."""
    network = [{"conv": 3, "kernel": 5}, {"pool": 2}, {"dense": 8}]
    model = TrainConfig(network=network, batch_norm=True, activation="tanh", seed=1).build_model()
    conv, pool, norm, act = model.layers[2:6]
    assert [conv.kind, pool.kind, norm.kind, act.kind] == ["conv2d", "maxpool2d", "batchnorm2d",
                                                           "tanh"]  # fmt: skip
    randomise_trained_state(model, np.random.default_rng(2))
    x = RNG.random((2, 784)).astype(np.float32)
    seen = model.first_convolution(x)
    assert seen is not None and seen.layer == 2 and seen.feature_maps.shape == (2, 3, 24, 24)
    y = conv.forward(model.layers[1].forward(model.layers[0].forward(x, False), False), False)
    scale, shift = norm.inference_affine()
    want = np.tanh(y.astype(np.float64) * scale[:, None, None] + shift[:, None, None])
    np.testing.assert_allclose(seen.feature_maps, want, rtol=1e-4, atol=1e-5)


def test_a_perceptron_has_no_first_convolution():
    model = TrainConfig(hidden_layers=[8]).build_model()
    assert model.first_convolution(RNG.random((1, 784)).astype(np.float32)) is None
