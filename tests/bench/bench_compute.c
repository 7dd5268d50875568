/* bench_compute.c — a SmolLM2-135M training step with compute = f32 against compute = bf16
 * (include/peftlua/gemm16.h), pairs run back to back. Owner: kernels. Never fails on time.
 *   build/bench/bench_compute [pairs (2)] [threads list ("1,2")] [methods ("lora")] [only]
 * only: "f32" or "bf16" runs that trainer alone (for profiling one mode).
 * methods: "lora", "full" or "lora,full". Batch 4 x 256, LoRA r8 on q_proj, v_proj, AdamW, as
 * bench_train and tests/ref/train/torch_bench.py. Two trainers (one per compute mode, each on
 * its own load of the model) are warmed up by one step, then each pair times one step of each,
 * f32 first. Prints tokens/s per step, the bf16/f32 ratio per pair, the loss of each step (the
 * two runs see the same batches) and the model GFLOP/s (FLOPs per token as bench_train counts
 * them): MFU is that over the bf16 peak bench_gemm16 measures.
 * Skips SmolLM2 where models/SmolLM2-135M-Instruct.Q4_1.gguf is absent (make model).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "peftlua/alloc.h"
#include "peftlua/blas.h"
#include "peftlua/gemm16.h"
#include "peftlua/model.h"
#include "peftlua/train.h"

#include "bench.h"

struct run { struct pl_model *m; struct pl_trainer *t; };

static int open_run(struct run *r, const char *path, enum pl_train_method method, enum pl_compute c,
                    int B, int T)
{
    struct pl_model_load_opts o = { NULL, 1 };
    if (pl_model_load(&r->m, path, &o) != PL_OK) { printf("  %s: %s\n", path, pl_last_error()); return -1; }
    struct pl_train_cfg cfg = pl_train_defaults();
    cfg.method = method;
    cfg.batch_size = B;
    cfg.seq_len = T;
    cfg.total_steps = 1000;
    cfg.compute = c;
    if (pl_trainer_new(&r->t, r->m, &cfg) != PL_OK) {
        printf("  %s\n", pl_last_error());
        pl_model_free(r->m);
        return -1;
    }
    return 0;
}

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* One step; returns its wall time and sets *cpu to the process CPU time it took (on a loaded
 * machine the 1-thread CPU time is the better estimate of the quiet step time). */
static double step(struct run *r, const int32_t *ids, const int32_t *tg, int B, int T, double *loss,
                   double *cpu)
{
    int64_t cnt;
    int stepped;
    double t0 = now(), c0 = cpu_now();
    if (pl_trainer_micro(r->t, ids, tg, B, T, loss, &cnt, &stepped) != PL_OK)
        printf("  step failed: %s\n", pl_last_error());
    *cpu = cpu_now() - c0;
    return now() - t0;
}

int main(int argc, char **argv)
{
    int pairs = argc > 1 ? atoi(argv[1]) : 2;
    const char *tl = argc > 2 ? argv[2] : "1,2";
    const char *ml = argc > 3 ? argv[3] : "lora";
    const char *only = argc > 4 ? argv[4] : "";
    const char *smol = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
    printf("bench_compute: bf16 kernel %s, OpenBLAS core %s\n", pl_gemm16_isa(), pl_blas_corename());
    if (access(smol, R_OK) != 0) { printf("  %s absent (make model): skipped\n", smol); return 0; }
    if (!pl_gemm16_available()) { printf("  no AVX512_BF16 on this CPU: compute = bf16 runs f32; skipped\n"); return 0; }
    const int B = 4, T = 256;
    int32_t *ids = malloc((size_t)B * T * 4), *tg = malloc((size_t)B * T * 4);
    for (const char *p = tl; *p;) {
        int nth = next_count(&p);
        if (nth < 1) continue;
        pl_blas_set_threads(nth);
        for (int meth = 0; meth < 2; meth++) {
            if (!strstr(ml, meth ? "full" : "lora")) continue;
            enum pl_train_method me = meth ? PL_TRAIN_FULL : PL_TRAIN_LORA;
            struct run r32, rb;
            if (open_run(&r32, smol, me, PL_COMPUTE_F32, B, T) || open_run(&rb, smol, me, PL_COMPUTE_BF16, B, T))
                return 1;
            const int V = r32.m->cfg.vocab_size;
            /* model FLOPs per token as bench_train counts them: LoRA 4N, full 6N (N = weights in
             * the matrices, head included) + causal attention 3·4·L·(T/2)·D */
            const struct pl_model_config *c = &r32.m->cfg;
            double Nw = (double)c->n_layers * ((double)c->dim * c->n_heads * c->head_dim * 2 +
                                               (double)c->dim * c->n_kv_heads * c->head_dim * 2 +
                                               3.0 * c->dim * c->hidden_dim) + (double)V * c->dim;
            double ftok = (meth ? 6.0 : 4.0) * Nw + 3.0 * 4.0 * c->n_layers * (T / 2.0) * c->dim;
            double l32, lb;
            for (int s = -1; s < pairs; s++) {
                for (int i = 0; i < B * T; i++) {   /* a different batch per step, the same for both */
                    ids[i] = 3 + (int32_t)(((uint32_t)(i + 1000 * (s + 1)) * 7919u) % (uint32_t)(V - 3));
                    tg[i] = 3 + (int32_t)(((uint32_t)(i + 1 + 1000 * (s + 1)) * 7919u) % (uint32_t)(V - 3));
                }
                double ca = NAN, cb = NAN;
                double a = strcmp(only, "bf16") ? step(&r32, ids, tg, B, T, &l32, &ca) : NAN;
                double b = strcmp(only, "f32") ? step(&rb, ids, tg, B, T, &lb, &cb) : NAN;
                if (s < 0) continue;   /* warm-up */
                printf("  %d thread%s %s pair %d: f32 %7.1f tokens/s (loss %.5f)  bf16 %7.1f tokens/s (loss %.5f)  bf16/f32 %.2fx  model GFLOP/s %.1f / %.1f\n",
                       nth, nth > 1 ? "s" : " ", meth ? "full" : "lora", s + 1, B * T / a, l32, B * T / b, lb, a / b,
                       B * T / a * ftok * 1e-9, B * T / b * ftok * 1e-9);
                printf("  %d thread%s %s pair %d: tokens per CPU-second (loaded machine): f32 %7.1f  bf16 %7.1f\n",
                       nth, nth > 1 ? "s" : " ", meth ? "full" : "lora", s + 1, B * T / ca, B * T / cb);
            }
            pl_trainer_free(r32.t); pl_model_free(r32.m);
            pl_trainer_free(rb.t); pl_model_free(rb.m);
        }
    }
    free(ids); free(tg);
    return 0;
}
