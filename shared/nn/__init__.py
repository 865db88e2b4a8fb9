"""digitflow's NumPy neural-network engine: small explicit modules, float32 throughout.

- layers.py       Dense, Dropout (inverted; p = drop probability), BatchNorm1d, Standardize
- activations.py  ReLU, LeakyReLU, Sigmoid, Tanh
- losses.py       softmax + cross-entropy, fused and stable, optional label smoothing
- optimizers.py   SGD, Momentum, Nesterov, RMSprop, Adam, AdamW over one flat parameter vector
- schedules.py    constant, step, cosine, linear warm-up: lr(epoch, step)
- model.py        Sequential, build_model(config), spec()/state()/from_spec()
- training.py     train(config, x, y) -> TrainResult
- augment.py      batched random affine + elastic distortion
"""

from shared.nn.model import Sequential, build_model
from shared.nn.training import EpochRecord, TrainResult, train

__all__ = ["EpochRecord", "Sequential", "TrainResult", "build_model", "train"]
