from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeseg.config import default_palette
from edgeseg.data import CITYSCAPES_INFO, VOC_INFO, _png, cityscapes_train_ids, open_dataset, validate_dataset
from edgeseg.data.cityscapes import CityscapesDataset
from edgeseg.data.folder import FolderDataset
from edgeseg.data.voc import VOCDataset
from edgeseg.errors import DataError


def write_rgb(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return path


def write_grey(path: Path, label: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), label)
    return path


def random_pair(rng: np.random.Generator, h: int = 12, w: int = 16, num_classes: int = 3):
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    label = rng.integers(0, num_classes, (h, w), dtype=np.uint8)
    return image, label


def write_palette_png(path: Path, indices: np.ndarray, palette: list[tuple[int, int, int]]) -> Path:
    """An 8-bit palette PNG written byte by byte (independent of Pillow and OpenCV)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    h, w = indices.shape
    raw = b"".join(b"\x00" + indices[y].astype(np.uint8).tobytes() for y in range(h))
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 3, 0, 0, 0))
    data += chunk(b"PLTE", bytes(np.array(palette, np.uint8).ravel())) + chunk(b"IDAT", zlib.compress(raw))
    data += chunk(b"IEND", b"")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# --- folder layout -----------------------------------------------------------------------------------------


def make_folder(root: Path, rng, splits=(("train", 3), ("val", 2)), num_classes=4, void=None, classes_json=True):
    truth = {}
    for split, n in splits:
        for i in range(n):
            image, label = random_pair(rng, num_classes=num_classes)
            if void is not None:
                label[0, :4] = void
            write_rgb(root / split / "images" / f"s{i}.png", image)
            write_grey(root / split / "labels" / f"s{i}.png", label)
            truth[split, i] = (image, label)
    if classes_json:
        data = {
            "classes": [f"c{k}" for k in range(num_classes)],
            "palette_rgb": [[k, k, k] for k in range(num_classes)],
        }
        if void is not None:
            data["ignore_index"] = void
        (root / "classes.json").write_text(json.dumps(data))
    return truth


def test_folder_layout_maps_void_to_255(tmp_path, rng):
    truth = make_folder(tmp_path, rng, void=4)
    ds = open_dataset(tmp_path, "train")
    assert isinstance(ds, FolderDataset) and len(ds) == 3 and len(open_dataset(tmp_path, "val")) == 2
    assert ds.info.classes == ("c0", "c1", "c2", "c3") and ds.info.palette[2] == (2, 2, 2)
    image, label = ds[1]
    raw_image, raw_label = truth["train", 1]
    np.testing.assert_array_equal(image, raw_image)
    np.testing.assert_array_equal(label, np.where(raw_label == 4, 255, raw_label))
    assert (label[0, :4] == 255).all() and ds.name_of(1) == "s1"


def test_folder_without_classes_json_infers_classes_from_all_splits(tmp_path, rng):
    make_folder(tmp_path, rng, num_classes=3, classes_json=False)
    write_grey(tmp_path / "val" / "labels" / "s1.png", np.full((12, 16), 3, np.uint8))  # only val has id 3
    ds = open_dataset(tmp_path, "train")
    assert ds.info.classes == tuple(f"class_{k}" for k in range(4))
    assert ds.info.palette == tuple(default_palette(4))


def test_plain_folder_with_masks(tmp_path, rng):
    image, label = random_pair(rng)
    write_rgb(tmp_path / "images" / "a.jpg", image)
    write_grey(tmp_path / "masks" / "a.png", label)
    ds = open_dataset(tmp_path)
    assert len(ds) == 1 and ds[0][1].shape == label.shape
    assert len(open_dataset(tmp_path, "all")) == 1
    with pytest.raises(DataError, match="no split folders"):
        open_dataset(tmp_path, "val")


def test_missing_split_and_unknown_layout(tmp_path, rng):
    make_folder(tmp_path / "ds", rng)
    with pytest.raises(DataError, match=r"no split 'test'.*\['train', 'val'\]"):
        open_dataset(tmp_path / "ds", "test")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty is not a dataset layout.*JPEGImages.*leftImg8bit.*images"):
        open_dataset(tmp_path / "empty")
    with pytest.raises(DataError, match="does not exist"):
        open_dataset(tmp_path / "nowhere")


# --- errors ------------------------------------------------------------------------------------------------


def test_image_without_label(tmp_path, rng):
    make_folder(tmp_path, rng)
    (tmp_path / "train" / "labels" / "s2.png").unlink()
    with pytest.raises(DataError, match=r"s2\.png has no label"):
        open_dataset(tmp_path, "train")


def test_label_size_mismatch(tmp_path, rng):
    make_folder(tmp_path, rng)
    write_grey(tmp_path / "train" / "labels" / "s1.png", np.zeros((10, 16), np.uint8))
    ds = open_dataset(tmp_path, "train")
    ds[0]
    with pytest.raises(DataError, match=r"labels/s1\.png is 16x10 \(WxH\) but its image .*images/s1\.png is 16x12"):
        ds[1]
    with pytest.raises(DataError, match=r"sample 1 \(s1\).*s1\.png"):
        validate_dataset(ds)


def test_class_id_out_of_range(tmp_path, rng):
    make_folder(tmp_path, rng, void=11)
    bad = np.zeros((12, 16), np.uint8)
    bad[3, 3] = 7
    write_grey(tmp_path / "train" / "labels" / "s2.png", bad)
    ds = open_dataset(tmp_path, "train")
    with pytest.raises(DataError, match=r"s2\.png has class id\(s\) \[7\] \(1 pixels\).*0\.\.3.*\[11\]"):
        ds[2]
    bad[3, 3] = 255  # 255 is not this dataset's void id either
    write_grey(tmp_path / "train" / "labels" / "s2.png", bad)
    with pytest.raises(DataError, match=r"s2\.png has class id\(s\) \[255\]"):
        ds[2]


def test_corrupt_image_and_label(tmp_path, rng):
    make_folder(tmp_path, rng)
    (tmp_path / "train" / "images" / "s0.png").write_bytes(b"\x89PNG not really")
    (tmp_path / "train" / "labels" / "s1.png").write_bytes(b"garbage")
    write_rgb(tmp_path / "train" / "labels" / "s2.png", np.zeros((12, 16, 3), np.uint8))
    ds = open_dataset(tmp_path, "train")
    with pytest.raises(DataError, match=r"images/s0\.png is unreadable or corrupt"):
        ds[0]
    with pytest.raises(DataError, match=r"labels/s1\.png is not a PNG"):
        ds[1]
    with pytest.raises(DataError, match=r"labels/s2\.png is an RGB PNG"):
        ds[2]


def test_bad_classes_json(tmp_path, rng):
    make_folder(tmp_path, rng)
    (tmp_path / "classes.json").write_text('{"classes": ["a", "b"], "palette_rgb": [[1, 2, 3]]}')
    with pytest.raises(DataError, match=r"classes\.json lists 2 classes but 1 palette_rgb"):
        open_dataset(tmp_path)
    (tmp_path / "classes.json").write_text("{not json")
    with pytest.raises(DataError, match=r"classes\.json is not a valid classes file"):
        open_dataset(tmp_path)


# --- palette PNG reading -----------------------------------------------------------------------------------


@pytest.mark.parametrize("use_pillow", [True, False], ids=["pillow", "no-pillow"])
def test_palette_png_gives_indices_not_colours(tmp_path, rng, monkeypatch, use_pillow):
    if use_pillow:
        pytest.importorskip("PIL")
    monkeypatch.setattr(_png, "USE_PILLOW", use_pillow)
    indices = rng.integers(0, 21, (9, 13)).astype(np.uint8)
    indices[0] = 255
    path = write_palette_png(tmp_path / "l.png", indices, default_palette(256))
    np.testing.assert_array_equal(_png.read_label_png(path), indices)


def test_palette_png_with_repeated_colour_needs_pillow(tmp_path, monkeypatch):
    monkeypatch.setattr(_png, "USE_PILLOW", False)
    palette = default_palette(4)
    palette[3] = palette[1]
    path = write_palette_png(tmp_path / "dup.png", np.array([[0, 1], [3, 2]], np.uint8), palette)
    with pytest.raises(DataError, match=r"dup\.png .*repeats a colour.*pillow"):
        _png.read_label_png(path)
    # unused duplicates are harmless
    path = write_palette_png(tmp_path / "ok.png", np.array([[0, 2], [2, 0]], np.uint8), palette)
    np.testing.assert_array_equal(_png.read_label_png(path), [[0, 2], [2, 0]])


# --- PASCAL VOC --------------------------------------------------------------------------------------------


def make_voc(root: Path, rng, ids=("2007_000032", "2007_000039")):
    truth = {}
    for sample_id in ids:
        image = rng.integers(0, 256, (10, 14, 3), dtype=np.uint8)
        label = rng.integers(0, 21, (10, 14)).astype(np.uint8)
        label[:, 0] = 255  # border
        write_rgb(root / "JPEGImages" / f"{sample_id}.jpg", image)
        write_palette_png(root / "SegmentationClass" / f"{sample_id}.png", label, default_palette(256))
        truth[sample_id] = label
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("\n".join(ids) + "\n")
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text(ids[0] + "\n")
    return truth


@pytest.mark.parametrize("use_pillow", [True, False], ids=["pillow", "no-pillow"])
def test_voc_layout(tmp_path, rng, monkeypatch, use_pillow):
    if use_pillow:
        pytest.importorskip("PIL")
    monkeypatch.setattr(_png, "USE_PILLOW", use_pillow)
    truth = make_voc(tmp_path, rng)
    ds = open_dataset(tmp_path, "train")
    assert isinstance(ds, VOCDataset) and len(ds) == 2 and len(open_dataset(tmp_path, "val")) == 1
    assert ds.info == VOC_INFO and ds.num_classes == 21 and ds.info.classes[15] == "person"
    image, label = ds[1]
    assert image.shape == (10, 14, 3)
    np.testing.assert_array_equal(label, truth["2007_000039"])
    assert ds.name_of(1) == "2007_000039"
    with pytest.raises(DataError, match=r"no split list .*trainval\.txt.*\['train', 'val'\]"):
        open_dataset(tmp_path, "trainval")


def test_voc_missing_label(tmp_path, rng):
    make_voc(tmp_path, rng)
    (tmp_path / "SegmentationClass" / "2007_000039.png").unlink()
    with pytest.raises(DataError, match=r"2007_000039\.jpg has no label"):
        open_dataset(tmp_path, "train")


# --- Cityscapes --------------------------------------------------------------------------------------------

# Hand-copied from cityscapesScripts helpers/labels.py (labelId -> trainId).
CITYSCAPES_REFERENCE = {
    7: 0,
    8: 1,
    11: 2,
    17: 5,
    21: 8,
    23: 10,
    24: 11,
    26: 13,
    33: 18,
    0: 255,
    1: 255,
    6: 255,
    9: 255,
    29: 255,
    30: 255,
    -1: 255,
}


def test_cityscapes_train_id_table():
    ids = np.array(list(CITYSCAPES_REFERENCE), np.int32)
    np.testing.assert_array_equal(cityscapes_train_ids(ids), list(CITYSCAPES_REFERENCE.values()))
    assert cityscapes_train_ids(np.array([34, 200, 255])).tolist() == [255, 255, 255]
    assert len(CITYSCAPES_INFO.classes) == 19
    assert CITYSCAPES_INFO.classes[0] == "road" and CITYSCAPES_INFO.classes[13] == "car"
    assert CITYSCAPES_INFO.palette[13] == (0, 0, 142)


def test_cityscapes_layout(tmp_path, rng):
    for split, city, frame in (
        ("train", "aachen", "aachen_000000_000019"),
        ("train", "bonn", "bonn_000001_000019"),
        ("val", "lindau", "lindau_000000_000019"),
    ):
        write_rgb(
            tmp_path / "leftImg8bit" / split / city / f"{frame}_leftImg8bit.png",
            rng.integers(0, 256, (8, 16, 3), dtype=np.uint8),
        )
        label_ids = np.resize(np.array(list(CITYSCAPES_REFERENCE)[:-1], np.uint8), (8, 16))
        write_grey(tmp_path / "gtFine" / split / city / f"{frame}_gtFine_labelIds.png", label_ids)
        write_grey(tmp_path / "gtFine" / split / city / f"{frame}_gtFine_color.png", label_ids)  # ignored
    ds = open_dataset(tmp_path, "train")
    assert isinstance(ds, CityscapesDataset) and len(ds) == 2 and len(open_dataset(tmp_path, "val")) == 1
    assert ds.name_of(1) == "bonn_000001_000019_leftImg8bit"
    _, label = ds[0]
    expected = np.resize(
        np.array([CITYSCAPES_REFERENCE[i] for i in list(CITYSCAPES_REFERENCE)[:-1]], np.uint8), (8, 16)
    )
    np.testing.assert_array_equal(label, expected)
    (tmp_path / "gtFine" / "val" / "lindau" / "lindau_000000_000019_gtFine_labelIds.png").unlink()
    with pytest.raises(DataError, match=r"lindau_000000_000019_leftImg8bit\.png has no label"):
        open_dataset(tmp_path, "val")
