#!/usr/bin/env bash
# The full-size measurements still owed, as device commands of at most ~540 s each, one per argument:
#
#   bash benchmarks/device_calls.sh speed      # issue 28: reference forward, eager and fastest pipelines (streamed),
#                                              #   the first generation after install and after a restart
#   bash benchmarks/device_calls.sh versions   # issue 29: LTX-2.5 eager, fastest and its memory; issue 28: the 2.3
#                                              #   memory modes under hard caps (24gb, 24gb compiled, 16gb)
#   bash benchmarks/device_calls.sh long       # issue 26: long form at 768x512 (10 s, 60 s, 180 s A2V; 30 s T2AV)
#   bash benchmarks/device_calls.sh memory     # issue 28: the 2.3 memory modes under hard caps, on an 80 GB card
#
# `versions` wants an H200 (`run` with needs_h200): on an 80 GB card LTX-2.5's full-gpu-bf16 components (67.65 GiB)
# leave too little for its diffusion decoder, and every 2.5 pipeline section ran out of memory (run 34).
#
# Each one installs the carried wheels (.whl-train: diffusers, soundfile, ltx-core 1.0.0 ...; .whl-av: PyAV), logs to
# $OUT/log.txt and writes its JSON/markdown results beside it (at most 8 files). The device's 64 MiB transfer limit
# does not hold the embedded model beside PyAV's wheel, so these calls leave it out (benchmarks/RESULTS.md, "How to run
# it on the lent GPU"); training (issue 30) is `training/device_run.sh chunk`, which needs the model and no PyAV.
# Every process has its own `timeout` and `--deadline-s`, so a slow step costs its own figures, not the call's.
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  .whl-train/*.whl .whl-av/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 LTX_COMPILE_CACHE_DIR=/tmp/ltx_compile_cache
mkdir -p /tmp/work
log=$OUT/log.txt
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >>"$log"

step() {  # name, seconds, command...: one process, its output appended to the log
  local name=$1 seconds=$2
  shift 2
  echo "== $name ($(date -u +%T))" >>"$log"
  timeout "$seconds" "$@" >>"$log" 2>&1
  echo "== $name exit $? ($(date -u +%T))" >>"$log"
}

full=(python3 benchmarks/bench_full_size.py --work-dir /tmp/work --reserve-s 5 --e2e-reserve-s 25)
v25=(python3 benchmarks/bench_full_size_2_5.py --work-dir /tmp/work --reserve-s 5 --e2e-reserve-s 30)
case ${1:-} in
speed)
  # Run 36 found the whole-forward graph refused ("Cannot copy between CPU and CUDA tensors during CUDA graph
  # capture"); the GPU tests record it at tiny size and the refusal's log names where it happened.
  step graph_tests 45 python3 -m pytest -q -m gpu tests/test_forward_graphs.py -x -p no:cacheprovider
  step reference 85 python3 benchmarks/bench_reference_forward.py --out "$OUT/reference.json"
  step pipelines 200 "${full[@]}" --out "$OUT/speed.json" --deadline-s 190 --compile-reserve-s 60 --no-large \
    --sections env,build,e2e_baseline,fp8_layers,fp8_graph_forward,e2e_fp8_graph_forward_streamed
  # The compile cache folder is empty for the first process (a fresh install) and filled by it for the second.
  step first_after_install 100 "${full[@]}" --out "$OUT/first_install.json" --deadline-s 95 \
    --sections env,first_generation
  step first_after_restart 100 "${full[@]}" --out "$OUT/first_restart.json" --deadline-s 95 \
    --sections env,first_generation
  ;;
versions)
  step ltx_2_5_eager 150 "${v25[@]}" --out "$OUT/ltx_2_5.json" --deadline-s 140 \
    --sections build,decoders,duration,e2e_t2av,e2e_a2v
  step ltx_2_5_fastest 125 "${v25[@]}" --out "$OUT/ltx_2_5_fastest.json" --deadline-s 120 \
    --sections build,e2e_t2av,e2e_a2v --speed compile,gelu_epilogue,fused_rotary,fp8,fp8_row_kernel,fused_norms
  step memory_modes 180 "${full[@]}" --out "$OUT/memory_modes.json" --deadline-s 175 \
    --sections env,mode_24gb,mode_24gb_compiled,mode_16gb
  step ltx_2_5_memory 80 "${v25[@]}" --out "$OUT/ltx_2_5_memory.json" --deadline-s 75 \
    --sections e2e_memory --memory-modes 24gb,16gb
  ;;
memory)
  step memory_modes 300 "${full[@]}" --out "$OUT/memory_modes.json" --deadline-s 295 \
    --sections env,mode_24gb,mode_16gb,mode_24gb_compiled
  ;;
long)
  step long_a 280 python3 benchmarks/bench_long_form.py --full-size --lengths 10 60 --t2av-length 30 \
    --out "$OUT/long_form_a.md"
  step long_b 250 python3 benchmarks/bench_long_form.py --full-size --lengths 180 --t2av-length 0 \
    --out "$OUT/long_form_b.md"
  ;;
*)
  echo "usage: bash benchmarks/device_calls.sh speed|versions|long|memory" >&2
  exit 2
  ;;
esac
grep -E '^\[|^== |!!|Error' "$log" | tail -80
