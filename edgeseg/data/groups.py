"""Group hold-out: keep every frame of a group (a drive, a video sequence, a city) on one side of a train/val split.

Frames of one drive are near-duplicates of each other, so a val split that shares drives with training scores
memory, not generalisation: CamVid's val (101 frames of sequence 0016E5) shares its sequence with 204 of the 367
training frames. The group of a frame comes from

- its name, through a regex with one capture group (`DEFAULT_GROUP_PATTERN`: the prefix before the first '_', so
  0016E5_07959 -> 0016E5, Cityscapes' aachen_000000_000019 -> aachen), or
- a group file: one `NAME GROUP` pair a line (whitespace or a comma between them, '#' starts a comment), for
  datasets whose names do not carry it.

Names are sample names (`SegmentationDataset.name_of`: file stems); a name given with an extension in a group file
also matches its stem. Numpy only, no torch.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from edgeseg.data.base import Sample, SegmentationDataset
from edgeseg.errors import ConfigError, DataError

log = logging.getLogger(__name__)

DEFAULT_GROUP_PATTERN = r"^([^_]+)_"


class Grouping:
    """name -> group, from a regex with one capture group (searched in the name) or from a NAME -> GROUP table.

    `flag` names the option the pattern or table came from, for error messages."""

    def __init__(self, pattern: str | None = DEFAULT_GROUP_PATTERN, table: dict[str, str] | None = None,
                 flag: str = "--group-pattern") -> None:
        self.flag = flag
        self.table = None
        if table is not None:  # a name listed with its extension also answers to its stem (sample names are stems)
            self.table = {Path(name).stem: group for name, group in table.items() if Path(name).suffix}
            self.table.update(table)
        self.regex = None if self.table is not None else _compile(pattern or DEFAULT_GROUP_PATTERN, flag)

    @classmethod
    def from_file(cls, path: str | Path, flag: str = "--group-file") -> Grouping:
        return cls(table=read_group_file(path, flag), flag=f"{flag} {path}")

    def __call__(self, name: str) -> str:
        if self.table is not None:
            group = self.table.get(name)
            if group is None:
                raise DataError(f"{self.flag} gives no group for sample {name!r}; add a line '{name} GROUP'")
            return group
        match = self.regex.search(name)
        if match is None or not match.group(1):
            raise DataError(f"sample name {name!r} does not match {self.flag} {self.regex.pattern!r}, so its group is "
                            f"unknown; give a pattern whose capture group matches every name, or a group file")
        return match.group(1)

    def __repr__(self) -> str:
        source = f"{len(self.table)} names" if self.table is not None else repr(self.regex.pattern)
        return f"Grouping({source})"


def _compile(pattern: str, flag: str) -> re.Pattern:
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"{flag} {pattern!r} is not a valid regular expression: {exc}") from exc
    if regex.groups != 1:
        raise ConfigError(f"{flag} {pattern!r} must have exactly one capture group (the group name), "
                          f"it has {regex.groups}; e.g. {DEFAULT_GROUP_PATTERN!r}")
    return regex


def read_group_file(path: str | Path, flag: str = "--group-file") -> dict[str, str]:
    """{name: group} from a file of `NAME GROUP` lines; DataError naming the file and line when one is malformed."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise DataError(f"{flag} {path} cannot be read: {exc.strerror or exc}") from exc
    table: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.replace(",", " ").split()
        if len(fields) != 2:
            raise DataError(f"{flag} {path} line {number}: expected 'NAME GROUP', got {line!r}")
        name, group = fields
        if table.get(name, group) != group:
            raise DataError(f"{flag} {path} line {number}: {name} is already in group {table[name]}, not {group}")
        table[name] = group
    if not table:
        raise DataError(f"{flag} {path} lists no 'NAME GROUP' lines")
    return table


def _grouping(grouping: Grouping | str | None) -> Grouping:
    return grouping if isinstance(grouping, Grouping) else Grouping(grouping)


def group_counts(names: Iterable[str], grouping: Grouping | str | None = None) -> Counter:
    """{group: number of names in it}."""
    group_of = _grouping(grouping)
    return Counter(group_of(name) for name in names)


def split_by_groups(names: Sequence[str], val_groups: Iterable[str], grouping: Grouping | str | None = None,
                    flag: str = "--val-groups") -> tuple[list[str], list[str]]:
    """(train names, val names): every name whose group is in `val_groups` goes to val, the rest to train.

    Order within each side is the order of `names`. ConfigError when a val group has no frame (a typo would
    otherwise silently give an empty or smaller val set) or when either side ends up empty."""
    group_of = _grouping(grouping)
    wanted = set(val_groups)
    if not wanted:
        raise ConfigError(f"{flag} needs at least one group")
    groups = [group_of(name) for name in names]
    present = set(groups)
    missing = sorted(wanted - present)
    if missing:
        raise ConfigError(f"{flag}: no sample is in group(s) {missing}; the groups are {sorted(present)}")
    train = [name for name, group in zip(names, groups) if group not in wanted]
    val = [name for name, group in zip(names, groups) if group in wanted]
    if not train:
        raise ConfigError(f"{flag} {sorted(wanted)} holds every sample; leave at least one group for training")
    return train, val


def shared_groups(train_names: Iterable[str], val_names: Iterable[str],
                  grouping: Grouping | str | None = None) -> dict[str, tuple[int, int]]:
    """{group: (train frames, val frames)} for each group on both sides; empty when the split is clean."""
    group_of = _grouping(grouping)
    train, val = group_counts(train_names, group_of), group_counts(val_names, group_of)
    return {group: (train[group], val[group]) for group in sorted(train.keys() & val.keys())}


def warn_shared_groups(train_names: Iterable[str], val_names: Iterable[str],
                       grouping: Grouping | str | None = None) -> dict[str, tuple[int, int]]:
    """Log a warning naming each group that train and val share (val then overstates generalisation)."""
    shared = shared_groups(train_names, val_names, grouping)
    if shared:
        detail = ", ".join(f"{group} ({n_train} train / {n_val} val frames)" for group, (n_train, n_val)
                           in shared.items())
        log.warning("train and val share %d group(s): %s; val scores frames from drives the model trained on and "
                    "will overstate how it does on new ones (hold out whole groups with --val-groups)",
                    len(shared), detail)
    return shared


class SubsetDataset(SegmentationDataset):
    """Some samples of one or more datasets with the same classes, as one dataset (a view: nothing is copied)."""

    def __init__(self, items: Sequence[tuple[SegmentationDataset, int]], split: str) -> None:
        if not items:
            raise ConfigError(f"the {split} split has no samples")
        self.items = list(items)
        self.info = self.items[0][0].info
        self.split = split
        for dataset, _ in self.items:
            if dataset.info.classes != self.info.classes:
                raise DataError(f"cannot pool {dataset!r} with classes {list(dataset.info.classes)} into the "
                                f"{split} split, whose classes are {list(self.info.classes)}")

    def __len__(self) -> int:
        return len(self.items)

    def name_of(self, index: int) -> str:
        dataset, inner = self.items[self._check_index(index)]
        return dataset.name_of(inner)

    def _load(self, index: int) -> Sample:
        dataset, inner = self.items[index]
        return dataset[inner]


def holdout_split(datasets: Sequence[SegmentationDataset], val_groups: Iterable[str],
                  grouping: Grouping | str | None = None,
                  flag: str = "--val-groups") -> tuple[SubsetDataset, SubsetDataset]:
    """Pool `datasets` (e.g. a folder's train and val splits) and hold out whole groups: (train view, val view).

    Sample names must be unique across the pooled datasets (a name on both sides could not be told apart)."""
    group_of = _grouping(grouping)
    items = [(dataset, index) for dataset in datasets for index in range(len(dataset))]
    names = [dataset.name_of(index) for dataset, index in items]
    repeated = [name for name, count in Counter(names).items() if count > 1]
    if repeated:
        raise DataError(f"{flag}: sample name(s) {repeated[:5]} occur more than once in the pooled splits")
    train_names, _ = split_by_groups(names, val_groups, group_of, flag)
    is_train = set(train_names)
    train = [item for item, name in zip(items, names) if name in is_train]
    val = [item for item, name in zip(items, names) if name not in is_train]
    return SubsetDataset(train, "train"), SubsetDataset(val, "val")
