"""The TensorRT device path (frames up as uint8, masks down as uint8) on a real GPU, compared with ONNX Runtime on the
same .onnx; Segmenter routing runs everywhere. The same path on a host-memory stand-in (no GPU) is tested in
test_gpu_tensorrt_fakes.py."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from edgeseg._optional import is_available
from edgeseg.errors import CudaError
from edgeseg.runtime import ops
from edgeseg.runtime.gpu import cuda_check, gpu_available
from edgeseg.runtime.segmenter import Segmenter

from .onnx_graphs import random_scene, write_pixel_classifier
from .trt_support import engine_skip_reason

pytest.importorskip("onnxruntime")


def _gpu_skip_reason() -> str | None:
    """Decided before any engine is built or run: a missing GPU, CUDA kernels or TensorRT, or a TensorRT flavour
    that does not support this GPU (its own support list), each said exactly."""
    if not gpu_available():
        return "needs an NVIDIA GPU: cuda.bindings cudaGetDeviceCount() found no device (or cuda-python is missing)"
    if not ops.cuda_available():
        return "edgeseg._C was built without its CUDA kernels; rebuild with nvcc on PATH"
    return engine_skip_reason("auto")  # the flavour the exporter picks, as `models` builds with it


GPU_SKIP = _gpu_skip_reason()
needs_gpu = pytest.mark.skipif(GPU_SKIP is not None, reason=GPU_SKIP or "")


# ----- everywhere (the buffer cache and the CUDA layer: tests/runtime/test_gpu_layer.py) --------------------------


@pytest.mark.skipif(not is_available("cuda.bindings"), reason="cuda-python (cuda.bindings) is not installed")
def test_cuda_check_names_the_call():
    from cuda.bindings import runtime as cudart

    assert cuda_check((cudart.cudaError_t.cudaSuccess, 7), "x") == 7
    with pytest.raises(CudaError, match="cudaMalloc failed: .*invalid argument"):
        cuda_check((cudart.cudaError_t.cudaErrorInvalidValue, None), "cudaMalloc")


def test_segmenter_uses_the_device_path_only_when_the_backend_offers_it(tmp_path):
    from edgeseg.runtime.backends.onnxruntime import OnnxRuntimeBackend

    class DeviceBackend(OnnxRuntimeBackend):
        frames_on_device = True
        stage_ms = {"preprocess": 1.0, "infer": 2.0, "postprocess": 3.0}

        def predict_frames(self, frames):
            return [np.full(self.meta.input_size, 7, np.uint8) for _ in frames]

    path = write_pixel_classifier(tmp_path / "m.onnx")
    frame = random_scene(np.random.default_rng(0), 30, 40)
    with Segmenter(DeviceBackend(path)) as seg:
        assert (seg.predict([frame])[0] == 7).all()
        assert seg.stage_ms == {"preprocess": 1.0, "infer": 2.0, "postprocess": 3.0}
    DeviceBackend.frames_on_device = False
    with Segmenter(DeviceBackend(path)) as seg:
        assert (seg.predict([frame])[0] != 7).all()  # 4 classes: 7 is never a real class id
    with Segmenter(path) as seg:  # plain ONNX Runtime: the CPU path
        assert not getattr(seg.backend, "frames_on_device", False)
        assert seg.predict([frame])[0].max() < 4


def test_tensorrt_backend_imports_without_torch():
    code = textwrap.dedent(
        """
        import importlib.abc
        import sys

        tried = []

        class NoTorch(importlib.abc.MetaPathFinder):  # records and refuses every import of torch
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    tried.append(name)
                    raise ModuleNotFoundError(name, name=name)
                return None

        sys.meta_path.insert(0, NoTorch())
        import edgeseg.runtime.gpu, edgeseg.runtime.gpu.pycuda_api, edgeseg.runtime.backends.tensorrt
        import edgeseg.runtime.segmenter
        assert tried == [], f"tried to import {tried}"
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ----- on the GPU -----------------------------------------------------------------------------------------------

SIZE = (64, 96)
PROFILE = [(1, 3, *SIZE), (2, 3, *SIZE), (4, 3, *SIZE)]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """variant -> (.onnx, .engine), built on first use (the fp16 variant needs onnxconverter-common)."""
    if GPU_SKIP is not None:
        pytest.skip(GPU_SKIP)
    from edgeseg.export.engine import engine_from_onnx
    from edgeseg.export.graph_edits import add_uint8_input
    from edgeseg.export.onnx_io import save_onnx

    d = tmp_path_factory.mktemp("gpu_path")
    built: dict = {}

    def make(variant):
        if variant not in built:
            logits = d / "logits.onnx"
            if not logits.exists():
                write_pixel_classifier(logits, SIZE)
            if variant == "logits":
                src = logits
            elif variant == "classmap":
                src = write_pixel_classifier(d / "classmap.onnx", SIZE, argmax=True)
            elif variant == "stride8":
                src = write_pixel_classifier(d / "stride8.onnx", SIZE, stride=8)
            elif variant == "fp16":  # float16 input and logits
                pytest.importorskip("onnxconverter_common", reason="the fp16 variant needs onnxconverter-common")
                from edgeseg.export.fp16 import fp16_from_onnx

                src = fp16_from_onnx(logits, d / "fp16.onnx", keep_io_types=False)
            else:
                src = save_onnx(add_uint8_input(logits), d / "uint8_input.onnx")
            built[variant] = (src, engine_from_onnx(src, src.with_suffix(".engine"), profile=PROFILE))
        return built[variant]

    return make


def _frames(seed=0):
    rng = np.random.default_rng(seed)
    big = random_scene(rng, 480, 640)
    return [random_scene(rng, *SIZE), random_scene(rng, 61, 47), big[10:300, 20:500]]  # the last one is a crop


@pytest.mark.gpu
@pytest.mark.tensorrt
@needs_gpu
@pytest.mark.parametrize("variant", ["logits", "classmap", "stride8", "fp16", "uint8_input"])
@pytest.mark.parametrize("cuda_graph", [False, True], ids=["stream", "graph"])
def test_engine_on_gpu_matches_onnxruntime(models, variant, cuda_graph):
    onnx_path, engine_path = models(variant)
    frames = _frames()
    with Segmenter(onnx_path) as cpu:
        want = cpu.predict(frames)
    with Segmenter(engine_path, cuda_graph=cuda_graph) as seg:
        assert seg.backend.frames_on_device
        got = seg.predict(frames)
        assert set(seg.stage_ms) == {"preprocess", "infer", "postprocess"} and seg.stage_ms["infer"] > 0
        allocations = seg.backend._buffers.allocations
        again = [seg.predict(frames)[0] for _ in range(3)]  # graph: warm-up, capture, then replays
        assert seg.backend._buffers.allocations == allocations, "same shapes must reuse every buffer"
        graphs = seg.backend.graphs
        if cuda_graph:  # fails when capture did not happen, whatever was logged
            assert graphs.failure is None, f"CUDA graph capture failed: {graphs.failure}"
            assert graphs.captures == 1 and graphs.launches == 3
        else:
            assert graphs is None
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == np.uint8
        assert np.mean(g == w) >= 0.999, f"{variant}: {np.mean(g == w):.4%} of pixels agree with ONNX Runtime"
    for a in again:
        np.testing.assert_array_equal(a, got[0])


@pytest.mark.gpu
@pytest.mark.tensorrt
@needs_gpu
def test_masks_are_copies_and_batches_split_at_the_profile_max(models):
    _, engine_path = models("logits")
    rng = np.random.default_rng(5)
    frames = [random_scene(rng, 90, 120) for _ in range(6)]  # profile max batch is 4: two batches
    with Segmenter(engine_path) as seg, Segmenter(engine_path, device_frames=False) as host_path:
        first = seg.predict(frames[:2])
        kept = [m.copy() for m in first]
        seg.predict(frames[2:4])
        for m, k in zip(first, kept):
            np.testing.assert_array_equal(m, k)  # not overwritten by the next call
        masks = seg.predict(frames)
        assert not host_path.backend.frames_on_device
        reference = host_path.predict(frames)  # same engine, CPU pre/post-processing
    assert len(masks) == 6
    for g, w in zip(masks, reference):
        assert np.mean(g == w) >= 0.999
