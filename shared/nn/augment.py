"""Data augmentation for 28x28 digits, vectorised over the whole batch (no per-image Python loop).

Every image gets its own random small rotation, scaling and shift, optionally plus an elastic
distortion; all of it is ONE inverse map per batch: for each output pixel we compute where it
comes from in the source image and read it with bilinear interpolation (zero outside the image).

    source(p) = A_i @ (p - c) + c + u_i + d_i(p)

A_i = R(-theta_i) F_i / s_i undoes a rotation by theta_i and a scaling by s_i about the centre c
(F_i mirrors the columns of half the images when `flip` is on — for clothing, never for digits),
u_i is a shift, d_i(p) the elastic displacement field. The elastic field follows Simard et al.
(2003) in spirit — a random displacement field smoothed by a Gaussian — but is made cheaply:
i.i.d. normal values on a coarse `grid` x `grid` lattice are interpolated with a Gaussian kernel
(separable, so two small matrix products for the whole batch) and scaled to `elastic_alpha`
pixels RMS.

Pixel values are expected in [0, 1]; bilinear interpolation is a convex combination, so the
output stays in [0, 1] (clipped against rounding).
"""

from __future__ import annotations

import math

import numpy as np


def _grid(size: int) -> np.ndarray:
    """Homogeneous centred pixel coordinates [3, size*size]: rows (r - c), (col - c), 1."""
    c = (size - 1) / 2.0
    r, q = np.meshgrid(np.arange(size) - c, np.arange(size) - c, indexing="ij")
    return np.stack([r.ravel(), q.ravel(), np.ones(size * size)]).astype(np.float32)


def _gaussian_interpolator(size: int, grid: int) -> np.ndarray:
    """K [size, grid]: Gaussian weights from `grid` lattice points to every pixel row/column.

    Normalised so that K @ N @ K.T has unit RMS (averaged over pixels) for N ~ N(0, 1).
    """
    positions = np.linspace(0.0, size - 1.0, grid)
    spacing = (size - 1.0) / max(grid - 1, 1)
    k = np.exp(-((np.arange(size)[:, None] - positions[None, :]) ** 2) / (2.0 * spacing**2))
    k /= math.sqrt(float(np.mean(np.sum(k**2, axis=1))))
    return k.astype(np.float32)


def random_affine(
    rng: np.random.Generator,
    n: int,
    *,
    max_shift: float,
    max_rotation: float,
    max_scale: float,
    flip: bool = False,
    size: int = 28,
) -> np.ndarray:
    """[n, 2, 3] inverse maps T with source = T @ (r - c, col - c, 1) for each output pixel.

    theta ~ U(-max_rotation, max_rotation) degrees, s ~ U(1 - max_scale, 1 + max_scale),
    shifts ~ U(-max_shift, max_shift) pixels, independently per image; with `flip`, each image
    is also mirrored left-right with probability 1/2 (reading column c - (col - c): the column
    coefficients change sign), so the flip costs nothing in the warp.
    """
    theta = np.deg2rad(rng.uniform(-max_rotation, max_rotation, n))
    scale = rng.uniform(1.0 - max_scale, 1.0 + max_scale, n)
    shift = rng.uniform(-max_shift, max_shift, (n, 2))
    cos, sin = np.cos(theta) / scale, np.sin(theta) / scale
    c = (size - 1) / 2.0
    t = np.empty((n, 2, 3))
    t[:, 0, 0], t[:, 0, 1] = cos, sin  # R(-theta) / s
    t[:, 1, 0], t[:, 1, 1] = -sin, cos
    t[:, :, 2] = c + shift
    if flip:
        t[:, :, 1] *= np.where(rng.random(n) < 0.5, -1.0, 1.0)[:, None]
    return t.astype(np.float32)


#: Images per warp chunk: keeps intermediates cache-sized and float32 flat indices exact.
CHUNK = 1024


class Augmenter:
    """Random affine (+ optional elastic) augmentation with reused buffers.

    `augmenter(x, rng)` takes float32 [B, size*size] in [0, 1] and returns an array of the same
    shape, valid until the next call (it is the augmenter's own buffer).
    """

    def __init__(
        self,
        *,
        max_shift: float = 2.0,
        max_rotation: float = 12.0,
        max_scale: float = 0.1,
        flip: bool = False,
        elastic: bool = False,
        elastic_alpha: float = 1.2,
        elastic_grid: int = 6,
        size: int = 28,
    ) -> None:
        self.max_shift, self.max_rotation, self.max_scale = max_shift, max_rotation, max_scale
        self.flip = flip
        self.elastic, self.elastic_alpha, self.elastic_grid = elastic, elastic_alpha, elastic_grid
        self.size = size
        self._g = _grid(size)
        self._k = _gaussian_interpolator(size, elastic_grid)
        self._bufs: dict[str, np.ndarray] = {}

    def _buf(self, key: str, shape: tuple[int, ...], dtype=np.float32, zero=False) -> np.ndarray:
        buf = self._bufs.get(key)
        if buf is None or buf.shape[0] < shape[0] or buf.shape[1:] != shape[1:]:
            buf = self._bufs[key] = np.zeros(shape, dtype) if zero else np.empty(shape, dtype)
        return buf[: shape[0]]

    def elastic_field(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Smooth random displacements [2, n, size*size] (rows, cols), RMS elastic_alpha px."""
        g, s = self.elastic_grid, self.size
        noise = rng.standard_normal((2 * n * g, g), dtype=np.float32)
        k_t = self._k.T * np.float32(self.elastic_alpha)
        half = (noise @ self._k.T).reshape(2 * n, g, s)  # N K^T, per field
        # (N K^T)^T K^T = K N^T K^T: the same distribution as K N K^T, with only 2-D products.
        half_t = np.ascontiguousarray(half.transpose(0, 2, 1)).reshape(2 * n * s, g)
        return (half_t @ k_t).reshape(2, n, s * s)

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        n = x.shape[0]
        t = random_affine(
            rng,
            n,
            max_shift=self.max_shift,
            max_rotation=self.max_rotation,
            max_scale=self.max_scale,
            flip=self.flip,
            size=self.size,
        )
        if self.elastic or self.max_rotation or self.max_shift or self.max_scale:
            disp = self.elastic_field(rng, n) if self.elastic else None
            return self.warp(x, t, disp)
        return self.mirror(x, t[:, 1, 1] < 0)  # the same draws, and the warp's exact result

    def mirror(self, x: np.ndarray, which: np.ndarray) -> np.ndarray:
        """Images with `which` set mirrored left-right, the others copied.

        The speed path for flip-only augmentation (the Fashion-MNIST presets): with no rotation,
        shift, zoom or elastic field every map is the identity or a mirror, which the warp would
        compute exactly but through bilinear interpolation: measured 0.09 vs 1.2 ms per
        128-image batch, ~0.45 s of a 3.4 s epoch of the `fashion` preset (BENCHMARKS.md)."""
        s = self.size
        out = self._buf("out", x.shape)
        np.copyto(out, x)
        out.reshape(-1, s, s)[which] = x.reshape(-1, s, s)[which, :, ::-1]
        return out

    def warp(self, x: np.ndarray, t: np.ndarray, disp: np.ndarray | None = None) -> np.ndarray:
        """Resample image i at source = t[i] @ (r - c, col - c, 1) (+ disp[:, i]); bilinear,
        zero outside. Deterministic: the random part lives in `__call__`.

        x: [N, size*size]; t: [N, 2, 3]; disp: [2, N, size*size] or None. Works in chunks of
        CHUNK images so the intermediates stay cache-sized (and float32 indices stay exact).
        """
        hw = self.size * self.size
        if x.ndim != 2 or x.shape[1] != hw:
            raise ValueError(f"expected images of shape [N, {hw}], got {list(x.shape)}")
        n = x.shape[0]
        out = self._buf("out", (n, hw))
        for lo in range(0, n, CHUNK):
            hi = min(n, lo + CHUNK)
            self._warp_chunk(
                x[lo:hi], t[lo:hi], None if disp is None else disp[:, lo:hi], out[lo:hi]
            )
        return out

    def _warp_chunk(
        self, x: np.ndarray, t: np.ndarray, disp: np.ndarray | None, out: np.ndarray
    ) -> None:
        s, n = self.size, x.shape[0]
        hw, ps = s * s, s + 3
        # Zero-padded copy: 1 pixel before, 2 after, so clipped coordinates read zeros.
        padded = self._buf("padded", (n, ps, ps), zero=True)
        padded[:, 1 : s + 1, 1 : s + 1] = x.reshape(n, s, s)
        flat = padded.reshape(-1)

        # Source coordinates, component-major [2, n, hw] so each plane is contiguous:
        # plane k = t[:, k, 0] * (r - c) + t[:, k, 1] * (col - c) + t[:, k, 2].
        # (Plain broadcasting, not a K=3 matrix product: tiny BLAS calls are slow, and very
        # slow when BLAS threads compete for busy cores.)
        coords = self._buf("coords", (2, n, hw))
        tmp = self._buf("fidx", (n, hw))
        t = t.astype(np.float32, copy=False)
        for k in range(2):
            np.multiply(t[:, k, 0:1], self._g[0], out=coords[k])
            np.multiply(t[:, k, 1:2], self._g[1], out=tmp)
            coords[k] += tmp
            coords[k] += t[:, k, 2:3]
        if disp is not None:
            coords += disp
        np.clip(coords, -1.0, float(s), out=coords)
        base = self._buf("base", (2, n, hw))
        np.floor(coords, out=base)
        coords -= base  # now the fractional parts
        fr, fc = coords[0], coords[1]

        # Flat index of each top-left neighbour: image i, padded row r0 + 1, padded col c0 + 1.
        # Computed exactly in float32 (< 2^24 per chunk), then float32 -> int32 -> intp, which
        # NumPy converts several times faster than float32 -> int64 directly.
        fidx = self._buf("fidx", (n, hw))
        np.multiply(base[0], ps, out=fidx)
        fidx += base[1]
        fidx += self._offsets(n, ps)
        idx32 = self._buf("idx32", (n, hw), dtype=np.int32)
        np.copyto(idx32, fidx, casting="unsafe")
        idx = self._buf("idx", (n, hw), dtype=np.intp)
        np.copyto(idx, idx32)

        v00, v01, v10, v11 = (self._buf(key, (n, hw)) for key in ("v00", "v01", "v10", "v11"))
        np.take(flat, idx, out=v00, mode="clip")
        np.take(flat[1:], idx, out=v01, mode="clip")
        np.take(flat[ps:], idx, out=v10, mode="clip")
        np.take(flat[ps + 1 :], idx, out=v11, mode="clip")
        # top = v00 + fc (v01 - v00); bottom = v10 + fc (v11 - v10); out = top + fr (bottom - top)
        v01 -= v00
        v01 *= fc
        v01 += v00
        v11 -= v10
        v11 *= fc
        v11 += v10
        v11 -= v01
        v11 *= fr
        np.add(v01, v11, out=out)
        np.clip(out, 0.0, 1.0, out=out)

    def _offsets(self, n: int, ps: int) -> np.ndarray:
        """[n, 1] flat offset (float32) of each padded image, plus the (+1, +1) padding shift."""
        off = self._bufs.get("offsets")
        if off is None or off.shape[0] < n:
            off = (np.arange(n, dtype=np.float32) * (ps * ps) + (ps + 1))[:, None]
            self._bufs["offsets"] = off
        return off[:n]
