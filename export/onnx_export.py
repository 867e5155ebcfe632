"""PyTorch -> ONNX: `onnx_from_torch` exports, embeds ModelMeta, checks parity with ONNX Runtime, then writes.

Exporter: torch.onnx.export(..., dynamo=False), the TorchScript-based exporter. The dynamo exporter (torch 2.9+
default) needs onnxscript, which EdgeSeg does not depend on; for plain FCNs the two give the same graph.
"""

from __future__ import annotations

import io
import logging
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgeseg._optional import require
from edgeseg.config import ModelMeta
from edgeseg.errors import ConfigError, ExportError
from edgeseg.export.frames import preprocess, synthetic_frame
from edgeseg.export.onnx_io import ort_session, read_meta, save_onnx, set_meta
from edgeseg.export.parity import ParityReport

__all__ = ["INPUT_NAME", "OUTPUT_NAME", "onnx_from_torch", "read_meta", "check_dynamic", "Shape", "ParityReport"]

log = logging.getLogger(__name__)

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
DEFAULT_OPSET = 17
MIN_ARGMAX_AGREEMENT = 0.999

Shape = tuple[int, int, int, int]


def check_dynamic(dynamic: Sequence[Sequence[int]] | None) -> tuple[Shape, Shape, Shape] | None:
    """Validate a (min, opt, max) triple of (N, 3, H, W) shapes; ConfigError names what is wrong."""
    if dynamic is None:
        return None
    shapes = [tuple(int(v) for v in s) for s in dynamic]
    if len(shapes) != 3 or any(len(s) != 4 for s in shapes):
        raise ConfigError(f"dynamic shapes must be three (N, 3, H, W) shapes: min, opt, max; got {dynamic}")
    lo, opt, hi = shapes
    if any(s[1] != 3 for s in shapes) or min(min(s) for s in shapes) < 1:
        raise ConfigError(f"dynamic shapes must be (N, 3, H, W) with positive sizes, got {shapes}")
    if not all(a <= b <= c for a, b, c in zip(lo, opt, hi)):
        raise ConfigError(f"dynamic shapes need min <= opt <= max on every axis, got min {lo}, opt {opt}, max {hi}")
    return lo, opt, hi  # type: ignore[return-value]


def onnx_from_torch(
    model: Any,
    meta: ModelMeta,
    path: str | Path,
    *,
    input_size: tuple[int, int] | None = None,
    dynamic: Sequence[Sequence[int]] | None = None,
    lowres: bool = False,
    opset: int = DEFAULT_OPSET,
    sample: np.ndarray | None = None,
    slim: bool = False,
    atol: float = 1e-3,
    rtol: float = 1e-3,
) -> Path:
    """Export `model` to ONNX at `path` (input 'input' N,3,H,W float32 -> output 'logits'), checked before writing.

    `dynamic` = (min, opt, max) (N, 3, H, W) shapes: axes that differ become dynamic, and the ModelMeta records them
    (meta.dynamic_shapes) so an engine build can reuse them as its optimisation profile. `lowres` exports
    `model.forward_lowres` (logits at stride model.output_stride; the runtime upsamples). `sample` is an optional
    BGR uint8 frame for the real-looking parity input (otherwise a synthetic one is used).

    The graph is run with ONNX Runtime CPU against PyTorch on a random and a real-looking input at every shape of
    interest; ExportError if argmax agreement < 99.9% or max abs error > atol + rtol * max|logits|. Only then is the
    file written (atomically), with the ParityReport in its metadata (meta.parity). Returns the path.
    """
    torch = require("torch", "exporting to ONNX")
    onnx = require("onnx", "exporting to ONNX")
    shapes = check_dynamic(dynamic)
    if shapes is not None:
        if input_size is not None and tuple(input_size) != tuple(shapes[1][2:]):
            raise ConfigError(f"input_size {tuple(input_size)} differs from the dynamic opt shape {shapes[1]}")
        input_size = (shapes[1][2], shapes[1][3])
    height, width = (int(v) for v in (input_size or meta.input_size))
    if height < 1 or width < 1:
        raise ConfigError(f"input size must be positive, got {(height, width)}")
    export_shape = shapes[1] if shapes else (1, 3, height, width)

    stride = 1
    module = model
    if lowres:
        if not hasattr(model, "forward_lowres"):
            raise ConfigError(f"lowres export needs a model with forward_lowres(); {type(model).__name__} has none")
        stride = int(getattr(model, "output_stride", 0) or 0)
        if stride < 1:
            raise ConfigError(f"lowres export needs model.output_stride (8/16/32); {type(model).__name__} has {stride}")
        module = _lowres_module(torch, model)

    out_meta = meta.replace(
        input_size=(height, width), output_stride=stride, precision="fp32",
        input_format="float_nchw_rgb", output_format="logits",
        dynamic_shapes=[list(s) for s in shapes] if shapes else None, parity=None, quantization=None,
    )

    was_training = model.training
    module.eval()  # the wrapper too: torch.onnx.export restores the mode it finds, submodules included
    try:
        buffer = io.BytesIO()
        dynamic_axes = None
        if shapes:
            names = {0: "batch", 2: "height", 3: "width"}
            axes = {i: names[i] for i in (0, 2, 3) if shapes[0][i] != shapes[2][i]}
            dynamic_axes = {INPUT_NAME: axes, OUTPUT_NAME: {i: f"out_{n}" for i, n in axes.items()}}
        with torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            try:
                torch.onnx.export(
                    module, (torch.zeros(export_shape),), buffer, dynamo=False, opset_version=opset,
                    input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_axes=dynamic_axes,
                    do_constant_folding=True,
                )
            except Exception as exc:  # torch raises UnsupportedOperatorError, RuntimeError, ... for untraceable models
                raise ExportError(f"torch.onnx.export failed for {type(model).__name__}: {type(exc).__name__}: {exc}") from exc
        onnx_model = onnx.load_from_string(buffer.getvalue())
        if slim:
            onnxslim = require("onnxslim", "slimming the exported ONNX graph (slim=True)")
            onnx_model = onnxslim.slim(onnx_model)
        set_meta(onnx_model, out_meta)
        try:
            onnx.checker.check_model(onnx_model)
        except onnx.checker.ValidationError as exc:
            raise ExportError(f"the exported ONNX graph is invalid: {exc}") from exc
        report = _parity(torch, module, onnx_model, out_meta, shapes or (export_shape,), sample, atol, rtol)
    finally:
        model.train(was_training)
    log.info("ONNX parity vs PyTorch: %s", report.summary())
    set_meta(onnx_model, out_meta.replace(parity=report.to_dict()))
    return save_onnx(onnx_model, path)


def _lowres_module(torch: Any, model: Any) -> Any:
    """A module whose forward is model.forward_lowres (like edgeseg.models.LowResOutput, but for any model)."""

    class LowRes(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: Any) -> Any:
            return self.inner.forward_lowres(x)

    return LowRes(model)


def _parity(torch, module, onnx_model, meta, shapes, sample, atol, rtol) -> ParityReport:
    session = ort_session(onnx_model, "checking the exported model against PyTorch")
    rng = np.random.default_rng(0)
    inputs: list[tuple[str, np.ndarray]] = []
    for shape in dict.fromkeys(tuple(s) for s in shapes):  # distinct shapes, in order
        inputs.append((f"random {shape}", rng.standard_normal(shape).astype(np.float32)))
    n, _, h, w = shapes[len(shapes) // 2]  # the opt shape
    frame = sample if sample is not None else synthetic_frame(h, w)
    real = preprocess(frame, meta, (h, w))
    inputs.append(("sample frame" if sample is not None else "synthetic frame", np.repeat(real, n, axis=0)))
    report = ParityReport()
    for name, x in inputs:
        with torch.no_grad():
            expected = module(torch.from_numpy(x)).numpy()
        got = session.run(None, {INPUT_NAME: x})[0]
        if got.shape != expected.shape:
            raise ExportError(f"ONNX output shape {got.shape} differs from PyTorch's {expected.shape} on the {name} input")
        check = report.add(name, expected, got)
        limit = atol + rtol * float(np.max(np.abs(expected)))
        if check.argmax_agreement < MIN_ARGMAX_AGREEMENT or check.max_abs_err > limit:
            raise ExportError(
                f"ONNX export does not match PyTorch on the {name} input: max abs error {check.max_abs_err:.3g} "
                f"(limit {limit:.3g}), argmax agreement {100 * check.argmax_agreement:.3f}% "
                f"(limit {100 * MIN_ARGMAX_AGREEMENT:.1f}%); the file was not written"
            )
    return report
