"""What every dataset gives: `DatasetInfo`, the `SegmentationDataset` contract, and the shared file loader.

A sample is `(image, label)`: image RGB uint8 (H, W, 3), label uint8 (H, W) of train ids 0..num_classes-1, with
every void/unlabelled pixel set to IGNORE_INDEX (255) whatever id the dataset used for it on disk. Bad data raises
DataError naming the file when the sample is loaded; `validate_dataset` loads everything up front.

No torch here: any object with `__len__`/`__getitem__` is a map-style dataset for a torch DataLoader.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edgeseg.config import IGNORE_INDEX, class_names, default_palette
from edgeseg.data._png import read_label_png
from edgeseg.errors import ConfigError, DataError

Sample = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class DatasetInfo:
    """Class names, their RGB colours (same order) and the label value that means "ignore" (always 255 on output)."""

    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...] = field(default=())
    ignore_index: int = IGNORE_INDEX

    def __post_init__(self) -> None:
        classes = tuple(str(c) for c in self.classes)
        palette = self.palette or tuple(default_palette(len(classes)))
        palette = tuple(tuple(int(v) for v in colour) for colour in palette)
        if not classes:
            raise ConfigError("DatasetInfo needs at least one class")
        class_names(list(classes), "DatasetInfo")  # distinct names: scores are reported by name
        if len(classes) > 255:
            raise ConfigError(
                f"DatasetInfo has {len(classes)} classes; labels are uint8 with 255 = ignore, so 255 at most"
            )
        if len(palette) != len(classes) or any(len(c) != 3 or not all(0 <= v <= 255 for v in c) for c in palette):
            raise ConfigError(
                f"DatasetInfo needs one (r, g, b) colour in 0..255 per class: {len(classes)} classes, palette {palette}"
            )
        object.__setattr__(self, "classes", classes)
        object.__setattr__(self, "palette", palette)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


class SegmentationDataset(abc.ABC):
    """Map-style dataset of (image RGB uint8 HxWx3, label uint8 HxW with 255 = ignore) pairs."""

    info: DatasetInfo
    split: str

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @abc.abstractmethod
    def _load(self, index: int) -> Sample:
        """Load sample `index` (already checked to be in range)."""

    @abc.abstractmethod
    def name_of(self, index: int) -> str:
        """The sample's file stem, for naming predictions written to disk."""

    def __getitem__(self, index: int) -> Sample:
        return self._load(self._check_index(index))

    def __iter__(self) -> Iterator[Sample]:
        for index in range(len(self)):
            yield self[index]

    @property
    def num_classes(self) -> int:
        return self.info.num_classes

    def _check_index(self, index: int) -> int:
        n = len(self)
        index = int(index)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"sample index out of range for {type(self).__name__} of {n} samples")
        return index

    def __repr__(self) -> str:
        return f"{type(self).__name__}(split={self.split!r}, samples={len(self)}, classes={self.num_classes})"


class LabelMap:
    """Turns the ids a dataset stores on disk into train ids, via a 256-entry lookup table.

    `table[raw] = train id`, 255 for void, -1 for ids that should not occur (reported as out of range).
    """

    def __init__(self, table: np.ndarray) -> None:
        if table.shape != (256,):
            raise ConfigError("a LabelMap table has one entry per uint8 id (256)")
        self.table = table.astype(np.int16)

    @classmethod
    def identity(cls, num_classes: int, void_ids: Sequence[int] = (IGNORE_INDEX,)) -> LabelMap:
        """Ids 0..num_classes-1 are kept, `void_ids` become 255, anything else is an error."""
        table = np.full(256, -1, np.int16)
        table[:num_classes] = np.arange(num_classes)
        for void in void_ids:
            if not 0 <= void <= 255:
                raise ConfigError(f"void id {void} does not fit an 8-bit label")
            if void < num_classes:
                raise ConfigError(f"void id {void} collides with class id {void} of {num_classes} classes")
            table[void] = IGNORE_INDEX
        return cls(table)

    def __call__(self, raw: np.ndarray, path: Path) -> np.ndarray:
        if raw.dtype != np.uint8:
            if raw.size and (raw.min() < 0 or raw.max() > 255):
                bad = int(raw.max()) if raw.max() > 255 else int(raw.min())
                raise DataError(f"label {path} has class id {bad}, outside 0..255")
            raw = raw.astype(np.uint8)
        mapped = self.table[raw]
        invalid = mapped < 0
        if invalid.any():
            ids = np.unique(raw[invalid]).tolist()
            class_ids = np.flatnonzero((self.table >= 0) & (self.table != IGNORE_INDEX))
            void_ids = np.flatnonzero(self.table == IGNORE_INDEX).tolist()
            raise DataError(
                f"label {path} has class id(s) {ids} ({int(invalid.sum())} pixels) that are neither a class id "
                f"(0..{int(class_ids.max()) if class_ids.size else -1}) nor a void id {void_ids}; "
                f"check the label file or the dataset's class list (classes.json)"
            )
        return mapped.astype(np.uint8)


def read_image(path: Path) -> np.ndarray:
    """Read an image file as RGB uint8, or raise DataError naming it."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"image {path} does not exist")
    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise DataError(f"image {path} is unreadable or corrupt (OpenCV could not decode it)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class FileDataset(SegmentationDataset):
    """A dataset of (image file, label file) pairs; subclasses only find the pairs and give the LabelMap."""

    def __init__(
        self,
        pairs: Sequence[tuple[Path, Path]],
        info: DatasetInfo,
        label_map: LabelMap,
        split: str,
        root: Path,
    ) -> None:
        self.pairs = [(Path(image), Path(label)) for image, label in pairs]
        self.info = info
        self.label_map = label_map
        self.split = split
        self.root = Path(root)

    def __len__(self) -> int:
        return len(self.pairs)

    def name_of(self, index: int) -> str:
        return self.pairs[self._check_index(index)][0].stem

    def _load(self, index: int) -> Sample:
        image_path, label_path = self.pairs[index]
        image = read_image(image_path)
        if not label_path.is_file():
            raise DataError(f"image {image_path} has no label: expected {label_path}")
        label = self.label_map(read_label_png(label_path), label_path)
        if label.shape != image.shape[:2]:
            raise DataError(
                f"label {label_path} is {label.shape[1]}x{label.shape[0]} (WxH) but its image {image_path} is "
                f"{image.shape[1]}x{image.shape[0]}"
            )
        return image, label


def validate_dataset(dataset: SegmentationDataset, limit: int | None = None) -> int:
    """Load every sample (or the first `limit`); raise the first problem as DataError, else return the count checked.

    Messages start with the split and sample ("val sample 3 (0001TP_008550): ...") and name the file, so a bad
    label is found before training or evaluation starts, not in a DataLoader worker after an epoch."""
    count = len(dataset) if limit is None else min(len(dataset), int(limit))
    split = getattr(dataset, "split", "")
    if len(dataset) == 0:
        raise DataError(f"{dataset!r} has no samples")
    labelled = False  # some pixel of some label is a class, not void
    for index in range(count):
        where = f"{split} sample {index} ({dataset.name_of(index)})".lstrip()
        try:
            image, label = dataset[index]
        except DataError as exc:
            raise DataError(f"{where}: {exc}") from exc
        bad = (label >= dataset.num_classes) & (label != IGNORE_INDEX)
        if bad.any():
            raise DataError(
                f"{where} has label ids {np.unique(label[bad]).tolist()} outside the classes "
                f"0..{dataset.num_classes - 1} (255 = ignore)"
            )
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or image.shape[:2] != label.shape:
            raise DataError(f"{where} has image {image.shape} and label {label.shape}; they must match in (H, W)")
        labelled = labelled or bool((label != IGNORE_INDEX).any())
    if not labelled:  # training would score NaN every epoch and never keep a best.pt
        raise DataError(f"every label of the {split or 'dataset'} split is void ({count} checked, all pixels 255 or "
                        "the dataset's ignore_index): it has nothing to learn or score; label some pixels, or check "
                        "that classes.json's ignore_index is not a class id")
    return count
