"""The batch axis is dynamic by default (--max-batch N): the ONNX graph takes 1..N frames, the runtime batches up to N
frames in one backend call, and the masks equal those of one call per frame."""

import numpy as np
import onnx
import pytest

from edgeseg.cli import main
from edgeseg.errors import ConfigError
from edgeseg.export.formats import check_request, option_default
from edgeseg.export.onnx_export import onnx_from_torch
from edgeseg.export.onnx_io import read_meta
from edgeseg.export.pipeline import export_model
from edgeseg.runtime import Segmenter


def _batch_dim(path):
    dim = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim[0]
    return dim.dim_param or dim.dim_value


def test_default_export_has_a_dynamic_batch_axis(tiny_ckpt, tmp_path, frames, run_onnx):
    export_model(tiny_ckpt, tmp_path, progress=False)
    path = tmp_path / "model.onnx"
    n = option_default("max_batch")
    assert n > 1 and isinstance(_batch_dim(path), str)  # a named (dynamic) axis, not 1
    meta = read_meta(path)
    assert meta.dynamic_shapes == ((1, 3, 64, 64), (1, 3, 64, 64), (n, 3, 64, 64))  # min 1 / opt 1 / max N
    from edgeseg.export.frames import float_plan

    batch = float_plan(meta).preprocess(frames[:3])
    together = run_onnx(path, batch)
    alone = np.concatenate([run_onnx(path, batch[i : i + 1]) for i in range(3)])
    np.testing.assert_allclose(together, alone, rtol=1e-5, atol=1e-5)


def test_max_batch_one_gives_a_static_graph(tmp_path, tiny_model, tiny_meta):
    path = onnx_from_torch(tiny_model, tiny_meta, tmp_path / "m.onnx", max_batch=1)
    assert _batch_dim(path) == 1 and read_meta(path).dynamic_shapes is None


class _CountingBackend:
    """Wraps a backend's infer to count calls and the batch sizes it got."""

    def __init__(self, backend):
        self.sizes = []
        inner = backend.infer

        def infer(batch):
            self.sizes.append(batch.shape[0])
            return inner(batch)

        backend.infer = infer


def test_segmenter_batches_three_frames_into_one_call(tmp_path, tiny_model, tiny_meta, frames):
    path = onnx_from_torch(tiny_model, tiny_meta, tmp_path / "m.onnx", max_batch=4)
    with Segmenter(path, backend="onnxruntime") as seg:
        assert seg.max_batch == 4
        counter = _CountingBackend(seg.backend)
        together = seg.predict(frames[:3])
        assert counter.sizes == [3]  # one backend call for the three frames
        alone = [seg.predict([frame])[0] for frame in frames[:3]]
        assert counter.sizes == [3, 1, 1, 1]
    for a, b in zip(together, alone):
        np.testing.assert_array_equal(a, b)


def test_segmenter_splits_at_the_exported_max_batch(tmp_path, tiny_model, tiny_meta, frames):
    path = onnx_from_torch(tiny_model, tiny_meta, tmp_path / "m.onnx", max_batch=2)
    with Segmenter(path, backend="onnxruntime") as seg:
        counter = _CountingBackend(seg.backend)
        masks = seg.predict(frames[:5])
    assert counter.sizes == [2, 2, 1] and len(masks) == 5


def test_max_batch_and_dynamic_exclude_each_other():
    with pytest.raises(ConfigError, match="either --max-batch or --dynamic"):
        check_request(["fp32"], max_batch=2, dynamic=[(1, 3, 64, 64), (1, 3, 64, 64), (2, 3, 64, 64)])
    with pytest.raises(ConfigError, match="--max-batch must be >= 1"):
        check_request(["fp32"], max_batch=0)
    assert check_request(["fp32"]).options["max_batch"] == option_default("max_batch")


def test_cli_refuses_max_batch_zero_before_loading(tmp_path, capsys):
    code = main(["export", str(tmp_path / "absent.pt"), "--out", str(tmp_path / "out"), "--max-batch", "0"])
    assert code == 2 and "edgeseg export: error:" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
