"""Sequential model: a list of layers, one flat parameter vector, a JSON spec; and `build_mlp`.

Input contract: float32 [N, input_size] with pixels in [0, 1]; any normalisation is a layer inside
the model (Standardize), so the model file is self-contained. Predictions go through the one
inference-mode forward pass, `shared.nn.inference.InferencePlan` (`predict_proba` builds one).

Inside, a sample is a vector (features,) or an image (channels, height, width): a convolutional
model starts with a Reshape and has a Flatten before its Dense layers. The model checks that every
layer accepts the shape the one before produces (`Layer.output_shape`).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from shared.nn.activations import ACTIVATIONS
from shared.nn.conv import Conv2D
from shared.nn.inference import InferencePlan
from shared.nn.layers import BatchNorm1d, BatchNorm2d, Dense, Dropout, Layer, Standardize
from shared.nn.pooling import MaxPool2D
from shared.nn.reshape import Flatten, Reshape

LAYER_TYPES: dict[str, type[Layer]] = {
    "standardize": Standardize,
    "dense": Dense,
    "dropout": Dropout,
    "batchnorm1d": BatchNorm1d,
    "reshape": Reshape,
    "conv2d": Conv2D,
    "maxpool2d": MaxPool2D,
    "batchnorm2d": BatchNorm2d,
    "flatten": Flatten,
    **{cls.kind: cls for cls in ACTIVATIONS.values()},
}

_MODEL_STREAM_TAG = 0x4D4F44454C  # "MODEL"
_ACTIVATION_TYPES = tuple(ACTIVATIONS.values())


class FirstConvolution(NamedTuple):
    """What a model's first Conv2D sees (`Sequential.first_convolution`)."""

    #: Its index in `Sequential.layers` (and in `describe()`).
    layer: int
    #: Its kernels, float32 [out channels, in channels, k, k].
    filters: np.ndarray
    #: Its output after the batch norm and activation that follow it, float32 [N, out channels,
    #: height, width].
    feature_maps: np.ndarray


class Sequential:
    """Layers applied in order, ending in logits.

    All trainable parameters are views into `self.params` (one contiguous vector, decayed weights
    first: `self.decay_size` entries) and their gradients into `self.grads`. That is what lets an
    optimizer update the whole model with a few ufuncs.
    """

    def __init__(self, layers: list[Layer], *, input_size: int, dtype: Any = np.float32) -> None:
        if not layers:
            raise ValueError("a model needs at least one layer")
        self.layers = list(layers)
        #: Features per input row (784 for 28x28 images): what callers must feed.
        self.input_size = int(input_size)
        self.dtype = np.dtype(dtype)
        shape: tuple[int, ...] = (self.input_size,)
        for i, layer in enumerate(self.layers):
            shape = _output_shape(i, layer, shape)
        if len(shape) != 1:
            raise ValueError(f"the last layer must output a vector of logits, not shape {shape}")
        #: Logits per row (the number of classes).
        self.output_size = shape[0]
        for layer in self.layers:
            if layer.dtype != self.dtype:
                layer.astype(self.dtype)
        self._bind_parameters()

    # -- parameters --------------------------------------------------------------------------------
    def _bind_parameters(self) -> None:
        entries = [(layer, name) for layer in self.layers for name in layer.trainable]
        entries.sort(key=lambda e: e[1] not in e[0].decayed)  # stable: weights first
        total = sum(getattr(layer, name).size for layer, name in entries)
        self.params = np.empty(total, self.dtype)
        self.grads = np.zeros(total, self.dtype)
        self.decay_size = 0
        offset = 0
        for layer, name in entries:
            value = getattr(layer, name)
            view = self.params[offset : offset + value.size].reshape(value.shape)
            view[...] = value
            setattr(layer, name, view)
            setattr(
                layer, "d" + name, self.grads[offset : offset + value.size].reshape(value.shape)
            )
            if name in layer.decayed:
                self.decay_size = offset + value.size
            offset += value.size
        # The first layer with parameters never needs dL/d(input): skip that product.
        self._first_trainable = next(
            (i for i, layer in enumerate(self.layers) if layer.trainable), len(self.layers)
        )

    def astype(self, dtype: Any) -> Sequential:
        """Cast the whole model (parameters, state, buffers) in place; returns self."""
        self.dtype = np.dtype(dtype)
        for layer in self.layers:
            layer.astype(self.dtype)
        self._bind_parameters()
        return self

    @property
    def n_params(self) -> int:
        return int(self.params.size)

    # -- computation -------------------------------------------------------------------------------
    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        """Logits of x, layer by layer, returning the last layer's own array (no copy).

        This is the pass training differentiates (dropout on, batch norm on batch statistics).
        Predictions use `predict_proba` (the folded `InferencePlan`), not this.
        """
        for layer in self.layers:
            x = layer.forward(x, training)
        return x

    def backward(self, grad: np.ndarray, *, input_grad: bool = False) -> np.ndarray | None:
        """Back-propagate dL/dlogits, filling `self.grads`.

        Returns dL/dx when `input_grad` is True; otherwise the product for the first trainable
        layer's input is skipped (the input is data, nobody needs its gradient) and None returned.
        """
        stop = 0 if input_grad else self._first_trainable
        for i in range(len(self.layers) - 1, stop - 1, -1):
            need = input_grad or i > stop
            grad = self.layers[i].backward(grad, need_input_grad=need)
        return grad if input_grad else None

    def frozen(self) -> Sequential:
        """This model's inference-mode function as a model whose *training-mode* pass computes it.

        Dropout (the identity at inference) is left out; each BatchNorm1d becomes its running-
        statistics affine map x * scale + shift, folded into the Dense before it (the algebra of
        `InferencePlan`) or, with no Dense before it, a Dense of diagonal weights; a BatchNorm2d
        likewise into the Conv2D before it or a 1x1 Conv2D. What remains (Standardize, Dense,
        Conv2D, pooling, reshapes, activations) computes the same thing in both modes, so
        ``frozen().forward(x, True)`` equals the served logits and its `backward` differentiates
        them. A copy with its own parameters, gradients and buffers: nothing done to it reaches
        this model (its gradients, optimizer state, dropout streams, running statistics), and
        several threads may each use their own.
        """
        layers: list[Layer] = []
        for layer in self.layers:
            if isinstance(layer, Dropout):
                continue
            if isinstance(layer, BatchNorm2d):
                layers.append(_conv_with_affine(layers, layer, self.dtype))
                continue
            if isinstance(layer, BatchNorm1d):
                scale, shift = layer.inference_affine()
                dense = layers[-1] if layers and isinstance(layers[-1], Dense) else None
                if dense is None:
                    dense = Dense(layer.dim, layer.dim, init="xavier", dtype=self.dtype)
                    dense.W = np.diag(scale)
                    dense.b = np.zeros(layer.dim)
                    layers.append(dense)
                else:
                    dense.W = dense.W.astype(np.float64) * scale
                    bias = dense.b.astype(np.float64) if dense.use_bias else 0.0
                    dense.b = bias * scale
                    dense.use_bias, dense.trainable = True, ("W", "b")
                dense.b = dense.b + shift
                continue
            twin = copy.copy(layer)  # parameters are re-bound below, never written through
            twin._buffers = {}
            layers.append(twin)
        return Sequential(layers, input_size=self.input_size, dtype=self.dtype)

    def input_gradient(
        self, x: np.ndarray, grad_logits: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(logits, dx) of the inference-mode function at x [N, input_size]: the logits [N,
        classes] and the vector-Jacobian product dx[n, i] = sum_k grad_logits[n, k] *
        d logit_k(x_n) / d x_n,i (a one-hot `grad_logits` gives d logit_target / d input).

        Computed by the layers' own backward pass on a `frozen()` copy, so dropout is off, batch
        norm uses its running statistics, and this model is left exactly as it was.
        """
        net = self.frozen()
        logits = net.forward(x, training=True).copy()
        return logits, net.backward(grad_logits.astype(net.dtype, copy=False), input_grad=True)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities float32 [N, classes] of float32 x [N, input_size] in [0, 1].

        Builds an `InferencePlan` of the current weights (one small product per call); callers
        that predict repeatedly with fixed weights (the inference service) keep the plan instead.
        """
        return InferencePlan(self).predict_proba(x)

    # -- inspection --------------------------------------------------------------------------------
    def describe(self) -> list[dict[str, Any]]:
        """Each layer in order: ``{"kind", "output_shape", "params", "settings"}`` — its spec
        type, the per-sample shape it outputs ((features,) or (channels, height, width)), its
        trainable values (they add up to `n_params`) and its spec settings (kernel size, units,
        drop probability, ...). What the web page draws of a network."""
        shape: tuple[int, ...] = (self.input_size,)
        layers = []
        for layer in self.layers:
            shape = layer.output_shape(shape)
            params = sum(int(getattr(layer, name).size) for name in layer.trainable)
            layers.append(
                {"kind": layer.kind, "output_shape": list(shape), "params": params,
                 "settings": layer.config()}
            )  # fmt: skip
        return layers

    def first_convolution(self, x: np.ndarray) -> FirstConvolution | None:
        """What the first Conv2D sees of x, float32 [N, input_size] in [0, 1]: its filters and
        its feature maps (its output once the batch norm and activation after it are applied,
        before any pool), computed in inference mode (dropout off, batch norm on running
        statistics; fresh arrays, so thread-safe). None when there is no Conv2D."""
        index = next((i for i, layer in enumerate(self.layers) if isinstance(layer, Conv2D)), None)
        if index is None:
            return None
        for layer in self.layers[: index + 1]:
            x = layer.forward(x, training=False)
        # Its batch norm and activation, wherever they are among the layers up to the next
        # other kind: before the pool (files of before 2026-12-06) or after it (`build_network`);
        # in inference mode both are per-pixel maps, so they apply to the unpooled maps alike.
        for layer in self.layers[index + 1 :]:
            if isinstance(layer, MaxPool2D):
                continue
            if not isinstance(layer, (BatchNorm2d, *_ACTIVATION_TYPES)):
                break
            x = layer.forward(x, training=False)
        conv = self.layers[index]
        # (k, k, C, O) -> (O, C, k, k); C order, as callers serialise them (orjson needs it)
        filters = np.ascontiguousarray(conv.W.transpose(3, 2, 0, 1), dtype=np.float32)
        maps = np.ascontiguousarray(x, dtype=np.float32)
        return FirstConvolution(index, filters, maps)

    # -- serialisation -----------------------------------------------------------------------------
    def spec(self) -> dict[str, Any]:
        """JSON-able architecture: enough, with `state()`, to rebuild the model exactly."""
        return {
            "input_dim": self.input_size,
            "output_dim": self.output_size,
            "layers": [{"type": layer.kind, **layer.config()} for layer in self.layers],
        }

    def state(self) -> dict[str, np.ndarray]:
        """Copies of every array: parameters and persistent state, keyed '<layer index>.<name>'."""
        return {
            f"{i}.{name}": value.copy()
            for i, layer in enumerate(self.layers)
            for name, value in layer.arrays().items()
        }

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        """Copy arrays (as produced by `state()`) into this model, checking names and shapes."""
        expected = self._expected_arrays()
        missing = sorted(set(expected) - set(arrays))
        extra = sorted(set(arrays) - set(expected))
        if missing or extra:
            raise ValueError(
                f"state arrays do not match the model: missing {missing}, extra {extra}"
            )
        for key, (layer, name) in expected.items():
            value = np.asarray(arrays[key])
            target = getattr(layer, name)
            if value.shape != target.shape:
                raise ValueError(
                    f"array {key!r} has shape {list(value.shape)}, expected {list(target.shape)}"
                )
            if not np.issubdtype(value.dtype, np.floating):
                raise ValueError(f"array {key!r} has dtype {value.dtype}, expected float")
            target[...] = value

    def _expected_arrays(self) -> dict[str, tuple[Layer, str]]:
        return {
            f"{i}.{name}": (layer, name)
            for i, layer in enumerate(self.layers)
            for name in layer.trainable + layer.persistent
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any], arrays: dict[str, np.ndarray]) -> Sequential:
        """Rebuild a model from `spec()` and `state()`; raises ValueError naming the problem."""
        if not isinstance(spec, dict):
            raise ValueError("model spec must be a JSON object")
        input_dim = spec.get("input_dim")
        if not isinstance(input_dim, int) or isinstance(input_dim, bool) or input_dim < 1:
            raise ValueError("model spec 'input_dim' must be a positive integer")
        layer_specs = spec.get("layers")
        if not isinstance(layer_specs, list) or not layer_specs:
            raise ValueError("model spec 'layers' must be a non-empty list")
        layers: list[Layer] = []
        shape: tuple[int, ...] = (input_dim,)
        for i, entry in enumerate(layer_specs):
            layer = _layer_from_spec(i, entry, shape)
            layers.append(layer)
            shape = _output_shape(i, layer, shape)
        model = cls(layers, input_size=input_dim)
        if "output_dim" in spec and spec["output_dim"] != model.output_size:
            raise ValueError(
                f"model spec says output_dim {spec['output_dim']} but the layers give "
                f"{model.output_size}"
            )
        model.load_state(arrays)
        return model

    def __repr__(self) -> str:
        inner = ", ".join(repr(layer) for layer in self.layers)
        return f"Sequential([{inner}], params={self.n_params})"


def _output_shape(i: int, layer: Layer, shape: tuple[int, ...]) -> tuple[int, ...]:
    try:
        return layer.output_shape(shape)
    except ValueError as exc:
        raise ValueError(f"layer {i} ({layer.kind}) {exc}") from None


def _conv_with_affine(layers: list[Layer], norm: BatchNorm2d, dtype: Any) -> Conv2D:
    """`frozen()`'s BatchNorm2d: its running-statistics map x * scale + shift per channel, folded
    into the Conv2D just before it (popped from `layers`) or else a 1x1 Conv2D."""
    scale, shift = norm.inference_affine()
    conv = layers.pop() if layers and isinstance(layers[-1], Conv2D) else None
    if conv is None:
        conv = Conv2D(norm.dim, norm.dim, 1, dtype=dtype)
        conv.W = np.diag(scale).reshape(1, 1, norm.dim, norm.dim)
        conv.b = shift
    else:
        bias = conv.b.astype(np.float64) if conv.use_bias else 0.0
        conv.W = conv.W.astype(np.float64) * scale  # scales each output channel (last axis)
        conv.b = bias * scale + shift
    conv.use_bias, conv.trainable = True, ("W", "b")
    return conv


#: Exact fields (and JSON types) each layer kind has in a spec; anything else is rejected.
_SPEC_FIELDS: dict[str, dict[str, type]] = {
    "standardize": {"dim": int},
    "dense": {"in_features": int, "out_features": int, "bias": bool, "init": str},
    "dropout": {"p": float},
    "batchnorm1d": {"dim": int, "momentum": float, "eps": float},
    "reshape": {"shape": list},
    "conv2d": {
        "in_channels": int,
        "out_channels": int,
        "kernel_size": int,
        "stride": int,
        "padding": str,
        "bias": bool,
    },
    "maxpool2d": {"size": int, "stride": int},
    "batchnorm2d": {"channels": int, "momentum": float, "eps": float},
    "flatten": {},
    "relu": {},
    "leaky_relu": {"alpha": float},
    "sigmoid": {},
    "tanh": {},
}


def _json_type_ok(value: Any, expected: type) -> bool:
    if isinstance(value, bool):
        return expected is bool
    if expected is float:
        return isinstance(value, int | float)
    return isinstance(value, expected)


def _layer_from_spec(i: int, entry: Any, shape: tuple[int, ...]) -> Layer:
    if not isinstance(entry, dict) or not isinstance(entry.get("type"), str):
        raise ValueError(f"layer {i} must be an object with a string 'type'")
    kind = entry["type"]
    if kind not in LAYER_TYPES:
        raise ValueError(f"layer {i} has unknown type {kind!r}; known: {sorted(LAYER_TYPES)}")
    args = {k: v for k, v in entry.items() if k != "type"}
    fields = _SPEC_FIELDS[kind]
    if set(args) != set(fields):
        raise ValueError(
            f"layer {i} ({kind}) must have exactly the fields {sorted(fields)}, got {sorted(args)}"
        )
    for key, expected in fields.items():
        if not _json_type_ok(args[key], expected):
            raise ValueError(f"layer {i} ({kind}) field {key!r} must be {expected.__name__}")
    dim_key = {"dense": "in_features", "batchnorm1d": "dim", "standardize": "dim"}.get(kind)
    if dim_key is not None and len(shape) == 1 and args[dim_key] != shape[0]:
        raise ValueError(
            f"layer {i} ({kind}) declares {dim_key}={args[dim_key]}, expected {shape[0]}"
        )
    try:
        if kind == "standardize":
            return Standardize(args["dim"])
        return LAYER_TYPES[kind](**args)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"layer {i} ({kind}) has invalid settings {args}: {exc}") from exc


def _dropout(p: float, seed: np.random.SeedSequence) -> Dropout:
    """A dropout layer with its own mask stream. SFC64: the fastest NumPy bit generator; a
    dropout layer draws ~100k bits per batch."""
    return Dropout(p, rng=np.random.Generator(np.random.SFC64(seed)))


def build_mlp(
    *,
    input_size: int,
    hidden_layers: Sequence[int],
    n_classes: int,
    activation: str = "relu",
    batch_norm: bool = False,
    dropout: float = 0.0,
    input_dropout: float = 0.0,
    mean: np.ndarray | None = None,
    seed: int = 0,
) -> Sequential:
    """A multi-layer perceptron:

        [Standardize(mean)] -> [Dropout(input_dropout)] -> for each hidden width: Dense ->
        [BatchNorm1d] -> activation -> [Dropout(dropout)] -> Dense(n_classes)

    `mean` (the training data's per-feature mean) adds the Standardize layer; None leaves it out.
    Dense layers feeding a ReLU-family activation get He init, others Xavier; a Dense followed
    by batch norm has no bias (beta does its job). Initial weights and each dropout layer's
    masks come from independent random streams derived from `seed`.

    Input dropout zeroes pixels of the (standardized) image at random: noise that keeps a wide
    network from leaning on any single pixel (Srivastava et al. 2014). It costs one mask per
    batch: the backward pass stops at the first Dense, so no gradient flows through it.
    """
    # Tagged entropy: independent of the streams training derives from the same seed.
    root = np.random.SeedSequence([seed, _MODEL_STREAM_TAG])
    # The input stream is spawned last, so adding it changed no existing model's streams.
    init_seed, *dropout_seeds, input_seed = root.spawn(2 + len(hidden_layers))
    init_rng = np.random.default_rng(init_seed)
    act = ACTIVATIONS[activation]
    init = "he" if activation in ("relu", "leaky_relu") else "xavier"
    layers: list[Layer] = []
    if mean is not None:
        layers.append(Standardize(mean))
    if input_dropout > 0:
        layers.append(_dropout(input_dropout, input_seed))
    width = input_size
    for i, hidden in enumerate(hidden_layers):
        layers.append(Dense(width, hidden, bias=not batch_norm, init=init, rng=init_rng))
        if batch_norm:
            layers.append(BatchNorm1d(hidden))
        layers.append(act())
        if dropout > 0:
            layers.append(_dropout(dropout, dropout_seeds[i]))
        width = hidden
    layers.append(Dense(width, n_classes, init="xavier", rng=init_rng))
    return Sequential(layers, input_size=input_size)


def build_network(
    *,
    input_shape: tuple[int, int, int],
    network: Sequence[dict[str, Any]],
    n_classes: int,
    activation: str = "relu",
    batch_norm: bool = False,
    input_dropout: float = 0.0,
    mean: np.ndarray | None = None,
    seed: int = 0,
) -> Sequential:
    """A network of `network` entries (`shared.config.NetworkLayer`, settings filled in), one key
    naming each: {"conv": out channels, "kernel", "stride", "padding"}, {"pool": size,
    "stride"}, {"dense": units}, {"dropout": p}:

        [Standardize(mean)] -> [Dropout(input_dropout)] -> [Reshape(input_shape)] -> the entries,
        each conv and dense followed by [batch norm] -> activation -> [Flatten] -> Dense(n_classes)

    Rows become images (Reshape) when a conv or pool is among the entries; a Flatten goes before
    the first dense layer (or the output). A conv followed by a pool gets its batch norm and
    activation *after* the pool, where they run on a quarter of the pixels. For the activation
    that changes nothing: every activation here is non-decreasing, so max-pooling commutes with
    it, value and gradient (the same input wins every window; where it ties, the activation is
    flat and passes no gradient either way); a `cnn` epoch 19.8 s instead of 21.0 s
    (BENCHMARKS.md §1). Batch norm after the pool is a different normalisation (its statistics are
    the pooled values', conv -> pool -> BN -> ReLU as in many Keras MNIST nets), chosen for its
    cost: with batch norm, the `cnn` network's two BatchNorm2d layers took 9.3 ms of a ~60 ms
    step on the unpooled maps, 2.4 ms after the pools (BENCHMARKS.md §1), at the same accuracy
    (§2). Initialisation as `build_mlp`'s: He for a ReLU-family activation (every Conv2D: He), a
    layer followed by batch norm has no bias, independent random streams from `seed` for the
    weights and each dropout layer.
    """
    root = np.random.SeedSequence([seed, _MODEL_STREAM_TAG])
    init_seed, *dropout_seeds, input_seed = root.spawn(2 + len(network))
    init_rng = np.random.default_rng(init_seed)
    act = ACTIVATIONS[activation]
    init = "he" if activation in ("relu", "leaky_relu") else "xavier"
    input_size = int(np.prod(input_shape))
    layers: list[Layer] = []
    shape: tuple[int, ...] = (input_size,)

    def add(layer: Layer) -> None:
        nonlocal shape
        layers.append(layer)
        shape = layer.output_shape(shape)

    if mean is not None:
        add(Standardize(mean))
    if input_dropout > 0:
        add(_dropout(input_dropout, input_seed))
    if any("conv" in entry or "pool" in entry for entry in network):
        add(Reshape(input_shape))
    pending: list[Layer] = []  # a conv's batch norm and activation, after the pool if one comes
    for entry, dropout_seed in zip(network, dropout_seeds, strict=True):
        if "pool" in entry:
            add(MaxPool2D(entry["pool"], entry["stride"]))
        for layer in pending:
            add(layer)
        pending = []
        if "dropout" in entry:
            add(_dropout(entry["dropout"], dropout_seed))
        elif "conv" in entry:
            size, stride, padding = entry["kernel"], entry["stride"], entry["padding"]
            conv = Conv2D(shape[0], entry["conv"], size, stride=stride, padding=padding,
                          bias=not batch_norm, rng=init_rng)  # fmt: skip
            add(conv)
            pending = [BatchNorm2d(entry["conv"]), act()] if batch_norm else [act()]
        elif "dense" in entry:
            if len(shape) > 1:
                add(Flatten())
            add(Dense(shape[0], entry["dense"], bias=not batch_norm, init=init, rng=init_rng))
            if batch_norm:
                add(BatchNorm1d(entry["dense"]))
            add(act())
    for layer in pending:
        add(layer)
    if len(shape) > 1:
        add(Flatten())
    add(Dense(shape[0], n_classes, init="xavier", rng=init_rng))
    return Sequential(layers, input_size=input_size)
