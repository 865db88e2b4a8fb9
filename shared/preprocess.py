"""Turn an arbitrary picture of a digit into the model's input: float32 [784] in [0, 1].

Models are trained on MNIST, whose images were made in a specific way: light ink on a black
background, the digit scaled (keeping its aspect ratio, with anti-aliasing) to fit a 20x20 box,
then pasted into a 28x28 field so that its centre of mass sits at the centre. A photo or a canvas
drawing only classifies well after the same treatment, so `picture_to_mnist` reproduces it:
decode (`_open`), grayscale (`_grayscale`), ink on a zero background whatever the polarity
(`_ink`), then crop, thicken thin strokes, fit and centre (`_fit_and_centre`).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from shared.images import IMAGE_SIDE, N_PIXELS

#: Largest picture we decode (pixels, after JPEG draft scaling). Pillow's own default guard is
#: ~89 MP; a request handler should not allocate hundreds of MB for one digit, so we stop earlier.
MAX_INPUT_PIXELS = 25_000_000
#: Pictures are shrunk to at most this many pixels on the long side before any float maths.
WORK_SIZE = 512
#: Minimum ink contrast (0-255 scale) for a picture not to count as blank.
MIN_CONTRAST = 40.0
#: Relative ink level above which a pixel counts for the bounding box.
BBOX_THRESHOLD = 0.2
#: Relative ink level below which a pixel is treated as background noise (JPEG artefacts, paper).
NOISE_FLOOR = 0.08

BOX = 20
#: Target stroke width in the 20 px box for strokes that need thickening.
STROKE_WIDTH = 2.5
CENTRE = IMAGE_SIDE / 2  # MNIST's mean centre of mass, in pixel-index coordinates


class PreprocessError(ValueError):
    """The bytes are not a usable picture of a digit (not an image, too large, or blank)."""


def _open(image_bytes: bytes) -> Image.Image:
    """Decode, apply EXIF orientation, and shrink to WORK_SIZE — refusing bombs on the way."""
    if not isinstance(image_bytes, bytes | bytearray | memoryview):
        raise PreprocessError(f"expected image bytes, got {type(image_bytes).__name__}")
    if len(image_bytes) == 0:
        raise PreprocessError("empty image data")
    try:
        img = Image.open(io.BytesIO(bytes(image_bytes)))
        if img.format == "JPEG":
            # Let libjpeg decode at 1/2, 1/4 or 1/8 scale: a 48 MP phone photo costs 0.75 MP.
            img.draft(img.mode, (WORK_SIZE, WORK_SIZE))
        width, height = img.size
        if width * height > MAX_INPUT_PIXELS:
            raise PreprocessError(
                f"image too large: {width}x{height} pixels (limit {MAX_INPUT_PIXELS:,})"
            )
        if width < 1 or height < 1:
            raise PreprocessError("image has no pixels")
        img.seek(0)
        img.load()
        img = ImageOps.exif_transpose(img)
    except PreprocessError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PreprocessError(f"image too large (decompression bomb guard): {exc}") from None
    except UnidentifiedImageError:
        raise PreprocessError("not an image (unrecognised format)") from None
    except (OSError, SyntaxError, ValueError, EOFError, TypeError) as exc:
        # Truncated or corrupt files surface as OSError/SyntaxError from the decoders.
        raise PreprocessError(f"unreadable image: {exc}") from None

    # Normalise the many Pillow modes to L, RGB or RGBA before resampling.
    if img.mode.startswith(("I", "F")):
        # 16/32-bit and float pictures: Pillow's convert("L") clips at 255, so rescale instead.
        arr = np.asarray(img, dtype=np.float32)
        top = float(arr.max()) if arr.size else 0.0
        if top > 255.0:
            arr = arr * np.float32(255.0 / (65535.0 if top <= 65535.0 else top))
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    elif img.mode not in ("L", "RGB", "RGBA"):  # 1-bit and anything exotic become L
        alpha = img.mode in ("PA", "LA") or (img.mode == "P" and "transparency" in img.info)
        colour = img.mode in ("P", "CMYK", "YCbCr", "LAB", "HSV")
        img = img.convert("RGBA" if alpha else "RGB" if colour else "L")
    if max(img.size) > WORK_SIZE:
        scale = WORK_SIZE / max(img.size)
        size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        img = img.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    return img


def _grayscale(img: Image.Image) -> np.ndarray:
    """float32 [H, W] luminance 0-255 with any transparency flattened onto a sensible background.
    Transparent pictures come in two kinds: strokes on a transparent canvas (the opaque pixels are a
    minority: they ARE the ink, so flatten onto the opposite shade), and an opaque sheet with
    transparent margins (the opaque pixels are the majority: flatten onto the sheet's own shade so
    the margins disappear into it)."""
    if img.mode == "RGBA":
        alpha = np.asarray(img.getchannel("A"), dtype=np.float32) / 255.0
        lum = np.asarray(img.convert("RGB").convert("L"), dtype=np.float32)
        if alpha.min() < 1.0:
            opaque = alpha > 0.5
            if not opaque.any():
                return np.full(lum.shape, 255.0, dtype=np.float32)
            level = float(np.median(lum[opaque]))
            strokes_only = opaque.mean() < 0.5
            background = (0.0 if level > 127.5 else 255.0) if strokes_only else level
            return lum * alpha + np.float32(background) * (1.0 - alpha)
        return lum
    return np.asarray(img.convert("L"), dtype=np.float32)


def _ink(gray: np.ndarray) -> np.ndarray:
    """Ink intensity in [0, 1] on a zero background, whatever the picture's polarity."""
    h, w = gray.shape
    b = max(1, min(h, w) // 20)
    border = np.concatenate(
        [gray[:b].ravel(), gray[-b:].ravel(), gray[:, :b].ravel(), gray[:, -b:].ravel()]
    )
    bg = float(np.median(border))
    dark_ink = bg > 160
    if 96 <= bg <= 160:  # mid-grey paper: the ink is whichever extreme lies further from it
        lo, hi = np.percentile(gray, [0.5, 99.5])
        dark_ink = (bg - lo) > (hi - bg)
    ink = (bg - gray) if dark_ink else (gray - bg)
    np.maximum(ink, 0.0, out=ink)
    contrast = float(ink.max())
    if contrast < MIN_CONTRAST:
        raise PreprocessError("no ink: the picture looks blank")
    ink /= np.float32(contrast)
    ink[ink < NOISE_FLOOR] = 0.0
    return ink


def _max_filter(a: np.ndarray, k: int) -> np.ndarray:
    """Separable grey-level dilation with a k x k square (k odd): thickens strokes."""
    r = k // 2
    padded = np.pad(a, r)
    rows = padded[:, r : r + a.shape[1]].copy()
    for d in range(1, r + 1):
        np.maximum(rows, padded[:, r - d : r - d + a.shape[1]], out=rows)
        np.maximum(rows, padded[:, r + d : r + d + a.shape[1]], out=rows)
    out = rows[r : r + a.shape[0]].copy()
    for d in range(1, r + 1):
        np.maximum(out, rows[r - d : r - d + a.shape[0]], out=out)
        np.maximum(out, rows[r + d : r + d + a.shape[0]], out=out)
    return out


def _stroke_width(mask: np.ndarray) -> float:
    """Mean stroke thickness in pixels ≈ 2 · area / perimeter of the ink mask."""
    area = int(mask.sum())
    padded = np.pad(mask, 1)
    interior = (
        padded[1:-1, 1:-1]
        & padded[:-2, 1:-1]
        & padded[2:, 1:-1]
        & padded[1:-1, :-2]
        & padded[1:-1, 2:]
    )
    perimeter = max(1, area - int(interior.sum()))
    return 2.0 * area / perimeter


def _fit_and_centre(ink: np.ndarray) -> np.ndarray:
    """Crop to the ink, fit into 20x20 keeping aspect, centre by mass in 28x28 (MNIST recipe)."""
    mask = ink > BBOX_THRESHOLD
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise PreprocessError("no ink: the picture looks blank")
    crop = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    # MNIST strokes are ~3 px wide in the 20 px box (median of `_stroke_width` over the test
    # set: 3.2); thicken pen lines that would otherwise shrink to a faint sub-pixel trace.
    wanted = STROKE_WIDTH * max(crop.shape) / BOX
    width = _stroke_width(crop > BBOX_THRESHOLD)
    if width < 0.5 * wanted:
        k = int(round(wanted - width)) | 1
        if k > 1:
            # Pad first so the thickened strokes may grow past the old bounding box.
            crop = _max_filter(np.pad(crop, k // 2), k)
    h, w = crop.shape
    scale = BOX / max(h, w)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    patch_img = Image.fromarray(np.ascontiguousarray(crop, dtype=np.float32))
    patch = np.array(patch_img.resize((new_w, new_h), Image.Resampling.LANCZOS), dtype=np.float32)
    np.clip(patch, 0.0, 1.0, out=patch)
    peak = float(patch.max())
    if peak <= 0.0:
        raise PreprocessError("no ink: the picture looks blank")
    patch /= np.float32(peak)

    mass = float(patch.sum())
    cy = float((patch.sum(axis=1) * np.arange(new_h)).sum() / mass)
    cx = float((patch.sum(axis=0) * np.arange(new_w)).sum() / mass)
    top = int(np.clip(round(CENTRE - cy), 0, IMAGE_SIDE - new_h))
    left = int(np.clip(round(CENTRE - cx), 0, IMAGE_SIDE - new_w))
    field = np.zeros((IMAGE_SIDE, IMAGE_SIDE), dtype=np.float32)
    field[top : top + new_h, left : left + new_w] = patch
    return field


def picture_to_mnist(image_bytes: bytes) -> np.ndarray:
    """Encoded picture (PNG, JPEG, GIF, BMP, WebP, ...) → float32 [784] in [0, 1], MNIST-style;
    PreprocessError for non-images, decompression bombs and blank pictures ("no ink")."""
    return _fit_and_centre(_ink(_grayscale(_open(image_bytes)))).reshape(N_PIXELS)
