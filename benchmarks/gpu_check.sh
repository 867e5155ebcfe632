#!/usr/bin/env bash
# The one script a GPU session runs (H100/H200 device machine, or any NVIDIA box) to check the GPU side of EdgeSeg:
#   1. builds the package with its CUDA kernels (pip install -e . --no-build-isolation), unless edgeseg._C already
#      has them (EDGESEG_SKIP_BUILD=1 forces reuse);
#   2. pytest tests/runtime/test_ops_cuda.py tests/runtime/test_gpu_path.py tests/runtime/test_tensorrt_backend.py -rs;
#   3. benchmarks/bench_kernels.py (its CUDA cases need CuPy or torch with CUDA);
#   4. builds a small engine from a hand-made ONNX graph and runs `edgeseg bench` on it (JSON);
#      then fcn8s_resnet18 engines with in-graph ArgMax (TensorRT's TopK) vs logits + our CUDA (upsample-)argmax;
#   5. prints a VERDICT block: does TensorRT(-RTX) deserialise and run an engine on this GPU, and at what compute
#      capability. TensorRT-RTX's support matrix names RTX-class GPUs (compute capability 8.x / 12.x); an H100 is 9.0,
#      so the outcome there is recorded as seen, not assumed.
# TensorRT-RTX and any other missing wheels are installed by the caller before this runs, e.g.
#   python3 -m pip install -q --no-index --no-deps --target /tmp/trtrtx/site .whl/*.whl && export PYTHONPATH=/tmp/trtrtx/site
# Results go to $OUT (the device tool's output folder) when set, else benchmarks/results/.
# Usage: bash benchmarks/gpu_check.sh            (from the repository root; PYTHON=... to pick the interpreter)
set -u -o pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
RESULTS=${OUT:-benchmarks/results}
mkdir -p "$RESULTS"
LOG="$RESULTS/gpu_check.log"
: >"$LOG"
export PYTHONUNBUFFERED=1
status=0
step() { echo; echo "===== $* =====" | tee -a "$LOG"; }
run() { "$@" 2>&1 | tee -a "$LOG"; local rc=${PIPESTATUS[0]}; [ "$rc" -eq 0 ] || status=1; return "$rc"; }

step "environment"
run nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv || true
run "$PY" - <<'EOF' || true
import importlib.util, sys
print("python", sys.version.split()[0], sys.executable)
for m in ("numpy", "cv2", "onnx", "onnxruntime", "onnxconverter_common", "cuda.bindings", "tensorrt", "tensorrt_rtx",
          "cupy", "torch"):
    try:
        found = importlib.util.find_spec(m) is not None
    except (ImportError, ValueError):
        found = False
    version = ""
    if found:
        try:
            mod = __import__(m, fromlist=["_"])
            version = getattr(mod, "__version__", "")
        except Exception as exc:  # report, don't stop: this block only describes the machine
            version = f"import failed: {exc}"
    print(f"  {m:22s} {'yes' if found else 'NO '} {version}")
EOF

step "build edgeseg (CUDA kernels)"
have_cuda_kernels() { "$PY" -c "from edgeseg import _C; import sys; sys.exit(0 if _C.has_cuda() else 1)" 2>/dev/null; }
if [ "${EDGESEG_SKIP_BUILD:-0}" = 1 ] || have_cuda_kernels; then
    echo "edgeseg._C with CUDA kernels is importable: not rebuilding" | tee -a "$LOG"
else
    run "$PY" -m pip install -q -e . --no-build-isolation --no-deps || echo "BUILD FAILED" | tee -a "$LOG"
fi
run "$PY" -c "from edgeseg import _C; print('edgeseg._C', _C.build_info, 'has_cuda', _C.has_cuda(), 'devices', _C.cuda_device_count())"

step "pytest (GPU tests)"
run "$PY" -m pytest -q -rs tests/runtime/test_ops_cuda.py tests/runtime/test_gpu_path.py tests/runtime/test_tensorrt_backend.py \
    --junitxml="$RESULTS/gpu_pytest.xml"

step "bench_kernels (CUDA cases when CuPy/torch-CUDA are present)"
run "$PY" benchmarks/bench_kernels.py --min-time 0.3 --out "$RESULTS/kernels_gpu.json"

step "engine build + deserialise + run + edgeseg bench"
run "$PY" - "$RESULTS" <<'EOF'
import json, sys, time, traceback
from pathlib import Path
sys.path.insert(0, ".")
import numpy as np

results = Path(sys.argv[1])
work = Path("/tmp/edgeseg_gpu_check"); work.mkdir(parents=True, exist_ok=True)
verdict = {"built": False, "deserialised": False, "ran": False, "matches_onnxruntime": None, "error": None}
try:
    from cuda.bindings import runtime as cudart
    err, props = cudart.cudaGetDeviceProperties(0)
    if err == cudart.cudaError_t.cudaSuccess:
        verdict["gpu"] = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
        verdict["compute_capability"] = f"{props.major}.{props.minor}"
    from tests.runtime.onnx_graphs import random_scene, write_pixel_classifier
    from edgeseg.export.engine import engine_from_onnx
    from edgeseg.runtime.trt_flavours import import_trt
    from edgeseg.runtime.segmenter import Segmenter

    trt, flavour = import_trt("auto")
    verdict["flavour"], verdict["trt_version"] = flavour, trt.__version__
    size = (512, 1024)
    onnx_path = write_pixel_classifier(work / "pixel.onnx", size, stride=8, batch=1)
    t0 = time.perf_counter()
    engine = engine_from_onnx(onnx_path, work / "pixel.engine")
    verdict["built"], verdict["build_s"] = True, round(time.perf_counter() - t0, 2)
    frames = [random_scene(np.random.default_rng(i), 720, 1280) for i in range(4)]
    with Segmenter(engine) as seg:
        verdict["deserialised"] = True
        verdict["device_path"] = bool(seg.backend.frames_on_device)
        masks = [seg.predict([f])[0] for f in frames]
        verdict["ran"] = True
        verdict["stage_ms"] = seg.stage_ms
    with Segmenter(onnx_path) as ort:
        want = [ort.predict([f])[0] for f in frames]
    verdict["matches_onnxruntime"] = float(np.mean([np.mean(a == b) for a, b in zip(masks, want)]))
except Exception as exc:  # the verdict must record any failure, whatever raised it
    verdict["error"] = f"{type(exc).__name__}: {exc}"
    traceback.print_exc()
(results / "trt_verdict.json").write_text(json.dumps(verdict, indent=2))
print(json.dumps(verdict, indent=2))
EOF
if [ -f /tmp/edgeseg_gpu_check/pixel.engine ]; then
    run "$PY" -m edgeseg bench /tmp/edgeseg_gpu_check/pixel.engine --json "$RESULTS/bench_engine.json" \
        --frame-size 720 1280 --min-seconds 3
    run "$PY" -m edgeseg bench /tmp/edgeseg_gpu_check/pixel.onnx --json "$RESULTS/bench_onnx.json" \
        --frame-size 720 1280 --min-seconds 3
fi

step "in-graph ArgMax (TensorRT TopK) vs logits + our CUDA argmax: fcn8s_resnet18, 19 classes, 512x1024 input"
run "$PY" - "$RESULTS" <<'EOF'
import json, subprocess, sys
from pathlib import Path
sys.path.insert(0, ".")
results, work = Path(sys.argv[1]), Path("/tmp/edgeseg_gpu_check/argmax")
work.mkdir(parents=True, exist_ok=True)
try:
    import torch
    from edgeseg.config import make_meta
    from edgeseg.export.pipeline import export_model
    from edgeseg.models import build_model
    from edgeseg.training.checkpoint import save_checkpoint

    torch.manual_seed(0)
    meta = make_meta("fcn8s_resnet18", [f"c{i}" for i in range(19)], (512, 1024))
    ckpt = save_checkpoint(work / "random.pt", build_model("fcn8s_resnet18", num_classes=19).eval(), meta)
    out = {}
    for name, options in (("logits_kernel_argmax", {}), ("ingraph_argmax_topk", {"argmax": True}),
                          ("lowres_kernel_upsample_argmax", {"lowres": True})):
        exported = export_model(ckpt, work / name, engine=True, progress=False, **options)
        bench = results / f"bench_{name}.json"
        subprocess.run([sys.executable, "-m", "edgeseg", "bench", exported["engines"]["fp32"], "--json", str(bench),
                        "--frame-size", "1080", "1920", "--min-seconds", "3"], check=True)
        out[name] = json.loads(bench.read_text())["stages"]
    (results / "argmax_topk_vs_kernel.json").write_text(json.dumps(out, indent=2))
    for name, stages in out.items():
        print(f"{name:32s} infer p50 {stages['infer']['latency_ms_p50']:.3f} ms  "
              f"postprocess p50 {stages['postprocess']['latency_ms_p50']:.3f} ms  "
              f"frame p50 {stages['frame']['latency_ms_p50']:.3f} ms")
except Exception as exc:  # a GPU run records what failed and goes on to the verdict
    print(f"argmax comparison failed: {type(exc).__name__}: {exc}")
EOF

step "VERDICT"
"$PY" - "$RESULTS" <<'EOF' | tee -a "$LOG"
import json, sys
from pathlib import Path
path = Path(sys.argv[1]) / "trt_verdict.json"
v = json.loads(path.read_text()) if path.exists() else {"error": "no verdict written"}
gpu = f"{v.get('gpu', '?')} (compute capability {v.get('compute_capability', '?')})"
trt = f"{v.get('flavour', '?')} {v.get('trt_version', '')}".strip()
if v.get("ran"):
    print(f"YES: {trt} built, deserialised and ran an engine on {gpu}; GPU frame path: {v.get('device_path')}; "
          f"agreement with ONNX Runtime: {v.get('matches_onnxruntime')}")
else:
    stage = "deserialise" if v.get("built") else "build"
    print(f"NO: {trt} failed to {stage} / run an engine on {gpu}: {v.get('error')}")
EOF
echo "results in $RESULTS (log: $LOG); overall status $status"
exit $status
