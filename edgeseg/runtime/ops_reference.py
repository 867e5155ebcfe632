"""Plain numpy reference versions of the pre/post-processing kernels (float64 where it matters).

They define what the compiled kernels in `edgeseg._C` must compute, the tests compare against them, and
`edgeseg.runtime.ops` falls back to them when the extension is not importable. They take already-validated
arguments (use `edgeseg.runtime.ops` for checked, allocation-free calls) and never import torch.

Conventions, shared with cpp_ext/src/ops.h:

* linear resize (``preprocess``, ``upsample_argmax``): ``src = (dst + 0.5) * (src_size / dst_size) - 0.5``,
  ``i0 = floor(src)`` clamped to ``[0, n-1]``, ``i1 = min(i0 + 1, n-1)``, weight ``src - i0`` (0 when clamped);
  this is cv2.resize ``INTER_LINEAR`` and torch ``F.interpolate(..., mode="bilinear", align_corners=False)``.
* nearest resize (``overlay``): ``src = min(floor(dst * (1 / (dst_size / src_size))), src_size - 1)`` in double,
  which is cv2.resize ``INTER_NEAREST`` exactly.
* argmax: ``np.argmax`` (first maximum wins; NaN counts as the largest value and the first NaN wins).
* overlay blend: ``a8 = round(alpha * 256)``; ``out = (frame * (256 - a8) + colour * a8 + 128) >> 8`` — the
  round-half-up value of ``frame * (1 - a) + colour * a`` with ``a = a8 / 256``. Class ids >= K leave the pixel as is.
* colorize: class ids >= K are black.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "alpha_to_a8",
    "argmax",
    "colorize",
    "linear_coords",
    "nearest_indices",
    "overlay",
    "preprocess",
    "upsample_argmax",
    "upsample_argmax_overlay",
    "upsample_bilinear",
]


def linear_coords(dst_size: int, scale: float, src_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i0, i1, weight) of each destination index for a half-pixel-centre linear resize; `scale` is src/dst."""
    f = (np.arange(dst_size, dtype=np.float64) + 0.5) * float(scale) - 0.5
    i0 = np.floor(f).astype(np.int64)
    w = f - i0
    low = i0 < 0
    i0[low], w[low] = 0, 0.0
    high = i0 >= src_size - 1
    i0[high], w[high] = src_size - 1, 0.0
    i1 = np.minimum(i0 + 1, src_size - 1)
    return i0, i1, w


def nearest_indices(dst_size: int, src_size: int) -> np.ndarray:
    """cv2 INTER_NEAREST source index of each destination index."""
    inv_scale = 1.0 / (float(dst_size) / float(src_size))
    return np.minimum(np.floor(np.arange(dst_size, dtype=np.float64) * inv_scale).astype(np.int64), src_size - 1)


def alpha_to_a8(alpha: float) -> int:
    """Blend weight in 1/256 steps: alpha as float32 (what the kernels receive) times 256, rounded half up."""
    return int(min(256, max(0, np.floor(float(np.float32(alpha)) * 256.0 + 0.5))))


def _resize_linear(image: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Bilinear resize of an (H, W, ...) array in float64 with the convention above."""
    H, W = image.shape[:2]
    y0, y1, wy = linear_coords(out_h, H / out_h, H)
    x0, x1, wx = linear_coords(out_w, W / out_w, W)
    img = image.astype(np.float64)
    extra = (1,) * (img.ndim - 2)
    wy = wy.reshape((-1, 1) + extra)
    wx = wx.reshape((1, -1) + extra)
    top = img[y0][:, x0] * (1 - wx) + img[y0][:, x1] * wx
    bottom = img[y1][:, x0] * (1 - wx) + img[y1][:, x1] * wx
    return top * (1 - wy) + bottom * wy


def preprocess(
    frame_bgr: np.ndarray,
    out_size: tuple[int, int],
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
    dtype: type = np.float32,
) -> np.ndarray:
    """Bilinear resize to out_size (h, w), BGR->RGB, (x/255 - mean)/std, as (1, 3, h, w) of `dtype`."""
    h, w = out_size
    rgb = _resize_linear(frame_bgr, h, w)[..., ::-1]
    norm = (rgb / 255.0 - np.asarray(mean, np.float64)) / np.asarray(std, np.float64)
    return np.ascontiguousarray(norm.transpose(2, 0, 1)[None]).astype(dtype)


def argmax(logits: np.ndarray, out_dtype: type = np.uint8) -> np.ndarray:
    """(C, H, W) or (1, C, H, W) logits -> (H, W) class map (np.argmax's tie and NaN rules)."""
    if logits.ndim == 4:
        logits = logits[0]
    return np.argmax(logits, axis=0).astype(out_dtype)


def upsample_bilinear(logits: np.ndarray, stride: int, out_size: tuple[int, int]) -> np.ndarray:
    """(C, h, w) -> float64 (C, H, W): torch-style bilinear upsampling by `stride`, cropped to out_size."""
    C, h, w = logits.shape
    H, W = out_size
    y0, y1, wy = linear_coords(H, 1.0 / stride, h)
    x0, x1, wx = linear_coords(W, 1.0 / stride, w)
    lg = logits.astype(np.float64)
    top = lg[:, y0][:, :, x0] * (1 - wx) + lg[:, y0][:, :, x1] * wx
    bottom = lg[:, y1][:, :, x0] * (1 - wx) + lg[:, y1][:, :, x1] * wx
    return top * (1 - wy[:, None]) + bottom * wy[:, None]


def upsample_argmax(logits: np.ndarray, out_size: tuple[int, int], stride: int, rows_per_chunk: int = 64) -> np.ndarray:
    """argmax over C of the float64 bilinear upsampling of (C, h, w) logits by `stride`, cropped to out_size."""
    if logits.ndim == 4:
        logits = logits[0]
    C, h, w = logits.shape
    H, W = out_size
    out = np.empty((H, W), np.uint8)
    y0, y1, wy = linear_coords(H, 1.0 / stride, h)
    x0, x1, wx = linear_coords(W, 1.0 / stride, w)
    lg = logits.astype(np.float64)
    cols0, cols1 = lg[:, :, x0], lg[:, :, x1]  # (C, h, W): horizontal pass once
    horiz = cols0 * (1 - wx) + cols1 * wx
    for start in range(0, H, rows_per_chunk):  # bounded memory for large frames
        sl = slice(start, min(H, start + rows_per_chunk))
        wys = wy[sl][:, None]
        up = horiz[:, y0[sl]] * (1 - wys) + horiz[:, y1[sl]] * wys
        out[sl] = np.argmax(up, axis=0)
    return out


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
