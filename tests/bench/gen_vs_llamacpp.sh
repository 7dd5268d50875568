#!/bin/sh
# gen_vs_llamacpp.sh — prefill and generation tokens/s of peftlua against llama.cpp on the same
# GGUF and thread counts (owner: kernels, issue 18). llama.cpp is the one `make llamacpp` builds
# from PyPI's llama-cpp-python source (build/llamacpp/bin/llama-bench).
#   sh tests/bench/gen_vs_llamacpp.sh [MODEL.gguf] [THREADS (1,2)] [PROMPT (512)] [GEN (128)]
# peftlua: build/bench/bench_forward MODEL 1 PROMPT GEN — prefill = one forward of PROMPT tokens
# with the last position's logits only (as llama-bench's pp), in compute f32 and bf16;
# generation = greedy KV-cached decoding of GEN tokens after a 32-token prompt, sampler included.
# llama.cpp: llama-bench -p PROMPT -n GEN -r 3 (pp and tg, mean tokens/s). Figures only.
set -u
MODEL=${1:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
THREADS=${2:-1,2}
P=${3:-512}
G=${4:-128}
LB=build/llamacpp/bin/llama-bench
[ -f "$MODEL" ] || { echo "gen_vs_llamacpp: $MODEL absent (make model)"; exit 0; }
[ -x "$LB" ] || { echo "gen_vs_llamacpp: $LB absent (make llamacpp)"; exit 0; }
make --no-print-directory build/bench/bench_forward >/dev/null || exit 1
echo "model $MODEL, prompt $P, generate $G; uptime: $(uptime)"
for th in $(echo "$THREADS" | tr , ' '); do
  for c in f32 bf16; do
    out=$(OMP_NUM_THREADS=$th PL_BENCH_COMPUTE=$c build/bench/bench_forward "$MODEL" 1 "$P" "$G")
    pp=$(echo "$out" | sed -n 's/.*without the .* \([0-9.]*\) tokens\/s.*/\1/p')
    tg=$(echo "$out" | sed -n 's/^generate:.* \([0-9.]*\) tokens\/s$/\1/p')
    eval "pp_$c=\$pp; tg_$c=\$tg"
    echo "peftlua   $th thread(s) compute $c: prefill $pp tokens/s, generation $tg tokens/s"
  done
  csv=$($LB -m "$MODEL" -t "$th" -p "$P" -n "$G" -r 3 -o csv 2>/dev/null)
  # columns by name: n_prompt, n_gen, avg_ts
  lpp=$(echo "$csv" | awk -F, -v P="$P" 'NR==1{for(i=1;i<=NF;i++){gsub(/"/,"",$i);h[$i]=i};next}
        {gsub(/"/,"")} $h["n_prompt"]==P && $h["n_gen"]==0 {print $h["avg_ts"]}')
  ltg=$(echo "$csv" | awk -F, -v G="$G" 'NR==1{for(i=1;i<=NF;i++){gsub(/"/,"",$i);h[$i]=i};next}
        {gsub(/"/,"")} $h["n_prompt"]==0 && $h["n_gen"]==G {print $h["avg_ts"]}')
  echo "llama.cpp $th thread(s): prefill $lpp tokens/s, generation $ltg tokens/s"
  awk -v a="$pp_f32" -v b="$pp_bf16" -v l="$lpp" -v g="$tg_f32" -v lg="$ltg" 'BEGIN {
    best = (b + 0 > a + 0) ? b : a
    if (l + 0 > 0) printf "ratio prefill (peftlua best / llama.cpp): %.2fx\n", best / l
    if (lg + 0 > 0) printf "ratio generation (peftlua / llama.cpp):   %.2fx\n", g / lg }'
done
