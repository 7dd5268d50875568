/* test_precision.c — mixed precision: 16-bit saved activations and fp16 dynamic loss scaling.
 *
 * Owner: precision (train.h "Mixed precision", src/model/llama.c PL_LLAMA_SAVE_BF16/F16,
 * kernels.h pl_act16_store/load). On stories260K (../shared/models/stories260K/):
 *   - the conversion kernels bit for bit against quant.h's scalar round-to-nearest-even;
 *   - the saved-activation bytes of a context, measured by the counting allocator;
 *   - LoRA and full-fine-tuning gradients with bf16 / fp16 saved activations against fp32 on
 *     the same weights (the forward loss is bit-identical: only the backward reads rounded
 *     values), and bf16 / fp16 runs (16-bit frozen weights too) whose losses track fp32;
 *   - the loss scaler: an overflow injected through a huge initial scale skips steps without
 *     touching parameters or optimizer state, halving the scale until the step is finite, after
 *     which the update equals an unscaled run's bit for bit; growth after the interval;
 *     resume from a checkpoint with the scaler state is bit-exact;
 *   - an unknown precision, a bad loss scale and a checkpoint of another precision are refused.
 * Run from the repository root.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "peftlua/alloc.h"
#include "peftlua/ckpt.h"
#include "peftlua/kernels.h"
#include "peftlua/model.h"
#include "peftlua/qlora.h"
#include "peftlua/quant.h"
#include "peftlua/rng.h"
#include "peftlua/train.h"

#define MODEL PL_SHARED "/models/stories260K/stories260K.gguf"

static struct pl_model *load_model(void)
{
    struct pl_model *m = NULL;
    struct pl_model_load_opts o = { NULL, 1 };
    if (pl_model_load(&m, MODEL, &o) != PL_OK) fail_msg("%s", pl_last_error());
    return m;
}

static double rel_err(const float *a, const float *b, int64_t n)
{
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * (double)b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static float frand(struct pl_rng *r) { return (float)((double)(pl_rng_next(r) >> 11) * 0x1.0p-53); }

/* A batch of B x T ids/targets (targets: next id, a few ignored). */
static void make_batch(int32_t *ids, int32_t *tg, int B, int T, int V, uint64_t seed)
{
    struct pl_rng r;
    pl_rng_seed(&r, seed);
    for (int i = 0; i < B * T; i++) ids[i] = (int32_t)(pl_rng_next(&r) % (uint64_t)V);
    for (int i = 0; i < B * T; i++) tg[i] = (i % T == T - 1) ? -1 : ids[i + 1];
}

/* ---- conversion kernels ---- */

static uint32_t bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float from_bits(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

static void test_act16_kernels(void **state)
{
    (void)state;
    const int64_t n = 100003;   /* not a multiple of 8 or of the parallel chunk */
    float *x = malloc((size_t)n * 4), *y = malloc((size_t)n * 4);
    uint16_t *h = malloc((size_t)n * 2);
    struct pl_rng r;
    pl_rng_seed(&r, 3);
    for (int64_t i = 0; i < n; i++) {
        /* magnitudes 2^-30 .. 2^20, both signs; every 7th a raw random bit pattern */
        float v = ldexpf(frand(&r) + 0.5f, (int)(pl_rng_next(&r) % 51) - 30);
        if (pl_rng_next(&r) & 1) v = -v;
        if (i % 7 == 0) v = from_bits((uint32_t)pl_rng_next(&r));
        x[i] = v;
    }
    const float edge[] = { 0.0f, -0.0f, INFINITY, -INFINITY, NAN,
                           from_bits(0x3F808000u),   /* bf16 tie, even below: 0x3F80 */
                           from_bits(0x3F818000u),   /* bf16 tie, odd below: up to 0x3F82 */
                           from_bits(0x7F7FFFFFu),   /* FLT_MAX: bf16 rounds to inf */
                           65504.0f, 65519.0f, 65520.0f, 1e6f,   /* f16: max, below/at the tie, overflow */
                           0x1.0p-24f, 0x1.0p-25f, 0x1.8p-25f, 0x1.0p-14f, 1.0f + 0x1.0p-11f,
                           1.0f + 0x1.8p-11f };
    for (size_t i = 0; i < sizeof edge / sizeof edge[0]; i++) x[i * 13] = edge[i];
    int64_t nan_seen = 0;
    for (int k = 0; k < 2; k++) {
        enum pl_dtype t = k ? PL_F16 : PL_BF16;
        pl_act16_store(h, x, n, t);
        pl_act16_load(y, h, n, t);
        for (int64_t i = 0; i < n; i++) {
            uint16_t ref = t == PL_F16 ? pl_f32_to_f16(x[i]) : pl_f32_to_bf16(x[i]);
            float back = t == PL_F16 ? pl_f16_to_f32(h[i]) : pl_bf16_to_f32(h[i]);
            if (isnan(x[i])) {   /* NaN payloads may differ; NaN must stay NaN */
                assert_true(isnan(y[i]));
                nan_seen++;
                continue;
            }
            if (h[i] != ref) fail_msg("%s: x = %a (0x%08x): got 0x%04x, reference 0x%04x",
                                      t == PL_F16 ? "f16" : "bf16", x[i], bits(x[i]), h[i], ref);
            assert_true(bits(y[i]) == bits(back));
        }
    }
    assert_true(nan_seen > 2);
    /* the ties and the overflow, spelled out */
    pl_act16_store(h, edge, sizeof edge / sizeof edge[0], PL_BF16);
    assert_int_equal(h[5], 0x3F80);
    assert_int_equal(h[6], 0x3F82);
    assert_int_equal(h[7], 0x7F80);
    pl_act16_store(h, edge, sizeof edge / sizeof edge[0], PL_F16);
    assert_int_equal(h[8], 0x7BFF);    /* 65504 */
    assert_int_equal(h[9], 0x7BFF);    /* 65519 rounds down */
    assert_int_equal(h[10], 0x7C00);   /* 65520: the tie goes to the even, inf */
    assert_int_equal(h[11], 0x7C00);
    assert_int_equal(h[12], 0x0001);   /* 2^-24: the smallest subnormal */
    assert_int_equal(h[13], 0x0000);   /* 2^-25: tie to even, 0 */
    assert_int_equal(h[14], 0x0001);   /* 1.5 * 2^-25 rounds up */
    free(x); free(y); free(h);
}

/* ---- saved-activation bytes ---- */

static int64_t ctx_bytes(struct pl_model *m, int B, int T, int flags)
{
    int64_t before = pl_mem_current(PL_MEM_ACTIVATIONS);
    struct pl_llama_ctx *c = pl_llama_ctx_new(m, B, T, flags);
    if (!c) fail_msg("%s", pl_last_error());
    int64_t b = pl_mem_current(PL_MEM_ACTIVATIONS) - before;
    pl_llama_ctx_free(c);
    return b;
}

static void test_saved_bytes(void **state)
{
    (void)state;
    /* stories260K (5 layers) and the same width at SmolLM2-135M's depth (30 layers), where the
     * one f32 working layer weighs 1/30 against the saved ones */
    for (int k = 0; k < 2; k++) {
        struct pl_model *m = NULL;
        if (k == 0) m = load_model();
        else {
            struct pl_model *s = load_model();
            struct pl_model_config c = s->cfg;
            pl_model_free(s);
            c.n_layers = 30;
            c.hidden_dim = 192;   /* whole q8_0 blocks */
            if (pl_qlora_random_model(&m, &c, PL_Q8_0, PL_F32, 5) != PL_OK) fail_msg("%s", pl_last_error());
        }
        int64_t none = ctx_bytes(m, 4, 64, 0);
        int64_t f32 = ctx_bytes(m, 4, 64, PL_LLAMA_SAVE);
        int64_t bf = ctx_bytes(m, 4, 64, PL_LLAMA_SAVE_BF16);
        int64_t h = ctx_bytes(m, 4, 64, PL_LLAMA_SAVE | PL_LLAMA_SAVE_F16);
        printf("  %d layers, 4 x 64: context f32-saving %.2f MiB, bf16-saving %.2f MiB (%.3f), f16 %.2f MiB, not saving %.2f MiB\n",
               m->cfg.n_layers, f32 / 1048576.0, bf / 1048576.0, (double)bf / (double)f32,
               h / 1048576.0, none / 1048576.0);
        assert_int_equal(bf, h);
        /* 16-bit: the rounded tensors take half; the residual stream stays f32 (about a tenth
         * of the saved floats at this width) plus one f32 working layer */
        assert_true((double)bf / (double)f32 < (k == 0 ? 0.75 : 0.60));
        assert_true((double)bf / (double)f32 > 0.50);
        pl_model_free(m);
    }
    struct pl_model *m = load_model();
    assert_null(pl_llama_ctx_new(m, 1, 8, PL_LLAMA_SAVE_BF16 | PL_LLAMA_SAVE_F16));
    assert_non_null(strstr(pl_last_error(), "not both"));
    /* 16-bit contexts run training forwards from position 0 only */
    struct pl_llama_ctx *c = pl_llama_ctx_new(m, 1, 8, PL_LLAMA_SAVE_BF16);
    int32_t ids[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
    assert_int_equal(pl_llama_forward(c, ids, 4, 0, 0), PL_OK);
    assert_int_equal(pl_llama_forward(c, ids, 2, 4, 0), PL_ERR_ARG);
    assert_non_null(strstr(pl_last_error(), "16-bit"));
    pl_llama_ctx_free(c);
    /* a context that does not save has no layer to hand out */
    c = pl_llama_ctx_new(m, 1, 8, 0);
    struct pl_llama_acts a;
    assert_int_equal(pl_llama_forward(c, ids, 4, 0, 0), PL_OK);
    assert_int_equal(pl_llama_saved_layer(c, 0, &a), PL_ERR_STATE);
    pl_llama_ctx_free(c);
    pl_model_free(m);
}

/* ---- gradients ---- */

static struct pl_train_cfg cfg_for(enum pl_train_method method, enum pl_precision p, int B, int T)
{
    struct pl_train_cfg c = pl_train_defaults();
    c.method = method;
    c.precision = p;
    c.batch_size = B;
    c.seq_len = T;
    c.lora.targets = 0x7Fu;
    c.lora.r = 4;
    c.lora.alpha = 8.0f;
    c.schedule = PL_SCHED_CONSTANT;
    return c;
}

/* Gradients (and loss) of one batch; LoRA adapters set to deterministic non-zero values so
 * that dA is not zero. pre16: re-store the frozen projections as bf16 before (so that an
 * fp32 trainer and a 16-bit one see the same weights). */
static float *grads_ck(enum pl_train_method method, enum pl_precision p, int pre16, int every,
                       int64_t *n, double *loss)
{
    struct pl_model *m = load_model();
    if (pre16 && pl_qlora_quantize(m, PL_BF16, 0, NULL) != PL_OK) fail_msg("%s", pl_last_error());
    const int B = 3, T = 48;
    struct pl_train_cfg c = cfg_for(method, p, B, T);
    c.ckpt_every = every;
    struct pl_trainer *t = NULL;
    if (pl_trainer_new(&t, m, &c) != PL_OK) fail_msg("%s", pl_last_error());
    if (method == PL_TRAIN_LORA) {
        struct pl_rng r;
        pl_rng_seed(&r, 11);
        for (int64_t i = 0; i < pl_trainer_n_params(t); i++) pl_trainer_params(t, NULL)[i] = (frand(&r) - 0.5f) * 0.1f;
    }
    int32_t ids[B * T], tg[B * T];
    make_batch(ids, tg, B, T, m->cfg.vocab_size, 21);
    /* a short batch (n < T) so the 16-bit copies see the packed rows of a partial forward */
    if (pl_trainer_grad(t, ids, tg, B, T - 5, loss) != PL_OK) fail_msg("%s", pl_last_error());
    *n = pl_trainer_n_params(t);
    float *g = malloc((size_t)*n * sizeof(float));
    memcpy(g, pl_trainer_grads(t, NULL), (size_t)*n * sizeof(float));
    pl_trainer_free(t);
    pl_model_free(m);
    return g;
}

static float *grads_of(enum pl_train_method method, enum pl_precision p, int pre16, int64_t *n,
                       double *loss)
{
    return grads_ck(method, p, pre16, 0, n, loss);
}

static void check_grads(enum pl_train_method method)
{
    const char *name = method == PL_TRAIN_LORA ? "LoRA" : "full";
    for (int pre = 0; pre < 2; pre++) {
        if (method == PL_TRAIN_FULL && pre) break;   /* full: no frozen weights */
        int64_t n;
        double l32, lb, lh;
        float *g32 = grads_of(method, PL_PREC_FP32, pre, &n, &l32);
        float *gb = grads_of(method, PL_PREC_BF16, pre, &n, &lb);
        float *gh = grads_of(method, PL_PREC_FP16, pre, &n, &lh);
        double eb = rel_err(gb, g32, n), eh = rel_err(gh, g32, n);
        printf("  %s gradients (%lld), %s base: bf16 activations rel. error %.2e, fp16 %.2e; loss %.7f / %.7f / %.7f\n",
               name, (long long)n, pre ? "bf16" : "f32", eb, eh, l32, lb, lh);
        /* Bounds: each saved value is rounded once, relatively by at most 2^-9 (bf16) or
         * 2^-11 (f16); a gradient is a sum of products of a few such factors per layer, with
         * independent rounding errors that add in quadrature, so its relative L2 error is a
         * small multiple of the unit: ≤ 5 units, i.e. 1e-2 for bf16 and 2.5e-3 for f16. It is
         * also not zero: the backward did read rounded values. */
        assert_true(eb < 1e-2);
        assert_true(eh < 2.5e-3);
        assert_true(eb > 1e-5);
        assert_true(eh > 1e-6);
        assert_true(eh < eb);
        if (method == PL_TRAIN_FULL || pre) {
            /* same weights: the forward is computed in f32 in every mode, so the loss is the same bits */
            assert_true(l32 == lb && l32 == lh);
        } else {
            /* the trainer re-stored the f32 base as bf16 / f16 */
            assert_true(fabs(lb - l32) < 1e-2 * l32 && lb != l32);
            assert_true(fabs(lh - l32) < 2.5e-3 * l32 && lh != l32);
        }
        free(g32); free(gb); free(gh);
    }
}

static void test_lora_grads(void **state) { (void)state; check_grads(PL_TRAIN_LORA); }
static void test_full_grads(void **state) { (void)state; check_grads(PL_TRAIN_FULL); }

/* Checkpointed every k >= 3 layers, the segment's activations are kept in 16-bit slots: the
 * recomputation starts from the same f32 checkpoints and rounds the same values, so the
 * gradients are the uncheckpointed 16-bit trainer's, bit for bit; every 1 keeps f32 slots.
 * The plan is smaller than the f32 one from k = 3 (equal at 1 and 2). */
static void test_checkpointed_16bit(void **state)
{
    (void)state;
    for (int method = 0; method < 2; method++)
        for (int p = PL_PREC_BF16; p <= PL_PREC_FP16; p++) {
            int64_t n;
            double l0, l1;
            float *g0 = grads_of((enum pl_train_method)method, (enum pl_precision)p, 0, &n, &l0);
            for (int k = 3; k <= 5; k += 2) {
                float *g1 = grads_ck((enum pl_train_method)method, (enum pl_precision)p, 0, k, &n, &l1);
                if (memcmp(g0, g1, (size_t)n * 4) != 0 || l0 != l1)
                    fail_msg("%s %s every %d: checkpointed gradients differ (rel. error %.3g)",
                             method ? "full" : "LoRA", pl_precision_name((enum pl_precision)p), k,
                             rel_err(g1, g0, n));
                free(g1);
            }
            free(g0);
            /* every 1: f32 activations, so the fp32 trainer's gradients on the same weights
             * (full: no frozen weights; LoRA bf16: the base re-stored as bf16) */
            if (method == PL_TRAIN_LORA && p == PL_PREC_FP16) continue;
            g0 = grads_of((enum pl_train_method)method, PL_PREC_FP32, method == PL_TRAIN_LORA, &n, &l0);
            float *g1 = grads_ck((enum pl_train_method)method, (enum pl_precision)p, 0, 1, &n, &l1);
            assert_memory_equal(g0, g1, (size_t)n * 4);
            free(g0);
            free(g1);
        }
    struct pl_model *m = load_model();
    int64_t bytes[2][6];
    for (int p = 0; p < 2; p++)
        for (int k = 1; k <= 5; k++) {
            struct pl_train_cfg c = cfg_for(PL_TRAIN_LORA, p ? PL_PREC_BF16 : PL_PREC_FP32, 4, 64);
            c.ckpt_every = k;
            struct pl_trainer *t = NULL;
            if (pl_trainer_new(&t, m, &c) != PL_OK) fail_msg("%s", pl_last_error());
            struct pl_ckpt *ck = pl_trainer_ckpt(t);
            assert_non_null(ck);
            assert_int_equal(ck->act_dtype, p && k >= 3 ? PL_BF16 : PL_F32);
            bytes[p][k] = (int64_t)ck->mem_floats * 4 + (int64_t)ck->mem_halves * 2;
            assert_int_equal(bytes[p][k] + (ck->h ? k * (int64_t)sizeof *ck->h : 0),
                             pl_ckpt_plan_bytes(&m->cfg, 4, 64, k, p));
            pl_trainer_free(t);
        }
    printf("  checkpointed plan 4 x 64, f32 / bf16: every 1 %.2f / %.2f MiB, every 3 %.2f / %.2f MiB, every 5 %.2f / %.2f MiB\n",
           bytes[0][1] / 1048576.0, bytes[1][1] / 1048576.0, bytes[0][3] / 1048576.0,
           bytes[1][3] / 1048576.0, bytes[0][5] / 1048576.0, bytes[1][5] / 1048576.0);
    assert_true(bytes[1][1] == bytes[0][1] && bytes[1][2] == bytes[0][2]);
    assert_true(bytes[1][3] < bytes[0][3] && bytes[1][5] < 0.8 * bytes[0][5]);
    pl_model_free(m);
}

/* ---- training ---- */

static void run_steps(enum pl_precision p, int steps, double *losses, struct pl_trainer **keep,
                      struct pl_model **keep_m)
{
    struct pl_model *m = load_model();
    const int B = 4, T = 32;
    struct pl_train_cfg c = cfg_for(PL_TRAIN_LORA, p, B, T);
    c.lr = 1e-2;
    struct pl_trainer *t = NULL;
    if (pl_trainer_new(&t, m, &c) != PL_OK) fail_msg("%s", pl_last_error());
    int32_t ids[B * T], tg[B * T];
    for (int s = 0; s < steps; s++) {
        make_batch(ids, tg, B, T, m->cfg.vocab_size, (uint64_t)(s % 2));
        int64_t cnt;
        int stepped;
        if (pl_trainer_micro(t, ids, tg, B, T, &losses[s], &cnt, &stepped) != PL_OK)
            fail_msg("%s", pl_last_error());
        assert_true(stepped);
    }
    if (keep) { *keep = t; *keep_m = m; return; }
    pl_trainer_free(t);
    pl_model_free(m);
}

static void test_losses_track_fp32(void **state)
{
    (void)state;
    enum { N = 12 };
    double l32[N], lb[N], lh[N];
    run_steps(PL_PREC_FP32, N, l32, NULL, NULL);
    run_steps(PL_PREC_BF16, N, lb, NULL, NULL);
    struct pl_trainer *t;
    struct pl_model *m;
    run_steps(PL_PREC_FP16, N, lh, &t, &m);
    double wb = 0, wh = 0;
    for (int s = 0; s < N; s++) {
        wb = fmax(wb, fabs(lb[s] - l32[s]) / l32[s]);
        wh = fmax(wh, fabs(lh[s] - l32[s]) / l32[s]);
    }
    printf("  LoRA lr 1e-2, %d steps: loss %.4f -> %.4f (fp32), %.4f -> %.4f (bf16), %.4f -> %.4f (fp16); worst step rel. difference bf16 %.2e, fp16 %.2e\n",
           N, l32[0], l32[N - 1], lb[0], lb[N - 1], lh[0], lh[N - 1], wb, wh);
    assert_true(l32[N - 1] < l32[0] - 0.3);   /* it learns (two batches, memorised) */
    /* per step the gradients differ by the bounds of test_lora_grads (bf16 base and
     * activations: 1e-2, f16: 2.5e-3); at lr 1e-2 the trajectories drift a little further
     * apart each step, so the losses are held to 1e-2 and 5e-3 */
    assert_true(wb < 1e-2);
    assert_true(wh < 5e-3);
    /* fp16 at the default scale: nothing overflowed, nothing skipped, no growth yet */
    assert_int_equal(pl_trainer_state(t).skipped_steps, 0);
    assert_true(pl_trainer_state(t).loss_scale == 65536.0);
    assert_int_equal(pl_trainer_state(t).good_steps, N);
    pl_trainer_free(t);
    pl_model_free(m);
}

/* A copy of the trainer's trained vector and optimizer state. */
struct snap { float *p, *m, *v; int64_t n; };
static struct snap snap_of(const struct pl_trainer *t)
{
    struct snap s = { malloc((size_t)pl_trainer_n_params(t) * 4), calloc((size_t)pl_trainer_n_params(t), 4),
                      calloc((size_t)pl_trainer_n_params(t), 4), pl_trainer_n_params(t) };
    memcpy(s.p, pl_trainer_params(t, NULL), (size_t)s.n * 4);
    if (pl_trainer_optim_state(t, 0)) memcpy(s.m, pl_trainer_optim_state(t, 0), (size_t)s.n * 4);
    if (pl_trainer_optim_state(t, 1)) memcpy(s.v, pl_trainer_optim_state(t, 1), (size_t)s.n * 4);
    return s;
}
static int snap_same(const struct snap *s, const struct pl_trainer *t)
{
    return memcmp(s->p, pl_trainer_params(t, NULL), (size_t)s->n * 4) == 0 &&
           (!pl_trainer_optim_state(t, 0) || memcmp(s->m, pl_trainer_optim_state(t, 0), (size_t)s->n * 4) == 0) &&
           (!pl_trainer_optim_state(t, 1) || memcmp(s->v, pl_trainer_optim_state(t, 1), (size_t)s->n * 4) == 0);
}
static void snap_free(struct snap *s) { free(s->p); free(s->m); free(s->v); }

static struct pl_trainer *fp16_trainer(struct pl_model *m, double scale, int interval)
{
    struct pl_train_cfg c = cfg_for(PL_TRAIN_LORA, PL_PREC_FP16, 2, 24);
    c.lr = 1e-2;
    c.loss_scale = scale;
    c.growth_interval = interval;
    struct pl_trainer *t = NULL;
    if (pl_trainer_new(&t, m, &c) != PL_OK) fail_msg("%s", pl_last_error());
    struct pl_rng r;   /* non-zero B so that every gradient is live */
    pl_rng_seed(&r, 12);
    for (int64_t i = 0; i < pl_trainer_n_params(t); i++) pl_trainer_params(t, NULL)[i] = (frand(&r) - 0.5f) * 0.1f;
    return t;
}

static void step_on(struct pl_trainer *t, uint64_t seed)
{
    int32_t ids[2 * 24], tg[2 * 24];
    make_batch(ids, tg, 2, 24, pl_trainer_model(t)->cfg.vocab_size, seed);
    double l;
    int64_t cnt;
    int stepped;
    if (pl_trainer_micro(t, ids, tg, 2, 24, &l, &cnt, &stepped) != PL_OK) fail_msg("%s", pl_last_error());
    assert_true(stepped);
}

static void test_loss_scaler(void **state)
{
    (void)state;
    /* S = 2^140: the scaled loss gradient overflows f32 (its largest finite value is about
     * 2^128), and so does the backward for the next few halvings */
    struct pl_model *m = load_model();
    struct pl_trainer *t = fp16_trainer(m, 0x1.0p140, 3);
    struct snap s0 = snap_of(t);
    double S = 0x1.0p140;
    int skipped = 0;
    for (;;) {
        step_on(t, 1);
        if (pl_trainer_state(t).skipped_steps == skipped) break;   /* a finite step: applied */
        skipped++;
        S *= 0.5;
        assert_int_equal(pl_trainer_state(t).skipped_steps, skipped);
        assert_true(pl_trainer_state(t).loss_scale == S);
        assert_true(!isfinite(pl_trainer_state(t).last_grad_norm));
        assert_true(snap_same(&s0, t));           /* parameters and moments untouched */
        assert_int_equal(pl_trainer_state(t).step, skipped);
        assert_int_equal(pl_trainer_state(t).good_steps, 0);
        assert_true(skipped < 100);
    }
    printf("  loss scale 2^140: %d steps skipped, scale %g (2^%d) then finite (grad norm %.4f)\n",
           skipped, pl_trainer_state(t).loss_scale, (int)log2(pl_trainer_state(t).loss_scale), pl_trainer_state(t).last_grad_norm);
    assert_true(skipped >= 1);
    assert_true(!snap_same(&s0, t));
    assert_int_equal(pl_trainer_state(t).good_steps, 1);
    /* the applied update equals that of a trainer at S = 1 from the start, bit for bit:
     * scaling by a power of two and back is exact, and the skipped steps neither moved the
     * schedule nor AdamW's step count */
    struct pl_model *m1 = load_model();
    struct pl_trainer *u = fp16_trainer(m1, 1.0, 3);
    step_on(u, 1);
    assert_int_equal(pl_trainer_state(u).skipped_steps, 0);
    assert_memory_equal(pl_trainer_params(u, NULL), pl_trainer_params(t, NULL), (size_t)pl_trainer_n_params(t) * 4);
    assert_memory_equal(pl_trainer_optim_state(u, 0), pl_trainer_optim_state(t, 0), (size_t)pl_trainer_n_params(t) * 4);
    assert_memory_equal(pl_trainer_optim_state(u, 1), pl_trainer_optim_state(t, 1), (size_t)pl_trainer_n_params(t) * 4);
    assert_true(pl_trainer_state(u).last_lr == pl_trainer_state(t).last_lr);
    /* growth: at S = 1024 with an interval of 3, the scale doubles after 3 consecutive finite
     * steps and again after 3 more; the updates stay those of the S = 1 trainer, bit for bit */
    struct pl_model *m2 = load_model();
    struct pl_trainer *g = fp16_trainer(m2, 1024.0, 3);
    step_on(g, 1);
    step_on(g, 2);
    assert_true(pl_trainer_state(g).loss_scale == 1024.0);
    step_on(g, 3);
    assert_true(pl_trainer_state(g).loss_scale == 2048.0);
    assert_int_equal(pl_trainer_state(g).good_steps, 0);
    step_on(g, 4); step_on(g, 5);
    assert_true(pl_trainer_state(g).loss_scale == 2048.0);
    step_on(g, 6);
    assert_true(pl_trainer_state(g).loss_scale == 4096.0);
    assert_int_equal(pl_trainer_state(g).skipped_steps, 0);
    for (uint64_t k = 2; k <= 6; k++) step_on(u, k);
    assert_true(pl_trainer_state(u).loss_scale == 4.0);
    assert_memory_equal(pl_trainer_params(u, NULL), pl_trainer_params(g, NULL), (size_t)pl_trainer_n_params(g) * 4);
    pl_trainer_free(g);
    pl_model_free(m2);
    snap_free(&s0);
    pl_trainer_free(u);
    pl_model_free(m1);
    pl_trainer_free(t);
    pl_model_free(m);
}

static void test_resume_with_scaler(void **state)
{
    (void)state;
    char dir[] = "/tmp/peft_precision_XXXXXX";
    if (!mkdtemp(dir)) fail_msg("mkdtemp");
    /* a run at S = 2^131 growing after every finite step: skips, applied steps and growth back into
     * overflow, checkpointed mid-way */
    struct pl_model *m = load_model();
    struct pl_trainer *t = fp16_trainer(m, 0x1.0p131, 1);
    for (uint64_t k = 0; k < 4; k++) step_on(t, k);
    assert_int_equal(pl_trainer_save(t, dir, "pos", 3), PL_OK);
    double scale_at_save = pl_trainer_state(t).loss_scale;
    int64_t skipped_at_save = pl_trainer_state(t).skipped_steps, good_at_save = pl_trainer_state(t).good_steps;
    for (uint64_t k = 4; k < 9; k++) step_on(t, k);
    printf("  resume: at the checkpoint scale 2^%d, %lld skipped, %lld good; after 9 steps 2^%d, %lld skipped\n",
           (int)log2(scale_at_save), (long long)skipped_at_save, (long long)good_at_save,
           (int)log2(pl_trainer_state(t).loss_scale), (long long)pl_trainer_state(t).skipped_steps);
    assert_true(skipped_at_save >= 1);
    assert_true(pl_trainer_state(t).skipped_steps > skipped_at_save && pl_trainer_state(t).skipped_steps < pl_trainer_state(t).step - 1);   /* a mix after it */
    /* resumed: a fresh model and trainer (configured alike), loaded, the same 5 steps */
    struct pl_model *m2 = load_model();
    struct pl_trainer *u = fp16_trainer(m2, 0x1.0p131, 1);
    void *blob = NULL;
    size_t bn = 0;
    assert_int_equal(pl_trainer_load(u, dir, &blob, &bn), PL_OK);
    assert_int_equal(bn, 3);
    pl_free(blob);
    assert_true(pl_trainer_state(u).loss_scale == scale_at_save);
    assert_int_equal(pl_trainer_state(u).skipped_steps, skipped_at_save);
    assert_int_equal(pl_trainer_state(u).good_steps, good_at_save);
    for (uint64_t k = 4; k < 9; k++) step_on(u, k);
    assert_true(pl_trainer_state(u).loss_scale == pl_trainer_state(t).loss_scale);
    assert_int_equal(pl_trainer_state(u).skipped_steps, pl_trainer_state(t).skipped_steps);
    assert_int_equal(pl_trainer_state(u).good_steps, pl_trainer_state(t).good_steps);
    assert_int_equal(pl_trainer_state(u).step, pl_trainer_state(t).step);
    assert_memory_equal(pl_trainer_params(u, NULL), pl_trainer_params(t, NULL), (size_t)pl_trainer_n_params(t) * 4);
    assert_memory_equal(pl_trainer_optim_state(u, 0), pl_trainer_optim_state(t, 0), (size_t)pl_trainer_n_params(t) * 4);
    assert_memory_equal(pl_trainer_optim_state(u, 1), pl_trainer_optim_state(t, 1), (size_t)pl_trainer_n_params(t) * 4);
    /* a trainer of another precision refuses the checkpoint, naming both */
    struct pl_model *m3 = load_model();
    struct pl_train_cfg c = cfg_for(PL_TRAIN_LORA, PL_PREC_BF16, 2, 24);
    struct pl_trainer *w = NULL;
    assert_int_equal(pl_trainer_new(&w, m3, &c), PL_OK);
    assert_int_equal(pl_trainer_load(w, dir, NULL, NULL), PL_ERR_ARG);
    printf("  %s\n", pl_last_error());
    assert_non_null(strstr(pl_last_error(), "precision fp16"));
    assert_non_null(strstr(pl_last_error(), "bf16"));
    pl_trainer_free(w);
    pl_model_free(m3);
    pl_trainer_free(u);
    pl_model_free(m2);
    pl_trainer_free(t);
    pl_model_free(m);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_bad_config(void **state)
{
    (void)state;
    struct pl_model *m = load_model();
    struct pl_train_cfg c = cfg_for(PL_TRAIN_LORA, (enum pl_precision)7, 1, 8);
    struct pl_trainer *t = NULL;
    assert_int_equal(pl_trainer_new(&t, m, &c), PL_ERR_ARG);
    assert_non_null(strstr(pl_last_error(), "unknown precision 7"));
    c.precision = PL_PREC_FP16;
    c.loss_scale = 1000.0;
    assert_int_equal(pl_trainer_new(&t, m, &c), PL_ERR_ARG);
    assert_non_null(strstr(pl_last_error(), "power of two"));
    c.loss_scale = 1024.0;
    c.growth_interval = 0;
    assert_int_equal(pl_trainer_new(&t, m, &c), PL_ERR_ARG);
    assert_non_null(strstr(pl_last_error(), "growth_interval"));
    assert_null(t);
    /* nothing was re-stored by the refused trainers */
    assert_int_equal(m->layers[0].w[PL_PROJ_Q]->dtype, PL_F32);
    assert_int_equal(pl_precision_from_name("fp8"), -1);
    assert_int_equal(pl_precision_from_name("bf16"), PL_PREC_BF16);
    assert_string_equal(pl_precision_name(PL_PREC_FP16), "fp16");
    pl_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_act16_kernels),
        cmocka_unit_test(test_saved_bytes),
        cmocka_unit_test(test_lora_grads),
        cmocka_unit_test(test_full_grads),
        cmocka_unit_test(test_checkpointed_16bit),
        cmocka_unit_test(test_losses_track_fp32),
        cmocka_unit_test(test_loss_scaler),
        cmocka_unit_test(test_resume_with_scaler),
        cmocka_unit_test(test_bad_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
