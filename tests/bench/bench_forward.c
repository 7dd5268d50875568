/* bench_forward.c — forward and generation speed of the default model. Owner: model.
 *
 *   build/bench/bench_forward [model.gguf] [B] [T] [gen_tokens]
 * Prints the machine line (CPU, threads, SIMD, OpenBLAS core type), then
 *   forward: B x T tokens per pass, median of a few passes, tokens/s
 *   prefill + generation: tokens/s of KV-cached greedy decoding (the sampler included)
 * PL_BENCH_COMPUTE=bf16 runs it in compute mode bf16 (gemm16.h: products of >= 16 rows in
 * bf16, so the batched forward and prefill; decoding stays f32).
 * A benchmark, not a test: it never fails on time. Missing model: prints a note, exits 0.
 */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "peftlua/alloc.h"
#include "peftlua/gemm16.h"
#include "peftlua/hw.h"
#include "peftlua/model.h"

#include "bench.h"

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : getenv("PEFT_MODEL");
    if (!path) path = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
    int B = argc > 2 ? atoi(argv[2]) : 4, T = argc > 3 ? atoi(argv[3]) : 256;
    int G = argc > 4 ? atoi(argv[4]) : 64;
    struct stat sb;
    if (stat(path, &sb) != 0) {
        printf("bench_forward: %s absent (make model); skipped\n", path);
        return 0;
    }
    struct pl_hw hw;
    pl_hw_query(&hw);
    char line[512];
    pl_hw_summary(&hw, omp_get_max_threads(), line, sizeof line);
    printf("bench_forward: %s\n", line);
    double load[3] = { 0, 0, 0 };
    FILE *la = fopen("/proc/loadavg", "r");
    if (la) { if (fscanf(la, "%lf %lf %lf", &load[0], &load[1], &load[2]) != 3) load[0] = -1; fclose(la); }
    const char *wp = getenv("OMP_WAIT_POLICY"), *ct = getenv("OPENBLAS_CORETYPE");
    printf("env: OMP_WAIT_POLICY=%s OPENBLAS_CORETYPE=%s; load average %.2f (other processes "
           "share these cores: figures are lower bounds)\n", wp ? wp : "(unset)", ct ? ct : "(unset)",
           load[0]);

    const char *cm = getenv("PL_BENCH_COMPUTE");
    if (cm && strcmp(cm, "bf16") == 0) pl_compute_set(PL_COMPUTE_BF16);
    printf("compute: %s\n", pl_compute_get() == PL_COMPUTE_BF16 ? "bf16 (avx512_bf16 products)" : "f32");
    struct pl_model *m;
    struct pl_model_load_opts o = { .no_tokenizer = 1 };
    if (pl_model_load(&m, path, &o) != PL_OK) {
        printf("bench_forward: %s\n", pl_last_error());
        return 0;
    }
    printf("model: %s (%lld params, %d layers, dim %d)\n", m->name,
           (long long)pl_model_param_count(m), m->cfg.n_layers, m->cfg.dim);
    if (T > m->cfg.seq_len) T = m->cfg.seq_len;

    /* ---- batched forward ---- */
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)B * T);
    uint64_t x = 88172645463325252ULL;
    for (int i = 0; i < B * T; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        ids[i] = (int32_t)(x % (uint64_t)m->cfg.vocab_size);
    }
    struct pl_llama_ctx *c = pl_llama_ctx_new(m, B, T, 0);
    if (!c) { printf("bench_forward: %s\n", pl_last_error()); return 0; }
    double t[3];
    int reps = 3;
    pl_llama_forward(c, ids, T, 0, 0);   /* warm-up: page in the mapping, size the logits */
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        if (pl_llama_forward(c, ids, T, 0, 0) != PL_OK) { printf("%s\n", pl_last_error()); return 0; }
        t[r] = now() - t0;
    }
    qsort(t, (size_t)reps, sizeof t[0], cmp_d);
    printf("forward  B=%d T=%d: %.1f ms/pass, %.0f tokens/s (median of %d; logits included)\n", B, T,
           t[reps / 2] * 1e3, B * T / t[reps / 2], reps);
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        if (pl_llama_forward(c, ids, T, 0, 1) != PL_OK) { printf("%s\n", pl_last_error()); return 0; }
        t[r] = now() - t0;
    }
    qsort(t, (size_t)reps, sizeof t[0], cmp_d);
    printf("forward  B=%d T=%d without the %d-way vocabulary projection: %.1f ms/pass, %.0f tokens/s\n",
           B, T, m->cfg.vocab_size, t[reps / 2] * 1e3, B * T / t[reps / 2]);
    pl_llama_ctx_free(c);

    /* ---- generation (greedy, KV cache, batch 1) ---- */
    int P = 32;
    struct pl_llama_ctx *g = pl_llama_ctx_new(m, 1, P + G, 0);
    struct pl_sampler s;
    pl_sampler_init(&s, 1);
    s.greedy = 1;
    float *work = malloc(sizeof(float) * 2 * (size_t)m->cfg.vocab_size);
    int32_t *seq = malloc(sizeof(int32_t) * (size_t)(P + G));
    for (int i = 0; i < P; i++) seq[i] = ids[i % (B * T)];
    double t0 = now();
    pl_llama_forward(g, seq, P, 0, 1);
    double t1 = now();
    for (int i = 0; i < G; i++) {
        seq[P + i] = pl_sampler_sample(&s, g->logits, m->cfg.vocab_size, seq, P + i, work);
        if (i + 1 < G && pl_llama_forward(g, seq + P + i, 1, P + i, 1) != PL_OK) break;
    }
    double t2 = now();
    printf("generate: prefill %d tokens %.1f ms (%.0f tokens/s); %d new tokens %.1f ms, %.1f tokens/s\n",
           P, (t1 - t0) * 1e3, P / (t1 - t0), G, (t2 - t1) * 1e3, G / (t2 - t1));
    printf("memory: activations peak %.1f MiB, weights %.1f MiB heap + %.1f MiB mapped\n",
           pl_mem_peak(PL_MEM_ACTIVATIONS) / 1048576.0, pl_mem_current(PL_MEM_WEIGHTS) / 1048576.0,
           pl_mem_current(PL_MEM_MAPPED) / 1048576.0);
    free(work);
    free(seq);
    free(ids);
    pl_llama_ctx_free(g);
    pl_model_free(m);
    return 0;
}
