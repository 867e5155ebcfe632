"""Read the class ids stored in a label PNG, including palette ("P" mode) PNGs such as PASCAL VOC's.

OpenCV expands a palette PNG to colours and cannot return its indices, so:
- with Pillow installed (optional, not a dependency), its "P" mode array gives the indices directly;
- without it, we read the PLTE chunk ourselves and invert it: every decoded colour is looked up in the palette.
  That is exact when the palette colours used in the image are distinct (VOC's 256 colours all are); when two
  used entries share a colour the indices cannot be recovered and we raise DataError asking for Pillow.
Grey PNGs (8- or 16-bit) are read as they are by OpenCV. Colour (RGB) label images are rejected: they hold
colours, not class ids.
"""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np

from edgeseg._optional import install_hint, is_available
from edgeseg.errors import DataError

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_GREY, _RGB, _PALETTE, _GREY_ALPHA, _RGBA = 0, 2, 3, 4, 6

# Tests switch this off to exercise the Pillow-free path on machines that have Pillow.
USE_PILLOW = True


def _chunks(data: bytes, path: Path):
    pos = len(_SIGNATURE)
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if len(body) != length:
            raise DataError(f"label {path} is a truncated PNG")
        yield kind, body
        if kind == b"IEND":
            return
        pos += 12 + length


def png_header(path: Path) -> tuple[bytes, int, int]:
    """(whole file bytes, bit depth, colour type), or DataError if `path` is not a PNG."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise DataError(f"label {path} cannot be read: {exc}") from exc
    if not data.startswith(_SIGNATURE) or data[12:16] != b"IHDR" or len(data) < 33:
        raise DataError(f"label {path} is not a PNG file (labels must be PNGs of class ids)")
    return data, data[24], data[25]


def _read_palette_pillow(path: Path) -> np.ndarray:
    from PIL import Image  # optional; only imported when present

    try:
        with Image.open(path) as img:
            if img.mode != "P":
                raise DataError(f"label {path} was expected to be a palette PNG but Pillow reads mode {img.mode}")
            return np.array(img, dtype=np.uint8)
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"label {path} is unreadable or corrupt: {exc}") from exc


def _read_palette_inverted(path: Path, data: bytes) -> np.ndarray:
    palette = next((body for kind, body in _chunks(data, path) if kind == b"PLTE"), None)
    if palette is None or len(palette) % 3:
        raise DataError(f"label {path} is a palette PNG without a valid PLTE chunk")
    colours = np.frombuffer(palette, np.uint8).reshape(-1, 3).astype(np.int32)
    keys = (colours[:, 0] << 16) | (colours[:, 1] << 8) | colours[:, 2]
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise DataError(f"label {path} is unreadable or corrupt (OpenCV could not decode it)")
    pixels = bgr.astype(np.int32)
    pixel_keys = (pixels[..., 2] << 16) | (pixels[..., 1] << 8) | pixels[..., 0]
    used = np.unique(pixel_keys)
    order = np.argsort(keys, kind="stable")  # first palette entry wins among equal colours
    sorted_keys = keys[order]
    pos = np.searchsorted(sorted_keys, used)
    found = (pos < len(keys)) & (sorted_keys[np.minimum(pos, len(keys) - 1)] == used)
    if not found.all():
        raise DataError(f"label {path} has colours that are not in its own palette; the file is corrupt")
    unique_keys, counts = np.unique(keys, return_counts=True)
    duplicated = unique_keys[counts > 1]
    if np.isin(used, duplicated).any():
        raise DataError(
            f"label {path} is a palette PNG whose palette repeats a colour it uses, so its class ids cannot be "
            f"recovered without Pillow; {install_hint('PIL')}"
        )
    index_of_used = order[pos]
    lut_pos = np.searchsorted(used, pixel_keys)
    return index_of_used[lut_pos].astype(np.uint8)


def read_label_png(path: Path) -> np.ndarray:
    """The class ids in a label PNG as a 2-D uint8 (or uint16 for 16-bit grey) array; DataError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"label {path} does not exist")
    data, depth, colour_type = png_header(path)
    if colour_type == _PALETTE:
        if USE_PILLOW and is_available("PIL"):
            return _read_palette_pillow(path)
        return _read_palette_inverted(path, data)
    if colour_type == _GREY:
        if depth < 8:
            raise DataError(f"label {path} is a {depth}-bit grey PNG; save labels as 8-bit grey or palette PNGs")
        label = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if label is None or label.ndim != 2:
            raise DataError(f"label {path} is unreadable or corrupt (OpenCV could not decode it)")
        return label
    kinds = {_RGB: "an RGB", _GREY_ALPHA: "a grey+alpha", _RGBA: "an RGBA"}
    raise DataError(
        f"label {path} is {kinds.get(colour_type, 'an unknown-type')} PNG; labels must hold class ids "
        f"(8-bit grey or palette PNG), not colours"
    )
