"""ModelMeta read from files written by other EdgeSeg versions."""

import json

import pytest

from edgeseg.config import ModelMeta
from edgeseg.errors import ModelFileError

# Metadata as EdgeSeg wrote it before ignore_index left ModelMeta (written by hand, not by the code under test).
OLDER = {"model_name": "fcn8s_resnet18", "classes": ["road", "car"], "palette": [[128, 64, 128], [0, 0, 142]],
         "input_size": [360, 480], "ignore_index": 255, "output_stride": 8}


def test_metadata_with_the_retired_ignore_index_still_loads():
    meta = ModelMeta.from_json(json.dumps(OLDER))
    assert (meta.classes, meta.input_size, meta.output_stride) == (("road", "car"), (360, 480), 8)
    assert "ignore_index" not in meta.to_dict()


def test_a_key_no_version_wrote_is_still_refused():
    with pytest.raises(ModelFileError, match=r"unknown keys \['void_colour'\]"):
        ModelMeta.from_dict({**OLDER, "void_colour": 0})
