"""The image layers (Conv2D, MaxPool2D, Flatten, Reshape, BatchNorm2d) against direct formulas,
and finite-difference gradient checks in float64; plus the element-wise layers on images."""

from __future__ import annotations

import numpy as np
import pytest

from shared.nn.activations import LeakyReLU, ReLU, Sigmoid, Tanh
from shared.nn.conv import Conv2D
from shared.nn.layers import BatchNorm2d, Dropout
from shared.nn.pooling import MaxPool2D
from shared.nn.reshape import Flatten, Reshape
from tests.nn_support import check_layer

F64 = np.float64


def images(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Float64 images whose values are all distinct and >= 0.01 apart (no ties inside a pooling
    window, no value within a finite-difference step of ReLU's kink at 0)."""
    rng = np.random.default_rng(seed)
    size = int(np.prod(shape))
    return (rng.permutation(size) - size / 2 + 0.5).reshape(shape) * 0.01


def channel_last(x: np.ndarray) -> np.ndarray:
    """The same (N, C, H, W) values stored channel-last, as the conv layers store their outputs."""
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


def reference_conv(x, w, b, stride, pads):
    """y[n, o, p, q] = b[o] + sum_{i, j, c} x_pad[n, c, s*p + i, s*q + j] * W[i, j, c, o]."""
    (top, bottom), (left, right) = pads
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    k = w.shape[0]
    ho = (xp.shape[2] - k) // stride + 1
    wo = (xp.shape[3] - k) // stride + 1
    y = np.zeros((x.shape[0], w.shape[3], ho, wo))
    for p in range(ho):
        for q in range(wo):
            window = xp[:, :, p * stride : p * stride + k, q * stride : q * stride + k]
            y[:, :, p, q] = np.einsum("ncij,ijco->no", window, w) + b
    return y


# (height, width, kernel, stride, padding, expected zero rows/columns (before, after))
CONV_CASES = [
    (7, 7, 3, 1, "valid", ((0, 0), (0, 0))),
    (7, 7, 3, 1, "same", ((1, 1), (1, 1))),
    (7, 7, 3, 2, "valid", ((0, 0), (0, 0))),
    (7, 7, 3, 2, "same", ((1, 1), (1, 1))),
    (7, 7, 5, 1, "same", ((2, 2), (2, 2))),
    (7, 7, 5, 2, "valid", ((0, 0), (0, 0))),
    (8, 6, 5, 2, "same", ((1, 2), (1, 2))),  # even input, stride 2: the extra zero at the end
    (6, 5, 2, 1, "same", ((0, 1), (0, 1))),  # even kernel
    (5, 5, 1, 3, "same", ((0, 0), (0, 0))),  # kernel smaller than the stride
]


#: Input channels: a single channel keeps X_col offset-major, several row-major
#: (`shared.nn.conv.Conv2D._x_col`); both must compute the same convolution and gradients.
CHANNELS = [1, 3]


@pytest.mark.parametrize("channels", CHANNELS)
@pytest.mark.parametrize(("h", "w", "k", "stride", "padding", "pads"), CONV_CASES)
def test_conv_forward_matches_the_formula(h, w, k, stride, padding, pads, channels):
    rng = np.random.default_rng(1)
    layer = Conv2D(channels, 4, k, stride=stride, padding=padding, rng=rng, dtype=F64)
    layer.b[:] = rng.standard_normal(4)
    x = images((2, channels, h, w))
    expected = reference_conv(x, layer.W, layer.b, stride, pads)
    assert layer.output_shape((channels, h, w)) == expected.shape[1:]
    if padding == "same":
        assert expected.shape[2:] == (-(-h // stride), -(-w // stride))
    np.testing.assert_allclose(layer.forward(x, True), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.forward(x, False), expected, rtol=1e-12, atol=1e-12)
    # The memory layout of the input changes nothing.
    np.testing.assert_allclose(layer.forward(channel_last(x), True), expected, rtol=1e-12)


@pytest.mark.parametrize("channels", CHANNELS)
@pytest.mark.parametrize(("h", "w", "k", "stride", "padding", "pads"), CONV_CASES)
def test_conv_gradients(h, w, k, stride, padding, pads, channels):
    rng = np.random.default_rng(2)
    layer = Conv2D(channels, 4, k, stride=stride, padding=padding, rng=rng, dtype=F64)
    layer.b[:] = rng.standard_normal(4)
    check_layer(layer, images((2, channels, h, w)))


@pytest.mark.parametrize("channels", CHANNELS)
@pytest.mark.parametrize(("h", "w", "k", "stride", "padding", "pads"), CONV_CASES[1:7])
def test_conv_in_im2col_blocks_of_a_few_samples(
    h, w, k, stride, padding, pads, channels, monkeypatch
):
    """A batch larger than one im2col block (here blocks of 2 samples, the last one of 1):
    the same outputs and gradients as the formula and finite differences."""
    import shared.nn.conv

    rng = np.random.default_rng(4)
    layer = Conv2D(channels, 4, k, stride=stride, padding=padding, rng=rng, dtype=F64)
    layer.b[:] = rng.standard_normal(4)
    _, ho, wo = layer.output_shape((channels, h, w))
    monkeypatch.setattr(shared.nn.conv, "IM2COL_BLOCK_FLOATS", 2 * ho * wo * k * k * channels)
    assert layer._block(5, ho, wo) == 2
    x = images((5, channels, h, w))
    expected = reference_conv(x, layer.W, layer.b, stride, pads)
    np.testing.assert_allclose(layer.forward(x, True), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.forward(x, False), expected, rtol=1e-12, atol=1e-12)
    check_layer(layer, x)
    y = layer.forward(x, True)  # the first layer of a model: no input gradient, dW the same
    grad = images(y.shape, seed=5)
    layer.backward(grad, need_input_grad=True)
    dw, db = layer.dW.copy(), layer.db.copy()
    layer.forward(x, True)
    assert layer.backward(grad, need_input_grad=False) is None
    np.testing.assert_allclose(layer.dW, dw, rtol=1e-12)
    np.testing.assert_allclose(layer.db, db, rtol=1e-12)


def test_conv_without_bias_and_skipped_input_grad():
    layer = Conv2D(2, 3, 3, padding="same", bias=False, rng=np.random.default_rng(3), dtype=F64)
    assert layer.trainable == ("W",)
    x = images((3, 2, 5, 5))
    check_layer(layer, x)
    y = layer.forward(x, True)
    assert layer.backward(np.ones_like(y), need_input_grad=False) is None
    # dW[i, j, c, o] = sum over samples and output pixels of the input pixel the tap read.
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    expected = np.stack(
        [[xp[:, :, i : i + 5, j : j + 5].sum(axis=(0, 2, 3)) for j in range(3)] for i in range(3)]
    )
    np.testing.assert_allclose(layer.dW, np.repeat(expected[..., None], 3, axis=3))


def test_conv_he_init_and_shape_checks():
    layer = Conv2D(32, 64, 5, rng=np.random.default_rng(0))
    assert layer.W.shape == (5, 5, 32, 64) and layer.W.dtype == np.float32
    assert abs(layer.W.std() - np.sqrt(2 / (5 * 5 * 32))) < 0.002
    assert layer.output_shape((32, 28, 28)) == (64, 24, 24)
    with pytest.raises(ValueError, match="expects images of 32 channels"):
        layer.output_shape((3, 28, 28))
    with pytest.raises(ValueError, match="smaller than its 5x5 kernel"):
        layer.output_shape((32, 4, 9))
    with pytest.raises(ValueError, match="padding"):
        Conv2D(1, 1, 3, padding="full")


def reference_pool(x, size, stride):
    ho = (x.shape[2] - size) // stride + 1
    wo = (x.shape[3] - size) // stride + 1
    y = np.empty(x.shape[:2] + (ho, wo))
    for p in range(ho):
        for q in range(wo):
            window = x[:, :, p * stride : p * stride + size, q * stride : q * stride + size]
            y[:, :, p, q] = window.max(axis=(2, 3))
    return y


# (size, stride, height, width): tiled exactly, odd sides, overlapping windows, stride < size
POOL_CASES = [(2, 2, 6, 8), (2, 2, 7, 6), (3, 2, 7, 7), (3, 2, 8, 9), (2, 1, 5, 6), (3, 3, 9, 6)]


@pytest.mark.parametrize(("size", "stride", "h", "w"), POOL_CASES)
def test_maxpool_forward_matches_the_formula(size, stride, h, w):
    layer = MaxPool2D(size, stride, dtype=F64)
    x = images((2, 3, h, w))
    expected = reference_pool(x, size, stride)
    assert layer.output_shape(x.shape[1:]) == expected.shape[1:]
    np.testing.assert_array_equal(layer.forward(x, True), expected)
    np.testing.assert_array_equal(layer.forward(channel_last(x), False), expected)


@pytest.mark.parametrize(("size", "stride", "h", "w"), POOL_CASES)
def test_maxpool_gradients(size, stride, h, w):
    check_layer(MaxPool2D(size, stride, dtype=F64), images((2, 3, h, w)))


def test_maxpool_default_stride_ties_and_uncovered_pixels():
    layer = MaxPool2D(2, dtype=F64)
    assert layer.config() == {"size": 2, "stride": 2}
    x = np.zeros((1, 1, 3, 3))
    x[0, 0, 1, 0] = x[0, 0, 1, 1] = 1.0  # a tie in the only window
    np.testing.assert_array_equal(layer.forward(x, True), [[[[1.0]]]])
    dx = layer.backward(np.full((1, 1, 1, 1), 5.0))
    expected = np.zeros((3, 3))
    expected[1, 0] = 5.0  # the first maximum in row-major order; row/column 2 lie in no window
    np.testing.assert_array_equal(dx[0, 0], expected)
    tiled = np.zeros((1, 1, 2, 2))  # the window covers the image exactly: the same rule
    layer.forward(tiled, True)
    np.testing.assert_array_equal(layer.backward(np.full((1, 1, 1, 1), 5.0)), [[[[5, 0], [0, 0]]]])


def test_flatten_is_channel_row_column_order_whatever_the_layout():
    x = images((2, 3, 4, 5))
    layer = Flatten(dtype=F64)
    assert layer.output_shape((3, 4, 5)) == (60,)
    np.testing.assert_array_equal(layer.forward(channel_last(x), True), x.reshape(2, 60))
    np.testing.assert_array_equal(layer.forward(x, False), x.reshape(2, 60))
    check_layer(Flatten(dtype=F64), channel_last(x))


def test_reshape_rows_to_images_and_back():
    layer = Reshape([1, 4, 3], dtype=F64)
    assert layer.config() == {"shape": [1, 4, 3]} and layer.output_shape((12,)) == (1, 4, 3)
    x = images((5, 12))
    np.testing.assert_array_equal(layer.forward(x, True), x.reshape(5, 1, 4, 3))
    check_layer(layer, x)
    with pytest.raises(ValueError, match="cannot reshape 10 values per sample into"):
        layer.output_shape((10,))
    for bad in ([], [0, 3], [2.0], [True]):
        with pytest.raises(ValueError, match="positive integers"):
            Reshape(bad)


def test_batchnorm2d_gradients():
    layer = BatchNorm2d(3, dtype=F64)
    layer.gamma[:] = [0.5, 1.5, -1.0]
    layer.beta[:] = [0.1, -0.2, 0.3]
    check_layer(layer, images((4, 3, 3, 5)))
    check_layer(layer, channel_last(images((4, 3, 3, 5), seed=1)))


def test_batchnorm2d_normalises_each_channel_over_samples_and_pixels():
    rng = np.random.default_rng(0)
    layer = BatchNorm2d(3, momentum=0.5)
    assert layer.config() == {"channels": 3, "momentum": 0.5, "eps": 1e-5}
    scale = np.array([1.0, 2.0, 3.0]).reshape(3, 1, 1)
    shift = np.array([5.0, -1.0, 0.0]).reshape(3, 1, 1)
    data = (rng.standard_normal((32, 3, 6, 6)) * scale + shift).astype(np.float32)
    out = layer.forward(data, True)
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(0, 2, 3)), 1, atol=1e-3)
    values = data.transpose(1, 0, 2, 3).reshape(3, -1)
    np.testing.assert_allclose(layer.running_mean, 0.5 * values.mean(1), rtol=1e-5)
    np.testing.assert_allclose(layer.running_var, 0.5 + 0.5 * values.var(1, ddof=1), rtol=1e-5)
    for _ in range(30):
        layer.forward(data, True)
    np.testing.assert_allclose(layer.forward(data, False), out, atol=1e-2)
    with pytest.raises(ValueError, match="expects images of 3 channels"):
        layer.output_shape((12,))


@pytest.mark.parametrize(
    "make",
    [lambda: ReLU(F64), lambda: LeakyReLU(0.1, F64), lambda: Sigmoid(F64), lambda: Tanh(F64)],
)
@pytest.mark.parametrize("layout", [np.asarray, channel_last])
def test_activations_on_images(make, layout):
    x = layout(images((2, 3, 4, 5)))
    layer = make()
    y = layer.forward(x, True)
    np.testing.assert_allclose(y, make().forward(np.ascontiguousarray(x), False), rtol=1e-12)
    # Outputs keep the input's layout: channel-last stays channel-last (no transposing copies).
    assert (y.strides[1] < y.strides[3]) == (x.strides[1] < x.strides[3])
    check_layer(layer, x)


@pytest.mark.parametrize("layout", [np.asarray, channel_last])
def test_dropout_on_images(layout):
    x = layout(images((4, 3, 5, 5)))
    layer = Dropout(0.4, dtype=F64)
    check_layer(layer, x, before_forward=lambda: setattr(layer, "rng", np.random.default_rng(7)))
    out = Dropout(0.3, rng=np.random.default_rng(0)).forward(np.ones((64, 8, 20, 20)), True)
    assert out.shape == (64, 8, 20, 20) and abs(np.mean(out == 0) - 0.3) < 0.01
