"""picture_to_mnist: real MNIST digits rendered as pictures come back close to the originals."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from shared.datasets import load_idx
from shared.preprocess import MAX_INPUT_PIXELS, PreprocessError, picture_to_mnist
from tests.service_support import png_header_only

N_DIGITS = 24


@pytest.fixture(scope="module")
def mnist_digits(mnist_dir) -> np.ndarray:
    return load_idx(mnist_dir / "t10k-images-idx3-ubyte.gz")[:N_DIGITS]


def encode(img: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def upscale(d: np.ndarray, factor: int = 5) -> Image.Image:
    return Image.fromarray(d).resize((28 * factor, 28 * factor), Image.Resampling.BICUBIC)


def dark_on_light(d: np.ndarray) -> Image.Image:
    return Image.fromarray(255 - np.asarray(upscale(d)))


def on_white_page(d: np.ndarray) -> Image.Image:
    """Digit as dark ink somewhere off-centre on a big, slightly off-white RGB page."""
    page = Image.new("RGB", (420, 300), (248, 246, 240))
    page.paste(dark_on_light(d).convert("RGB"), (30, 120))
    return page


def transparent_strokes(d: np.ndarray) -> Image.Image:
    """Black strokes on a transparent canvas (what an HTML canvas export looks like)."""
    img = Image.new("RGBA", (140, 140), (0, 0, 0, 0))
    img.putalpha(upscale(d))
    return img


def exif_rotated_jpeg(d: np.ndarray) -> bytes:
    """Pixels stored rotated, with an EXIF Orientation tag telling viewers to rotate them back."""
    stored = dark_on_light(d).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": exif_transpose applies ROTATE_270
    return encode(stored, "JPEG", quality=90, exif=exif.tobytes())


VARIANTS = {
    "light_on_dark_png_x5": lambda d: encode(upscale(d)),
    "dark_on_light_png": lambda d: encode(dark_on_light(d)),
    "dark_on_light_jpeg": lambda d: encode(dark_on_light(d), "JPEG", quality=80),
    "on_white_page_jpeg": lambda d: encode(on_white_page(d), "JPEG", quality=90),
    "transparent_canvas_png": lambda d: encode(transparent_strokes(d)),
    "exif_rotated_jpeg": exif_rotated_jpeg,
    "original_28x28_png": lambda d: encode(Image.fromarray(d)),
    "sixteen_bit_png": lambda d: encode(
        Image.fromarray(np.asarray(upscale(d)).astype(np.uint16) * 257)
    ),
    "palette_gif": lambda d: encode(dark_on_light(d).convert("P"), "GIF"),
}


def best_shift_corr(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation allowing a ±1 px shift: centring by rounded centre of mass can move 1 px."""
    a, b = a.reshape(28, 28), b.reshape(28, 28)
    best = -1.0
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            shifted = np.roll(np.roll(a, dy, axis=0), dx, axis=1)
            best = max(best, float(np.corrcoef(shifted.ravel(), b.ravel())[0, 1]))
    return best


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_rendered_digits_come_back_close_to_the_original(mnist_digits, variant):
    plain, shifted = [], []
    for d in mnist_digits:
        out = picture_to_mnist(VARIANTS[variant](d))
        assert out.shape == (784,) and out.dtype == np.float32
        assert out.min() >= 0.0 and out.max() <= 1.0
        ref = d.astype(np.float32) / 255.0
        plain.append(float(np.corrcoef(out, ref.ravel())[0, 1]))
        shifted.append(best_shift_corr(out, ref))
    assert min(shifted) > 0.8, (variant, np.round(shifted, 3))
    assert np.mean(plain) > 0.9, (variant, np.round(plain, 3))


def test_output_is_centred_by_mass_and_fits_20x20(mnist_digits):
    out = picture_to_mnist(encode(on_white_page(mnist_digits[0]))).reshape(28, 28)
    ys, xs = np.nonzero(out > 0)
    assert max(ys.max() - ys.min(), xs.max() - xs.min()) + 1 <= 20
    mass = out.sum()
    cy = (out.sum(axis=1) * np.arange(28)).sum() / mass
    cx = (out.sum(axis=0) * np.arange(28)).sum() / mass
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5


def test_thin_pen_strokes_on_a_big_photo_are_thickened():
    """A 1 px line on a 1000 px sheet must not vanish when shrunk to 20 px."""
    page = np.full((1000, 800), 235, dtype=np.uint8)
    page[200:800, 400] = 20  # a tall, thin "1"
    out = picture_to_mnist(encode(Image.fromarray(page), "PNG")).reshape(28, 28)
    assert out.max() == pytest.approx(1.0)
    column = out.sum(axis=0)
    assert (column > 3).sum() >= 2  # at least a couple of pixels thick, like MNIST strokes
    assert (out.sum(axis=1) > 0.5).sum() >= 18  # spans the 20 px box vertically


def test_polarity_does_not_matter():
    arr = np.zeros((50, 30), dtype=np.uint8)
    arr[10:40, 12:18] = 255
    a = picture_to_mnist(encode(Image.fromarray(arr), "PNG"))
    b = picture_to_mnist(encode(Image.fromarray(255 - arr), "PNG"))  # dark on light
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_blank_pictures_have_no_ink():
    for colour in (0, 255, 128):
        with pytest.raises(PreprocessError, match="no ink"):
            picture_to_mnist(encode(Image.new("L", (64, 64), colour)))
    noisy = np.random.default_rng(0).integers(120, 140, (64, 64), dtype=np.uint8)
    with pytest.raises(PreprocessError, match="no ink"):
        picture_to_mnist(encode(Image.fromarray(noisy)))
    with pytest.raises(PreprocessError, match="no ink"):
        picture_to_mnist(encode(Image.new("RGBA", (40, 40), (0, 0, 0, 0))))


@pytest.mark.parametrize(
    "data",
    [b"", b"hello, not a picture", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, b"GIF89a" + bytes(10)],
    ids=["empty", "text", "bad-png", "bad-gif"],
)
def test_non_images_are_rejected(data):
    with pytest.raises(PreprocessError):
        picture_to_mnist(data)


def test_truncated_image_is_rejected(mnist_digits):
    data = encode(upscale(mnist_digits[0]), "JPEG", quality=95)
    with pytest.raises(PreprocessError, match="unreadable|not an image"):
        picture_to_mnist(data[: len(data) // 3])


def test_wrong_type_is_rejected():
    with pytest.raises(PreprocessError, match="expected image bytes"):
        picture_to_mnist("a string")  # type: ignore[arg-type]


@pytest.mark.parametrize("side", [6000, 100_000], ids=["over-our-limit", "over-pillow-limit"])
def test_decompression_bombs_are_refused_before_decoding(side):
    assert side * side > MAX_INPUT_PIXELS
    with pytest.raises(PreprocessError, match="too large"):
        picture_to_mnist(png_header_only(side, side))


def test_large_phone_photo_is_accepted_via_jpeg_draft(mnist_digits):
    """A 29 MP JPEG exceeds the pixel limit as stored but decodes at 1/8 scale, so it is fine."""
    page = Image.fromarray(255 - mnist_digits[1]).resize((5400, 5400), Image.Resampling.BILINEAR)
    assert page.size[0] * page.size[1] > MAX_INPUT_PIXELS
    out = picture_to_mnist(encode(page, "JPEG", quality=70))
    assert best_shift_corr(out, mnist_digits[1] / 255.0) > 0.8
