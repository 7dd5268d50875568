/* bench_qlora.c — QLoRA speed and memory. Owner: memory.
 *
 *   build/bench/bench_qlora [smol [B] [T] [steps]]      (default: smol 4 256 2)
 *   build/bench/bench_qlora 7b [T] [steps] [every] [f32|bf16] [nf4_dq|nf4] [q8_0|bf16]
 *                                             (default: 7b 512 1 1 f32 nf4_dq q8_0)
 *   build/bench/bench_qlora precision [B] [T] [steps] [q4_1|f32]   (default: 4 256 2 q4_1)
 *
 * smol: SmolLM2-135M (models/SmolLM2-135M-Instruct.Q4_1.gguf), LoRA r8 on q_proj+v_proj at
 *   B x T, the seven projections held as f32, bf16, NF4 and Q8_0 (embedding/output head as
 *   loaded): tokens/s (median step), each as a fraction of f32, peak tracked bytes, and the
 *   dequantisation share of the step: the time to dequantise every projection once (split
 *   over the threads as the kernels do) times the passes a step makes over them (forward,
 *   backward input gradient; one per 512-row block), over the step time.
 * 7b: a Llama-2-7B-shaped model (32 x 4096, hidden 11008, 32 heads, vocab 32000) with random
 *   projections (nf4_dq, double-quantised scales, by default; nf4: f32 block scales, the layout
 *   before) and embedding and output head (q8_0 by default; bf16 before) made in memory,
 *   LoRA r8 on q_proj+v_proj, batch 1 x T
 *   with gradient checkpointing every `every` layers (src/train/ckpt.c): step time, peak RSS, the
 *   memory model's prediction; and full fine-tuning of the same shape refused up front.
 *   bf16: the products in compute bf16 (include/peftlua/gemm16.h) where the CPU has it.
 * formats [rows] [reps] [threads]: the 7B step's widest products under compute bf16 (pl_gemm16),
 *   per weight layout, best of reps: gate/up [11008 x 4096] forward and input gradient as nf4
 *   and nf4_dq (what double quantisation costs in the packing), the head [32000 x 4096] as bf16
 *   and q8_0; from one-layer random models of the 7B shape (default 512 rows, 3 reps, 2 threads).
 * precision: SmolLM2-135M LoRA r8 q_proj+v_proj at B x T with precision fp32, bf16, fp16
 *   (train.h "Mixed precision"): median step time, tokens/s, peak tracked bytes in total and of
 *   activations (the counting allocator), the memory model's activation prediction, the planned
 *   context's bytes (the saved activations with the residual stream and scratch), the last
 *   loss, and fp16's loss scale / skipped steps. Base q4_1: the file as loaded (a quantised
 *   base keeps its type, so only the saved activations change); f32: its projections
 *   dequantised first (bf16/fp16 then re-store them in 16 bits too).
 * Prints the machine line (CPU, threads, SIMD, OpenBLAS core). Never fails on time.
 */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "peftlua/alloc.h"
#include "peftlua/ckpt.h"
#include "peftlua/gemm16.h"
#include "peftlua/hw.h"
#include "peftlua/memmodel.h"
#include "peftlua/model.h"
#include "peftlua/qlora.h"
#include "peftlua/quant.h"
#include "peftlua/rng.h"
#include "peftlua/train.h"

#include "bench.h"

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void batch(int32_t *ids, int32_t *tg, int n, int V, uint64_t seed)
{
    struct pl_rng r;
    pl_rng_seed(&r, seed);
    for (int i = 0; i < n; i++) {
        ids[i] = (int32_t)(pl_rng_next(&r) % (uint64_t)V);
        tg[i] = (int32_t)(pl_rng_next(&r) % (uint64_t)V);
    }
}

/* Seconds to dequantise every projection of m once, rows split over the threads. */
static double dequant_all(const struct pl_model *m)
{
    int64_t wide = m->cfg.dim > m->cfg.hidden_dim ? m->cfg.dim : m->cfg.hidden_dim;
    int nth = omp_get_max_threads();
    float *buf = malloc((size_t)nth * (size_t)wide * sizeof(float));
    double t0 = now();
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int p = 0; p < PL_PROJ_COUNT; p++) {
            const struct pl_tensor *w = m->layers[l].w[p];
            int64_t out = w->shape[0], in = w->shape[1];
            size_t rb = pl_dtype_row_bytes(w->dtype, in);
            const uint8_t *d = pl_tensor_data(w);
            #pragma omp parallel for schedule(static)
            for (int64_t r = 0; r < out; r++)
                pl_dequant_row(w->dtype, d + (size_t)r * rb, buf + (size_t)omp_get_thread_num() * wide, in);
        }
    double t = now() - t0;
    free(buf);
    return t;
}

static int bench_smol(int B, int T, int steps)
{
    const char *path = getenv("PEFT_MODEL");
    if (!path) path = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
    struct stat sb;
    if (stat(path, &sb) != 0) {
        printf("bench_qlora: %s absent (make model); skipped\n", path);
        return 0;
    }
    printf("SmolLM2-135M LoRA r8 q_proj+v_proj, batch %d x %d, %d timed steps (median) after one warm-up\n",
           B, T, steps);
    printf("%-6s %10s %10s %9s %12s %10s\n", "base", "ms/step", "tokens/s", "vs f32", "peak MiB", "dequant %");
    enum pl_dtype kinds[4] = { PL_F32, PL_BF16, PL_NF4, PL_Q8_0 };
    double f32_tps = 0;
    for (int k = 0; k < 4; k++) {
        struct pl_model *m = NULL;
        struct pl_model_load_opts lo = { 0 };
        lo.no_tokenizer = 1;
        if (pl_model_load(&m, path, &lo) != PL_OK) { printf("%s\n", pl_last_error()); return 1; }
        /* projections to the base kind (f32: dequantised copies of the file's q4_1) */
        for (int l = 0; l < m->cfg.n_layers; l++)
            for (int p = 0; p < PL_PROJ_COUNT; p++) {
                struct pl_tensor *w = m->layers[l].w[p];
                struct pl_tensor *f = pl_tensor_convert(w, PL_F32, PL_MEM_WEIGHTS);
                pl_tensor_release(w);
                m->layers[l].w[p] = f;
            }
        if (kinds[k] != PL_F32 && pl_qlora_quantize(m, kinds[k], 0, NULL) != PL_OK) {
            printf("%s\n", pl_last_error());
            return 1;
        }
        pl_mem_reset_peak();
        struct pl_train_cfg tc = pl_train_defaults();
        tc.batch_size = B;
        tc.seq_len = T;
        struct pl_trainer *t = NULL;
        if (pl_trainer_new(&t, m, &tc) != PL_OK) { printf("%s\n", pl_last_error()); return 1; }
        int n = B * T;
        int32_t *ids = malloc((size_t)n * sizeof(int32_t)), *tg = malloc((size_t)n * sizeof(int32_t));
        double times[64];
        if (steps > 63) steps = 63;
        for (int s = 0; s <= steps; s++) {
            batch(ids, tg, n, m->cfg.vocab_size, (uint64_t)s);
            double l, t0 = now();
            int64_t c;
            int st;
            if (pl_trainer_micro(t, ids, tg, B, T, &l, &c, &st) != PL_OK) { printf("%s\n", pl_last_error()); return 1; }
            if (s) times[s - 1] = now() - t0;
        }
        qsort(times, (size_t)steps, sizeof times[0], cmp_d);
        double step = times[steps / 2], tps = n / step;
        if (k == 0) f32_tps = tps;
        /* passes over the weights per step: forward + backward dx, each per 512-row block */
        int passes = 2 * ((n + 511) / 512);
        double dq = kinds[k] == PL_F32 ? 0 : dequant_all(m) * passes;
        printf("%-6s %10.1f %10.1f %8.1f%% %12.1f %9.1f%%\n", pl_dtype_info(kinds[k])->name, step * 1e3,
               tps, 100 * tps / f32_tps, pl_mem_peak_total() / 1048576.0, 100 * dq / step);
        free(ids);
        free(tg);
        pl_trainer_free(t);
        pl_model_free(m);
    }
    return 0;
}

static int bench_7b(int T, int steps, int every, int bf16, enum pl_dtype base, enum pl_dtype embd)
{
    struct pl_model_config c = pl_memmodel_llama2_7b();
    struct pl_memmodel_cfg mc = pl_memmodel_defaults();
    mc.shape = c;
    struct pl_hw hw;
    pl_hw_query(&hw);
    int64_t budget = pl_hw_default_budget(&hw);
    /* full fine-tuning of the shape (f32 weights), refused before anything is allocated */
    mc.method = PL_MEMM_FULL;
    mc.base_dtype = mc.embd_dtype = PL_F32;
    mc.batch = 1;
    mc.seq_len = T;
    struct pl_mem_estimate e;
    if (pl_memmodel_autosize(&mc, budget, 1, T, 1, 1, T, &e) != PL_OK)
        printf("full fine-tuning refused up front: %s\n", pl_last_error());
    else
        printf("full fine-tuning would fit in %.2f GiB\n", e.resident / 1073741824.0);

    mc = pl_memmodel_defaults();
    mc.shape = c;
    mc.method = PL_MEMM_QLORA;
    mc.base_dtype = mc.quant_dtype = base;
    mc.embd_dtype = embd;
    mc.batch = 1;
    mc.seq_len = T;
    mc.ckpt_every = every;
    pl_memmodel_estimate(&mc, &e);
    printf("7B QLoRA r8 q_proj+v_proj, projections %s, embedding and head %s, batch 1 x %d, checkpoint every %d layer(s)\n",
           pl_dtype_info(base)->name, pl_dtype_info(embd)->name, T, every);
    printf("  memory model: peak %.2f GiB (weights %.2f, activations %.2f, workspace %.3f GiB)\n",
           e.peak_total / 1073741824.0, e.peak[PL_MEM_WEIGHTS] / 1073741824.0,
           e.peak[PL_MEM_ACTIVATIONS] / 1073741824.0, e.peak[PL_MEM_WORKSPACE] / 1073741824.0);
    double t0 = now();
    struct pl_model *m = NULL;
    if (pl_qlora_random_model(&m, &c, base, embd, 7) != PL_OK) { printf("%s\n", pl_last_error()); return 1; }
    printf("  random model made in %.1f s: %.2f GiB of weights, RSS %.2f GiB\n", now() - t0,
           pl_mem_current(PL_MEM_WEIGHTS) / 1073741824.0, pl_mem_rss() / 1073741824.0);
    struct pl_train_cfg tc = pl_train_defaults();
    tc.batch_size = 1;
    tc.seq_len = 1;   /* the trainer's own full-activation plan stays tiny; src/train/ckpt.c plans 1 x T */
    struct pl_trainer *t = NULL;
    struct pl_ckpt *ck = NULL;
    if (pl_trainer_new(&t, m, &tc) != PL_OK || pl_ckpt_new(&ck, t, 1, T, every) != PL_OK) {
        printf("%s\n", pl_last_error());
        return 1;
    }
    int32_t *ids = malloc((size_t)T * sizeof(int32_t)), *tg = malloc((size_t)T * sizeof(int32_t));
    if (bf16) printf("  compute bf16 (%s)\n", pl_compute_set(PL_COMPUTE_BF16) == PL_COMPUTE_F32 &&
                                            pl_compute_get() == PL_COMPUTE_BF16 ? "avx512_bf16" : "not available: f32");
    for (int s = 0; s < steps; s++) {
        batch(ids, tg, T, c.vocab_size, (uint64_t)s);
        double l, t1 = now();
        int64_t cnt;
        int st;
        if (pl_ckpt_micro(ck, ids, tg, 1, T, &l, &cnt, &st) != PL_OK) { printf("%s\n", pl_last_error()); return 1; }
        double dt = now() - t1;
        printf("  step %d: loss %.4f, %.1f s (%.1f tokens/s), grad norm %.3g\n", s + 1, l, dt, T / dt,
               pl_trainer_state(t).last_grad_norm);
        fflush(stdout);
    }
    printf("  peak tracked %.2f GiB (model %.2f GiB), peak RSS %.2f GiB\n",
           pl_mem_peak_total() / 1073741824.0, e.peak_total / 1073741824.0,
           pl_mem_rss_peak() / 1073741824.0);
    free(ids);
    free(tg);
    pl_ckpt_free(ck);
    pl_trainer_free(t);
    pl_model_free(m);
    return 0;
}

/* Best-of-reps seconds of C = A · op(W) (pl_gemm16), w_nr as pl_gemm16 takes it. */
static double time_gemm16(const struct pl_tensor *w, int w_nr, float *C, const float *A, int64_t M, int reps)
{
    const int64_t out = w->shape[0], in = w->shape[1];
    const int64_t R = w_nr ? in : out, N = w_nr ? out : in;
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        if (pl_gemm16(C, A, pl_tensor_data(w), w->dtype, w_nr, 0.0f, M, R, N) != PL_OK) {
            printf("%s\n", pl_last_error());
            return NAN;
        }
        double t = now() - t0;
        if (t < best) best = t;
    }
    return best;
}

static int bench_formats(int M, int reps, int threads)
{
    if (!pl_gemm16_available()) { printf("bench_qlora formats: no AVX512_BF16 here; skipped\n"); return 0; }
    omp_set_num_threads(threads);
    struct pl_model_config c = pl_memmodel_llama2_7b();
    c.n_layers = 1;
    struct pl_model *a = NULL, *b = NULL;
    if (pl_qlora_random_model(&a, &c, PL_NF4, PL_BF16, 7) != PL_OK ||
        pl_qlora_random_model(&b, &c, PL_NF4_DQ, PL_Q8_0, 7) != PL_OK) { printf("%s\n", pl_last_error()); return 1; }
    const int64_t W = c.vocab_size > c.hidden_dim ? c.vocab_size : c.hidden_dim;
    unsigned seed = 1;
    float *A = rnd((size_t)M * W, 1.0f, &seed), *C = malloc((size_t)M * W * sizeof(float));
    printf("7B-shaped products under compute bf16, %d rows, %d thread(s), best of %d (s; GFLOP/s)\n", M, threads, reps);
    const struct { const char *what; const struct pl_tensor *w; } rows[] = {
        { "gate_proj", a->layers[0].w[PL_PROJ_GATE] }, { "gate_proj", b->layers[0].w[PL_PROJ_GATE] },
        { "output head", a->output }, { "output head", b->output },
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        for (int w_nr = 1; w_nr >= 0; w_nr--) {
            const struct pl_tensor *w = rows[i].w;
            double t = time_gemm16(w, w_nr, C, A, M, reps);
            double gf = 2.0 * M * (double)w->shape[0] * (double)w->shape[1] / t * 1e-9;
            printf("  %-12s %-7s %-14s %8.4f s %7.1f GFLOP/s\n", rows[i].what, pl_dtype_info(w->dtype)->name,
                   w_nr ? "forward" : "input gradient", t, gf);
            fflush(stdout);
        }
    free(A);
    free(C);
    pl_model_free(a);
    pl_model_free(b);
    return 0;
}

static int bench_precision(int B, int T, int steps, const char *base)
{
    const char *path = getenv("PEFT_MODEL");
    if (!path) path = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
    struct stat sb;
    if (stat(path, &sb) != 0) {
        printf("bench_qlora: %s absent (make model); skipped\n", path);
        return 0;
    }
    int f32 = strcmp(base, "f32") == 0;
    printf("SmolLM2-135M LoRA r8 q_proj+v_proj, %s base, batch %d x %d, %d timed steps (median) after one warm-up\n",
           f32 ? "f32 (dequantised)" : "q4_1 (as loaded)", B, T, steps);
    printf("%-9s %10s %9s %8s %11s %11s %11s %11s %9s %s\n", "precision", "ms/step", "tokens/s", "vs fp32",
           "peak MiB", "act. MiB", "model act.", "saved MiB", "loss", "scaler");
    double tps32 = 0;
    for (int k = 0; k < 3; k++) {
        struct pl_model *m = NULL;
        struct pl_model_load_opts lo = { 0 };
        lo.no_tokenizer = 1;
        if (pl_model_load(&m, path, &lo) != PL_OK) { printf("%s\n", pl_last_error()); return 1; }
        if (f32 && pl_qlora_quantize(m, PL_F32, 0, NULL) != PL_OK) { printf("%s\n", pl_last_error()); return 1; }
        struct pl_train_cfg tc = pl_train_defaults();
        tc.batch_size = B;
        tc.seq_len = T;
        tc.precision = (enum pl_precision)k;
        struct pl_memmodel_cfg mc = pl_memmodel_defaults();
        pl_memmodel_cfg_from_model(&mc, m);
        mc.batch = B;
        mc.seq_len = T;
        mc.precision = (enum pl_memm_precision)k;
        struct pl_mem_estimate e;
        pl_memmodel_estimate(&mc, &e);
        pl_mem_reset_peak();
        struct pl_trainer *t = NULL;
        if (pl_trainer_new(&t, m, &tc) != PL_OK) { printf("%s\n", pl_last_error()); return 1; }
        int n = B * T;
        int32_t *ids = malloc((size_t)n * sizeof(int32_t)), *tg = malloc((size_t)n * sizeof(int32_t));
        double times[64], l = NAN;
        if (steps > 63) steps = 63;
        if (steps < 1) steps = 1;
        for (int s = 0; s <= steps; s++) {
            batch(ids, tg, n, m->cfg.vocab_size, (uint64_t)s);
            double t0 = now();
            int64_t c;
            int st;
            if (pl_trainer_micro(t, ids, tg, B, T, &l, &c, &st) != PL_OK) { printf("%s\n", pl_last_error()); return 1; }
            if (s) times[s - 1] = now() - t0;
        }
        qsort(times, (size_t)steps, sizeof times[0], cmp_d);
        double step = times[steps / 2], tps = n / step;
        if (k == 0) tps32 = tps;
        char sc[64] = "-";
        if (k == PL_PREC_FP16)
            snprintf(sc, sizeof sc, "S=%g, %lld skipped", pl_trainer_state(t).loss_scale, (long long)pl_trainer_state(t).skipped_steps);
        /* the planned context: every layer's saved activations (f32 or 16-bit), the one f32
         * working layer of 16-bit mode, the residual stream, final norm and scratch */
        double ctx_mib = (double)pl_trainer_state(t).plan_bytes / 1048576.0;
        printf("%-9s %10.1f %9.1f %7.1f%% %11.1f %11.1f %11.1f %11.1f %9.4f %s\n", pl_precision_name(tc.precision),
               step * 1e3, tps, 100 * tps / tps32, pl_mem_peak_total() / 1048576.0,
               pl_mem_peak(PL_MEM_ACTIVATIONS) / 1048576.0, e.peak[PL_MEM_ACTIVATIONS] / 1048576.0,
               ctx_mib, l, sc);
        fflush(stdout);
        free(ids);
        free(tg);
        pl_trainer_free(t);
        pl_model_free(m);
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct pl_hw hw;
    pl_hw_query(&hw);
    char line[512];
    pl_hw_summary(&hw, omp_get_max_threads(), line, sizeof line);
    printf("bench_qlora: %s\n", line);
    const char *mode = argc > 1 ? argv[1] : "smol";
    if (!strcmp(mode, "precision"))
        return bench_precision(argc > 2 ? atoi(argv[2]) : 4, argc > 3 ? atoi(argv[3]) : 256,
                               argc > 4 ? atoi(argv[4]) : 2, argc > 5 ? argv[5] : "q4_1");
    if (!strcmp(mode, "formats"))
        return bench_formats(argc > 2 ? atoi(argv[2]) : 512, argc > 3 ? atoi(argv[3]) : 3,
                             argc > 4 ? atoi(argv[4]) : 2);
    if (!strcmp(mode, "7b")) {
        int base = argc > 6 ? pl_dtype_from_name(argv[6]) : PL_NF4_DQ;
        int embd = argc > 7 ? pl_dtype_from_name(argv[7]) : PL_Q8_0;
        if (base < 0 || embd < 0) { printf("bench_qlora 7b: unknown dtype\n"); return 1; }
        return bench_7b(argc > 2 ? atoi(argv[2]) : 512, argc > 3 ? atoi(argv[3]) : 1,
                        argc > 4 ? atoi(argv[4]) : 1, argc > 5 && !strcmp(argv[5], "bf16"),
                        (enum pl_dtype)base, (enum pl_dtype)embd);
    }
    return bench_smol(argc > 2 ? atoi(argv[2]) : 4, argc > 3 ? atoi(argv[3]) : 256,
                      argc > 4 ? atoi(argv[4]) : 2);
}
