"""Plain numpy reference versions of the pre/post-processing kernels: the same arithmetic, bit for bit.

They define what the compiled kernels in `edgeseg._C` compute (the tests hold the C++ kernels to them exactly, and
the CUDA kernels share the C++ kernels' arithmetic through cpp_ext/src/ops.h), and `edgeseg.runtime.ops` falls
back to them when the extension is not importable. They take already-validated arguments (use
`edgeseg.runtime.ops` for checked, allocation-free calls) and never import torch.

Conventions, shared with cpp_ext/src/ops.h:

* resize coordinates: ``src = (dst + 0.5) * src_size / dst_size - 0.5``, computed exactly in integers as
  ``i + r / d`` (`src_pos`), so no platform can round it differently.
* preprocess: cv2.resize ``INTER_LINEAR`` on uint8 in 11-bit fixed point (`resize_linear`): weight
  ``a1 = round_half_even(2048 * r / d)``, ``a0 = 2048 - a1``; horizontal ``s = p0 * a0 + p1 * a1``; vertical
  ``(((b0 * (s0 >> 4)) >> 16) + ((b1 * (s1 >> 4)) >> 16) + 2) >> 2``, a uint8. Columns outside the image clamp the
  weight, rows only the row index (as cv2 does). cv2 computes the coordinate in float32, this exactly, so the two
  agree within 1 LSB (exactly on most sizes). Then ``fma(v, scale, bias)`` in float32 with
  ``scale = float32(1 / (255 std))`` and ``bias = float32(-mean / std)`` from double: ``(v / 255 - mean) / std``
  within an ulp; float16 output rounds that float32 to nearest-even.
* upsample_argmax: torch bilinear (``align_corners=False``) by an integer stride in float32: weight
  ``float32(r) / float32(d)``, 0 outside; vertical lerps first, then horizontal, ``lerp(a, b, w) = a + w * (b - a)``
  rounded after each operation (no fma); then argmax. `upsample_bilinear` is the float64 ideal it approximates.
* nearest resize (``overlay``): ``src = min(floor(dst * (1 / (dst_size / src_size))), src_size - 1)`` in double,
  which is cv2.resize ``INTER_NEAREST`` exactly.
* argmax: ``np.argmax`` (first maximum wins; NaN counts as the largest value and the first NaN wins).
* overlay blend: ``a8 = round(alpha * 256)``; ``out = (frame * (256 - a8) + colour * a8 + 128) >> 8`` — the
  round-half-up value of ``frame * (1 - a) + colour * a`` with ``a = a8 / 256``. Class ids >= K leave the pixel as is.
* colorize: class ids >= K are black.
* confidence (`argmax_confidence`, `upsample_argmax_confidence`): the highest softmax probability of each pixel,
  ``p = 1 / sum_c exp(l_c - l_max)``, as uint8 ``floor(255 / sum + 0.5)`` (``round(255 p)``), computed in the
  argmax's own pass over the classes: the running sum is rescaled by ``exp(best - v)`` when a class takes over and
  grows by ``exp(v - best)`` otherwise (`confidence_update`), with `exp_nonpositive`'s float32 cubic. Within
  1 LSB of float64 softmax; a pixel with a NaN logit gets 0.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "alpha_to_a8",
    "argmax",
    "argmax_confidence",
    "colorize",
    "confidence_u8",
    "confidence_update",
    "exp_nonpositive",
    "fma_f32",
    "nearest_indices",
    "normalise_lut",
    "overlay",
    "preprocess",
    "resize_linear",
    "resize_taps",
    "src_pos",
    "upsample_argmax",
    "upsample_argmax_confidence",
    "upsample_argmax_overlay",
    "upsample_bilinear",
    "upsample_taps",
]

RESIZE_BITS = 11
RESIZE_ONE = 1 << RESIZE_BITS


def src_pos(dst_size: int, p: int, q: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(i, r, d) with ``(dst + 0.5) * p / q - 0.5 == i + r / d`` exactly, ``0 <= r < d``, for dst in range(dst_size)."""
    d = 2 * q
    n = (2 * np.arange(dst_size, dtype=np.int64) + 1) * p - q
    return n // d, n % d, d  # numpy's // and % floor, as src_pos() does after its fix-up


def resize_taps(dst_size: int, src_size: int, clamp_weight: bool) -> tuple[np.ndarray, ...]:
    """(i0, i1, a0, a1) of the fixed-point linear resize; `clamp_weight` for columns, not for rows (cv2's rule)."""
    i, r, d = src_pos(dst_size, src_size, dst_size)
    t = r << RESIZE_BITS
    q, rem = t // d, t % d
    a1 = q + ((2 * rem > d) | ((2 * rem == d) & (q % 2 == 1)))  # round half to even
    if clamp_weight:
        outside = (i < 0) | (i >= src_size - 1)
        a1[outside] = 0
        i0 = np.clip(i, 0, src_size - 1)
        i1 = np.minimum(i0 + 1, src_size - 1)
    else:
        i0, i1 = np.clip(i, 0, src_size - 1), np.clip(i + 1, 0, src_size - 1)
    return i0, i1, RESIZE_ONE - a1, a1


def resize_linear(image: np.ndarray, out_size: tuple[int, int]) -> np.ndarray:
    """uint8 (H, W, ...) -> uint8 (h, w, ...): cv2.resize INTER_LINEAR's fixed-point arithmetic, exact coordinates."""
    h, w = out_size
    H, W = image.shape[:2]
    x0, x1, a0, a1 = resize_taps(w, W, clamp_weight=True)
    y0, y1, b0, b1 = resize_taps(h, H, clamp_weight=False)
    extra = (1,) * (image.ndim - 2)
    img = image.astype(np.int64)
    s = img[:, x0] * a0.reshape((1, -1) + extra) + img[:, x1] * a1.reshape((1, -1) + extra)
    b0, b1 = b0.reshape((-1, 1) + extra), b1.reshape((-1, 1) + extra)
    v = (((b0 * (s[y0] >> 4)) >> 16) + ((b1 * (s[y1] >> 4)) >> 16) + 2) >> 2
    return v.astype(np.uint8)


def fma_f32(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """float32 fma(a, b, c) rounded once, as std::fma and __fmaf_rn compute it (numpy has no fma)."""
    a64, b64, c64 = (np.asarray(v, np.float32).astype(np.float64) for v in (a, b, c))
    with np.errstate(invalid="ignore", over="ignore"):
        p = a64 * b64  # exact: 24 + 24 significant bits fit in float64's 53
        s = p + c64
        bb = s - p
        err = (p - (s - bb)) + (c64 - bb)  # TwoSum: p + c == s + err exactly
        f = s.astype(np.float32)
        # Rounding s to float32 can differ from rounding p + c once only when s sits exactly halfway between two
        # float32s while p + c does not: then the float32 on err's side is the right one.
        g = np.nextafter(f, np.where(s > f, np.float32(np.inf), np.float32(-np.inf)))
        halfway = (s != f) & (s == (f.astype(np.float64) + g.astype(np.float64)) / 2) & (err != 0)
        toward = np.where(err > 0, np.maximum(f, g), np.minimum(f, g))
    return np.where(halfway, toward, f)


def normalise_lut(mean: tuple[float, float, float], std: tuple[float, float, float]) -> np.ndarray:
    """(3, 256) float32: fma(v, scale, bias) of every uint8 v per RGB channel (make_norm + normalise in ops.h)."""
    m = np.asarray(mean, np.float32).astype(np.float64)
    sd = np.asarray(std, np.float32).astype(np.float64)
    scale = (1.0 / (255.0 * sd)).astype(np.float32)
    bias = (-m / sd).astype(np.float32)
    v = np.arange(256, dtype=np.float32)
    return fma_f32(v[None, :], scale[:, None], bias[:, None])


def nearest_indices(dst_size: int, src_size: int) -> np.ndarray:
    """cv2 INTER_NEAREST source index of each destination index."""
    inv_scale = 1.0 / (float(dst_size) / float(src_size))
    return np.minimum(np.floor(np.arange(dst_size, dtype=np.float64) * inv_scale).astype(np.int64), src_size - 1)


def alpha_to_a8(alpha: float) -> int:
    """Blend weight in 1/256 steps: alpha as float32 (what the kernels receive) times 256, rounded half up."""
    return int(min(256, max(0, np.floor(float(np.float32(alpha)) * 256.0 + 0.5))))


def preprocess(
    frame_bgr: np.ndarray,
    out_size: tuple[int, int],
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
    dtype: type = np.float32,
) -> np.ndarray:
    """Fixed-point bilinear resize to out_size (h, w), BGR->RGB, fma normalisation in float32, as (1, 3, h, w).

    float16 rounds the float32 result to nearest-even (what the kernels store); float64 widens it."""
    small = resize_linear(frame_bgr, out_size)  # (h, w, 3) BGR uint8
    lut = normalise_lut(mean, std)
    rgb = np.stack([lut[c][small[..., 2 - c]] for c in range(3)])
    return rgb[None].astype(dtype)


def argmax(logits: np.ndarray, out_dtype: type = np.uint8) -> np.ndarray:
    """(C, H, W) or (1, C, H, W) logits -> (H, W) class map (np.argmax's tie and NaN rules)."""
    if logits.ndim == 4:
        logits = logits[0]
    return np.argmax(logits, axis=0).astype(out_dtype)


def upsample_taps(dst_size: int, stride: int, src_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i0, i1, float32 weight) of each output index of a bilinear upsampling by `stride` (upsample_tap in ops.h)."""
    i, r, d = src_pos(dst_size, 1, stride)
    w = r.astype(np.float32) / np.float32(d)
    outside = (i < 0) | (i >= src_size - 1)
    w[outside] = 0
    i0 = np.clip(i, 0, src_size - 1)
    return i0, np.minimum(i0 + 1, src_size - 1), w


def upsample_bilinear(logits: np.ndarray, stride: int, out_size: tuple[int, int]) -> np.ndarray:
    """(C, h, w) -> float64 (C, H, W): the ideal, float64 torch-style bilinear upsampling by `stride`, cropped to
    out_size. The kernels compute its float32 approximation (`upsample_argmax`)."""
    C, h, w = logits.shape
    H, W = out_size

    def taps(n: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        f = np.maximum((np.arange(n) + 0.5) / stride - 0.5, 0.0)
        i0 = np.minimum(np.floor(f).astype(np.int64), size - 1)
        return i0, np.minimum(i0 + 1, size - 1), np.where(i0 >= size - 1, 0.0, f - i0)

    y0, y1, wy = taps(H, h)
    x0, x1, wx = taps(W, w)
    lg = logits.astype(np.float64)
    top = lg[:, y0][:, :, x0] * (1 - wx) + lg[:, y0][:, :, x1] * wx
    bottom = lg[:, y1][:, :, x0] * (1 - wx) + lg[:, y1][:, :, x1] * wx
    return top * (1 - wy[:, None]) + bottom * wy[:, None]


def _upsampled_chunks(logits: np.ndarray, out_size: tuple[int, int], stride: int, rows_per_chunk: int):
    """(row slice, float32 (C, rows, W) upsampled logits) chunks of the float32 bilinear upsampling of (C, h, w)
    logits by `stride`, cropped to out_size: vertical lerps, then horizontal, each ``a + w * (b - a)`` in float32
    (upsample_value in ops.h). Chunks keep the memory bounded for large frames."""
    if logits.ndim == 4:
        logits = logits[0]
    C, h, w = logits.shape
    H, W = out_size
    y0, y1, wy = upsample_taps(H, stride, h)
    x0, x1, wx = upsample_taps(W, stride, w)
    lg = logits.astype(np.float32)  # float16 -> float32 is exact
    for start in range(0, H, rows_per_chunk):
        sl = slice(start, min(H, start + rows_per_chunk))
        with np.errstate(invalid="ignore", over="ignore"):  # inf - inf is NaN here as in the kernels
            r0, r1 = lg[:, y0[sl]], lg[:, y1[sl]]  # (C, rows, w)
            t = r0 + wy[sl][:, None] * (r1 - r0)
            a, b = t[:, :, x0], t[:, :, x1]
            values = a + wx * (b - a)
        yield sl, values


def upsample_argmax(logits: np.ndarray, out_size: tuple[int, int], stride: int, rows_per_chunk: int = 64) -> np.ndarray:
    """argmax over C of the float32 bilinear upsampling of (C, h, w) logits by `stride`, cropped to out_size:
    vertical lerps, then horizontal, each ``a + w * (b - a)`` in float32 (upsample_value in ops.h)."""
    out = np.empty(tuple(out_size), np.uint8)
    for sl, values in _upsampled_chunks(logits, out_size, stride, rows_per_chunk):
        out[sl] = np.argmax(values, axis=0)
    return out


# ----- confidence ------------------------------------------------------------------------------------------------

_LOG2E = np.float32(1.4426950408889634)
# 2^f on [-1, 0] = 1 + f (c1 + f (c2 + f c3)): a cubic fitted for relative error (< 1e-4) with 2^0 = 1 exactly
# (exp_nonpositive in ops.h); float32 values, highest degree first.
_EXP2_COEFFS = (np.float32(0.039615824818611145), np.float32(0.2311585396528244), np.float32(0.6915874481201172),
                np.float32(1.0))


def exp_nonpositive(x: np.ndarray) -> np.ndarray:
    """float32 exp(x) for x <= 0, the kernels' way bit for bit: t = x log2(e) clamped to >= -124 (NaN -> -124),
    n = trunc(t), 2^(t - n) by the cubic (Horner, one rounding per operation), times 2^n."""
    x = np.asarray(x, np.float32)
    t = x * _LOG2E
    t = np.where(t >= np.float32(-124), t, np.float32(-124)).astype(np.float32)
    n = np.trunc(t)
    f = t - n
    p = np.full_like(f, _EXP2_COEFFS[0])
    for c in _EXP2_COEFFS[1:]:
        p = p * f + c
    return (p * np.ldexp(np.float32(1), n.astype(np.int32))).astype(np.float32)


def confidence_update(total: np.ndarray, v: np.ndarray, best: np.ndarray, take: np.ndarray) -> np.ndarray:
    """One class of the online softmax (`best` before the update): rescale by exp(best - v) and add 1 where v
    takes over, else add exp(v - best); both factors are exp(-|v - best|)."""
    with np.errstate(invalid="ignore"):  # inf - inf: a NaN the exp clamps away
        e = exp_nonpositive(-np.abs(v - best))
    return np.where(take, total * e + np.float32(1), total + e).astype(np.float32)


def confidence_u8(total: np.ndarray, best: np.ndarray) -> np.ndarray:
    """uint8 floor(255 / sum + 0.5) in float32 (round(255 p)); 0 where the maximum is NaN."""
    q = np.float32(255) / total + np.float32(0.5)
    return np.where(best == best, q.astype(np.int32), 0).astype(np.uint8)


def _argmax_confidence_of(values: np.ndarray) -> np.ndarray:
    """uint8 confidence of float32 (C, ...) values: the kernels' single pass over the classes, in class order."""
    best = values[0].copy()
    total = np.ones_like(best)
    for c in range(1, values.shape[0]):
        v = values[c]
        take = ~(v <= best) & (best == best)  # takes_over(): np.argmax's rule
        total = confidence_update(total, v, best, take)
        best = np.where(take, v, best)
    return confidence_u8(total, best)


def argmax_confidence(logits: np.ndarray, out_dtype: type = np.uint8) -> tuple[np.ndarray, np.ndarray]:
    """(argmax, uint8 confidence) of (C, H, W) or (1, C, H, W) logits."""
    if logits.ndim == 4:
        logits = logits[0]
    return argmax(logits, out_dtype), _argmax_confidence_of(logits.astype(np.float32))


def upsample_argmax_confidence(logits: np.ndarray, out_size: tuple[int, int], stride: int,
                               rows_per_chunk: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(upsample_argmax, uint8 confidence of the same float32 upsampled logits)."""
    mask = np.empty(tuple(out_size), np.uint8)
    confidence = np.empty(tuple(out_size), np.uint8)
    for sl, values in _upsampled_chunks(logits, out_size, stride, rows_per_chunk):
        mask[sl] = np.argmax(values, axis=0)
        confidence[sl] = _argmax_confidence_of(values)
    return mask, confidence


def colorize(mask: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """(H, W) uint8 class ids -> (H, W, 3) uint8 colours; ids >= len(palette) are black."""
    lut = np.zeros((256, 3), np.uint8)
    lut[: len(palette)] = palette
    return lut[mask]


def overlay(frame_bgr: np.ndarray, mask: np.ndarray, palette_bgr: np.ndarray, alpha: float) -> np.ndarray:
    """Blend the palette colour of each class over the frame; the mask is resized NEAREST to the frame size."""
    H, W = frame_bgr.shape[:2]
    h, w = mask.shape
    big = mask[nearest_indices(H, h)][:, nearest_indices(W, w)]
    a8 = alpha_to_a8(alpha)
    lut = np.zeros((256, 3), np.uint32)
    lut[: len(palette_bgr)] = palette_bgr
    weight = np.zeros(256, np.uint32)
    weight[: len(palette_bgr)] = a8
    a = weight[big][..., None]
    blended = (frame_bgr.astype(np.uint32) * (256 - a) + lut[big] * a + 128) >> 8
    return blended.astype(np.uint8)


def upsample_argmax_overlay(
    logits: np.ndarray,
    frame_bgr: np.ndarray,
    stride: int,
    palette_bgr: np.ndarray,
    alpha: float,
    mask_size: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray]:
    """(overlay, mask at model resolution): upsample_argmax to mask_size, then overlay on the frame."""
    mask = upsample_argmax(logits, mask_size, stride)
    return overlay(frame_bgr, mask, palette_bgr, alpha), mask
