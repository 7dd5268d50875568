/* bench_train.c — training speed: tokens/s, ms/step and peak memory of LoRA and full
 * fine-tuning steps, with model-FLOPs utilisation against the measured sgemm rate.
 *
 * Owner: train. Prints figures, never fails on time. Models: stories260K (always) and
 * SmolLM2-135M when models/SmolLM2-135M-Instruct.Q4_1.gguf is present; batch 4 x 256 (the
 * issue's shape), LoRA rank 8 on q_proj and v_proj, AdamW. FLOPs per trained token:
 * LoRA 4N + attention, full 6N + attention (N = weights in the matrices, attention
 * 3 * 4 * L * T/2 * D for forward + backward of the causal scores and mix); MFU = those FLOPs per
 * second / the sgemm rate measured here on a [1024 x D] x [D x 4D] product. The PyTorch
 * reference steps for the same shapes: tests/ref/train/torch_bench.py.
 *   build/bench/bench_train [steps]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "peftlua/alloc.h"
#include "peftlua/blas.h"
#include "peftlua/model.h"
#include "peftlua/train.h"

#include "bench.h"

static double sgemm_gflops(int64_t D)
{
    int64_t M = 1024, N = 4 * D, K = D;
    float *a = malloc((size_t)(M * K) * 4), *b = malloc((size_t)(K * N) * 4), *c = malloc((size_t)(M * N) * 4);
    for (int64_t i = 0; i < M * K; i++) a[i] = (float)(i % 7) * 0.1f;
    for (int64_t i = 0; i < K * N; i++) b[i] = (float)(i % 5) * 0.1f;
    pl_sgemm(0, 0, M, N, K, 1.0f, a, K, b, N, 0.0f, c, N);
    int reps = 0;
    double t0 = now(), t;
    do { pl_sgemm(0, 0, M, N, K, 1.0f, a, K, b, N, 0.0f, c, N); reps++; } while ((t = now() - t0) < 0.5);
    free(a); free(b); free(c);
    return 2.0 * M * N * K * reps / t / 1e9;
}

static void bench(const char *path, enum pl_train_method method, int B, int T, int steps)
{
    struct pl_model *m;
    struct pl_model_load_opts o = { NULL, 1 };
    if (pl_model_load(&m, path, &o) != PL_OK) { printf("  %s: %s\n", path, pl_last_error()); return; }
    const struct pl_model_config *c = &m->cfg;
    struct pl_train_cfg cfg = pl_train_defaults();
    cfg.method = method;
    cfg.batch_size = B;
    cfg.seq_len = T;
    cfg.total_steps = steps + 1;
    pl_mem_reset_peak();
    int64_t rss0 = pl_mem_rss();
    struct pl_trainer *t;
    if (pl_trainer_new(&t, m, &cfg) != PL_OK) { printf("  %s\n", pl_last_error()); pl_model_free(m); return; }
    int32_t *ids = malloc((size_t)B * T * 4), *tg = malloc((size_t)B * T * 4);
    for (int i = 0; i < B * T; i++) {
        ids[i] = 3 + (int32_t)((i * 7919u) % (uint32_t)(c->vocab_size - 3));
        tg[i] = 3 + (int32_t)(((i + 1) * 7919u) % (uint32_t)(c->vocab_size - 3));
    }
    double l;
    int64_t cnt;
    int stepped;
    pl_trainer_micro(t, ids, tg, B, T, &l, &cnt, &stepped);   /* warm-up */
    double t0 = now();
    for (int s = 0; s < steps; s++) pl_trainer_micro(t, ids, tg, B, T, &l, &cnt, &stepped);
    double dt = (now() - t0) / steps;
    double N = (double)c->n_layers * ((double)c->dim * c->n_heads * c->head_dim * 2 +
                                      (double)c->dim * c->n_kv_heads * c->head_dim * 2 +
                                      3.0 * c->dim * c->hidden_dim) +
               (double)c->vocab_size * c->dim;
    double attn = 3.0 * 4.0 * c->n_layers * (T / 2.0) * c->dim;
    double flops_tok = (method == PL_TRAIN_LORA ? 4.0 : 6.0) * N + attn;
    double tps = B * T / dt;
    double peak = (double)pl_mem_peak_total() / 1048576.0;
    printf("  %-22s %-4s B%d x T%d: %8.1f ms/step  %9.0f tokens/s  %6.1f GFLOP/s  peak tracked %7.1f MiB  rss %+7.1f MiB\n",
           m->name ? m->name : path, method == PL_TRAIN_LORA ? "lora" : "full", B, T, dt * 1e3, tps,
           tps * flops_tok / 1e9, peak, (double)(pl_mem_rss_peak() - rss0) / 1048576.0);
    free(ids);
    free(tg);
    pl_trainer_free(t);
    pl_model_free(m);
}

int main(int argc, char **argv)
{
    int steps = argc > 1 ? atoi(argv[1]) : 3;
    if (steps < 1) steps = 1;
    double g = sgemm_gflops(576);
    printf("bench_train: %d threads, OpenBLAS core %s, sgemm [1024x576]x[576x2304] %.1f GFLOP/s\n",
           pl_blas_threads(), pl_blas_corename(), g);
    printf("  (MFU = GFLOP/s / %.1f)\n", g);
    const char *stories = PL_SHARED "/models/stories260K/stories260K.gguf";
    bench(stories, PL_TRAIN_LORA, 4, 256, steps * 4);
    bench(stories, PL_TRAIN_FULL, 4, 256, steps * 4);
    const char *smol = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
    if (access(smol, R_OK) == 0) {
        bench(smol, PL_TRAIN_LORA, 4, 256, steps);
        bench(smol, PL_TRAIN_FULL, 4, 256, steps);
    } else {
        printf("  %s absent (make model): SmolLM2 skipped\n", smol);
    }
    return 0;
}
