#!/usr/bin/env bash
# One device command of the embedded model's training (each must end inside the device's 10-minute limit).
#   bash training/device_run.sh autoencoders|video_vae|transformer|transformer_only CKPT_DIR RESULT_DIR [INIT_DIR]
# autoencoders: video VAE, audio VAE and vocoder side by side; then the latent upsampler and a first transformer
# chunk once the VAEs are saved. transformer: resume the transformer. Logs and a bf16 tarball of CKPT_DIR, split
# into <= 15 MB parts, go to RESULT_DIR. transformer_only: the transformer stage alone from INIT_DIR (e.g.
# ltx_pipeline/embedded_model), text encoder frozen and blocks compiled, until TRAIN_UNTIL_MINUTES (default 7.8)
# after this script started; only the stage's components, state and logs go to RESULT_DIR (refreshed after every
# checkpoint, so that a command killed at its limit still returns the last one). Environment: MINUTES_SCALE
# (default 1) shrinks every time limit for a dry run; EXTRA_ARGS is passed to every stage (e.g. "--variant tiny
# --num-clips 8"); NUM_CLIPS (transformer_only, default 4096); COMPILE_CACHE (transformer_only: a compile_cache.bin
# an earlier command returned, which saves most of the ~3-minute compile); WITH_DECODERS (transformer_only: also
# train the video decoder on its fixed encoder and the vocoder, side by side until the same time, and return them);
# DATA_SEED (transformer_only, default 0: the clips every run so far trained on; another value renders new scenes);
# NO_COMPILE (transformer_only: train eagerly); CACHE_OUT (transformer_only: where the compile cache goes, default
# RESULT_DIR/compile_cache.bin).
# chunk: transformer_only with the issue-30/26 recipe (rich world at 24, 25 and 30 fps, clips cut mid-scene, the
# continuation case with "copy" and "reencode" held latents, --decoded-ball-row-gain 8; train.py's defaults for their
# shares; REPLAY_CLIPS (default 512) original-world clips replayed as a fourth group, since one chunk without them
# cost the in-world A2V sync 95% -> 76% (training/README.md, the thirteenth run); a checkpoint every 400 steps,
# packed as it is written), sized to end within
# CHUNK_SECONDS (default 390) of this script's start: training stops 40 s before (BENCH_SECONDS more if set), the
# parts are packed, the candidate is exported to CAND (default /tmp/cand) and, with BENCH_SECONDS, benchmarked on
# held-out audio (on BENCH_DEVICE, default cuda) for at most that long. Only the parts (1-2 of <= 15 MB), summary.txt
# and the benchmark's table go to RESULT_DIR; the compile cache (> 16 MB) stays in /tmp for a next command on the same
# machine. No optimizer state is kept (every run restarts AdamW, with a 10-step warm-up). Eager unless COMPILE=static
# (4 graphs per frame rate) or COMPILE=dynamic (--compile-dynamic): a cold compile costs more than it buys in one
# command; on a warm machine its caches make it pay (training/README.md).
set -u
script_start=$(date +%s)
phase=$1; ckpt=$2; result=$3; init=${4:-}  # init: a checkpoint folder to start from (copied into ckpt)
scale=${MINUTES_SCALE:-1}
extra=${EXTRA_ARGS:-}
logs=$ckpt/logs
rm -rf "$ckpt"  # a warm machine keeps the last command's files: start from init alone
mkdir -p "$ckpt" "$result"
[ -n "$init" ] && cp -r "$init"/. "$ckpt"/
rm -rf "$ckpt/trained" "$ckpt/pack"  # an earlier command's folder as init: its end marker and staging go
mkdir -p "$logs"
minutes() { python3 -c "print(round($1 * $scale, 3))"; }
stage() {  # stage name, minutes, extra arguments...
  local name=$1 limit; limit=$(minutes "$2"); shift 2
  PYTHONUNBUFFERED=1 python3 -m training.train --stage "$name" --steps 1000000 --out "$ckpt" --max-minutes "$limit" \
    --save-every 2000 --log-every 100 $extra "$@" >"$logs/$name.log" 2>&1
  echo "$name exit $?" | tee -a "$logs/status.txt"
}
if [ "$phase" = autoencoders ]; then
  stage video_vae 5.5 --workers 5 & video=$!
  stage audio_vae 4.0 --workers 4 & audio=$!
  stage vocoder 7.5 --workers 4 &
  wait $video $audio
  stage upsampler 1.5 --workers 4 --resume &
  [ -n "${WITH_TRANSFORMER:-}" ] && stage transformer 2.5 --workers 8 --num-clips 2048 --resume &
  wait
elif [ "$phase" = video_vae ]; then  # a fresh video VAE; the audio VAE and vocoder continue
  stage video_vae 7.5 --workers 6 &
  stage audio_vae 6.0 --workers 3 --resume &
  stage vocoder 7.5 --workers 3 --resume &
  wait
elif [ "$phase" = transformer ]; then  # the transformer, the upsampler, and the video decoder on a fixed encoder
  stage transformer ${TRANSFORMER_MINUTES:-8.0} --workers 8 --num-clips 3072 --resume &
  stage video_vae ${TRANSFORMER_MINUTES:-8.0} --workers 4 --resume --freeze-encoder &
  [ -n "${WITH_UPSAMPLER:-}" ] && stage upsampler 2.0 --workers 4 --num-clips 384 --resume &
  wait
elif [ "$phase" = transformer_only ] || [ "$phase" = chunk ]; then
  if [ "$phase" = chunk ]; then
    chunk_s=${CHUNK_SECONDS:-390}; bench_s=${BENCH_SECONDS:-0}
    TRAIN_UNTIL_MINUTES=$(python3 -c "print(($chunk_s - 40 - $bench_s) / 60)")
    NUM_CLIPS=${NUM_CLIPS:-3072}; CACHE_OUT=${CACHE_OUT:-/tmp/compile_cache.bin}
    [ -z "${COMPILE:-}" ] && NO_COMPILE=1
    [ "${COMPILE:-}" = dynamic ] && extra="--compile-dynamic $extra"
    extra="--world rich --frame-rates 24 25 30 --replay-clips ${REPLAY_CLIPS:-512} --decoded-ball-row-gain 8 --save-every 400 $extra"
  fi
  stop_at=$(python3 -c "print(round($script_start + ${TRAIN_UNTIL_MINUTES:-7.8} * 60 * $scale))")
  hard_stop_s=$(python3 -c "print(max(round($stop_at + 30 * $scale - $(date +%s)), 1))")  # if saving hangs
  outputs="transformer connectors text_encoder transformer_state.json transformer_settings.json logs"
  [ -n "${WITH_DECODERS:-}" ] && outputs="$outputs vae vocoder"
  pack() {  # the stages' outputs, split into <= 15 MB parts, replacing the last pack
    local staging="$ckpt/pack" present=""; rm -rf "$staging"; mkdir -p "$staging"
    for item in $outputs "$ckpt"/video_vae_*.json "$ckpt"/vocoder_*.json; do
      item=${item#"$ckpt"/}; [ -e "$ckpt/$item" ] && present="$present $item"
    done
    tar czf - -C "$ckpt" $present | split -b 15M - "$staging/transformer.tgz.part-"
    rm -f "$result"/transformer.tgz.part-*; mv "$staging"/transformer.tgz.part-* "$result"/
  }
  watch_checkpoints() {  # re-pack whenever the trainer has written a checkpoint (its state file comes last)
    local seen="" now
    until [ -e "$ckpt/trained" ]; do
      sleep 5
      now=$(stat -c %Y "$ckpt/transformer_state.json" 2>/dev/null) || continue
      if [ "$now" != "$seen" ] && [ ! -e "$ckpt/trained" ]; then sleep 2; pack; seen=$now; fi
    done
  }
  watch_checkpoints & watcher=$!
  # torch.compile's cache: COMPILE_CACHE (e.g. the compile_cache.bin an earlier command returned, carried along)
  # is loaded first; the cache after compiling goes back in RESULT, for the next command.
  cache_out=${CACHE_OUT:-$result/compile_cache.bin}
  [ -n "${COMPILE_CACHE:-}" ] && [ -f "$COMPILE_CACHE" ] && [ "$COMPILE_CACHE" != "$cache_out" ] \
    && cp "$COMPILE_CACHE" "$cache_out"
  if [ -n "${WITH_DECODERS:-}" ]; then  # the video decoder (encoder fixed: the same latents) and the vocoder
    for name in video_vae vocoder; do
      freeze=""; [ $name = video_vae ] && freeze=--freeze-encoder
      PYTHONUNBUFFERED=1 timeout "$hard_stop_s" python3 -m training.train --stage $name --steps 1000000 \
        --out "$ckpt" --resume $freeze --stop-at "$stop_at" --save-every 1000000 --log-every 200 --workers 3 \
        $extra >"$logs/$name.log" 2>&1 &
    done
  fi
  compile_args="--compile --compile-cache $cache_out"
  [ -n "${NO_COMPILE:-}" ] && compile_args=""
  PYTHONUNBUFFERED=1 timeout "$hard_stop_s" python3 -m training.train --stage transformer --steps 1000000 \
    --out "$ckpt" --resume --freeze-text-encoder $compile_args \
    --stop-at "$stop_at" --save-every 1000 --log-every 100 \
    --workers 14 --num-clips "${NUM_CLIPS:-4096}" --data-seed "${DATA_SEED:-0}" --seed 1 $extra \
    >"$logs/transformer.log" 2>&1
  echo "transformer exit $?" | tee -a "$logs/status.txt"
  touch "$ckpt/trained"; wait  # the decoders, and a pack in progress
  [ -n "${WITH_DECODERS:-}" ] && tail -n 3 "$logs/video_vae.log" "$logs/vocoder.log" | tee -a "$result/summary.txt"
  grep -E "^transformer|rendered|latents|weights|compil|cached|Error|error" "$logs/transformer.log" | tail -n 40 \
    | tee -a "$result/summary.txt"
  pack
  if [ "$phase" = chunk ]; then  # the candidate: the returned parts over the starting folder, exported
    cand=${CAND:-/tmp/cand}; rm -rf "$cand.ckpt" "$cand"; cp -r "$ckpt" "$cand.ckpt"
    rm -rf "$cand.ckpt/pack" "$cand.ckpt/logs" "$cand.ckpt/trained"
    python3 -m training.export --ckpt "$cand.ckpt" --out "$cand" $(echo "$extra" | grep -o -- "--variant [a-z]*") \
      >"$logs/export.log" 2>&1
    echo "export exit $? ($(du -sm "$cand" | cut -f1) MB at $cand, $(($(date +%s) - script_start)) s)" \
      | tee -a "$result/summary.txt"
    left=$(python3 -c "print(round($script_start + $chunk_s * $scale - $(date +%s)))")
    if [ "${bench_s}" != 0 ] && [ "$left" -gt 30 ]; then
      timeout "$left" python3 benchmarks/bench_embedded.py --device "${BENCH_DEVICE:-cuda}" --model "$cand" \
        --held-out --skip-speed --skip-random --skip-v2a --clips 1 --skip-in-world --held-out-tosses 2 \
        --modality-scales 1 \
        --out "$result/bench_cand.md" >"$logs/bench.log" 2>&1
      echo "bench exit $? ($(($(date +%s) - script_start)) s)" | tee -a "$result/summary.txt"
    fi
  fi
  ls -la "$result"
  exit 0
else
  echo "unknown phase $phase" >&2; exit 2
fi
grep -h "step" "$logs"/*.log | grep -v Warn | tail -n 40
tail -n 2 "$logs"/*.log > "$result/summary.txt"
tar czf - -C "$ckpt" . | split -b 15M - "$result/ckpt.tgz.part-"
ls -la "$result"
