"""The TensorRT part of benchmarks/gpu_check.sh: runs only where an importable TensorRT flavour supports this GPU.

    python benchmarks/gpu_trt_check.py RESULTS WORK

Writes RESULTS/trt_verdict.json: which flavours are importable, whether each supports this GPU and whose word that
is, and for each supported one: an engine built and run through the device path vs ONNX Runtime (agreement), and
the first-start vs second-start time of a fresh process (TensorRT-RTX's runtime cache). With no supported flavour it
records why and exits 0: that is a finding about the machine (an H100/H200 has compute capability 9.0, which
TensorRT-RTX does not support, and standard TensorRT may not be installed), not a failure of EdgeSeg.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CHILD = r'''
import json, sys, time
t0 = time.perf_counter()
sys.path.insert(0, ".")
import numpy as np
from edgeseg.runtime.segmenter import Segmenter
from tests.runtime.onnx_graphs import random_scene
engine, onnx_path = sys.argv[1], sys.argv[2]
frames = [random_scene(np.random.default_rng(i), 720, 1280) for i in range(8)]
t1 = time.perf_counter()
with Segmenter(engine) as seg:
    t2 = time.perf_counter()
    seg.predict(frames[:1])
    t3 = time.perf_counter()
    masks = [seg.predict([f])[0] for f in frames]
    t4 = time.perf_counter()
    cache = seg.backend.runtime_cache
    out = {"device_path": bool(seg.backend.frames_on_device), "open_s": t2 - t1, "first_predict_s": t3 - t2,
           "steady_ms_per_frame": (t4 - t3) * 1e3 / len(frames), "import_s": t1 - t0,
           "runtime_cache_loaded": bool(cache and cache.loaded), "stage_ms": seg.stage_ms}
with Segmenter(onnx_path) as ort:
    want = [ort.predict([f])[0] for f in frames]
out["agreement_with_onnxruntime"] = float(np.mean([np.mean(a == b) for a, b in zip(masks, want)]))
print("RESULT " + json.dumps(out))
'''


def _run_flavour(flavour: str, work: Path) -> dict:
    from edgeseg.export.engine import engine_from_onnx
    from tests.runtime.onnx_graphs import write_pixel_classifier

    entry: dict = {}
    onnx_path = write_pixel_classifier(work / "e2e.onnx", (512, 1024), stride=8, batch=1)
    engine = engine_from_onnx(onnx_path, work / f"e2e_{flavour}.engine", flavour=flavour)
    for cache in work.glob(f"e2e_{flavour}.engine.*cache*"):
        cache.unlink()  # the first start must find no runtime cache
    for start in ("first_start", "second_start"):
        done = subprocess.run([sys.executable, "-c", CHILD, str(engine), str(onnx_path)], capture_output=True,
                              text=True)
        lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        entry[start] = json.loads(lines[-1][7:]) if lines else {"error": (done.stderr or done.stdout)[-2000:]}
    entry["ok"] = all("error" not in entry[s] and entry[s]["agreement_with_onnxruntime"] >= 0.999
                      for s in ("first_start", "second_start"))
    return entry


def main(results: Path, work: Path) -> int:
    from edgeseg.doctor import flavour_supports
    from edgeseg.runtime.gpu import cuda_api
    from edgeseg.runtime.trt_flavours import available_flavours

    info = cuda_api("cuda-python").device_info(0)
    verdict: dict = {"gpu": info.name, "compute_capability": info.compute_capability,
                     "importable": available_flavours(), "flavours": {}}
    failed = False
    for flavour in ("tensorrt", "tensorrt_rtx"):
        supported, why = flavour_supports(flavour, info.compute_capability)
        entry = verdict["flavours"][flavour] = {
            "importable": flavour in verdict["importable"], "supports_this_gpu": supported,
            # whose word it is: EdgeSeg's support table (edgeseg.doctor.flavour_supports), not TensorRT's own
            "why": f"EdgeSeg's support table (edgeseg.doctor.flavour_supports): {why}"}
        if not entry["importable"]:
            entry["ran"] = False
            entry["why_not_run"] = f"{flavour} is not importable on this machine"
            continue
        if not supported:
            entry["ran"] = False
            entry["why_not_run"] = "EdgeSeg refuses it up front (see why); TensorRT itself was not asked"
            continue
        try:
            entry.update(_run_flavour(flavour, work))
        except Exception as exc:  # record whatever raised, then fail the step
            entry["error"] = f"{type(exc).__name__}: {exc}"
            entry["ok"] = False
        entry["ran"] = True
        failed = failed or not entry["ok"]
    verdict["ran_any"] = any(e.get("ran") for e in verdict["flavours"].values())
    (results / "trt_verdict.json").write_text(json.dumps(verdict, indent=2) + "\n")
    print(json.dumps(verdict, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(Path(sys.argv[1]), Path(sys.argv[2])))
