"""`TrainConfig.network`: convolutional networks described as a list of layers.

* the issue's body validates as written, its defaults are written out, and it builds the network
  it describes (Reshape, conv, pool, Flatten, dense, dropout, output);
* the config's shape arithmetic agrees with the engine's: a network the config accepts builds, a
  window the config finds too large the engine refuses too;
* every shape or key error is a 422 naming `network[i]` (or `network[i].kernel`) at
  `POST /v1/jobs`, in a sweep's base and space, and exit 2 in the CLI, before any job runs;
* `hidden_layers` and `network` are one or the other, presets of either kind give way to the
  caller's layers.
"""

from __future__ import annotations

import copy
import json
import re

import numpy as np
import pytest
from pydantic import ValidationError

from shared.config import PRESETS, TrainConfig
from shared.nn.conv import Conv2D
from shared.nn.inference import InferencePlan
from shared.nn.model import Sequential, build_network
from shared.nn.pooling import MaxPool2D
from shared.nn.reshape import Flatten, Reshape
from shared.web.validation import field_errors
from tests import REPO_ROOT
from tests.nn_support import check_network, randomise_trained_state
from trainer_service.sweeps.models import SweepRequest

ISSUE_BODY = {
    "dataset": "mnist",
    "epochs": 2,
    "train_limit": 10000,
    "network": [
        {"conv": 16, "kernel": 5},
        {"pool": 2},
        {"conv": 32, "kernel": 5},
        {"pool": 2},
        {"dense": 128},
        {"dropout": 0.3},
    ],
}
TOO_DEEP = [*ISSUE_BODY["network"][:4], {"conv": 8, "kernel": 5}]  # a 5x5 kernel on 4x4

#: (network, the field its error names, a fragment of the message)
BAD_NETWORKS = [
    (TOO_DEEP, "network[4].kernel", "5x5 window is larger than its 4x4 input"),
    ([{"conv": 4, "kernel": 29}], "network[0].kernel", "less than or equal to 28"),
    ([{"conv": 4, "kernel": 5, "stride": 9}, {"pool": 4}], "network[1].pool", "than its 3x3"),
    ([{"pool": 2}, {"pool": 2}, {"pool": 2}, {"pool": 4}], "network[3].pool", "than its 3x3"),
    ([{"conv": 4}], "network[0].kernel", "needs its kernel size"),
    ([{"dense": 16}, {"conv": 4, "kernel": 3}], "network[1]", "before the first dense layer"),
    ([{"conv": 4, "kernel": 3, "pool": 2}], "network[0]", "exactly one of"),
    ([{}], "network[0]", "exactly one of"),
    ([{"dense": 16, "padding": "same"}], "network[0]", "padding is not a setting of a dense"),
    ([{"pool": 2, "kernel": 2}], "network[0]", "kernel is not a setting of a pool"),
    ([{"conv": 4, "kernel": 3, "dilation": 2}], "network[0].dilation", "unknown field"),
    ([{"conv": True, "kernel": 3}], "network[0].conv", "valid integer"),
    ([{"conv": 4, "kernel": 3, "padding": "full"}], "network[0].padding", "'valid' or 'same'"),
    ([{"dropout": 1.0}], "network[0].dropout", "less than 1"),
    ([], "network", "at least 1 item"),
]


def _error(body: dict) -> tuple[str, str]:
    with pytest.raises(ValidationError) as info:
        TrainConfig.model_validate(body)
    first = field_errors(info.value)[0]
    return first["field"], first["message"]


def test_the_issue_body_validates_and_builds_the_network_it_describes():
    config = TrainConfig.model_validate(ISSUE_BODY)
    assert config.hidden_layers is None
    assert config.public_dict()["network"] == [
        {"conv": 16, "kernel": 5, "stride": 1, "padding": "valid"},
        {"pool": 2, "stride": 2},
        {"conv": 32, "kernel": 5, "stride": 1, "padding": "valid"},
        {"pool": 2, "stride": 2},
        {"dense": 128},
        {"dropout": 0.3},
    ]
    assert TrainConfig.model_validate(config.public_dict()) == config  # a manifest round-trips
    model = config.build_model(mean=np.zeros(784, np.float32))
    assert [layer.kind for layer in model.layers] == [
        "standardize", "reshape", "conv2d", "maxpool2d", "relu", "conv2d", "maxpool2d", "relu",
        "flatten", "dense", "relu", "dropout", "dense",
    ]  # fmt: skip
    assert model.layers[1].shape == (1, 28, 28)
    assert model.layers[-4].in_features == 32 * 4 * 4 and model.output_size == 10
    x = np.random.default_rng(0).random((3, 784), dtype=np.float32)
    assert model.predict_proba(x).shape == (3, 10)


def test_the_readme_shows_the_body():
    readme = (REPO_ROOT / "README.md").read_text()
    assert ISSUE_BODY in [
        json.loads(block) for block in re.findall(r"```json\n(.*?)```", readme, re.S)
    ]


def test_batch_norm_activation_and_input_dropout_apply_as_for_a_perceptron():
    network = [{"conv": 4, "kernel": 3, "padding": "same", "stride": 2}, {"dense": 8}]
    config = TrainConfig(network=network, batch_norm=True, activation="tanh", input_dropout=0.1)
    layers = config.build_model().layers
    assert [layer.kind for layer in layers] == [
        "standardize", "dropout", "reshape", "conv2d", "batchnorm2d", "tanh", "flatten", "dense",
        "batchnorm1d", "tanh", "dense",
    ]  # fmt: skip
    assert not layers[3].use_bias and not layers[7].use_bias  # batch norm's beta is the bias
    assert layers[7].in_features == 4 * 14 * 14 and layers[-1].use_bias


#: Odd sizes, "same" padding and overlapping pool windows (13x13 -> 6x6 by 3x3 windows, stride 2),
#: with few parameters: a float64 finite-difference check perturbs each one twice.
POOLED_NETWORK = [{"conv": 4, "kernel": 3}, {"pool": 2}, {"conv": 4, "kernel": 3, "padding": "same"},
                  {"pool": 3, "stride": 2}, {"dense": 8}]  # fmt: skip


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "tanh", "sigmoid"])
def test_pooling_before_the_activation_computes_what_the_network_says(activation):
    """`build_network` puts a conv's activation after the pool that follows it. The network as
    written (activation, then pool) built from the very same layers gives the same logits and
    the same gradient, on images with blank backgrounds (the ties every MNIST border makes)."""
    config = TrainConfig(network=POOLED_NETWORK, activation=activation, seed=2)
    pooled_first = config.build_model()
    kinds = [layer.kind for layer in pooled_first.layers]
    assert kinds[3:5] == ["maxpool2d", activation]
    layers = copy.deepcopy(pooled_first.layers)
    for i in range(len(layers) - 1):  # each (pool, activation) back to (activation, pool)
        if isinstance(layers[i], MaxPool2D) and kinds[i + 1] == activation:
            layers[i], layers[i + 1] = layers[i + 1], layers[i]
    as_written = Sequential(layers, input_size=784)
    assert [layer.kind for layer in as_written.layers].count("maxpool2d") == 2
    assert [layer.kind for layer in as_written.layers] != kinds
    np.testing.assert_array_equal(as_written.params, pooled_first.params)
    rng = np.random.default_rng(5)
    x = rng.random((6, 784), dtype=np.float32) * (rng.random((6, 784)) < 0.3)  # mostly blank
    grad = rng.standard_normal((6, 10)).astype(np.float32)
    for model in (pooled_first, as_written):
        model.astype(np.float64)
    logits = [
        model.forward(x.astype(np.float64), training=True) for model in (pooled_first, as_written)
    ]
    np.testing.assert_allclose(logits[0], logits[1], rtol=1e-12, atol=1e-12)
    for model in (pooled_first, as_written):
        model.backward(grad.astype(np.float64))
    assert np.abs(as_written.grads).max() > 0
    np.testing.assert_allclose(pooled_first.grads, as_written.grads, rtol=1e-10, atol=1e-12)


def test_batch_norm_after_a_pool_normalises_the_pooled_maps_and_its_gradient_checks():
    """With `batch_norm`, a conv followed by a pool gets conv -> pool -> batch norm -> activation:
    in training mode the batch norm's output has each channel's mean 0 and variance 1 over the
    batch's pooled pixels; the built network's gradient (float64) agrees with finite
    differences; and serving (the folded plan) and the frozen copy compute the layers' own
    inference pass."""
    config = TrainConfig(network=POOLED_NETWORK, batch_norm=True, activation="tanh", seed=3)
    model = config.build_model()
    assert [layer.kind for layer in model.layers] == [
        "standardize", "reshape", "conv2d", "maxpool2d", "batchnorm2d", "tanh", "conv2d",
        "maxpool2d", "batchnorm2d", "tanh", "flatten", "dense", "batchnorm1d", "tanh", "dense",
    ]  # fmt: skip
    rng = np.random.default_rng(7)
    x = rng.random((5, 784))
    model.astype(np.float64)
    h = x
    for layer in model.layers[:5]:
        h = layer.forward(h, training=True)
    assert h.shape == (5, 4, 13, 13)
    np.testing.assert_allclose(h.mean(axis=(0, 2, 3)), 0, atol=1e-10)
    np.testing.assert_allclose(h.var(axis=(0, 2, 3)), 1, rtol=1e-3)  # eps 1e-5 in the variance
    check_network(model, x[:3], np.array([1, 4, 9]))
    randomise_trained_state(model, rng)
    want = model.forward(x, training=False).copy()
    np.testing.assert_allclose(InferencePlan(model).logits(x), want, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(model.frozen().forward(x, True), want, rtol=1e-10, atol=1e-12)


def test_a_network_of_dense_layers_only_needs_no_images():
    layers = TrainConfig(network=[{"dense": 32}, {"dropout": 0.2}]).build_model().layers
    assert not any(isinstance(layer, Reshape | Flatten) for layer in layers)


def test_same_seed_same_weights_and_the_seed_matters():
    def params(seed: int) -> np.ndarray:
        return TrainConfig.model_validate({**ISSUE_BODY, "seed": seed}).build_model().params

    np.testing.assert_array_equal(params(3), params(3))
    assert not np.array_equal(params(3), params(4))


@pytest.mark.parametrize("seed", range(40))
def test_the_configs_shape_check_agrees_with_the_engine(seed):
    """Random conv/pool stacks: accepted by the config → the engine builds them; refused for a
    window too large → the engine's own shape check refuses them too."""
    rng = np.random.default_rng(seed)
    network = []
    for _ in range(rng.integers(1, 6)):
        if rng.random() < 0.6:
            padding = str(rng.choice(["valid", "same"]))
            network.append({"conv": 2, "kernel": int(rng.integers(1, 12)),
                            "stride": int(rng.integers(1, 4)), "padding": padding})  # fmt: skip
        else:
            network.append({"pool": int(rng.integers(1, 6)), "stride": int(rng.integers(1, 4))})
    try:
        config = TrainConfig(network=network)
    except ValidationError as exc:
        assert "window is larger" in str(exc)
        with pytest.raises(ValueError, match="smaller than its"):
            build_network(input_shape=(1, 28, 28), network=network, n_classes=10)
        return
    model = config.build_model()
    assert any(isinstance(layer, Conv2D | MaxPool2D) for layer in model.layers)


@pytest.mark.parametrize(("network", "field", "message"), BAD_NETWORKS)
def test_network_errors_name_the_layer(network, field, message):
    where, said = _error({"network": network})
    assert where == field and message in said, (where, said)


@pytest.mark.parametrize(("network", "field", "message"), BAD_NETWORKS[:6])
def test_post_jobs_answers_422_naming_the_layer(trainer_client, network, field, message):
    r = trainer_client.post("/v1/jobs", json={**ISSUE_BODY, "network": network})
    assert r.status_code == 422, r.json
    assert r.json["error"]["field"] == field and message in r.json["error"]["message"]
    assert r.json["error"]["invalid_fields"] == ["network"]


def test_hidden_layers_or_network_not_both_nor_neither():
    assert _error({"network": [{"dense": 8}], "hidden_layers": [8]})[0] == "network"
    assert _error({"hidden_layers": None})[0] == "hidden_layers"
    assert TrainConfig(hidden_layers=[8]).network is None
    assert TrainConfig().hidden_layers == [512, 256]  # a perceptron unless told otherwise


def test_dropout_of_a_network_is_given_as_its_layers():
    where, said = _error({"network": [{"dense": 8}], "dropout": 0.2})
    assert where == "dropout" and '{"dropout": p}' in said


def test_the_callers_layers_replace_the_presets():
    cnn = TrainConfig(preset="cnn")
    assert cnn.hidden_layers is None and cnn.network[0].conv == 32
    mlp = TrainConfig(preset="cnn", hidden_layers=[64])
    assert mlp.network is None and mlp.hidden_layers == [64] and mlp.epochs == cnn.epochs
    # best's dropout belongs to its hidden layers: a network replaces both
    net = TrainConfig(preset="best", network=[{"dense": 64}])
    assert net.hidden_layers is None and net.dropout == 0 and net.epochs == 64
    assert TrainConfig(preset="best", hidden_layers=[64]).dropout == PRESETS["best"]["dropout"]


@pytest.mark.parametrize("preset", ["cnn", "cnn-best", "fashion-cnn"])
def test_cnn_presets_build_convolutional_networks(preset):
    model = TrainConfig(preset=preset).build_model()
    assert isinstance(model.layers[1], Reshape) and model.output_size == 10
    assert TrainConfig(preset=preset).dataset == (
        "fashion-mnist" if "fashion" in preset else "mnist"
    )


NETWORKS = [[{"conv": 4, "kernel": 5}, {"pool": 2}, {"dense": 16}], [{"dense": 32}]]


def test_a_sweep_searches_a_choice_of_networks():
    body = {"base": {"epochs": 1}, "space": {"network": {"choice": NETWORKS}}, "trials": 2}
    request = SweepRequest.model_validate(body)
    assert request.space["network"].choice == NETWORKS
    grid = SweepRequest.model_validate({"base": {}, "space": {"network": NETWORKS}})
    assert grid.is_grid and grid.n_trials == 2


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        ({"base": {"network": TOO_DEEP}, "space": {"learning_rate": [0.1, 0.01]}},
         "base.network[4].kernel", "larger than"),
        ({"base": {}, "space": {"network": {"choice": [NETWORKS[0], TOO_DEEP]}}, "trials": 2},
         "space.network", "network[4].kernel: a 5x5 window"),
        ({"base": {"hidden_layers": [8]}, "space": {"network": [NETWORKS[1]]}},
         "space.network", "one of the two"),
        ({"base": {}, "space": {"network": [NETWORKS[1]], "hidden_layers": [[8]]}},
         "space", "one of the two"),
    ],
)  # fmt: skip
def test_post_sweeps_answers_422_for_a_bad_network(trainer_client, body, field, fragment):
    r = trainer_client.post("/v1/sweeps", json=body)
    assert r.status_code == 422, r.json
    assert r.json["error"]["field"] == field and fragment in r.json["error"]["message"], r.json
