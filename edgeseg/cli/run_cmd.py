"""`edgeseg run`: segment videos, image folders, cameras or streams in real time, writing an overlay MP4 and masks.

Exit status: 0 done; 1 a live source was lost (its reconnection gave up; the others were still processed);
2 an EdgeSeg error (bad source, model, option); 128+N stopped by signal N (130 for Ctrl-C), outputs finalised.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from edgeseg.cli.model_fact_options import add_model_fact_options, model_facts_from_args
from edgeseg.cli.numbers import finite_float
from edgeseg.errors import ConfigError

_EPILOG = """\
sources (--source, repeatable):
  clip.mp4                  a video file (ends at its end)
  path/to/images/           an image folder (sorted; masks named by image stem)
  0                         a V4L2 camera index
  rtsp://host:554/stream    a network stream (also rtmp://, http(s)://)
  'a ! b ! appsink'         a GStreamer pipeline (any value containing '!'; needs OpenCV built with GStreamer)
  synthetic[:N][@FPS]       generated frames, endless or N of them, paced like a camera at FPS frames per second
                            (default 30; @0: as fast as they are read), for demos and tests

Jetson CSI camera (JetPack's OpenCV has GStreamer; the pipeline is one quoted argument, on one line):
  edgeseg run model.engine --mode realtime --out csi.mp4 --source "nvarguscamerasrc sensor-id=0 ! video/x-raw(memory:NVMM),width=1280,height=720,framerate=30/1,format=NV12 ! nvvidconv flip-method=0 ! video/x-raw,width=1280,height=720,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! appsink drop=true max-buffers=1"
  (edgeseg.pipeline.jetson_csi_pipeline(sensor_id, width, height, fps, flip_method) builds it for other modes)

several sources are batched into one inference call (up to the model's max batch) and each gets its own
outputs: --out out.mp4 writes out_0.mp4, out_1.mp4, ...; --masks DIR writes DIR/0/, DIR/1/, ...

--confidence DIR writes, next to each mask, its confidence: a uint8 PNG at the frame's size whose pixel is
round(255 * p), p the highest softmax probability there (0.5 -> 128); --view confidence shows it as a heat map
(dark: unsure, bright yellow: sure). Models exported with --argmax have no probabilities, so no confidence.

--mode all       every frame gives one output frame and one mask; reading waits for inference (back-pressure)
--mode realtime  live sources keep only their newest frame; dropped frames are counted in the stats
stats add up: read = processed + dropped + unreadable, per source and in total.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "run",
        help="segment videos, image folders, cameras or streams",
        description=__doc__.splitlines()[0],
        epilog=_EPILOG,
    )
    parser.add_argument("model", help="exported model: .onnx or .engine (its metadata gives size, classes, palette)")
    parser.add_argument("--source", action="append", required=True, metavar="SRC",
                        help="video file, image folder, camera index, rtsp:// URL, GStreamer pipeline or "
                        "synthetic[:N][@FPS]; repeat for several sources")
    parser.add_argument("--out", metavar="OUT.mp4",
                        help="the video (H.264 where OpenCV can encode it, else mp4v with a warning); OUT_0.mp4, "
                        "OUT_1.mp4... for several sources; a picture (OUT.png/.jpg) for a single image in")
    from edgeseg.pipeline.views import VIEWS

    parser.add_argument("--view", choices=VIEWS, default="overlay",
                        help="what --out, --display and --view-http show: the overlay, the colour mask alone, the frame and "
                        "the overlay side by side, or the confidence as a heat map")
    parser.add_argument("--legend", action="store_true", help="draw the class names in their colours")
    parser.add_argument("--show-fps", action="store_true", help="draw the running FPS on each picture")
    parser.add_argument("--masks", metavar="DIR", help="write class-id mask PNGs (frame resolution) here")
    parser.add_argument("--confidence", metavar="DIR",
                        help="write confidence PNGs (frame resolution, uint8 round(255 * highest softmax "
                        "probability)) here, named like the masks")
    parser.add_argument("--alpha", type=finite_float, default=0.5, help="overlay opacity of the mask colours")
    parser.add_argument("--mode", choices=("all", "realtime"), default="all",
                        help="all: every frame processed; realtime: live sources drop stale frames")
    parser.add_argument("--display", action="store_true", help="show the overlay in a window (needs a screen)")
    parser.add_argument("--view-http", metavar="[HOST:]PORT",
                        help="serve a live view (the --view picture, legend and figures) at http://127.0.0.1:PORT/ "
                        "while it runs: /stream/N.mjpg, /snapshot/N.jpg, /stats.json; HOST: listen on that address "
                        "instead; PORT 0: any free port (printed). From a laptop: ssh -L PORT:127.0.0.1:PORT DEVICE")
    parser.add_argument("--stats", metavar="JSON", help="write counts, FPS and per-stage latency p50/p90/p99 here")
    parser.add_argument("--max-frames", type=int, metavar="N",
                        help="stop each source after N frames READ (processed + dropped + unreadable): in --mode "
                        "realtime, frames dropped for newer ones count too")
    parser.add_argument("--queue-size", type=int, metavar="N",
                        help="frames buffered per source (unset: 4 in --mode all, 1 in --mode realtime)")
    parser.add_argument("--reconnect-attempts", type=int, default=5, metavar="N",
                        help="reopen attempts for a live source whose reads fail")
    parser.add_argument("--reconnect-delay", type=finite_float, default=0.5, metavar="S",
                        help="first reconnect wait; doubles each attempt, up to 8 s")
    from edgeseg.pipeline.sources import DEFAULT_STALL_TIMEOUT_S

    parser.add_argument("--stall-timeout", type=finite_float, default=DEFAULT_STALL_TIMEOUT_S, metavar="S",
                        help="a network stream (rtsp://, http://) that sends nothing for S seconds counts as a failed "
                        "open/read and is reconnected; FFmpeg alone would wait 30 s")
    from edgeseg.runtime.backends import BACKENDS  # numpy only: the backends themselves import lazily

    parser.add_argument("--backend", default="auto", choices=BACKENDS,
                        help="auto: .onnx on the best ONNX Runtime provider (TensorRT EP > CUDA EP > CPU), "
                        ".engine on TensorRT; onnxruntime-cuda / onnxruntime-trt fail rather than fall back to CPU")
    add_model_fact_options(parser)
    from edgeseg.cli.triton_options import add_triton_options

    add_triton_options(parser)
    from edgeseg.cli.tta_options import add_tta_options

    add_tta_options(parser)
    parser.set_defaults(func=run)


def _open_segmenter(model: str, backend: str, model_facts: Any = None, tta: Any = None) -> Any:
    """The Segmenter for MODEL (tests replace this with a fake)."""
    from edgeseg.runtime.segmenter import Segmenter

    return Segmenter(model, backend=backend, model_facts=model_facts, tta=tta)


def _check_outputs(args: argparse.Namespace) -> None:
    """Output paths that cannot be written, or would replace an input or each other, fail now (the output guard),
    before the model loads and any frame is read."""
    from edgeseg.output_guard import Input, check_outputs, model_inputs, source_inputs
    from edgeseg.pipeline.stream import stream_outputs

    inputs = model_inputs(args.model) + source_inputs(args.source)
    if args.classes is not None:
        inputs.append(Input("--classes", args.classes))
    check_outputs(stream_outputs(len(args.source), args.out, args.masks, args.stats, args.confidence), inputs)


def run(args: argparse.Namespace) -> int:
    if not (args.out or args.masks or args.confidence or args.display or args.stats or args.view_http):
        raise ConfigError("nothing to write: give --out OUT.mp4 and/or --masks DIR, --confidence DIR, --display, "
                          "--view-http PORT, "
                          "--stats JSON")
    if not 0.0 <= args.alpha <= 1.0:
        raise ConfigError(f"--alpha must be in [0, 1], got {args.alpha}")
    for flag, value in (("--max-frames", args.max_frames), ("--queue-size", args.queue_size)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} must be >= 1, got {value}")
    if args.reconnect_attempts < 0 or args.reconnect_delay < 0:
        raise ConfigError("--reconnect-attempts and --reconnect-delay must be >= 0")
    if not args.stall_timeout > 0:
        raise ConfigError(f"--stall-timeout must be > 0 seconds, got {args.stall_timeout}")

    facts = model_facts_from_args(args)
    from edgeseg.cli.tta_options import tta_from_args

    tta = tta_from_args(args)
    _check_outputs(args)
    live_view = None
    if args.view_http:  # bound now, so a port in use is an error before the model loads
        from edgeseg.pipeline.live_http import LiveHttpServer

        live_view = LiveHttpServer(args.view_http)
    try:
        return _run(args, facts, tta, live_view)
    finally:
        if live_view is not None:
            live_view.close()


def _run(args: argparse.Namespace, facts: Any, tta: Any, live_view: Any) -> int:
    from edgeseg.pipeline.stream import Reconnect, run_stream
    from edgeseg.pipeline.progress import ProgressReporter
    from edgeseg.pipeline.views import View
    from edgeseg.cli.triton_options import open_triton_segmenter

    segmenter = (open_triton_segmenter(args.model, args, tta=tta)
                 or _open_segmenter(args.model, args.backend, facts, tta=tta))
    progress = ProgressReporter(sys.stderr)
    try:
        stats = run_stream(
            segmenter, args.source, args.out, masks_dir=args.masks, confidence_dir=args.confidence, alpha=args.alpha,
            mode=args.mode,
            display=args.display, stats_path=args.stats, max_frames=args.max_frames, queue_size=args.queue_size,
            reconnect=Reconnect(attempts=args.reconnect_attempts, delay_s=args.reconnect_delay),
            stall_timeout_s=args.stall_timeout,
            view=View(args.view, legend=args.legend, show_fps=args.show_fps, classes=tuple(segmenter.meta.classes),
                      palette_bgr=segmenter.palette_bgr),
            on_progress=progress.report, live_view=live_view,
        )
    finally:
        progress.close()
        close = getattr(segmenter, "close", None)
        if close is not None:
            close()

    sources = len(stats.sources)
    print(
        f"{stats.processed} frame(s) processed from {sources} source(s) in {stats.elapsed_s:.1f} s "
        f"({stats.fps:.1f} FPS); read {stats.read}, dropped {stats.dropped}, unreadable {stats.unreadable}"
    )
    for source in stats.sources:
        where = [w for w in (source.output, source.masks_dir and f"masks in {source.masks_dir}") if w]
        print(f"  [{source.index}] {source.source}: {source.processed} frame(s) -> {', '.join(where) or 'display'}"
              f" ({source.status}{'; ' + source.message if source.message else ''})")
    if args.confidence:
        print(f"confidence: {args.confidence}")
    if args.stats:
        print(f"stats: {args.stats}")
    if stats.interrupted:
        print(f"stopped early ({stats.interrupted}); outputs are complete up to that point")
        import signal

        if stats.interrupted in ("SIGINT", "SIGTERM", "SIGHUP"):
            return 128 + int(getattr(signal, stats.interrupted))
    if stats.lost_sources:
        for source in stats.lost_sources:
            print(f"warning: {source.message}")
        return 1
    return 0
