"""Real-time streaming: sources -> threaded, batched segmentation -> MP4 / mask PNGs / window / JSON stats.

    from edgeseg.pipeline import run_stream
    from edgeseg.runtime import Segmenter

    stats = run_stream(Segmenter("model.onnx"), ["clip.mp4"], "overlay.mp4", masks_dir="masks")
    print(stats.processed, stats.fps, stats.to_dict()["stages"]["infer"])

Needs numpy and OpenCV only (never torch). See stream.py for the threads and modes, sources.py for --source values.
"""

from __future__ import annotations

from edgeseg.pipeline.sinks import DisplaySink, MaskSink, VideoSink, screen_available
from edgeseg.pipeline.sources import (
    CaptureSource,
    Frame,
    ImageFolderSource,
    Source,
    SyntheticSource,
    VideoFileSource,
    jetson_csi_pipeline,
    open_source,
)
from edgeseg.pipeline.stats import LatencyReservoir, SourceStats, Stats
from edgeseg.pipeline.stream import MODES, Reconnect, StreamPipeline, run_stream

__all__ = [
    "MODES",
    "CaptureSource",
    "DisplaySink",
    "Frame",
    "ImageFolderSource",
    "LatencyReservoir",
    "MaskSink",
    "Reconnect",
    "Source",
    "SourceStats",
    "Stats",
    "StreamPipeline",
    "SyntheticSource",
    "VideoFileSource",
    "VideoSink",
    "jetson_csi_pipeline",
    "open_source",
    "run_stream",
    "screen_available",
]
