#!/usr/bin/env bash
# The one script a GPU machine runs (H100/H200 device machine, Jetson, any NVIDIA box) to check EdgeSeg's GPU side.
# Everything it measures goes under $RESULTS (default benchmarks/results/, or $OUT when the device tool sets it):
#   0. environment: GPU, driver, versions; with a wheel folder ($EDGESEG_WHEELS, default .whl/) installs those wheels
#      offline and builds pycuda from its sdist there (pycuda ships no wheels);
#   1. builds the package with its CUDA kernels unless edgeseg._C already has them (EDGESEG_SKIP_BUILD=1: reuse);
#   a. CUDA kernel parity: tests/runtime/test_ops_cuda.py                      -> ops_cuda_pytest.xml
#   b. kernel bandwidth: benchmarks/bench_kernels.py (CUDA cases, GB/s)         -> kernels_gpu.json
#   c. does TensorRT-RTX run on this GPU, and what does it say if not (an H100 is compute capability 9.0, which is
#      not in TensorRT-RTX's support list: the refusal message is the expected result there) -> trt_rtx_verdict.json
#   d. predict_frames end to end with every flavour whose engine runs here (vs ONNX Runtime), and the first-start vs
#      second-start time of a fresh process (TensorRT-RTX's runtime cache)   -> predict_frames_gpu.json
#   then the GPU runtime tests (cuda-python, and pycuda when importable)      -> gpu_pytest_<api>.xml
# Usage: bash benchmarks/gpu_check.sh        (from anywhere; PYTHON=... picks the interpreter)
set -u -o pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
RESULTS=${OUT:-benchmarks/results}
WHEELS=${EDGESEG_WHEELS:-.whl}
WORK=${EDGESEG_GPU_WORK:-/tmp/edgeseg_gpu_check}
mkdir -p "$RESULTS" "$WORK"
LOG="$RESULTS/gpu_check.log"
: >"$LOG"
export PYTHONUNBUFFERED=1
status=0
step() { echo; echo "===== $* =====" | tee -a "$LOG"; }
run() { "$@" 2>&1 | tee -a "$LOG"; local rc=${PIPESTATUS[0]}; [ "$rc" -eq 0 ] || status=1; return "$rc"; }

step "0. environment"
run nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv || true
if [ -d "$WHEELS" ]; then
    run "$PY" -m pip install -q --no-index --no-deps "$WHEELS"/*.whl || true
    for sdist in "$WHEELS"/pycuda-*.tar.gz; do
        [ -f "$sdist" ] || continue
        run "$PY" -m pip wheel -q --no-index --no-deps --no-build-isolation --find-links "$WHEELS" -w "$WORK/wheels" \
            "$sdist" && run "$PY" -m pip install -q --no-index --no-deps "$WORK"/wheels/pycuda-*.whl || true
    done
fi
run "$PY" - "$RESULTS" <<'EOF' || true
import importlib.util, json, sys
from pathlib import Path
env = {"python": sys.version.split()[0]}
for m in ("numpy", "cv2", "onnxruntime", "cuda.bindings", "pycuda", "tensorrt", "tensorrt_rtx", "tensorrt_lean",
          "tensorrt_dispatch", "cupy", "torch"):
    try:
        found = importlib.util.find_spec(m) is not None
    except (ImportError, ValueError):
        found = False
    version = None
    if found:
        try:
            version = getattr(__import__(m, fromlist=["_"]), "__version__", "?")
        except Exception as exc:  # describe the machine; an unimportable module is a finding, not a failure
            version = f"import failed: {exc}"
    env[m] = version
print(json.dumps(env, indent=2))
(Path(sys.argv[1]) / "gpu_environment.json").write_text(json.dumps(env, indent=2) + "\n")
EOF

step "1. build edgeseg (CUDA kernels)"
have_cuda_kernels() { "$PY" -c "from edgeseg import _C; import sys; sys.exit(0 if _C.has_cuda() else 1)" 2>/dev/null; }
if [ "${EDGESEG_SKIP_BUILD:-0}" = 1 ] || have_cuda_kernels; then
    echo "edgeseg._C with CUDA kernels is importable: not rebuilding" | tee -a "$LOG"
else
    run "$PY" -m pip install -q -e . --no-build-isolation --no-deps || echo "BUILD FAILED" | tee -a "$LOG"
fi
run "$PY" -c "from edgeseg import _C; print('edgeseg._C', _C.build_info, 'has_cuda', _C.has_cuda(), 'devices', _C.cuda_device_count())"

step "a. CUDA kernel parity"
run "$PY" -m pytest -q -rs tests/runtime/test_ops_cuda.py --junitxml="$RESULTS/ops_cuda_pytest.xml"

step "b. kernel bandwidth"
run "$PY" benchmarks/bench_kernels.py --min-time 0.3 --out "$RESULTS/kernels_gpu.json"

step "c. TensorRT-RTX on this GPU"
run "$PY" - "$RESULTS" "$WORK" <<'EOF'
"""Build a TensorRT-RTX engine (AOT, as shipped) and open it here: the verdict records what happened, refusal included."""
import json, sys, traceback
from pathlib import Path
sys.path.insert(0, ".")
results, work = Path(sys.argv[1]), Path(sys.argv[2])
verdict = {"flavour": "tensorrt_rtx", "built": False, "runs": False, "error": None}
try:
    from edgeseg.runtime.gpu import cuda_api
    info = cuda_api("cuda-python").device_info(0)
    verdict.update(gpu=info.name, compute_capability=info.compute_capability)
    from edgeseg.export.engine import engine_from_onnx
    from edgeseg.runtime.segmenter import Segmenter
    from edgeseg.runtime.trt_flavours import RTX_COMPUTE_CAPABILITIES, import_trt
    from tests.runtime.onnx_graphs import random_scene, write_pixel_classifier
    import numpy as np
    trt, _ = import_trt("tensorrt_rtx")
    verdict["trt_version"] = trt.__version__
    verdict["in_rtx_support_list"] = info.compute_capability in RTX_COMPUTE_CAPABILITIES
    onnx_path = write_pixel_classifier(work / "rtx_pixel.onnx", (64, 96))
    engine = engine_from_onnx(onnx_path, work / "rtx_pixel.engine", flavour="tensorrt_rtx")
    verdict["built"] = True
    with Segmenter(engine) as seg, Segmenter(onnx_path) as ort:
        frames = [random_scene(np.random.default_rng(i), 120, 160) for i in range(2)]
        got, want = seg.predict(frames), ort.predict(frames)
        verdict["runs"] = True
        verdict["device_path"] = bool(seg.backend.frames_on_device)
        verdict["agreement_with_onnxruntime"] = float(np.mean([np.mean(a == b) for a, b in zip(got, want)]))
except Exception as exc:  # the verdict records any failure, whatever raised it; EdgeSegErrors carry the reason
    verdict["error"] = f"{type(exc).__name__}: {exc}"
    if not type(exc).__module__.startswith("edgeseg"):
        traceback.print_exc()
(results / "trt_rtx_verdict.json").write_text(json.dumps(verdict, indent=2) + "\n")
print(json.dumps(verdict, indent=2))
EOF

step "d. predict_frames end to end, first start vs second start"
run "$PY" - "$RESULTS" "$WORK" "$PY" <<'EOF'
"""For each importable flavour: build an engine, run predict_frames in two fresh processes (the second start finds
TensorRT-RTX's runtime cache), time both, and compare masks with ONNX Runtime."""
import json, subprocess, sys
from pathlib import Path
sys.path.insert(0, ".")
results, work, python = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
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
    first = seg.predict(frames[:1])
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
report = {}
try:
    from edgeseg.export.engine import engine_from_onnx
    from edgeseg.runtime.trt_flavours import available_flavours
    from tests.runtime.onnx_graphs import write_pixel_classifier
    onnx_path = write_pixel_classifier(work / "e2e.onnx", (512, 1024), stride=8, batch=1)
    flavours = available_flavours()
except Exception as exc:  # record why nothing could run, then stop this step
    report["error"] = f"{type(exc).__name__}: {exc}"
    flavours = []
for flavour in flavours:
    entry = report.setdefault(flavour, {})
    try:
        engine = engine_from_onnx(onnx_path, work / f"e2e_{flavour}.engine", flavour=flavour)
        for cache in work.glob(f"e2e_{flavour}.engine.*cache*"):
            cache.unlink()  # the first start must find no runtime cache
        for start in ("first_start", "second_start"):
            done = subprocess.run([python, "-c", CHILD, str(engine), str(onnx_path)], capture_output=True, text=True)
            lines = [l for l in done.stdout.splitlines() if l.startswith("RESULT ")]
            entry[start] = json.loads(lines[-1][7:]) if lines else {"error": (done.stderr or done.stdout)[-2000:]}
    except Exception as exc:  # one flavour failing (e.g. TensorRT-RTX on an H100) must not hide the others
        entry["error"] = f"{type(exc).__name__}: {exc}"
(results / "predict_frames_gpu.json").write_text(json.dumps(report, indent=2) + "\n")
print(json.dumps(report, indent=2))
EOF

step "GPU runtime tests"
for api in cuda-python pycuda; do
    module=$([ "$api" = pycuda ] && echo pycuda || echo cuda.bindings)
    if "$PY" -c "import importlib.util, sys; sys.exit(0 if importlib.util.find_spec('$module') else 1)" 2>/dev/null; then
        EDGESEG_CUDA_API=$api run "$PY" -m pytest -q -rs tests/runtime/test_gpu_path.py \
            tests/runtime/test_tensorrt_backend.py tests/runtime/test_gpu_layer.py tests/runtime/test_gpu_tensorrt_fakes.py \
            --junitxml="$RESULTS/gpu_pytest_$api.xml"
    else
        echo "$api is not importable: its run is skipped" | tee -a "$LOG"
    fi
done

echo "results in $RESULTS (log: $LOG); overall status $status"
exit $status
