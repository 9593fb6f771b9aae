#!/usr/bin/env bash
# Chorus GPU kit, the batching sections: one prepared run on a GPU machine (about 9 minutes),
# from the repository root:   bash bench/gpu/run.sh
# Conventions as shared/gpu-kit/README.md sets them (no network there; Python 3.12 with torch
# preinstalled; the wheels of shared/gpu-kit/wheels.txt in .gpu/whl, installed with
# --no-index into $SITE; the generated protobuf code in gen/). See bench/gpu/README.md.
#
# Sections, each its own subprocess under its own `timeout` (one failing leaves the others):
#   vits    bench.gpu.kit_vits_batched      -> $OUT/vits_batched.json
#   xtts    bench.gpu.kit_xtts_batched      -> $OUT/xtts_batched.json
#   vision  bench.gpu.kit_vision_batching   -> $OUT/vision_batching.json
#   pytest  the CUDA-only tests             -> $OUT/pytest.txt
# and $OUT/log.txt (everything) and $OUT/summary.txt (one line a section).
#
# Local dry run (no GPU, the plumbing only): KIT_DEVICE=cpu KIT_PYTHON=.venv/bin/python \
#   OUT=/tmp/kit-out bash bench/gpu/run.sh
# Some sections only: KIT_SECTIONS="xtts pytest" bash bench/gpu/run.sh
set -u
export PYTHONUNBUFFERED=1
T_START=$(date +%s)
ROOT=$(pwd)
OUT=${OUT:-/tmp/kit-out}
mkdir -p "$OUT"
PY=${KIT_PYTHON:-python3}
SITE=${KIT_SITE:-/tmp/site}
WHEELS=${KIT_WHEELS:-$ROOT/.gpu/whl}
DEVICE=${KIT_DEVICE:-cuda}
SUMMARY=$OUT/summary.txt
: >"$SUMMARY"
exec > >(tee -a "$OUT/log.txt") 2>&1
TEE_PID=$!

if [ "$DEVICE" = cpu ]; then
  CPU_FLAG=--cpu
  F=4 # timeouts: the CPU is slow
  BUDGET=100000
else
  CPU_FLAG=
  F=1
  BUDGET=${KIT_BUDGET_S:-560} # the whole run: later sections' limits shrink to fit
fi
# Per-section limits in seconds on the GPU; with the install they sum to 560 (about 9 minutes).
T_INSTALL=$((30 * F)); T_VITS=$((150 * F)); T_XTTS=$((170 * F)); T_VISION=$((125 * F))
T_PYTEST=$((85 * F))
SECTIONS=" ${KIT_SECTIONS:-vits xtts vision pytest} "
want() {
  case "$SECTIONS" in *" $1 "*) return 0 ;; esac
  echo "$1: not asked for (KIT_SECTIONS)" | tee -a "$SUMMARY"
  return 1
}
elapsed() { echo $(($(date +%s) - T_START)); }
# fit LIMIT FLOOR_AFTER: LIMIT, or less so that FLOOR_AFTER seconds stay for later sections
fit() {
  local room=$((BUDGET - $(elapsed) - $2))
  if [ "$room" -ge "$1" ]; then echo "$1"; elif [ "$room" -lt 15 ]; then echo 15; else echo "$room"; fi
}
# run_section NAME LIMIT COMMAND...: COMMAND under timeout; one line in the summary.
run_section() {
  local name=$1 limit=$2
  shift 2
  local t0 rc what
  t0=$(date +%s)
  echo
  echo "=== [$(elapsed)s] section $name (limit ${limit}s): $*"
  if [ -n "${SECTION_OUT:-}" ]; then
    timeout --kill-after=10 "$limit" "$@" >"$SECTION_OUT" 2>&1
  else
    timeout --kill-after=10 "$limit" "$@"
  fi
  rc=$?
  what=ok
  [ $rc -ne 0 ] && what="FAILED rc=$rc"
  { [ $rc -eq 124 ] || [ $rc -eq 137 ]; } && what="TIMED OUT after ${limit}s (rc=$rc)"
  echo "$name: $what, $(($(date +%s) - t0))s (t=$(elapsed)s)" | tee -a "$SUMMARY"
  return $rc
}

echo "=== Chorus GPU kit (batching): device=$DEVICE python=$PY out=$OUT commit=$(git rev-parse --short HEAD 2>/dev/null)"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv

# ---- install: the carried wheels, into their own folder (none carried: what is there runs)
if compgen -G "$WHEELS/*.whl" >/dev/null; then
  rm -rf "$SITE"
  run_section install "$T_INSTALL" "$PY" -m pip install -q --no-index --no-deps --no-compile \
    --no-cache-dir --upgrade --target "$SITE" "$WHEELS"/*.whl
  export PYTHONPATH=$SITE:$ROOT:$ROOT/gen
else
  echo "install: no wheels in $WHEELS, using $PY's own packages" | tee -a "$SUMMARY"
  export PYTHONPATH=$ROOT:$ROOT/gen
fi
[ -d "$ROOT/gen" ] || echo "WARNING: no gen/ (the generated protobuf code): carry it" | tee -a "$SUMMARY"
export YOLO_OFFLINE=1 YOLO_AUTOINSTALL=false YOLO_CONFIG_DIR=${TMPDIR:-/tmp}/kit-ultralytics
export TOKENIZERS_PARALLELISM=false

# ---- the three benchmarks (each prints its JSON and writes it to --out)
if want vits; then
  VITS_ARGS=()
  [ "$DEVICE" = cpu ] && VITS_ARGS=(--concurrency 1 4)
  run_section vits "$(fit "$T_VITS" 380)" "$PY" -m bench.gpu.kit_vits_batched $CPU_FLAG \
    --out "$OUT/vits_batched.json" "${VITS_ARGS[@]}"
fi
if want xtts; then
  run_section xtts "$(fit "$T_XTTS" 210)" "$PY" -m bench.gpu.kit_xtts_batched $CPU_FLAG \
    --out "$OUT/xtts_batched.json"
fi
if want vision; then
  run_section vision "$(fit "$T_VISION" 85)" "$PY" -m bench.gpu.kit_vision_batching $CPU_FLAG \
    --out "$OUT/vision_batching.json"
fi

# ---- the tests that run only where torch sees CUDA (on the CPU they skip or run as there)
if want pytest; then
  PYTEST=("$PY" -m pytest -q -p no:cacheprovider -p pytest_asyncio.plugin -p pytest_timeout)
  pytests() {
    "${PYTEST[@]}" tests/tts/engines/test_vits_batching.py -k cuda
    local first=$?
    "${PYTEST[@]}" tests/tts/engines/test_coqui.py tests/tts/engines/test_xtts_batching.py \
      tests/tts/test_coqui_service.py tests/vision/engines/test_neural.py \
      tests/vision/test_neural_service.py tests/common/test_gpu_metrics.py
    local second=$?
    return $((first == 5 ? second : first | second)) # 5: -k chose none (no GPU)
  }
  PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 SECTION_OUT=$OUT/pytest.txt run_section pytest "$(fit "$T_PYTEST" 0)" \
    bash -c "$(declare -p PYTEST); $(declare -f pytests); pytests"
  echo "pytest tests: $(grep -E '(passed|failed|error|skipped|deselected)' "$OUT/pytest.txt" | tail -n 2 | tr '\n' ' ')" \
    | tee -a "$SUMMARY"
fi

# ---- the goals, as each benchmark judged them
"$PY" - "$OUT" <<'EOF' | tee -a "$SUMMARY"
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
for name, key in (("vits_batched", None), ("xtts_batched", "goals"), ("vision_batching", "goal")):
    path = out / f"{name}.json"
    if not path.exists():
        print(f"{name}: no JSON")
        continue
    doc = json.loads(path.read_text())
    if key is None:  # VITS: TTFA p95 at each level of each config
        for config, figures in doc.get("configs", {}).items():
            levels = {k: v.get("ttfa_ms", {}).get("p95") for k, v in figures.items()
                      if k.startswith("c") and isinstance(v, dict)}
            print(f"{name} {config}: TTFA p95 ms {levels} {figures.get('error', '')}")
    else:
        print(f"{name}: {json.dumps(doc.get(key))}")
EOF
echo "total: $(elapsed)s" | tee -a "$SUMMARY"
ls -la "$OUT"
exec >&- 2>&-
wait "$TEE_PID" 2>/dev/null
exit 0
