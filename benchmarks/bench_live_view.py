"""What `edgeseg run --view-http` costs the pipeline: end-to-end FPS with 0, 1 and 4 browsers watching, in one run.

    .venv/bin/python benchmarks/bench_live_view.py --video ../shared/data/camvid/val_0016E5.mp4 \
        --out benchmarks/results/live_view_cpu.json [--model model.onnx] [--rounds 3]

Each round runs the same video through `run_stream` (--mode all, every frame segmented) three times: with no viewer,
with one and with four clients reading /stream/0.mjpg as fast as they can; the rounds interleave the three so
machine load hits them alike. Without --model, an untrained fcn8s_mobilenetv3 (the runtime's speed does not depend
on the weights) is exported at 180x240 with CamVid's 11 classes. Reports FPS per round, the median, the ratio to no
viewer, and the JPEGs each viewer received.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from edgeseg.bench import device_info
from edgeseg.files import write_file
from edgeseg.pipeline.live_http import LiveHttpServer
from edgeseg.pipeline.stream import run_stream
from edgeseg.runtime.segmenter import Segmenter

VIEWERS = (0, 1, 4)


def _untrained_model(folder: Path) -> Path:
    import torch

    from edgeseg.config import make_meta
    from edgeseg.export.onnx_export import onnx_from_torch
    from edgeseg.models.registry import build_model

    classes = ["sky", "building", "pole", "road", "pavement", "tree", "sign", "fence", "car", "pedestrian", "cyclist"]
    torch.manual_seed(0)
    model = build_model("fcn8s_mobilenetv3", num_classes=len(classes)).eval()
    return onnx_from_torch(model, make_meta("fcn8s_mobilenetv3", classes, (180, 240)), folder / "model.onnx",
                           max_batch=1)


def _viewer(url: str, stop: threading.Event, received: list[int], index: int) -> None:
    """Reads the MJPEG stream as fast as it comes, counting the pictures, until stop."""
    with urllib.request.urlopen(url, timeout=30) as response:
        while not stop.is_set():
            chunk = response.read1(65536)
            if not chunk:
                return
            received[index] += chunk.count(b"Content-Type: image/jpeg")


def _one_run(segmenter: Segmenter, video: str, viewers: int, max_frames: int | None) -> dict:
    server = LiveHttpServer("0")
    stop = threading.Event()
    received = [0] * viewers
    threads = [threading.Thread(target=_viewer, args=(server.url + "stream/0.mjpg", stop, received, i), daemon=True)
               for i in range(viewers)]

    def start_viewers(stats) -> None:  # on_progress: the server is up once the run has started
        if threads and not threads[0].is_alive() and not stop.is_set():
            for thread in threads:
                thread.start()

    stats = run_stream(segmenter, video, mode="all", max_frames=max_frames, live_view=server,
                       on_progress=start_viewers)
    stop.set()
    for thread in threads:
        thread.join(5)
    return {"fps": round(stats.fps, 2), "processed": stats.processed, "elapsed_s": round(stats.elapsed_s, 3),
            "jpegs_received_per_viewer": received,
            "end_to_end_ms_p50": stats.to_dict()["stages"]["end_to_end"].get("latency_ms_p50")}


def _picture_cpu_ms(segmenter: Segmenter, video: str, count: int = 50) -> float:
    """CPU milliseconds (process time, so other work on the machine does not count) to render and JPEG-encode one
    picture as the live view's thread does: the cost of each picture, whatever the load."""
    import cv2

    from edgeseg.pipeline.views import View

    capture = cv2.VideoCapture(video)
    ok, frame = capture.read()
    capture.release()
    if not ok:
        raise SystemExit(f"cannot read {video}")
    mask = segmenter.predict([frame])[0]
    view = View()
    started = time.process_time()
    for _ in range(count):
        picture = view.compose(frame, segmenter.render(frame, mask, view.renders, 0.5))
        cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, 80])
    return (time.process_time() - started) * 1e3 / count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--model", help="an .onnx with EdgeSeg metadata (default: an untrained fcn8s_mobilenetv3)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-frames", type=int, default=None)
    args = parser.parse_args(argv)

    model = Path(args.model) if args.model else _untrained_model(Path(tempfile.mkdtemp(prefix="edgeseg-live-")))
    uptime_before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    rounds: dict[int, list[dict]] = {count: [] for count in VIEWERS}
    with Segmenter(model) as segmenter:
        _one_run(segmenter, args.video, 0, 10)  # warm-up
        for round_index in range(args.rounds):
            for count in VIEWERS:
                result = _one_run(segmenter, args.video, count, args.max_frames)
                rounds[count].append(result)
                print(f"round {round_index + 1}: {count} viewer(s): {result['fps']:.1f} FPS, "
                      f"JPEGs per viewer {result['jpegs_received_per_viewer']}", flush=True)
        picture_ms = _picture_cpu_ms(segmenter, args.video)
    baseline = statistics.median(r["fps"] for r in rounds[0])
    summary = {
        str(count): {
            "fps_median": statistics.median(r["fps"] for r in runs),
            "fps_ratio_to_no_viewer": round(statistics.median(r["fps"] for r in runs) / baseline, 3),
            "runs": runs,
        }
        for count, runs in rounds.items()
    }
    result = {
        "what": "end-to-end FPS of run_stream --mode all on a video with 0, 1 and 4 MJPEG viewers of --view-http "
                "(JPEGs at most 15/s per source, made on the live view's own thread)",
        "model": str(model) if args.model else "untrained fcn8s_mobilenetv3, 180x240, 11 classes, ONNX Runtime CPU",
        "video": os.path.basename(args.video),
        "viewers": summary,
        "picture_cpu_ms": round(picture_ms, 3),
        "picture_cpu_share_at_15_per_s": round(picture_ms * 15 / 1000, 4),  # of one core, per watched source
        "device": device_info(),
        "uptime_before": uptime_before,
        "uptime_after": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    write_file(args.out, json.dumps(result, indent=2) + "\n")
    for count in VIEWERS:
        print(f"{count} viewer(s): {summary[str(count)]['fps_median']:.1f} FPS "
              f"({summary[str(count)]['fps_ratio_to_no_viewer']:.2f}x of no viewer)")
    print(f"one picture (render + JPEG): {picture_ms:.2f} CPU ms; at 15/s {picture_ms * 15 / 10:.1f} % of a core")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
