#!/bin/sh
# perf_table.sh — the per-kernel table of a `perf record` profile (share of CPU samples by kernel
# group), as docs/engine.md's bf16 profile reports it. Owner: kernels.
#   perf record -e cpu-clock -g -o prof.data -- build/bench/bench_compute 1 1 lora bf16
#   sh tests/bench/perf_table.sh prof.data
# The shares include the model load and the warm-up step; with `bench_compute 2 ...` they weigh
# less. Symbols are grouped by name (static functions of src/tensor/*.c, OpenBLAS kernels, libc,
# the kernel's [k] frames).
data=${1:-perf.data}
perf report -i "$data" --no-children --sort symbol -g none --stdio 2>/dev/null |
awk '
/^ +[0-9.]+%/ {
  p = $1; sub("%", "", p); s = $0; sub(/^ +[0-9.]+% +/, "", s)
  g = "other"
  if (s ~ /^\[k\]/) g = "kernel: page faults, munmap, scheduling"
  else if (s ~ /attn16|mk_[1-6]_[1-4]|softmax_row|softmax_bwd_pairs|interleave|pack_t|rows_w|cvt_row|\] tiles /) g = "attention bf16 (attn16.c: products, softmax, packing)"
  else if (s ~ /ukernel/) g = "gemm16 micro-kernel (bf16 products)"
  else if (s ~ /pack_a|pack_b|gemm16\._omp_fn\.0|weight_part|dequant|cvt_bf16|gemm16/) g = "gemm16 packing + dequantisation"
  else if (s ~ /sgemm|COOPERLAKE|SKYLAKEX|HASWELL|cblas|blas_|gemm_/) g = "OpenBLAS sgemm (f32 products left)"
  else if (s ~ /rowdots|rowaxpy|colacc|lora/) g = "LoRA low-rank products (skinny f32)"
  else if (s ~ /attention/) g = "attention (scores, softmax, P·V)"
  else if (s ~ /rmsnorm/) g = "RMSNorm fwd + bwd"
  else if (s ~ /swiglu/) g = "SwiGLU fwd + bwd"
  else if (s ~ /crossentropy|head/) g = "cross-entropy (head products are gemm16)"
  else if (s ~ /rope|sincos/) g = "RoPE"
  else if (s ~ /residual|add_|axpy|scale/) g = "residual adds"
  else if (s ~ /adamw|lion|sgd|optim|clip|grad_norm/) g = "optimizer + clipping"
  else if (s ~ /memmove|memcpy|memset/) g = "libc memcpy/memset"
  else if (s ~ /GOMP|gomp|omp_|sched_yield/) g = "OpenMP runtime"
  sh[g] += p; tot += p
}
END {
  printf "%-44s %7s\n", "kernel group", "share"
  n = 0; for (g in sh) { k[++n] = g }
  for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (sh[k[j]] > sh[k[i]]) { t = k[i]; k[i] = k[j]; k[j] = t }
  for (i = 1; i <= n; i++) printf "%-44s %6.1f%%\n", k[i], sh[k[i]]
  printf "%-44s %6.1f%%\n", "total", tot
}'
