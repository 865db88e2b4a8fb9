"""One decoder per wire format, a module each: request bytes → float32 [N, input size] pixels
in [0, 1].

* `decode_instances` (``instances.py``) — V1 JSON ``{"instances": [...], "scale": ...}``
  (`read_instances`: the same for a route whose body extends it, e.g. explain's ``target``);
* `decode_npy` (``npy.py``) — a ``.npy`` file (``application/x-npy``);
* `decode_v2` (``v2.py``) — an Open Inference Protocol infer request, JSON or binary tensors;
* `decode_pictures` (``pictures.py``) — PNG/JPEG pictures (a body, or multipart ``image``);
* `decode_request` (``media.py``) — a WSGI request's body by its media type, read with
  `read_body` (MAX_CONTENT_LENGTH) and handed to the decoder above that reads it;
* ``pixels.py`` — what they share: the range check, the one 0-255 → [0, 1] scaling, shapes.

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
from inference_service.decoders.pixels import side_of
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
    "is_json",
    "read_body",
    "read_instances",
    "side_of",
]
