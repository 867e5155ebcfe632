"""The plain folder layout: what `write_synthetic_folder` writes and CamVid (../shared/data/camvid) ships.

    DIR/classes.json                  optional: {"classes": [...], "palette_rgb": [[r,g,b], ...], "ignore_index": 11}
    DIR/SPLIT/images/NAME.{jpg,jpeg,png}
    DIR/SPLIT/labels/NAME.png         (or masks/) 8-bit grey or palette PNG of class ids, same size as the image

or, with no split folders, DIR/images + DIR/labels (or masks): one split, opened as split "train" or "all".

Label ids 0..num_classes-1 are classes; `ignore_index` from classes.json (default 255) is void and becomes 255.
Without classes.json the classes are inferred by scanning every label PNG under DIR (all splits, so train and val
agree): the ids found (255 aside, which is void) must be exactly 0..K-1, every one of them present somewhere, and
are named class_0..class_{K-1} with the VOC colour map. A gap means a stray id (one pixel of 200 would otherwise
make a 201-class model), so it is refused, naming the files that hold the ids above the gap. Write a classes.json
to fix the names, the colours and the number of classes (including classes that no label holds).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgeseg.config import IGNORE_INDEX, class_names, default_palette
from edgeseg.data._png import read_label_png
from edgeseg.data.base import DatasetInfo, FileDataset, LabelMap
from edgeseg.errors import ConfigError, DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
LABEL_DIRS = ("labels", "masks")
CLASSES_FILE = "classes.json"
PLAIN_SPLITS = ("train", "all")  # the split names a folder without split folders answers to


def is_folder_layout(root: Path) -> bool:
    if (root / "images").is_dir():
        return True
    return any((child / "images").is_dir() for child in root.iterdir() if child.is_dir())


def folder_splits(root: Path) -> list[str]:
    return sorted(child.name for child in root.iterdir() if (child / "images").is_dir())


def _label_dir(base: Path) -> Path | None:
    return next((base / name for name in LABEL_DIRS if (base / name).is_dir()), None)


def read_classes_json(path: Path) -> tuple[DatasetInfo, int]:
    """(DatasetInfo, void id on disk) from a classes.json; DataError naming the file when it is malformed."""
    try:
        data = json.loads(path.read_text())
        classes = list(class_names(data["classes"], str(path), DataError))
        palette = data.get("palette_rgb")
        void = int(data.get("ignore_index", IGNORE_INDEX))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path} is not a valid classes file ({exc!r}); it needs a 'classes' list") from exc
    if palette is not None and len(palette) != len(classes):
        raise DataError(f"{path} lists {len(classes)} classes but {len(palette)} palette_rgb colours")
    if not 0 <= void <= 255 or void < len(classes):
        raise DataError(f"{path}: ignore_index {void} must be in {len(classes)}..255 (not a class id)")
    try:
        info = DatasetInfo(tuple(classes), tuple(tuple(c) for c in palette) if palette else (), IGNORE_INDEX)
    except (ConfigError, TypeError, ValueError) as exc:
        raise DataError(f"{path}: {exc}") from exc
    return info, void


def infer_classes(root: Path) -> DatasetInfo:
    """class_0..class_{K-1} from the label PNGs under `root`, whose non-void ids must be exactly 0..K-1.

    Dense ids are the one case where the class list can be guessed: with a gap, either the labels hold a stray id
    or some classes never occur, and only a classes.json can say which (and how many classes there are)."""
    labels = sorted(root.glob("*/labels/*.png")) + sorted(root.glob("*/masks/*.png"))
    labels += sorted(root.glob("labels/*.png")) + sorted(root.glob("masks/*.png"))
    first_file: dict[int, Path] = {}  # id -> the first label file holding it, to name in errors
    for path in labels:
        for class_id in np.unique(read_label_png(path)).tolist():
            if class_id != IGNORE_INDEX:
                first_file.setdefault(int(class_id), path)
    how_to_fix = (
        f"add {root / CLASSES_FILE} listing the classes, e.g. "
        '{"classes": ["road", "car", ...], "ignore_index": 255} (ids 0..K-1 are the classes, 255 is void)'
    )
    if not first_file:
        raise DataError(f"{root} has no {CLASSES_FILE} and its labels hold no class ids to infer the classes from; "
                        f"{how_to_fix}")
    ids = sorted(first_file)
    missing = sorted(set(range(min(ids[-1], IGNORE_INDEX - 1) + 1)) - set(ids))  # 255 is void, never missing
    if ids[-1] > IGNORE_INDEX or missing:
        above = [i for i in ids if i > missing[0]] if missing else [i for i in ids if i > IGNORE_INDEX]
        if missing:
            why = f"but none of {_id_ranges(missing)}, so {_id_ranges(above)} look(s) like stray ids"
        else:
            why = f"and {_id_ranges(above)} do(es) not fit an 8-bit class id"
        where = ", ".join(f"{i} in {first_file[i]}" for i in above[:3]) + (", ..." if len(above) > 3 else "")
        raise DataError(
            f"{root} has no {CLASSES_FILE}, so its classes are inferred from the label ids, which must then be "
            f"0..K-1 with none missing (255 = void, K <= 255). Its labels hold ids {_id_ranges(ids)}, {why} "
            f"({where}). Fix those labels, or {how_to_fix}"
        )
    n = len(ids)
    return DatasetInfo(tuple(f"class_{i}" for i in range(n)), tuple(default_palette(n)), IGNORE_INDEX)


def _id_ranges(ids: list[int]) -> str:
    """[0, 1, 2, 3, 7, 200, 201] -> '0..3, 7, 200..201', so a message stays short for many ids."""
    parts: list[str] = []
    start = prev = ids[0]
    for value in [*ids[1:], None]:
        if value is not None and value == prev + 1:
            prev = value
            continue
        parts.append(str(start) if start == prev else f"{start}..{prev}")
        if value is not None:
            start = prev = value
    return ", ".join(parts)


class FolderDataset(FileDataset):
    """DIR/SPLIT/images + DIR/SPLIT/labels (or DIR/images + DIR/labels), with an optional DIR/classes.json."""

    def __init__(self, root: str | Path, split: str = "train") -> None:
        root = Path(root)
        if (root / split / "images").is_dir():
            base = root / split
        elif (root / "images").is_dir():
            if split not in PLAIN_SPLITS:
                raise DataError(
                    f"{root} has no split folders (it holds images/ directly), so it is a single split; open it with "
                    f"split='train' or 'all', or arrange it as {root}/{split}/images + {root}/{split}/labels"
                )
            base = root
        else:
            raise DataError(
                f"{root} has no split '{split}' (no {root / split / 'images'}); splits found: {folder_splits(root)}"
            )
        label_dir = _label_dir(base)
        if label_dir is None:
            raise DataError(f"{base} has images/ but no labels/ or masks/ folder next to it")
        images = sorted(p for p in (base / "images").iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not images:
            raise DataError(f"{base / 'images'} holds no {'/'.join(IMAGE_EXTENSIONS)} images")
        pairs = []
        seen: dict[str, Path] = {}
        for image in images:
            if image.stem in seen:
                raise DataError(
                    f"images {seen[image.stem]} and {image} share the name {image.stem!r}; one label cannot serve both"
                )
            seen[image.stem] = image
            label = label_dir / f"{image.stem}.png"
            if not label.is_file():
                raise DataError(f"image {image} has no label: expected {label}")
            pairs.append((image, label))
        classes_file = root / CLASSES_FILE
        if classes_file.is_file():
            info, void = read_classes_json(classes_file)
        else:
            info, void = infer_classes(root), IGNORE_INDEX
        super().__init__(pairs, info, LabelMap.identity(info.num_classes, (void,)), split, root)
