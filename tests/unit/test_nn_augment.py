"""Batched augmentation: identity is exact, shapes/dtype/range hold, transforms do what they say."""

from __future__ import annotations

import numpy as np
import pytest

from shared.nn.augment import Augmenter, random_affine
from tests.nn_support import identity_affine


@pytest.fixture
def ink_blobs():
    """Synthetic 'digits': random blobs of ink in [0, 1], zero borders."""
    rng = np.random.default_rng(0)
    img = np.zeros((64, 28, 28), np.float32)
    img[:, 6:22, 8:20] = rng.random((64, 16, 12), dtype=np.float32)
    return img.reshape(64, 784)


def test_identity_parameters_give_identity(ink_blobs):
    aug = Augmenter()
    out = aug.warp(ink_blobs, identity_affine(len(ink_blobs)))
    np.testing.assert_array_equal(out, ink_blobs)
    zero = Augmenter(max_shift=0, max_rotation=0, max_scale=0)
    np.testing.assert_array_equal(zero(ink_blobs, np.random.default_rng(1)), ink_blobs)


def test_shapes_dtype_and_range(ink_blobs):
    aug = Augmenter(elastic=True, elastic_alpha=3.0, max_rotation=30, max_scale=0.3, max_shift=4)
    out = aug(ink_blobs.astype(np.float64), np.random.default_rng(0))
    assert out.shape == ink_blobs.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert not np.array_equal(out, ink_blobs)
    # A smaller final batch reuses the buffers and still works.
    assert aug(ink_blobs[:5], np.random.default_rng(1)).shape == (5, 784)


def test_integer_shift_moves_pixels_exactly(ink_blobs):
    t = identity_affine(len(ink_blobs))
    t[:, 0, 2] += 2  # read from two rows further down: content moves up by 2
    t[:, 1, 2] -= 3  # read from three columns to the left: content moves right by 3
    out = Augmenter().warp(ink_blobs, t).reshape(-1, 28, 28)
    src = ink_blobs.reshape(-1, 28, 28)
    np.testing.assert_array_equal(out[:, :26, 3:], src[:, 2:, :25])
    assert not out[:, 26:, :].any() and not out[:, :, :3].any()  # zeros flow in


def test_rotation_by_90_degrees_is_a_transpose_like_permutation(ink_blobs):
    t = identity_affine(len(ink_blobs))
    t[:, :, :2] = [[0, 1], [-1, 0]]
    out = Augmenter().warp(ink_blobs, t).reshape(-1, 28, 28)
    np.testing.assert_allclose(
        out, np.rot90(ink_blobs.reshape(-1, 28, 28), k=1, axes=(1, 2)), atol=1e-6
    )


def test_random_affine_ranges():
    t = random_affine(np.random.default_rng(0), 1000, max_shift=2, max_rotation=10, max_scale=0.1)
    det = t[:, 0, 0] * t[:, 1, 1] - t[:, 0, 1] * t[:, 1, 0]  # = 1 / s^2
    scale = 1 / np.sqrt(det)
    assert scale.min() >= 0.9 and scale.max() <= 1.1
    angle = np.degrees(np.arctan2(t[:, 0, 1], t[:, 0, 0]))
    assert np.abs(angle).max() <= 10 + 1e-4 and np.abs(angle).max() > 9
    assert np.abs(t[:, :, 2] - 13.5).max() <= 2


def test_elastic_field_is_smooth_with_requested_size():
    aug = Augmenter(elastic=True, elastic_alpha=2.0)
    field = aug.elastic_field(np.random.default_rng(0), 200).reshape(2, 200, 28, 28)
    rms = np.sqrt(np.mean(field**2))
    assert 1.5 < rms < 2.5
    # Smooth: neighbouring pixels move almost together.
    step = np.sqrt(np.mean(np.diff(field, axis=3) ** 2))
    assert step < 0.25 * rms


def test_deterministic_given_the_generator(ink_blobs):
    aug = Augmenter(elastic=True)
    a = aug(ink_blobs, np.random.default_rng(5)).copy()
    b = aug(ink_blobs, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)


def test_flip_mirrors_about_half_the_images_exactly(ink_blobs):
    """With every other distortion off, each image comes back either unchanged or mirrored
    left-right (exactly: the inverse map only negates column coordinates)."""
    aug = Augmenter(max_shift=0, max_rotation=0, max_scale=0, flip=True)
    out = aug(ink_blobs, np.random.default_rng(3)).reshape(-1, 28, 28)
    src = ink_blobs.reshape(-1, 28, 28)
    same = np.all(out == src, axis=(1, 2))
    mirrored = np.all(np.abs(out - src[:, :, ::-1]) < 1e-6, axis=(1, 2))
    assert np.all(same ^ mirrored)  # every image is exactly one of the two
    assert 16 <= mirrored.sum() <= 48  # 64 fair coin flips


def test_flip_off_leaves_the_random_stream_unchanged(ink_blobs):
    """Adding the flip option changed nothing for runs that do not use it (same draws)."""
    t_default = random_affine(
        np.random.default_rng(9), 50, max_shift=2, max_rotation=10, max_scale=0.1
    )
    t_no_flip = random_affine(
        np.random.default_rng(9), 50, max_shift=2, max_rotation=10, max_scale=0.1, flip=False
    )
    np.testing.assert_array_equal(t_default, t_no_flip)
    t_flip = random_affine(
        np.random.default_rng(9), 50, max_shift=2, max_rotation=10, max_scale=0.1, flip=True
    )
    np.testing.assert_array_equal(np.abs(t_flip), np.abs(t_default))  # same draws, signs aside
    assert (np.sign(t_flip[:, :, 1]) != np.sign(t_default[:, :, 1])).any()


def test_flip_only_takes_the_mirror_path_with_the_warps_exact_result(ink_blobs):
    """No rotation, shift, zoom or elastic field: `mirror` answers, with the same random draws
    and the same pixels as the general warp would."""
    aug = Augmenter(max_shift=0, max_rotation=0, max_scale=0, flip=True)
    fast = aug(ink_blobs, np.random.default_rng(11)).copy()
    t = random_affine(
        np.random.default_rng(11), len(ink_blobs), max_shift=0, max_rotation=0, max_scale=0,
        flip=True,
    )  # fmt: skip
    np.testing.assert_allclose(fast, Augmenter().warp(ink_blobs, t), atol=1e-6)
    assert (t[:, 1, 1] < 0).any() and (t[:, 1, 1] > 0).any()
