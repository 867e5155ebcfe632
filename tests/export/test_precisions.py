import numpy as np
import onnx
import pytest

from edgeseg.errors import DataError, ExportError
from edgeseg.export.fp16 import fp16_from_onnx
from edgeseg.runtime.plan import ProcessingPlan
from edgeseg.export.int8 import qdq_from_onnx
from edgeseg.export.onnx_io import read_meta
from edgeseg.export.parity import compare


@pytest.fixture(scope="module")
def fp16_onnx(tmp_path_factory, fp32_onnx):
    return fp16_from_onnx(fp32_onnx, tmp_path_factory.mktemp("fp16") / "model_fp16.onnx")


@pytest.fixture(scope="module")
def int8_onnx(tmp_path_factory, fp32_onnx, frames):
    return qdq_from_onnx(fp32_onnx, tmp_path_factory.mktemp("int8") / "model_int8.onnx", frames, progress=False)


def _batch(frames, meta):
    return [preprocess(f, meta) for f in frames]


def test_fp16_graph_has_fp16_weights_and_fp32_io(fp16_onnx):
    model = onnx.load(str(fp16_onnx))
    conv_weights = {n.input[1] for n in model.graph.node if n.op_type in ("Conv", "ConvTranspose")}
    types = {t.name: t.data_type for t in model.graph.initializer}
    assert conv_weights and all(types[w] == onnx.TensorProto.FLOAT16 for w in conv_weights)
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert read_meta(fp16_onnx).precision == "fp16"


def test_fp16_agrees_with_fp32(fp32_onnx, fp16_onnx, frames, run_onnx):
    meta = read_meta(fp32_onnx)
    for x in _batch(frames, meta):
        err, agree = compare(run_onnx(fp32_onnx, x), run_onnx(fp16_onnx, x))
        assert agree >= 0.995 and err < 0.05


def test_int8_graph_has_qdq_around_convs(int8_onnx):
    model = onnx.load(str(int8_onnx))
    producers = {o: n for n in model.graph.node for o in n.output}
    convs = [n for n in model.graph.node if n.op_type in ("Conv", "ConvTranspose")]
    assert len(convs) == 4
    for conv in convs:
        act, weight = producers[conv.input[0]], producers[conv.input[1]]
        assert act.op_type == "DequantizeLinear" and producers[act.input[0]].op_type == "QuantizeLinear"
        assert weight.op_type == "DequantizeLinear"
        axis = next(a.i for a in weight.attribute if a.name == "axis")
        assert axis == (1 if conv.op_type == "ConvTranspose" else 0)  # output channels
        zero = next(t for t in model.graph.initializer if t.name == act.input[2])
        assert zero.data_type == onnx.TensorProto.INT8 and not np.any(onnx.numpy_helper.to_array(zero))  # symmetric
    meta = read_meta(int8_onnx)
    assert meta.precision == "int8" and meta.quantization["calib_frames"] == 6


def test_int8_agrees_reasonably_with_fp32(fp32_onnx, int8_onnx, frames, run_onnx):
    meta = read_meta(fp32_onnx)
    agreements = [compare(run_onnx(fp32_onnx, x), run_onnx(int8_onnx, x))[1] for x in _batch(frames, meta)]
    assert np.mean(agreements) >= 0.95


def test_int8_keep_head_float_and_sensitivity(tmp_path, fp32_onnx, frames):
    path = qdq_from_onnx(fp32_onnx, tmp_path / "q.onnx", frames, method="minmax", keep_head_float=True,
                         sensitivity_top_k=1, progress=False)
    info = read_meta(path).quantization
    assert {"/classifier/Conv", "/up/ConvTranspose"} <= set(info["excluded_nodes"])
    assert len(info["excluded_nodes"]) == 3 and len(info["sensitivity"]) == 2
    model = onnx.load(str(path))
    up = next(n for n in model.graph.node if n.op_type == "ConvTranspose")
    assert up.input[1] == "up.weight"  # float weight, no DequantizeLinear


def test_int8_calib_folder_without_images(tmp_path, fp32_onnx):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    (tmp_path / "empty" / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match="no readable frames"):
        qdq_from_onnx(fp32_onnx, tmp_path / "q.onnx", tmp_path / "empty", progress=False)


def test_int8_calib_from_video(tmp_path, fp32_onnx, frames):
    import cv2

    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 5, (120, 90))
    for frame in frames:
        writer.write(frame)
    writer.release()
    path = qdq_from_onnx(fp32_onnx, tmp_path / "q.onnx", video, num_frames=4, progress=False)
    assert read_meta(path).quantization["calib_frames"] == 4


def test_fp16_refuses_non_fp32(fp16_onnx, tmp_path):
    with pytest.raises(ExportError, match="needs an FP32 model"):
        fp16_from_onnx(fp16_onnx, tmp_path / "x.onnx")


def preprocess(frame, meta):
    """One frame -> the float graph's (1, 3, H, W) input, by the runtime's plan."""
    return ProcessingPlan.from_meta(meta, np.float32).preprocess([frame])
