"""Pictures (PNG, JPEG, ...: a body or multipart ``image`` fields) through the MNIST recipe."""

from __future__ import annotations

import numpy as np

from inference_service.decoders.pixels import too_many_images
from shared.images import IMAGE_SIDE, N_PIXELS
from shared.web.errors import ApiError


def decode_pictures(
    pictures: list[tuple[str, bytes]], input_size: int, max_images: int
) -> np.ndarray:
    """Encoded pictures ((field, bytes) pairs) → float32 [N, input_size] in [0, 1] through the
    MNIST preprocessing recipe (`shared.preprocess`), which makes 28 x 28 images: a model with
    another input size cannot take pictures (422)."""
    from shared.preprocess import PreprocessError, picture_to_mnist  # Pillow: only here

    where = pictures[0][0] if pictures else "image"
    if input_size != N_PIXELS:
        raise ApiError(
            422,
            f"this model takes {input_size} inputs; pictures are preprocessed to {IMAGE_SIDE}x{IMAGE_SIDE} "
            f"= {N_PIXELS} pixels: send the pixels as JSON or .npy instead",
            code="pictures_not_supported",
            field=where,
        )
    if len(pictures) > max_images:
        raise too_many_images(len(pictures), max_images, "image")
    out = np.empty((len(pictures), input_size), dtype=np.float32)
    for i, (where, data) in enumerate(pictures):
        try:
            out[i] = picture_to_mnist(data)
        except PreprocessError as exc:
            message = f"{where}: {exc}"
            text = str(exc)
            if "too large" in text:
                raise ApiError(413, message, code="image_too_large", field=where) from None
            if "no ink" in text:
                raise ApiError(422, message, code="blank_image", field=where) from None
            raise ApiError(400, message, code="invalid_image", field=where) from None
    return out
