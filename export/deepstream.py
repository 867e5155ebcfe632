"""DeepStream export: the graph nvinfer runs, its nvinfer config, labels and a sample multi-stream pipeline.

nvinfer preprocesses frames itself: it scales each source to the network size (`scaling-filter`, bilinear like the
runtime), converts to planar float in `model-color-format` order and computes y = net-scale-factor * (x - offsets[c])
on 0..255 pixels: one scale for all channels. So the DeepStream graph (`deepstream_onnx`) is the float-input FP32
graph with the per-channel std folded into its first convolution (edgeseg.export.fold_std), offsets = 255 * mean and
net-scale-factor = 1 / (255 * s), read back from the folded graph's ModelMeta (std = (s, s, s)).

The graph ends in Softmax: nvinfer labels a pixel with the class whose score exceeds `segmentation-threshold`, which
must be >= 0, and logits can all be negative; probabilities with threshold 0 give every pixel its argmax class.
The batch axis keeps the export's dynamic range, and `batch-size` is its maximum.

Engine: nvinfer builds one from `onnx-file` on its first run (network-mode FP32, or FP16 when the graph is FP16) and
saves it as `<onnx-file>_b<batch>_gpu0_<mode>.engine`, the name `model-engine-file` points to so later runs load it;
when EdgeSeg built `model_deepstream.engine` (--engine with TensorRT) the config points to that file instead.
Paths in the config are relative to the config file, as nvinfer resolves them.
"""

from __future__ import annotations

import configparser
import io
import logging
import math
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgeseg._optional import require
from edgeseg.config import ModelMeta
from edgeseg.errors import ExportError, OutputPathError
from edgeseg.export.fold_std import fold_std
from edgeseg.export.frames import sample_batch
from edgeseg.export.onnx_io import get_meta, load_onnx, ort_session, save_onnx
from edgeseg.files import write_file

__all__ = ["DEEPSTREAM_ONNX", "DEEPSTREAM_ENGINE", "CONFIG_NAME", "LABELS_NAME", "PIPELINE_SH", "PIPELINE_PY",
           "PROBABILITIES", "deepstream_onnx", "nvinfer_properties", "write_deepstream", "check_deepstream_dir",
           "deepstream_outputs", "gst_launch_line", "max_batch_of"]

log = logging.getLogger(__name__)

DEEPSTREAM_ONNX = "model_deepstream.onnx"
DEEPSTREAM_ENGINE = "model_deepstream.engine"
CONFIG_NAME = "nvinfer_config.txt"
LABELS_NAME = "labels.txt"
PIPELINE_SH = "deepstream_pipeline.sh"
PIPELINE_PY = "deepstream_pipeline.py"
PROBABILITIES = "probabilities"

# nvinfer's enums (gstnvinfer_property_parser / nvdsinfer_context.h).
NETWORK_TYPE_SEGMENTATION = 2
NETWORK_MODES = {"fp32": 0, "fp16": 2}  # 1 is INT8, which needs nvinfer's own calibration table: not offered
COLOR_FORMAT_RGB = 0
SCALING_FILTER_BILINEAR = 1
OUTPUT_ORDER_NCHW = 0

MUX_SIZE = (1280, 720)  # nvstreammux's batch frame size (W, H) in the sample pipeline; the tiler's output too
_MIN_ARGMAX_AGREEMENT = 0.999
_MAX_PROBABILITY_ERROR = 1e-4  # float32 rounding of the folded weights moves probabilities by ~1e-6


# ----- the graph ------------------------------------------------------------------------------------------------
def deepstream_onnx(fp32_onnx: Any, dst: str | Path, *, fp16: bool = False) -> Path:
    """The graph nvinfer runs, written to `dst`: std folded, Softmax appended, checked against the FP32 graph.

    `fp16`: convert it to FP16 (float32 I/O) so nvinfer's network-mode is FP16. ExportError when the graph is not
    the float-input, full-resolution logits graph, or when the folded graph disagrees with the original.
    """
    source = load_onnx(fp32_onnx)
    meta = get_meta(source)
    if meta.output_format != "logits" or meta.output_stride != 1:
        raise ExportError("DeepStream needs the full-resolution logits graph (no --lowres): nvinfer takes the argmax "
                          f"at the output's resolution; this graph gives {meta.output_format} at stride "
                          f"{meta.output_stride}")
    model = _add_softmax(fold_std(source))
    _check_against(source, model)
    path = save_onnx(model, dst)
    if fp16:
        from edgeseg.export.fp16 import fp16_from_onnx

        path = fp16_from_onnx(path, dst, keep_io_types=True)  # Softmax stays FP32 (fp16's sensitive ops)
    return path


def _add_softmax(model: Any) -> Any:
    """Append Softmax over the class axis; the output becomes PROBABILITIES (same shape, same argmax)."""
    onnx = require("onnx", "writing the DeepStream graph")
    graph = model.graph
    if len(graph.output) != 1:
        raise ExportError(f"the DeepStream graph needs one output, this graph has {len(graph.output)}")
    logits = graph.output[0]
    graph.node.append(onnx.helper.make_node("Softmax", [logits.name], [PROBABILITIES], axis=1,
                                            name="edgeseg_deepstream_softmax"))
    probabilities = onnx.ValueInfoProto()
    probabilities.CopyFrom(logits)
    probabilities.name = PROBABILITIES
    del graph.output[:]
    graph.output.append(probabilities)
    onnx.checker.check_model(model)
    return model


def _check_against(original: Any, folded: Any) -> None:
    """softmax(original logits) on frames normalised by the original meta vs the DeepStream graph on the same frames
    normalised the nvinfer way (its meta); ExportError when they disagree."""
    expected_meta, got_meta = get_meta(original), get_meta(folded)
    expected = ort_session(original, "checking the DeepStream graph").run(None, {_input(original): sample_batch(
        expected_meta, 1)})[0].astype(np.float64)
    expected = np.exp(expected - expected.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    got = ort_session(folded, "checking the DeepStream graph").run(None, {_input(folded): sample_batch(got_meta, 1)})[0]
    agreement = float(np.mean(expected.argmax(axis=1) == got.argmax(axis=1)))
    error = float(np.max(np.abs(expected - got)))
    if agreement < _MIN_ARGMAX_AGREEMENT or error > _MAX_PROBABILITY_ERROR:
        raise ExportError(f"the DeepStream graph (std folded) does not match the FP32 graph: max abs error {error:.3g} "
                          f"in probability, argmax agreement {100 * agreement:.3f}%; nothing was written")


def _input(model: Any) -> str:
    return model.graph.input[0].name


# ----- the config ---------------------------------------------------------------------------------------------
def max_batch_of(meta: ModelMeta) -> int:
    """The largest batch the graph takes: the dynamic range's maximum, 1 for a static graph."""
    return int(meta.dynamic_shapes[2][0]) if meta.dynamic_shapes else 1


def nvinfer_engine_name(onnx_name: str, batch: int, precision: str) -> str:
    """The file nvinfer writes after building an engine from `onnx_name` itself (next to the ONNX file)."""
    return f"{onnx_name}_b{batch}_gpu0_{precision}.engine"


def nvinfer_properties(meta: ModelMeta, *, onnx_file: str, engine_file: str, labels_file: str = LABELS_NAME,
                       output_name: str = PROBABILITIES) -> dict[str, str]:
    """The [property] group of the nvinfer config for a DeepStream graph's ModelMeta (std folded: all three equal)."""
    if len(set(meta.std)) != 1:
        raise ExportError(f"nvinfer has one net-scale-factor, but the graph's std is per channel {meta.std}: "
                          "write the graph with deepstream_onnx (it folds the std into the first convolution)")
    if meta.input_format != "float_nchw_rgb":
        raise ExportError(f"nvinfer feeds planar float RGB; this graph takes {meta.input_format!r}")
    if meta.precision not in NETWORK_MODES:
        raise ExportError(f"DeepStream export supports {sorted(NETWORK_MODES)} graphs, not {meta.precision!r}")
    height, width = meta.input_size
    offsets = [255.0 * m for m in meta.mean]
    return {
        "gpu-id": "0",
        "gie-unique-id": "1",
        "process-mode": "1",  # primary: whole frames
        "network-type": str(NETWORK_TYPE_SEGMENTATION),
        "onnx-file": onnx_file,
        "model-engine-file": engine_file,
        "labelfile-path": labels_file,
        "batch-size": str(max_batch_of(meta)),
        "network-mode": str(NETWORK_MODES[meta.precision]),
        "infer-dims": f"3;{height};{width}",
        "model-color-format": str(COLOR_FORMAT_RGB),
        "net-scale-factor": repr(1.0 / (255.0 * meta.std[0])),
        "offsets": ";".join(repr(v) for v in offsets),
        "scaling-filter": str(SCALING_FILTER_BILINEAR),  # the runtime resizes bilinearly, without keeping the aspect
        "maintain-aspect-ratio": "0",
        "num-detected-classes": str(meta.num_classes),
        "output-blob-names": output_name,
        "segmentation-threshold": "0.0",
        "segmentation-output-order": str(OUTPUT_ORDER_NCHW),
        "interval": "0",
    }


def _config_text(properties: dict[str, str], meta: ModelMeta) -> str:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # keep nvinfer's key spelling
    parser["property"] = properties
    buffer = io.StringIO()
    buffer.write(f"# nvinfer config for {meta.model_name} ({meta.num_classes} classes, {meta.precision}), written by "
                 "`edgeseg export --deepstream`.\n# y = net-scale-factor * (x - offsets[c]) on RGB 0..255 equals "
                 "EdgeSeg's (x/255 - mean) / std: the per-channel std\n# is folded into the graph's first "
                 "convolution. Relative paths are relative to this file.\n")
    parser.write(buffer, space_around_delimiters=False)  # key=value, as DeepStream's own samples
    return buffer.getvalue()


# ----- the sample pipeline ---------------------------------------------------------------------------------------
def _tiles(count: int) -> tuple[int, int]:
    columns = math.ceil(math.sqrt(count))
    return math.ceil(count / columns), columns


def gst_launch_line(meta: ModelMeta, uris: list[str], config: str = CONFIG_NAME, sink: str = "nveglglessink") -> str:
    """The gst-launch-1.0 description of the sample pipeline (what deepstream_pipeline.sh runs): one uridecodebin per
    URI -> nvstreammux -> nvinfer -> nvsegvisual -> nvmultistreamtiler -> nvvideoconvert -> sink."""
    height, width = meta.input_size
    rows, columns = _tiles(max(len(uris), 1))
    head = (f"nvstreammux name=mux batch-size={len(uris)} width={MUX_SIZE[0]} height={MUX_SIZE[1]} "
            f"batched-push-timeout=40000 ! nvinfer config-file-path={config} ! "
            f"nvsegvisual batch-size={len(uris)} width={width} height={height} ! "
            f"nvmultistreamtiler rows={rows} columns={columns} width={MUX_SIZE[0]} height={MUX_SIZE[1]} ! "
            f"nvvideoconvert ! {sink}")
    return " ".join([head] + [f"uridecodebin uri={uri} ! mux.sink_{i}" for i, uri in enumerate(uris)])


_SH_TEMPLATE = """#!/bin/sh
# DeepStream sample for {model} ({classes} classes): up to {batch} sources batched through nvinfer.
# Written by `edgeseg export --deepstream`. Usage: sh {script} URI [URI ...]
#   e.g. sh {script} file:///opt/nvidia/deepstream/deepstream/samples/streams/sample_720p.mp4
# SINK=fakesink for a machine without a display. The first run builds the engine (minutes).
set -e
[ "$#" -ge 1 ] && [ "$#" -le {batch} ] || {{ echo "usage: sh $0 URI [URI ...] (1 to {batch} sources)" >&2; exit 2; }}
cd "$(dirname "$0")"  # {config}'s paths are relative to it
n=$#; columns=1; while [ $((columns * columns)) -lt "$n" ]; do columns=$((columns + 1)); done
rows=$(((n + columns - 1) / columns))
sources=""; i=0
for uri in "$@"; do sources="$sources uridecodebin uri=$uri ! mux.sink_$i"; i=$((i + 1)); done
# The same pipeline as one line, for {batch} sources:
# gst-launch-1.0 {line}
exec gst-launch-1.0 nvstreammux name=mux batch-size="$n" width={mux_w} height={mux_h} batched-push-timeout=40000 \\
  ! nvinfer config-file-path={config} \\
  ! nvsegvisual batch-size="$n" width={width} height={height} \\
  ! nvmultistreamtiler rows="$rows" columns="$columns" width={mux_w} height={mux_h} \\
  ! nvvideoconvert ! "${{SINK:-nveglglessink}}" $sources
"""

_PY_TEMPLATE = '''"""DeepStream sample for {model} ({classes} classes): up to {batch} sources batched through nvinfer.

Written by `edgeseg export --deepstream`. Usage: python3 {script} URI [URI ...] [--sink fakesink]
Needs DeepStream's GStreamer plugins and PyGObject (python3-gi); not EdgeSeg. The first run builds the engine.
"""

import argparse
import math
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIG = os.path.join(HERE, "{config}")  # nvinfer resolves the paths inside it relative to it
MAX_SOURCES = {batch}
MODEL_SIZE = ({width}, {height})  # (W, H): nvsegvisual draws the class map at the network's size
MUX_SIZE = ({mux_w}, {mux_h})


def description(uris, sink="nveglglessink"):
    """nvstreammux -> nvinfer -> nvsegvisual -> nvmultistreamtiler -> sink, one uridecodebin per URI."""
    columns = math.ceil(math.sqrt(len(uris)))
    rows = math.ceil(len(uris) / columns)
    head = (
        f"nvstreammux name=mux batch-size={{len(uris)}} width={{MUX_SIZE[0]}} height={{MUX_SIZE[1]}} "
        f"batched-push-timeout=40000 ! nvinfer config-file-path={{CONFIG}} ! "
        f"nvsegvisual batch-size={{len(uris)}} width={{MODEL_SIZE[0]}} height={{MODEL_SIZE[1]}} ! "
        f"nvmultistreamtiler rows={{rows}} columns={{columns}} width={{MUX_SIZE[0]}} height={{MUX_SIZE[1]}} ! "
        f"nvvideoconvert ! {{sink}}"
    )
    return " ".join([head] + [f"uridecodebin uri={{uri}} ! mux.sink_{{i}}" for i, uri in enumerate(uris)])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("uris", nargs="+", help="file:// or rtsp:// URIs, 1 to %d" % MAX_SOURCES)
    parser.add_argument("--sink", default="nveglglessink", help="GStreamer sink element (fakesink without a display)")
    args = parser.parse_args(argv)
    if len(args.uris) > MAX_SOURCES:
        parser.error("the engine takes at most %d sources per batch" % MAX_SOURCES)
    import gi

    gi.require_version("Gst", "1.0")
    from gi.repository import GLib, Gst

    Gst.init(None)
    pipeline = Gst.parse_launch(description(args.uris, args.sink))
    loop = GLib.MainLoop()
    bus = pipeline.get_bus()
    bus.add_signal_watch()

    def on_message(_bus, message):
        if message.type == Gst.MessageType.EOS:
            loop.quit()
        elif message.type == Gst.MessageType.ERROR:
            error, debug = message.parse_error()
            print("error:", error.message, debug or "", file=sys.stderr)
            loop.quit()

    bus.connect("message", on_message)
    pipeline.set_state(Gst.State.PLAYING)
    try:
        loop.run()
    finally:
        pipeline.set_state(Gst.State.NULL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''


# ----- writing ---------------------------------------------------------------------------------------------------
def check_deepstream_dir(path: str | Path) -> Path:
    """The --deepstream folder, refused before any slow work when it is an existing file."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"--deepstream {path} is an existing file; give a folder")
    return path


def deepstream_outputs(ds_dir: str | Path) -> list[Path]:
    """The files write_deepstream writes into its folder."""
    return [Path(ds_dir) / name for name in (CONFIG_NAME, LABELS_NAME, PIPELINE_SH, PIPELINE_PY)]


def write_deepstream(ds_onnx: str | Path, ds_dir: str | Path, *, engine: str | Path | None = None,
                     final: Callable[[Path], Path] = lambda path: path) -> dict[str, Path]:
    """Write the nvinfer config, labels file and sample pipeline (shell and Python) for `ds_onnx` into `ds_dir`.

    `engine`: an engine built from `ds_onnx` for nvinfer to load; without one, `model-engine-file` names the engine
    nvinfer builds on its first run. `final` maps a path being written (in an export's staging folder) to where it
    will be, so the config's relative paths are right once the export is swapped in. Returns {'config', 'labels', 'pipeline_sh', 'pipeline_py'}: their paths."""
    ds_onnx, ds_dir = Path(ds_onnx), check_deepstream_dir(ds_dir)
    model = load_onnx(ds_onnx)
    meta, output = get_meta(model, where=str(ds_onnx)), model.graph.output[0].name
    batch = max_batch_of(meta)
    engine_path = Path(engine) if engine is not None else ds_onnx.with_name(
        nvinfer_engine_name(ds_onnx.name, batch, meta.precision))
    properties = nvinfer_properties(meta, onnx_file=_relative(final(ds_onnx), final(ds_dir)),
                                    engine_file=_relative(final(engine_path), final(ds_dir)), output_name=output)
    height, width = meta.input_size
    names = dict(model=meta.model_name, classes=meta.num_classes, batch=batch, config=CONFIG_NAME, width=width,
                 height=height, mux_w=MUX_SIZE[0], mux_h=MUX_SIZE[1])
    sample = gst_launch_line(meta, [f"URI{i}" for i in range(batch)])
    config, labels, sh, py = deepstream_outputs(ds_dir)
    written = {
        "config": write_file(config, _config_text(properties, meta)),
        "labels": write_file(labels, "".join(f"{name}\n" for name in meta.classes)),
        "pipeline_sh": write_file(sh, _SH_TEMPLATE.format(script=PIPELINE_SH, line=sample, **names)),
        "pipeline_py": write_file(py, _PY_TEMPLATE.format(script=PIPELINE_PY, **names)),
    }
    log.info("DeepStream config %s (batch %d, %s, engine %s)", config, batch, meta.precision,
             properties["model-engine-file"])
    return written


def _relative(path: Path, start: Path) -> str:
    return os.path.relpath(Path(path).resolve(), Path(start).resolve())
