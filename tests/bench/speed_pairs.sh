#!/bin/sh
# speed_pairs.sh — issue 18's figures in one command, for a quiet machine (owner: kernels).
#   sh tests/bench/speed_pairs.sh            (from the repository root; about 11 minutes on 2 quiet cores, estimated)
# 0. The machine's f32 FMA and bf16 vdpbf16ps peaks (bench_gemm16, 1 thread), for MFU.
# 1. peftlua (compute f32 and bf16) against PyTorch's best CPU configurations (HF + PEFT under
#    bf16 autocast, and that under torch.compile), SmolLM2-135M, batch 4 x 256, LoRA r8 q,v and
#    full fine-tuning, 1 and 2 threads, pairs back to back (tests/bench/torch_peer.py compare:
#    prints every step and "peftlua / best PyTorch" per thread count and method).
# 2. The quickstart fine-tune (recipes/finetune.lua, what `make demo` trains: LoRA r8 on q,k,v,o
#    of SmolLM2-135M, tool-calling data, batch 4, sequences up to 384), SPEED_ITERS steps (10),
#    compute f32 then bf16 (the default where the CPU has AVX512_BF16): its "training N scored tokens in S s" lines.
# Prints figures only; never fails on time. SPEED_THREADS (1,2), SPEED_STEPS (2) and
# SPEED_VARIANTS (hf_bf16,hf_bf16_compile) narrow part 1.
set -u
MODEL=models/SmolLM2-135M-Instruct.Q4_1.gguf
[ -f "$MODEL" ] || { echo "speed_pairs: $MODEL absent (make model)"; exit 0; }
make --no-print-directory all build/bench/bench_compute build/bench/bench_gemm16 >/dev/null || exit 1
export MALLOC_ARENA_MAX=2 MALLOC_TRIM_THRESHOLD_=-1 MALLOC_TOP_PAD_=536870912 MALLOC_MMAP_THRESHOLD_=4294967296
core=$(build/peftlua -e 'io.write(os.getenv("OPENBLAS_CORETYPE") or "")' 2>/dev/null)
[ -n "$core" ] && export OPENBLAS_CORETYPE=$core
echo "== uptime: $(uptime)"
echo "== measured f32 / bf16 peaks, 1 thread (MFU = bench_compute's model GFLOP/s over the bf16 peak)"
build/bench/bench_gemm16 1024 2 1 | grep -E "peak|1024\^3"
t0=$(date +%s)
if python3 -c 'import torch, transformers, peft' 2>/dev/null; then
  PEFT_HOST=$(pwd)/build/peftlua python3 tests/bench/torch_peer.py compare "$MODEL" \
    "${SPEED_THREADS:-1,2}" "${SPEED_STEPS:-2}" "${SPEED_VARIANTS:-hf_bf16,hf_bf16_compile}" lora,full
else
  echo "PyTorch peer: not run (python3 -m pip install torch transformers peft); peftlua alone:"
  build/bench/bench_compute "${SPEED_STEPS:-2}" "${SPEED_THREADS:-1,2}" lora,full
fi
t1=$(date +%s)
echo "== pairs took $((t1 - t0)) s"
for c in f32 bf16; do
  echo "== quickstart fine-tune, compute $c, ${SPEED_ITERS:-10} steps"
  build/peftlua recipes/finetune.lua --iters "${SPEED_ITERS:-10}" --eval-n 0 --compute $c \
    --out build/tmp/speed_finetune_$c 2>&1 | grep -E '^training|^validation loss'
done
echo "== quickstart took $(( $(date +%s) - t1 )) s; uptime: $(uptime)"
