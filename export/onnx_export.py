"""PyTorch -> ONNX: `onnx_from_torch` exports, embeds ModelMeta, checks parity with ONNX Runtime, then writes.

Exporter: torch.onnx.export(..., dynamo=False), the TorchScript-based exporter. The dynamo exporter (torch 2.9+
default) needs onnxscript, which EdgeSeg does not depend on; for plain FCNs the two give the same graph.

The batch axis is dynamic by default (`max_batch`, the format table's --max-batch): frames from several sources
then run as one batch (the runtime's multi-source batching reads the recorded maximum), and an engine built from the
graph gets the optimisation profile min 1 / opt 1 / max N. Opt is 1 because a single stream is the common case and
TensorRT tunes its kernels for the opt shape: one stream keeps the latency it had with a static graph, while
batches up to N still run (tune for N with --dynamic 1xHxW NxHxW NxHxW). max_batch=1 gives a static batch-1 graph.
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
from edgeseg.export.formats import option_default
from edgeseg.export.frames import sample_batch
from edgeseg.export.onnx_io import ort_session, read_meta, save_onnx, set_meta
from edgeseg.export.parity import ParityReport

__all__ = ["INPUT_NAME", "OUTPUT_NAME", "onnx_from_torch", "read_meta", "check_dynamic", "batch_shapes", "Shape",
           "ParityReport"]

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


def batch_shapes(size: Sequence[int], max_batch: int) -> tuple[Shape, Shape, Shape] | None:
    """The default profile of a graph at (H, W): batch min 1 / opt 1 / max `max_batch`; None (static) for 1."""
    if int(max_batch) < 1:
        raise ConfigError(f"max batch must be >= 1, got {max_batch}")
    if int(max_batch) == 1:
        return None
    height, width = (int(v) for v in size)
    single: Shape = (1, 3, height, width)
    return single, single, (int(max_batch), 3, height, width)


def onnx_from_torch(
    model: Any,
    meta: ModelMeta,
    path: str | Path,
    *,
    input_size: tuple[int, int] | None = None,
    dynamic: Sequence[Sequence[int]] | None = None,
    max_batch: int = option_default("max_batch"),
    lowres: bool = False,
    opset: int = DEFAULT_OPSET,
    sample: np.ndarray | None = None,
    atol: float = 1e-3,
    rtol: float = 1e-3,
) -> Path:
    """Export `model` to ONNX at `path` (input 'input' N,3,H,W float32 -> output 'logits'), checked before writing.

    `dynamic` = (min, opt, max) (N, 3, H, W) shapes: axes that differ become dynamic, and the ModelMeta records them
    (meta.dynamic_shapes) so an engine build can reuse them as its optimisation profile. Without `dynamic`, only the
    batch axis is dynamic, from 1 to `max_batch` (batch_shapes; max_batch=1: a static batch-1 graph; ignored
    with `dynamic`, whose batch range applies). `lowres` exports
    `model.forward_lowres` (logits at stride model.output_stride; the runtime upsamples). `sample` is an optional
    BGR uint8 frame for the real-looking parity input (otherwise a synthetic street scene is used).

    The graph is run with ONNX Runtime CPU against PyTorch on a random and a real-looking input at every shape of
    interest; ExportError if argmax agreement < 99.9% or max abs error > atol + rtol * max|logits|. Only then is the
    file written (edgeseg.files.write_file), with the ParityReport in its metadata (meta.parity). Returns the path.
    """
    torch = require("torch", "exporting to ONNX")
    onnx = require("onnx", "exporting to ONNX")
    shapes, size = _resolve_shapes(meta, input_size, dynamic)
    if shapes is None:
        shapes = batch_shapes(size, max_batch)
    export_shape = shapes[1] if shapes else (1, 3, *size)
    module, stride = _export_module(torch, model, lowres)
    out_meta = meta.replace(
        input_size=size, output_stride=stride, precision="fp32", input_format="float_nchw_rgb",
        output_format="logits", dynamic_shapes=[list(s) for s in shapes] if shapes else None, parity=None,
        quantization=None,
    )
    was_training = model.training
    module.eval()  # the wrapper too: torch.onnx.export restores the mode it finds, submodules included
    try:
        onnx_model = _trace(torch, onnx, module, export_shape, shapes, opset, type(model).__name__)
        _inline_identity_weights(onnx_model)
        set_meta(onnx_model, out_meta)
        _check_graph(onnx, onnx_model)
        report = _parity(torch, module, onnx_model, out_meta, shapes or (export_shape,), sample, atol, rtol)
    finally:
        model.train(was_training)
    log.info("ONNX parity vs PyTorch: %s", report.summary())
    set_meta(onnx_model, out_meta.replace(parity=report.to_dict()))
    return save_onnx(onnx_model, path)


def _resolve_shapes(meta: ModelMeta, input_size: Sequence[int] | None, dynamic: Sequence[Sequence[int]] | None
                    ) -> tuple[tuple[Shape, Shape, Shape] | None, tuple[int, int]]:
    """(dynamic shapes or None, the (H, W) the graph is exported at: the opt shape's, input_size or meta's)."""
    shapes = check_dynamic(dynamic)
    if shapes is not None:
        if input_size is not None and tuple(input_size) != tuple(shapes[1][2:]):
            raise ConfigError(f"input_size {tuple(input_size)} differs from the dynamic opt shape {shapes[1]}")
        input_size = (shapes[1][2], shapes[1][3])
    height, width = (int(v) for v in (input_size or meta.input_size))
    if height < 1 or width < 1:
        raise ConfigError(f"input size must be positive, got {(height, width)}")
    return shapes, (height, width)


def _export_module(torch: Any, model: Any, lowres: bool) -> tuple[Any, int]:
    """(the module to trace, its output stride): the model itself, or its forward_lowres for a lowres graph."""
    if not lowres:
        return model, 1
    if not hasattr(model, "forward_lowres"):
        raise ConfigError(f"lowres export needs a model with forward_lowres(); {type(model).__name__} has none")
    stride = int(getattr(model, "output_stride", 0) or 0)
    if stride < 1:
        raise ConfigError(f"lowres export needs model.output_stride (8/16/32); {type(model).__name__} has {stride}")
    return _lowres_module(torch, model), stride


def _trace(torch: Any, onnx: Any, module: Any, export_shape: Sequence[int], shapes: Any, opset: int,
           name: str) -> Any:
    """torch.onnx.export (TorchScript exporter) into memory; ExportError when the model cannot be traced."""
    dynamic_axes = None
    if shapes:
        names = {0: "batch", 2: "height", 3: "width"}
        axes = {i: names[i] for i in (0, 2, 3) if shapes[0][i] != shapes[2][i]}
        dynamic_axes = {INPUT_NAME: axes, OUTPUT_NAME: {i: f"out_{n}" for i, n in axes.items()}}
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        try:
            torch.onnx.export(
                module, (torch.zeros(tuple(export_shape)),), buffer, dynamo=False, opset_version=opset,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_axes=dynamic_axes,
                do_constant_folding=True,
            )
        except Exception as exc:  # torch raises UnsupportedOperatorError, RuntimeError, ... for untraceable models
            raise ExportError(f"torch.onnx.export failed for {name}: {type(exc).__name__}: {exc}") from exc
    return onnx.load_from_string(buffer.getvalue())


def _inline_identity_weights(model: Any) -> None:
    """Let consumers read shared weights directly: the exporter writes `Identity(initializer)` for tied or
    deduplicated parameters, which hides them from quantizers (a Conv weight behind an Identity is treated as an
    activation) and adds layers to the engine."""
    inits = {t.name for t in model.graph.initializer}
    outputs = {o.name for o in model.graph.output}
    alias = {n.output[0]: n.input[0] for n in model.graph.node
             if n.op_type == "Identity" and n.input[0] in inits and n.output[0] not in outputs}
    if not alias:
        return
    kept = [n for n in model.graph.node if not (n.op_type == "Identity" and n.output[0] in alias)]
    for node in kept:
        node.input[:] = [alias.get(name, name) for name in node.input]
    del model.graph.node[:]
    model.graph.node.extend(kept)


def _check_graph(onnx: Any, model: Any) -> None:
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"the exported ONNX graph is invalid: {exc}") from exc


def _lowres_module(torch: Any, model: Any) -> Any:
    """A module whose forward is model.forward_lowres (like edgeseg.models.LowResOutput, but for any model)."""

    class LowRes(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: Any) -> Any:
            return self.inner.forward_lowres(x)

    return LowRes(model)


def _parity(torch: Any, module: Any, onnx_model: Any, meta: ModelMeta, shapes: Sequence[Sequence[int]],
            sample: np.ndarray | None, atol: float, rtol: float) -> ParityReport:
    """PyTorch vs ONNX Runtime on a random input per distinct shape and one real-looking frame at the opt shape."""
    session = ort_session(onnx_model, "checking the exported model against PyTorch")
    rng = np.random.default_rng(0)
    inputs: list[tuple[str, np.ndarray]] = []
    for shape in dict.fromkeys(tuple(s) for s in shapes):  # distinct shapes, in order
        inputs.append((f"random {shape}", rng.standard_normal(shape).astype(np.float32)))
    n = shapes[len(shapes) // 2][0]  # the opt shape's batch; meta.input_size is its (H, W)
    inputs.append(("sample frame" if sample is not None else "synthetic frame", sample_batch(meta, n, sample)))
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
