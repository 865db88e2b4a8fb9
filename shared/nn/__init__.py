"""digitflow's NumPy neural-network engine: small explicit modules, float32 throughout.

- layers.py       Dense, Dropout (inverted; p = drop probability), BatchNorm1d, BatchNorm2d
                  (per channel of images), Standardize
- conv.py         Conv2D: im2col + one matrix product; images (N, C, H, W) stored channel-last
- pooling.py      MaxPool2D
- reshape.py      Reshape (rows -> images), Flatten (images -> rows)
- activations.py  ReLU, LeakyReLU, Sigmoid, Tanh
- losses.py       softmax + cross-entropy, fused and stable, optional label smoothing
- optimizers.py   SGD, Momentum, Nesterov, RMSprop, Adam, AdamW over one flat parameter vector
- schedules.py    constant, step, cosine, linear warm-up: lr(epoch, step)
- data.py         BatchIterator: shuffled mini-batches into reused buffers
- model.py        Sequential (spec()/state()/from_spec(), per-sample shape checks, describe():
                  each layer's output shape and parameters, first_convolution(): its filters
                  and feature maps), build_mlp, build_network
- inference.py    InferencePlan: THE inference-mode forward pass (folded), used by every prediction
- training.py     TrainingSpec; train(model, x, y, epochs, batches, loss, optimizer, schedule,
                  augment, callbacks): the step loop; fit(model, x, y, spec) builds those
                  collaborators from the spec
- callbacks.py    around the steps: History (EpochRecord, validation, time), EarlyStopping,
                  EpochHook, DivergenceCheck, ProgressBar
- augment.py      batched random affine + elastic distortion
- explain.py      integrated_gradients: attributions by the layers' own backward pass

The engine knows nothing of datasets, registries or presets: shared.config.TrainConfig (the job
schema) builds a TrainingSpec and a network, shared.pipeline runs them.
"""

from shared.nn.callbacks import EpochRecord
from shared.nn.inference import InferencePlan
from shared.nn.model import Sequential, build_mlp
from shared.nn.training import TrainingSpec, TrainResult, fit, train

__all__ = [
    "EpochRecord",
    "InferencePlan",
    "Sequential",
    "TrainResult",
    "TrainingSpec",
    "build_mlp",
    "fit",
    "train",
]
