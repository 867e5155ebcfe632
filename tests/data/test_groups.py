from __future__ import annotations

import logging
import string

import numpy as np
import pytest

from edgeseg.data import open_dataset
from edgeseg.data.groups import (
    Grouping,
    group_counts,
    holdout_split,
    read_group_file,
    shared_groups,
    split_by_groups,
    warn_shared_groups,
)
from edgeseg.errors import ConfigError, DataError

CAMVID_STYLE = ["0016E5_07959", "0001TP_006690", "0016E5_08640", "0006R0_f02400", "Seq05VD_f00120",
                "0001TP_008550"]


def test_default_pattern_takes_the_prefix_before_the_first_underscore():
    group_of = Grouping()
    assert [group_of(n) for n in CAMVID_STYLE] == ["0016E5", "0001TP", "0016E5", "0006R0", "Seq05VD", "0001TP"]
    assert group_of("aachen_000000_000019_leftImg8bit") == "aachen"  # Cityscapes: the city


def test_camvid_style_split_by_hand():
    train, val = split_by_groups(CAMVID_STYLE, ["0016E5", "Seq05VD"])
    assert train == ["0001TP_006690", "0006R0_f02400", "0001TP_008550"]
    assert val == ["0016E5_07959", "0016E5_08640", "Seq05VD_f00120"]
    assert shared_groups(train, val) == {}
    # today's CamVid split: val frames from a sequence that training also uses
    assert shared_groups(["0016E5_1", "0016E5_2", "0001TP_1"], ["0016E5_9"]) == {"0016E5": (2, 1)}
    assert group_counts(CAMVID_STYLE) == {"0016E5": 2, "0001TP": 2, "0006R0": 1, "Seq05VD": 1}


@pytest.mark.parametrize("seed", range(25))
def test_no_group_is_ever_on_both_sides(seed):
    rng = np.random.default_rng(seed)
    letters = list(string.ascii_letters + string.digits)
    groups = ["".join(rng.choice(letters, rng.integers(1, 6))) for _ in range(rng.integers(2, 9))]
    groups = sorted(set(groups))
    if len(groups) < 2:
        groups.append(groups[0] + "x")
    names = [f"{rng.choice(groups)}_{i:05d}{'_' + str(rng.integers(99)) if rng.random() < 0.3 else ''}"
             for i in range(int(rng.integers(2, 80)))]
    present = sorted({n.split("_", 1)[0] for n in names})
    if len(present) < 2:
        pytest.skip("drew one group only")  # cannot happen often; the other seeds cover the property
    held = list(rng.choice(present, rng.integers(1, len(present)), replace=False))
    train, val = split_by_groups(names, held)
    train_groups = {n.split("_", 1)[0] for n in train}
    val_groups = {n.split("_", 1)[0] for n in val}
    assert not train_groups & val_groups
    assert val_groups == set(held)
    assert sorted(train + val) == sorted(names) and len(train) + len(val) == len(names)
    assert shared_groups(train, val) == {}
    # moving one val frame into train creates exactly one shared group
    moved = val[0]
    shared = shared_groups(train + [moved], val[1:])
    g = moved.split("_", 1)[0]
    assert set(shared) == ({g} if any(v.split("_", 1)[0] == g for v in val[1:]) else set())


def test_custom_pattern_and_errors():
    names = ["city-a/f1", "city-b/f2", "city-a/f3"]
    grouping = Grouping(r"^city-(\w+)/")
    assert split_by_groups(names, ["b"], grouping) == (["city-a/f1", "city-a/f3"], ["city-b/f2"])
    with pytest.raises(ConfigError, match="exactly one capture group"):
        Grouping(r"^[^_]+_")
    with pytest.raises(ConfigError, match="not a valid regular expression"):
        Grouping(r"^(")
    with pytest.raises(DataError, match="does not match --group-pattern"):
        Grouping()("nounderscore")
    with pytest.raises(ConfigError, match=r"no sample is in group\(s\) \['0016E6'\]"):
        split_by_groups(CAMVID_STYLE, ["0016E6"])  # a typo must not give an empty val set
    with pytest.raises(ConfigError, match="holds every sample"):
        split_by_groups(CAMVID_STYLE, ["0016E5", "0001TP", "0006R0", "Seq05VD"])
    with pytest.raises(ConfigError, match="at least one group"):
        split_by_groups(CAMVID_STYLE, [])


def test_group_file(tmp_path):
    path = tmp_path / "groups.txt"
    path.write_text("# name group\nimg1.png drive_a\nimg2, drive_b\n\nimg3 drive_a  # comment\n")
    assert read_group_file(path) == {"img1.png": "drive_a", "img2": "drive_b", "img3": "drive_a"}
    grouping = Grouping.from_file(path)
    assert grouping("img1") == "drive_a"  # listed with its extension, asked by stem
    assert split_by_groups(["img1", "img2", "img3"], ["drive_a"], grouping) == (["img2"], ["img1", "img3"])
    with pytest.raises(DataError, match="no group for sample 'img9'"):
        grouping("img9")
    path.write_text("img1 a b\n")
    with pytest.raises(DataError, match="line 1: expected 'NAME GROUP'"):
        read_group_file(path)
    path.write_text("img1 a\nimg1 b\n")
    with pytest.raises(DataError, match="line 2: img1 is already in group a"):
        read_group_file(path)
    with pytest.raises(DataError, match="cannot be read"):
        read_group_file(tmp_path / "missing.txt")


def test_warning_names_the_shared_groups(caplog):
    with caplog.at_level(logging.WARNING, logger="edgeseg.data.groups"):
        assert warn_shared_groups(["0016E5_1", "0001TP_1"], ["0016E5_2"]) == {"0016E5": (1, 1)}
    assert "0016E5 (1 train / 1 val frames)" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="edgeseg.data.groups"):
        warn_shared_groups(["0001TP_1"], ["0016E5_2"])
    assert caplog.text == ""


def _write_folder(root, split, names, rng):
    import cv2

    (root / split / "images").mkdir(parents=True)
    (root / split / "labels").mkdir(parents=True)
    for name in names:
        cv2.imwrite(str(root / split / "images" / f"{name}.png"), rng.integers(0, 256, (8, 10, 3), dtype=np.uint8))
        cv2.imwrite(str(root / split / "labels" / f"{name}.png"), rng.integers(0, 3, (8, 10), dtype=np.uint8))


def test_holdout_split_pools_splits_and_loads_the_right_samples(tmp_path):
    rng = np.random.default_rng(0)
    # CamVid's shape: val is one drive that training shares; hold out another drive instead
    _write_folder(tmp_path, "train", ["A_1", "A_2", "B_1", "C_1", "C_2"], rng)
    _write_folder(tmp_path, "val", ["A_3", "A_4"], rng)
    splits = [open_dataset(str(tmp_path), split) for split in ("train", "val")]
    assert warn_shared_groups([splits[0].name_of(i) for i in range(5)], ["A_3", "A_4"]) == {"A": (2, 2)}
    train, val = holdout_split(splits, ["C"])
    assert [train.name_of(i) for i in range(len(train))] == ["A_1", "A_2", "B_1", "A_3", "A_4"]
    assert [val.name_of(i) for i in range(len(val))] == ["C_1", "C_2"]
    assert (train.split, val.split, train.info) == ("train", "val", splits[0].info)
    # a view returns exactly the underlying sample
    source = {d.name_of(i): (d, i) for d in splits for i in range(len(d))}
    for view in (train, val):
        for i in range(len(view)):
            dataset, inner = source[view.name_of(i)]
            np.testing.assert_array_equal(view[i][0], dataset[inner][0])
            np.testing.assert_array_equal(view[i][1], dataset[inner][1])
    with pytest.raises(DataError, match="more than once"):
        holdout_split([splits[0], splits[0]], ["C"])
