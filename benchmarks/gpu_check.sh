#!/usr/bin/env bash
# EdgeSeg's GPU check: what a machine with an NVIDIA GPU proves, in two calls. It fails loudly: every step that did
# not run on the GPU (no device, a CPU-only extension, the wrong architecture, a skipped test) ends it non-zero with
# a line "GPU CHECK FAILED: <reason>".
#
#   bash benchmarks/gpu_check.sh check   build the extension for this GPU's architecture, then
#        a. CUDA kernel parity (tests/runtime/test_ops_cuda.py; a skip is a failure)
#        b. the real-device tests (tests/runtime/test_gpu_real.py: cuda-python buffer layer, CUDA graphs of edgeseg._C
#           kernels, the TensorRT device path around a CuPy stand-in engine; a skip is a failure)
#        c. kernel GB/s of the CUDA kernels alone vs the device's copy bandwidth (benchmarks/bench_kernels.py)
#        d. TensorRT, only where an importable flavour supports this GPU (benchmarks/gpu_trt_check.py; otherwise
#           trt_verdict.json records why, in EdgeSeg's words)
#        e. edgeseg doctor --json
#   bash benchmarks/gpu_check.sh train   GPU training: `edgeseg train --recipe camvid-gpu --val-groups 0006R0`, several
#        runs side by side on the one GPU (EDGESEG_TRAIN_RUNS), CamVid from $EDGESEG_CAMVID (default .gpu_data/camvid,
#        else ../shared/data/camvid); per-run metrics, a summary, and the first run's best.pt in 15 MB parts.
#
# Results go to $OUT (the device tool's folder, at most 8 files come back) or benchmarks/results/gpu/; the JUnit
# files are bundled into junit.tar.gz. Environment:
#   PYTHON=python3          the interpreter (the device image's python3 has torch+CUDA, CuPy and cuda-bindings)
#   EDGESEG_SKIP_BUILD=1    reuse the installed edgeseg._C (still checked for CUDA kernels, a device and this arch)
#   EDGESEG_PYCUDA=1        also build pycuda from its sdist in $EDGESEG_WHEELS (3-4 minutes there) and test the
#                           buffer layer on it. Fetch what it needs, here, once (cp312, manylinux; pycuda has no wheel):
#     echo /.whl/ >> .git/info/exclude; python3 -m pip download --no-deps --no-binary=:all: -d .whl pycuda==2025.1.2
#     python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#         --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
#         pytools platformdirs mako markupsafe siphash24 typing_extensions
#   EDGESEG_WHEELS=.whl     wheels installed offline first (--no-deps), when the folder exists
#   EDGESEG_TRAIN_RUNS      'name:options;name:options' (default: seed0 and seed1 of the recipe, and seed0 with
#                           --aux-weight 0.4), each an `edgeseg train` process of its own
set -u -o pipefail
cd "$(dirname "$0")/.."
MODE=${1:-check}
PY=${PYTHON:-python3}
RESULTS=${OUT:-benchmarks/results/gpu}
WHEELS=${EDGESEG_WHEELS:-.whl}
WORK=${EDGESEG_GPU_WORK:-/tmp/edgeseg_gpu_check}
rm -rf "$WORK/junit"  # a warm machine keeps the last call's files: bundle only this call's
mkdir -p "$RESULTS" "$WORK/junit"
LOG="$RESULTS/gpu_$MODE.log"
: >"$LOG"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PATH="$PATH:/usr/local/cuda/bin"  # nvcc, where the image keeps it off PATH (CMake finds it only on PATH)
failures=()
started=$(date +%s)

say() { echo "$*" | tee -a "$LOG"; }
step() { say ""; say "===== $* ($(($(date +%s) - started)) s) ====="; }
fail() { say "GPU CHECK FAILED: $*"; failures+=("$*"); }
finish() {
    if [ "$MODE" = check ] && [ -n "$(ls -A "$WORK/junit" 2>/dev/null)" ]; then
        tar -czf "$RESULTS/junit.tar.gz" -C "$WORK/junit" .
    fi
    say ""
    if [ ${#failures[@]} -eq 0 ]; then say "GPU CHECK PASSED ($MODE, $(($(date +%s) - started)) s); results in $RESULTS"; exit 0; fi
    say "GPU CHECK: ${#failures[@]} failure(s) ($MODE, $(($(date +%s) - started)) s):"
    for f in "${failures[@]}"; do say "  - $f"; done
    exit 1
}
stop() { fail "$*"; finish; }  # a failure after which nothing else can run
run() { "$@" 2>&1 | tee -a "$LOG"; return "${PIPESTATUS[0]}"; }
pytest_step() {  # pytest_step NAME ARGS...: the run must pass with no skip (read from its JUnit file)
    local name=$1; shift
    run "$PY" -m pytest -q -rs -p no:cacheprovider "$@" --junitxml="$WORK/junit/$name.xml"
    run "$PY" benchmarks/gpu_check_tools.py junit "$WORK/junit/$name.xml" || fail "$name: tests failed or skipped (see above)"
}

# ----- the GPU: nothing below means anything without one ---------------------------------------------------------
step "0. GPU and environment"
command -v nvidia-smi >/dev/null || stop "no NVIDIA GPU: nvidia-smi is not on PATH (no driver, or not a GPU machine)"
gpus=$(nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv,noheader 2>&1) \
    || stop "no NVIDIA GPU: nvidia-smi failed: $gpus"
[ -n "$gpus" ] || stop "no NVIDIA GPU: nvidia-smi lists no device"
say "$gpus"
cc=$(echo "$gpus" | head -1 | cut -d, -f2 | tr -d ' ')
[[ "$cc" =~ ^[0-9]+\.[0-9]+$ ]] || stop "cannot read the compute capability from nvidia-smi: '$cc'"
ARCH=${cc/./}
say "compute capability $cc: building for sm_$ARCH"
ENV_DIR=$RESULTS; [ "$MODE" = train ] && ENV_DIR=$WORK  # train: $OUT's 8 files go to the runs
"$PY" - "$ENV_DIR" <<'EOF' 2>&1 | tee -a "$LOG"
import importlib.util, json, platform, sys
from pathlib import Path
env = {"python": sys.version.split()[0], "machine": platform.machine()}
for m in ("numpy", "cv2", "onnxruntime", "cuda.bindings", "pycuda", "tensorrt", "tensorrt_rtx", "cupy", "torch"):
    try:
        spec = importlib.util.find_spec(m)
    except (ImportError, ValueError):
        spec = None
    version = None
    if spec is not None:
        try:
            version = getattr(__import__(m, fromlist=["_"]), "__version__", "?")
        except Exception as exc:  # an unimportable module is a finding about the machine
            version = f"import failed: {exc}"
    env[m] = version
print(json.dumps(env))
(Path(sys.argv[1]) / "gpu_environment.json").write_text(json.dumps(env, indent=2) + "\n")
EOF

if [ "$MODE" = train ]; then
    step "train: CamVid on the GPU, runs side by side"
    DATA=${EDGESEG_CAMVID:-.gpu_data/camvid}
    [ -d "$DATA" ] || DATA=../shared/data/camvid
    [ -f "$DATA/classes.json" ] || stop "no CamVid at ${EDGESEG_CAMVID:-.gpu_data/camvid} or ../shared/data/camvid: copy it into .gpu_data/camvid and carry that folder"
    "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
        || stop "torch sees no CUDA device: GPU training cannot run"
    RUNS=${EDGESEG_TRAIN_RUNS:-"seed0:--seed 0;seed1:--seed 1;aux:--seed 0 --aux-weight 0.4"}
    IFS=';' read -ra specs <<<"$RUNS"
    workers=$(( ($(nproc) - 1) / ${#specs[@]} )); [ "$workers" -ge 1 ] || workers=1
    pids=(); folders=()
    for spec in "${specs[@]}"; do
        name=${spec%%:*}; options=${spec#*:}
        folders+=("$WORK/train/$name"); rm -rf "$WORK/train/$name"
        # shellcheck disable=SC2086  # options are words
        "$PY" -m edgeseg train --data "$DATA" --recipe camvid-gpu --val-groups 0006R0 --workers "$workers" \
            --out "$WORK/train/$name" $options >"$WORK/train_$name.log" 2>&1 &
        pids+=($!)
        say "started $name (pid $!): --recipe camvid-gpu --val-groups 0006R0 --workers $workers $options"
    done
    for i in "${!pids[@]}"; do wait "${pids[$i]}" || fail "training run ${specs[$i]%%:*} exited non-zero"; done
    for spec in "${specs[@]}"; do name=${spec%%:*}; say "--- $name"; tail -n 25 "$WORK/train_$name.log" | tee -a "$LOG" >/dev/null
        cp "$WORK/train/$name/metrics.json" "$RESULTS/train_$name.json" 2>/dev/null || true; done
    run "$PY" benchmarks/gpu_check_tools.py train-summary "${folders[@]}" >"$RESULTS/gpu_train_summary.json" \
        || fail "a training run wrote no metrics.json"
    cat "$RESULTS/gpu_train_summary.json" | tee -a "$LOG"
    if [ -f "${folders[0]}/best.pt" ]; then split -b 15M -d "${folders[0]}/best.pt" "$RESULTS/best_pt.part"; fi
    finish
fi
[ "$MODE" = check ] || stop "unknown mode '$MODE' (check or train)"

# ----- 1. the extension, with CUDA kernels for this GPU --------------------------------------------------------------
step "1. build edgeseg._C for sm_$ARCH"
if [ "${EDGESEG_SKIP_BUILD:-0}" != 1 ]; then
    command -v nvcc >/dev/null || stop "no CUDA compiler: nvcc is neither on PATH nor in /usr/local/cuda/bin"
    if [ -d "$WHEELS" ]; then run "$PY" -m pip install -q --no-index --no-deps "$WHEELS"/*.whl || fail "offline wheels did not install"; fi
    if [ "${EDGESEG_PYCUDA:-0}" = 1 ]; then
        for sdist in "$WHEELS"/pycuda-*.tar.gz; do
            [ -f "$sdist" ] || { fail "EDGESEG_PYCUDA=1 but no pycuda sdist in $WHEELS (see this script's header)"; break; }
            run "$PY" -m pip wheel -q --no-index --no-deps --no-build-isolation -w "$WORK/wheels" "$sdist" \
                && run "$PY" -m pip install -q --no-index --no-deps "$WORK"/wheels/pycuda-*.whl || fail "pycuda did not build"
        done
    fi
    CUDAARCHS=$ARCH run "$PY" -m pip install -q --no-build-isolation --no-deps -e . \
        -Ccmake.define.EDGESEG_CUDA=ON -Cbuild-dir="build/gpu_check_sm$ARCH" || stop "the extension did not build (see above)"
fi
probe=$("$PY" benchmarks/gpu_check_tools.py probe 2>&1)
say "$probe"
"$PY" - "$probe" "$ARCH" <<'EOF' 2>&1 | tee -a "$LOG" || stop "$(tail -1 "$LOG" | sed 's/^REASON: //')"
import json, sys
probe, arch = json.loads(sys.argv[1]), sys.argv[2]
reason = None
if not probe.get("importable"):
    reason = f"edgeseg._C does not import: {probe.get('error')}"
elif not probe["has_cuda"]:
    reason = "edgeseg._C was built without CUDA kernels (CPU-only: nvcc was not found at build time)"
elif probe["devices"] < 1:
    reason = "edgeseg._C sees no CUDA device (cudaGetDeviceCount is 0)"
elif arch not in probe["architectures"]:
    reason = f"edgeseg._C has no sm_{arch} code for this GPU (built for {', '.join(probe['architectures'])})"
if reason:
    print(f"REASON: {reason}")
    sys.exit(1)
print(f"edgeseg._C: CUDA kernels for sm_{arch}, {probe['devices']} device(s)")
EOF

step "a. CUDA kernel parity (a skip is a failure)"
pytest_step ops_cuda tests/runtime/test_ops_cuda.py

step "b. real-device tests: buffer layer, CUDA graphs, device path around a stand-in engine (a skip is a failure)"
if [ "${EDGESEG_PYCUDA:-0}" = 1 ]; then pytest_step gpu_real tests/runtime/test_gpu_real.py
else pytest_step gpu_real tests/runtime/test_gpu_real.py -k "not pycuda"; fi

step "c. kernel bandwidth (CUDA kernels only; numpy/OpenCV/C++ are measured on the CPU machines)"
run "$PY" benchmarks/bench_kernels.py --gpu on --impls cuda --min-time 0.2 --sizes 360x480,1080x1920,2160x3840 \
    --out "$RESULTS/kernels_gpu.json" || fail "bench_kernels.py --gpu on failed"

step "d. TensorRT (only where an importable flavour supports this GPU)"
run "$PY" benchmarks/gpu_trt_check.py "$RESULTS" "$WORK" || fail "a TensorRT flavour that supports this GPU failed"

step "e. edgeseg doctor"
"$PY" -m edgeseg doctor --json >"$RESULTS/doctor.json" 2>>"$LOG" || fail "edgeseg doctor failed"
finish
