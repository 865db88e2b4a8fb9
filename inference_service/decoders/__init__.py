"""One decoder per wire format, a module each: request bytes → float32 [N, input size] pixels
in [0, 1]. V1 JSON (``instances.py``), ``.npy`` (``npy.py``), V2 infer requests, JSON or binary
(``v2.py``), PNG/JPEG pictures (``pictures.py``); ``media.py`` reads a WSGI request's body and
picks the decoder by media type; ``pixels.py`` holds what they share (the range check, the one
0-255 → [0, 1] scaling, the accepted shapes).

Each takes the served model's input size and MAX_BATCH_IMAGES and either returns the batch or
raises an `ApiError` naming the field (``instances[3][17]``, ``inputs[0].datatype``,
``body.shape``). An image is ``input size`` values, or ``side`` rows of ``side`` values when the
input size is a square (28 x 28 for an MNIST model). The forward pass that follows checks nothing
again.

The JSON structure is validated by the pydantic models of `inference_service.schemas`; the pixel
arrays themselves by NumPy, because that is where the time goes: orjson → one ``np.asarray`` →
shape check → one vectorised range check. Only when that fails do we walk the Python lists to
name the first offending value, so bad requests get a precise message without slowing good ones.
"""

from __future__ import annotations

from inference_service.decoders.instances import decode_instances, read_instances
from inference_service.decoders.media import MULTIPART, decode_request, is_json, read_body
from inference_service.decoders.npy import NPY_MEDIA_TYPE, decode_npy
from inference_service.decoders.pixels import image_shapes
from inference_service.decoders.v2 import V2_DATATYPES, V2_HEADER_LENGTH, decode_v2

__all__ = [
    "MULTIPART",
    "NPY_MEDIA_TYPE",
    "V2_DATATYPES",
    "V2_HEADER_LENGTH",
    "decode_instances",
    "decode_npy",
    "decode_request",
    "decode_v2",
    "image_shapes",
    "is_json",
    "read_body",
    "read_instances",
]
