"""SyntheticScenes: a deterministic map-style dataset of rendered street scenes (no files, no download)."""

from __future__ import annotations

from edgeseg.data.base import Sample, SegmentationDataset
from edgeseg.data.scenes.classes import SYNTHETIC_INFO
from edgeseg.data.scenes.render import DEFAULT_SIZE, check_size, render_scene, scene_rng
from edgeseg.errors import ConfigError

DEFAULT_COUNTS = {"train": 512, "val": 64}


class SyntheticScenes(SegmentationDataset):
    """`count` deterministic street scenes of `size` (H, W); `seed` and `split` pick disjoint streams of scenes."""

    info = SYNTHETIC_INFO

    def __init__(
        self, count: int | None = None, size: tuple[int, int] = DEFAULT_SIZE, seed: int = 0, split: str = "train"
    ) -> None:
        if count is None:
            count = DEFAULT_COUNTS.get(split, DEFAULT_COUNTS["val"])
        if int(count) < 1:
            raise ConfigError(f"SyntheticScenes needs count >= 1, got {count}")
        if int(seed) < 0:
            raise ConfigError(f"SyntheticScenes needs seed >= 0, got {seed}")
        self.count, self.size, self.seed, self.split = int(count), check_size(size), int(seed), str(split)

    def __len__(self) -> int:
        return self.count

    def name_of(self, index: int) -> str:
        return f"synthetic_{self.split}_{self._check_index(index):05d}"

    def _load(self, index: int) -> Sample:
        return render_scene(scene_rng(self.seed, self.split, index), self.size)

