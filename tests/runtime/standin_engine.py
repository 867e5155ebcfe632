"""A TensorRT stand-in that computes on the real GPU: the pixel classifier of EngineSpec as a CuPy kernel.

No TensorRT runs on the lent H200 (TensorRT-RTX does not support compute capability 9.0 and the standard TensorRT has
no wheel here), so the device path (`backends/tensorrt_device.py`, `cuda_graphs.py`, `gpu/buffers.py`) is proven with
everything real but the engine: the fake TensorRT module of gpu_fakes gets a `compute` that reads the input and writes
the logits through the very device pointers the path binds with `set_tensor_address`, on the very stream it passes to
`execute_async_v3`. Nothing is allocated at execution time, so the launch can be captured into a CUDA graph.

On the CPU fakes the same FakeContext runs EngineSpec.compute on host memory instead (gpu_fakes.FakeContext).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .gpu_fakes import EngineSpec
from .onnx_graphs import pixel_classifier_weights

_SOURCE = r"""
#include <cuda_fp16.h>
// in_kind: 0 float32 NCHW, 1 float16 NCHW, 2 uint8 NHWC BGR (normalised here, as an in-graph Normalize would)
// out_kind: 0 float32 logits, 1 float16 logits, 2 uint8 argmax (first maximum, as numpy)
extern "C" __global__ void pixel_classifier(unsigned long long src_ptr, int in_kind, int n, int H, int W, int stride,
                                            const float* weight, const float* bias, const float* mean,
                                            const float* inv_std, unsigned long long dst_ptr, int out_kind) {
    const int h = H / stride, w = W / stride;
    const long long index = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (index >= (long long)n * h * w) return;
    const int x = (int)(index % w), y = (int)((index / w) % h), b = (int)(index / ((long long)w * h));
    float feature[3];
    for (int c = 0; c < 3; ++c) {
        float sum = 0.f;
        for (int dy = 0; dy < stride; ++dy) {
            for (int dx = 0; dx < stride; ++dx) {
                const int yy = y * stride + dy, xx = x * stride + dx;
                float v;
                if (in_kind == 2) {
                    const unsigned char* px = (const unsigned char*)src_ptr + (((long long)b * H + yy) * W + xx) * 3;
                    v = ((float)px[2 - c] / 255.f - mean[c]) * inv_std[c];
                } else {
                    const long long at = (((long long)b * 3 + c) * H + yy) * W + xx;
                    v = in_kind == 1 ? __half2float(((const __half*)src_ptr)[at]) : ((const float*)src_ptr)[at];
                }
                sum += v;
            }
        }
        feature[c] = sum / (float)(stride * stride);
    }
    int best = 0;
    float best_value = 0.f;
    for (int k = 0; k < 4; ++k) {
        const float logit = bias[k] + weight[k * 3] * feature[0] + weight[k * 3 + 1] * feature[1]
                            + weight[k * 3 + 2] * feature[2];
        if (k == 0 || logit > best_value) { best = k; best_value = logit; }
        const long long at = (((long long)b * 4 + k) * h + y) * w + x;
        if (out_kind == 0) ((float*)dst_ptr)[at] = logit;
        else if (out_kind == 1) ((__half*)dst_ptr)[at] = __float2half(logit);
    }
    if (out_kind == 2) ((unsigned char*)dst_ptr)[((long long)b * h + y) * w + x] = (unsigned char)best;
}
"""


class CupyCompute:
    """EngineSpec's pixel classifier on the GPU (CuPy RawKernel), launched on the caller's CUDA stream."""

    def __init__(self, spec: EngineSpec) -> None:
        import cupy

        self._cupy = cupy
        weight, bias = pixel_classifier_weights()
        self._weight = cupy.asarray(weight.reshape(4, 3), dtype=cupy.float32)
        self._bias = cupy.asarray(bias, dtype=cupy.float32)
        self._mean = cupy.asarray(np.asarray(spec.mean, np.float32))
        self._inv_std = cupy.asarray(1.0 / np.asarray(spec.std, np.float32))
        self._kernel = cupy.RawKernel(_SOURCE, "pixel_classifier")
        self._kernel.compile()  # NVRTC now, never inside a stream capture
        self.launches = 0

    def execute(self, spec: EngineSpec, src: int, in_shape: tuple[int, ...], dst: int, stream: int) -> None:
        n = in_shape[0]
        height, width = spec.input_size
        in_kind = 2 if spec.uint8_input else (1 if np.dtype(spec.dtype) == np.float16 else 0)
        out_kind = 2 if spec.argmax else (1 if np.dtype(spec.dtype) == np.float16 else 0)
        total = n * (height // spec.stride) * (width // spec.stride)
        block = 128
        i32 = np.int32
        # ExternalStream ran on the H200 (CuPy 14.2, with a DeprecationWarning for Stream.from_external); kept, as proven
        with self._cupy.cuda.ExternalStream(stream):
            self._kernel(((total + block - 1) // block,), (block,),
                         (np.uint64(src), i32(in_kind), i32(n), i32(height), i32(width), i32(spec.stride),
                          self._weight, self._bias, self._mean, self._inv_std, np.uint64(dst), i32(out_kind)))
        self.launches += 1


def cupy_reason() -> str | None:
    """Why the GPU stand-in cannot run here (None: it can)."""
    try:
        import cupy
    except ImportError:
        return "needs CuPy (cupy-cuda12x/13x) for the stand-in engine's GPU kernel"
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return "needs an NVIDIA GPU: CuPy sees no CUDA device"
    except cupy.cuda.runtime.CUDARuntimeError as exc:
        return f"needs an NVIDIA GPU: CuPy's CUDA runtime says {exc}"
    return None


def device_array(ptr: int, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """Copy `shape` `dtype` from device address `ptr` to a new host array (CuPy), for checks."""
    import cupy

    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    memory = cupy.cuda.UnownedMemory(ptr, nbytes, owner=None)
    return cupy.asnumpy(cupy.ndarray(shape, dtype, cupy.cuda.MemoryPointer(memory, 0)))
