"""Convolutional networks in `Sequential`: end-to-end gradients, the JSON spec and model file,
the inference plan and the frozen (explanation) copy; and MLP files written before convolutions
existed still load and predict the same."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from shared.modelfile import load_model, save_model
from shared.nn.activations import LeakyReLU, ReLU, Tanh
from shared.nn.conv import Conv2D
from shared.nn.inference import PREDICT_CHUNK, InferencePlan
from shared.nn.layers import BatchNorm2d, Dense, Dropout, Standardize
from shared.nn.losses import SoftmaxCrossEntropy
from shared.nn.model import Sequential
from shared.nn.pooling import MaxPool2D
from shared.nn.reshape import Flatten, Reshape
from shared.nn.training import TrainingSpec, fit
from tests.nn_support import check_network, numeric_grad, randomise_trained_state

F64 = np.float64
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def small_cnn(seed: int = 0, dtype=np.float32) -> Sequential:
    """rows of 100 -> 1x10x10 -> conv 3x3 same -> BN -> ReLU -> pool 2 -> conv 3x3 stride 2
    valid (no bias) -> BN -> leaky ReLU -> flatten -> dense -> tanh -> dense: every image layer."""
    rng = np.random.default_rng(seed)
    layers = [
        Standardize(rng.uniform(0, 0.3, 100).astype(np.float32)),
        Reshape((1, 10, 10)),
        Conv2D(1, 3, 3, padding="same", rng=rng),
        BatchNorm2d(3),
        ReLU(),
        MaxPool2D(2),
        Conv2D(3, 4, 3, stride=2, bias=False, rng=rng),
        BatchNorm2d(4),
        LeakyReLU(0.1),
        Flatten(),
        Dense(16, 5, rng=rng),
        Tanh(),
        Dense(5, 3, init="xavier", rng=rng),
    ]
    return Sequential(layers, input_size=100, dtype=dtype)


def test_small_cnn_gradient_end_to_end():
    """Loss included: dL/dparams and dL/dx of conv -> pool -> flatten -> dense vs differences."""
    model = small_cnn().astype(F64)
    rng = np.random.default_rng(1)
    x = rng.random((5, 100))
    y = rng.integers(0, 3, 5)
    check_network(model, x, y)


def test_conv_pool_flatten_dense_gradient_without_batch_norm():
    """The `cnn` network's pattern (conv -> ReLU -> pool twice, then dense) in miniature."""
    rng = np.random.default_rng(2)
    layers = [
        Reshape((2, 9, 9)),
        Conv2D(2, 4, 5, padding="same", rng=rng),
        ReLU(),
        MaxPool2D(2),
        Conv2D(4, 5, 3, padding="same", rng=rng),
        ReLU(),
        MaxPool2D(3, 2),
        Flatten(),
        Dense(5, 4, rng=rng),
    ]
    model = Sequential(layers, input_size=162, dtype=F64)
    randomise_trained_state(model, rng)
    x = rng.standard_normal((3, 162))
    y = rng.integers(0, 4, 3)
    loss_fn = SoftmaxCrossEntropy()

    def loss() -> float:
        return loss_fn.forward(model.forward(x, training=True), y)

    loss()
    model.backward(loss_fn.backward())
    np.testing.assert_allclose(model.grads, numeric_grad(loss, model.params), rtol=1e-5, atol=1e-8)


def test_spec_is_json_and_the_model_file_round_trip_is_exact(tmp_path):
    model = small_cnn()
    randomise_trained_state(model, np.random.default_rng(3))
    spec = json.loads(json.dumps(model.spec()))
    assert spec["input_dim"] == 100 and spec["output_dim"] == 3
    assert spec["layers"][1:4] == [
        {"type": "reshape", "shape": [1, 10, 10]},
        {
            "type": "conv2d",
            "in_channels": 1,
            "out_channels": 3,
            "kernel_size": 3,
            "stride": 1,
            "padding": "same",
            "bias": True,
        },
        {"type": "batchnorm2d", "channels": 3, "momentum": 0.1, "eps": 1e-5},
    ]
    assert spec["layers"][5] == {"type": "maxpool2d", "size": 2, "stride": 2}
    assert spec["layers"][9] == {"type": "flatten"}
    assert model.state()["2.W"].shape == (3, 3, 1, 3)  # (k, k, in, out)
    save_model(tmp_path / "cnn.npz", model, {"kind": "cnn"})
    loaded = load_model(tmp_path / "cnn.npz").model
    assert loaded.spec() == model.spec()
    x = np.random.default_rng(4).random((20, 100), dtype=np.float32)
    np.testing.assert_array_equal(loaded.predict_proba(x), model.predict_proba(x))


def _spec_and_state():
    model = small_cnn()
    return model.spec(), model.state()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda s, a: s["layers"][2].update(in_channels=2), "layer 2 (conv2d) expects images of 2"),
        (lambda s, a: s["layers"][2].update(padding="full"), "unknown padding 'full'"),
        (lambda s, a: s["layers"][6].update(kernel_size=7), "image 5x5 is smaller than its 7x7"),
        (lambda s, a: s["layers"][1].update(shape=[1, 10, 9]), "cannot reshape 100 values"),
        (lambda s, a: s["layers"][1].update(shape=[1, "10", 10]), "positive integers"),
        (lambda s, a: s["layers"][1].update(shape=10), "'shape' must be list"),
        (lambda s, a: s["layers"][3].update(channels=4), "layer 3 (batchnorm2d) expects images"),
        (lambda s, a: s["layers"][5].update(size=11), "10x10 is smaller than its pool window"),
        (lambda s, a: s["layers"][5].pop("stride"), "exactly the fields"),
        (lambda s, a: s["layers"].pop(9), "layer 9 (dense) expects 16 inputs but receives shape"),
        (lambda s, a: s["layers"].pop(1), "layer 1 (conv2d) expects images of 1 channels"),
        (lambda s, a: a.update({"2.W": np.zeros((3, 3, 3, 1))}), "expected [3, 3, 1, 3]"),
    ],
)
def test_from_spec_rejects_inconsistent_image_layers(mutate, message):
    spec, arrays = _spec_and_state()
    mutate(spec, arrays)
    with pytest.raises(ValueError, match=re.escape(message)):
        Sequential.from_spec(spec, arrays)


def test_the_last_layer_must_give_a_vector():
    with pytest.raises(ValueError, match="must output a vector of logits"):
        Sequential([Reshape((1, 4, 4)), Conv2D(1, 2, 3)], input_size=16)


def test_inference_plan_and_frozen_copy_agree_with_the_layers():
    model = small_cnn(dtype=F64)
    rng = np.random.default_rng(5)
    randomise_trained_state(model, rng)
    x = rng.random((9, 100))
    layer_by_layer = model.forward(x, training=False).copy()
    plan = InferencePlan(model)
    np.testing.assert_allclose(plan.logits(x), layer_by_layer, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(plan.logits(x, chunk=4), layer_by_layer, rtol=1e-12, atol=1e-12)
    # Each BatchNorm2d of the frozen copy is folded into the Conv2D before it.
    frozen = model.frozen()
    assert [layer.kind for layer in frozen.layers].count("batchnorm2d") == 0
    np.testing.assert_allclose(frozen.forward(x, True), layer_by_layer, rtol=1e-12, atol=1e-12)


def test_frozen_batchnorm2d_with_no_conv_before_it_becomes_a_1x1_conv():
    rng = np.random.default_rng(6)
    layers = [Reshape((2, 3, 3)), BatchNorm2d(2), Dropout(0.5), Flatten(), Dense(18, 4, rng=rng)]
    model = Sequential(layers, input_size=18, dtype=F64)
    randomise_trained_state(model, rng)
    x = rng.random((5, 18))
    frozen = model.frozen()
    assert [layer.kind for layer in frozen.layers] == ["reshape", "conv2d", "flatten", "dense"]
    np.testing.assert_allclose(
        frozen.forward(x, True), model.forward(x, training=False), rtol=1e-12, atol=1e-12
    )


def test_plan_chunks_conv_models_by_memory_and_never_writes_the_callers_array():
    cnn = Sequential(
        [Reshape((1, 28, 28)), Conv2D(1, 32, 5), ReLU(), MaxPool2D(2), Flatten(), Dense(4608, 10)],
        input_size=784,
    )
    # conv: 24*24 output pixels x a 5*5 window = 14400 floats of im2col matrix per row.
    assert InferencePlan(cnn).chunk == (1 << 22) // (24 * 24 * 5 * 5)
    mlp = Sequential([Dense(784, 8192), ReLU(), Dense(8192, 10)], input_size=784)
    assert InferencePlan(mlp).chunk == PREDICT_CHUNK
    relu_first = Sequential([Reshape((1, 2, 2)), ReLU(), Flatten(), Dense(4, 2)], input_size=4)
    x = np.array([[-1.0, 2.0, -3.0, 4.0]], np.float32)
    InferencePlan(relu_first).logits(x)
    np.testing.assert_array_equal(x, [[-1.0, 2.0, -3.0, 4.0]])


def test_fit_trains_a_small_cnn():
    """Vertical vs horizontal bars (an MLP's job too, but it exercises the whole training loop)."""
    rng = np.random.default_rng(7)
    n = 256
    y = rng.integers(0, 2, n)
    x = rng.random((n, 8, 8), dtype=np.float32) * 0.3
    where = rng.integers(0, 8, n)
    x[y == 0, :, where[y == 0]] += 0.7
    x[y == 1, where[y == 1], :] += 0.7
    x = x.reshape(n, 64)
    model = Sequential(
        [
            Reshape((1, 8, 8)),
            Conv2D(1, 4, 3, padding="same", rng=rng),
            ReLU(),
            MaxPool2D(2),
            Flatten(),
            Dense(64, 2, init="xavier", rng=rng),
        ],
        input_size=64,
    )
    result = fit(model, x, y, TrainingSpec(epochs=10, batch_size=32, learning_rate=1e-2))
    assert result.history[-1].train_loss < result.history[0].train_loss
    assert np.mean(model.predict_proba(x).argmax(axis=1) == y) > 0.95


def test_an_mlp_file_saved_before_convolutions_loads_and_predicts_the_same():
    """tests/fixtures/mlp_before_cnn.npz was written by the engine before convolutions (see
    make_mlp_before_cnn.py); its predictions were recorded then. Float32 round-off tolerance
    only, because another CPU's BLAS kernels may sum in another order."""
    loaded = load_model(FIXTURES / "mlp_before_cnn.npz")
    expected = np.load(FIXTURES / "mlp_before_cnn_expected.npz", allow_pickle=False)
    model = loaded.model
    assert loaded.metadata == {"note": "fixture written before issue 23"}
    assert [layer.kind for layer in model.layers][:4] == [
        "standardize",
        "dropout",
        "dense",
        "batchnorm1d",
    ]
    np.testing.assert_allclose(
        model.predict_proba(expected["x"]), expected["proba"], rtol=1e-5, atol=1e-7
    )
    np.testing.assert_allclose(
        model.forward(expected["x"], training=False), expected["logits"], rtol=1e-5, atol=1e-6
    )


def test_input_gradient_of_a_cnn_is_the_served_functions_derivative():
    """What explanations use: the frozen copy's backward through reshape, folded conv + batch
    norm, pooling and flatten, against differences of the inference plan's logits."""
    model = small_cnn(dtype=F64)
    rng = np.random.default_rng(8)
    randomise_trained_state(model, rng)
    x = rng.random((2, 100))
    target = np.array([0, 2])
    logits, dx = model.input_gradient(x, np.eye(3)[target])
    plan = InferencePlan(model)
    np.testing.assert_allclose(logits, plan.logits(x), rtol=1e-12, atol=1e-12)

    def picked() -> float:
        return float(plan.logits(x)[np.arange(2), target].sum())

    np.testing.assert_allclose(dx, numeric_grad(picked, x), rtol=1e-5, atol=1e-7)
