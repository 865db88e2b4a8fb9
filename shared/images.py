"""The shape of one image (28x28 grey levels; a model sees a flat row of 784 values) and the
number of classes, defined once so loaders, the picture preprocessor and the inference decoders
cannot disagree."""

from __future__ import annotations

#: Height and width of one image, in pixels.
IMAGE_SIDE = 28
#: Values in one flattened image (a model's input width).
N_PIXELS = IMAGE_SIDE * IMAGE_SIDE
#: Classes of every dataset here (digits 0-9; Fashion-MNIST's ten kinds of clothing).
N_CLASSES = 10
