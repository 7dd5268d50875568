/* test_qlora.c — QLoRA frozen bases.
 *
 * Owner: memory.
 *  - Adapter gradients over an NF4 / Q8_0 base (dequantised in panels inside the kernels)
 *    equal LoRA's gradients over an f32 model holding exactly the dequantised weights
 *    (relative L2 error <= 1e-4), stories260K and (when present) SmolLM2-135M.
 *  - Conversion: bytes after match the block format, norms/embeddings untouched, a kept
 *    projection (172 columns) stays f32, the loss stays near the f32 model's.
 *  - Random NF4 / Q8_0 models built in memory run a forward with finite logits and hold
 *    exactly the bytes of their blocks.
 *  - nf4_dq (double-quantised scales, one unit per tensor) through the linear kernels equals
 *    the f32 kernels over its dequantised values; its bytes are the format's.
 *  - The embedding and output head re-stored as q8_0: the lookup against the bytes decoded by
 *    hand, a step's loss and gradients against the all-f32 twin and against the bf16 head.
 *  - Errors: an unsupported dtype and quantising under attached adapters are refused.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "peftlua/alloc.h"
#include "peftlua/kernels.h"
#include "peftlua/lora.h"
#include "peftlua/memmodel.h"
#include "peftlua/model.h"
#include "peftlua/qlora.h"
#include "peftlua/quant.h"
#include "peftlua/rng.h"
#include "peftlua/train.h"

#define STORIES PL_SHARED "/models/stories260K/stories260K.gguf"
#define STORIES_BIN PL_SHARED "/models/stories260K/stories260K.bin"
#define SMOL "models/SmolLM2-135M-Instruct.Q4_1.gguf"

static struct pl_model *load(const char *path)
{
    struct pl_model *m = NULL;
    struct pl_model_load_opts o = { 0 };
    o.no_tokenizer = 1;
    assert_int_equal(pl_model_load(&m, path, &o), PL_OK);
    return m;
}

/* Make ref's projections f32 copies of q's (dequantised) weights. */
static void dequantised_twin(struct pl_model *ref, const struct pl_model *q)
{
    for (int l = 0; l < q->cfg.n_layers; l++)
        for (int p = 0; p < PL_PROJ_COUNT; p++) {
            const struct pl_tensor *w = q->layers[l].w[p];
            struct pl_tensor *f = pl_tensor_convert(w, PL_F32, PL_MEM_WEIGHTS);
            assert_non_null(f);
            pl_tensor_release(ref->layers[l].w[p]);
            ref->layers[l].w[p] = f;
        }
}

static void batch(int32_t *ids, int32_t *tg, int n, int V, uint64_t seed)
{
    struct pl_rng r;
    pl_rng_seed(&r, seed);
    for (int i = 0; i < n; i++) {
        ids[i] = (int32_t)(pl_rng_next(&r) % (uint64_t)V);
        tg[i] = i % 7 == 3 ? -1 : (int32_t)(pl_rng_next(&r) % (uint64_t)V);
    }
}

/* LoRA gradients over q (quantised) and ref (f32, same values) with identical non-zero
 * adapters; returns ||g_q - g_ref|| / ||g_ref||; the losses agree within loss_tol (relative),
 * and are returned in *lq_out / *lr_out when not NULL. */
static double grad_rel_err_loss(struct pl_model *q, struct pl_model *ref, int B, int T,
                                double loss_tol, double *lq_out, double *lr_out)
{
    struct pl_train_cfg tc = pl_train_defaults();
    tc.batch_size = B;
    tc.seq_len = T;
    tc.lora.targets = 0x7F;
    tc.lora.r = 4;
    tc.lora.alpha = 8;
    struct pl_trainer *tq = NULL, *tr = NULL;
    assert_int_equal(pl_trainer_new(&tq, q, &tc), PL_OK);
    assert_int_equal(pl_trainer_new(&tr, ref, &tc), PL_OK);
    assert_int_equal(pl_trainer_n_params(tq), pl_trainer_n_params(tr));
    struct pl_rng r;
    pl_rng_seed(&r, 99);
    for (int64_t i = 0; i < pl_trainer_n_params(tq); i++) {   /* B non-zero so that dA is not zero */
        float v = (float)(pl_rng_uniform(&r) - 0.5) * 0.2f;
        pl_trainer_params(tq, NULL)[i] = pl_trainer_params(tr, NULL)[i] = v;
    }
    int n = B * T, V = q->cfg.vocab_size;
    int32_t *ids = pl_alloc((size_t)n * sizeof(int32_t), PL_MEM_DATA);
    int32_t *tg = pl_alloc((size_t)n * sizeof(int32_t), PL_MEM_DATA);
    batch(ids, tg, n, V, 5);
    double lq, lr;
    assert_int_equal(pl_trainer_grad(tq, ids, tg, B, T, &lq), PL_OK);
    assert_int_equal(pl_trainer_grad(tr, ids, tg, B, T, &lr), PL_OK);
    double num = 0, den = 0;
    for (int64_t i = 0; i < pl_trainer_n_params(tq); i++) {
        double d = (double)pl_trainer_grads(tq, NULL)[i] - (double)pl_trainer_grads(tr, NULL)[i];
        num += d * d;
        den += (double)pl_trainer_grads(tr, NULL)[i] * pl_trainer_grads(tr, NULL)[i];
    }
    assert_true(den > 0);
    if (lq_out) *lq_out = lq;
    if (lr_out) *lr_out = lr;
    assert_true(fabs(lq - lr) <= loss_tol * fabs(lr));
    pl_free(ids);
    pl_free(tg);
    pl_trainer_free(tq);
    pl_trainer_free(tr);
    return sqrt(num / den);
}

static double grad_rel_err(struct pl_model *q, struct pl_model *ref, int B, int T)
{
    return grad_rel_err_loss(q, ref, B, T, 1e-5, NULL, NULL);
}

static void check_grads(const char *path, enum pl_dtype dt, int B, int T, double bound)
{
    struct pl_model *q = load(path), *ref = load(path);
    struct pl_qlora_stats st;
    assert_int_equal(pl_qlora_quantize(q, dt, 0, &st), PL_OK);
    assert_true(st.converted > 0);
    dequantised_twin(ref, q);
    double e = grad_rel_err(q, ref, B, T);
    printf("  %s %s: %d projections converted, %d kept; adapter gradient rel. error %.2e\n",
           path, pl_dtype_info(dt)->name, st.converted, st.kept, e);
    assert_true(e <= bound);
    pl_model_free(q);
    pl_model_free(ref);
}

static void test_grads_equal_dequantised_lora(void **state)
{
    (void)state;
    check_grads(STORIES, PL_NF4, 2, 32, 1e-4);
    check_grads(STORIES, PL_NF4_32, 2, 32, 1e-4);
    check_grads(STORIES, PL_NF4_DQ, 2, 32, 1e-4);
    check_grads(STORIES, PL_Q8_0, 2, 32, 1e-4);
    if (access(SMOL, R_OK) != 0) {
        printf("  %s absent (make model): SmolLM2 cases skipped\n", SMOL);
        return;
    }
    check_grads(SMOL, PL_NF4, 1, 24, 1e-4);
    check_grads(SMOL, PL_NF4_DQ, 1, 24, 1e-4);
    check_grads(SMOL, PL_Q8_0, 1, 24, 1e-4);
    check_grads(SMOL, PL_NF4_32, 1, 24, 1e-4);
}

/* The linear kernels over an nf4_dq weight (several forward panels and backward column
 * chunks, scale groups running across rows) equal the f32 kernels over its dequantised
 * values; and the re-stored base's bytes are those of the format. */
static void test_nf4_dq_linear(void **state)
{
    (void)state;
    const int64_t M = 5, K = 320, N = 600;   /* nf4_dq: 5 blocks a row, 3000 blocks: 12 groups */
    float *w = pl_alloc((size_t)(N * K) * sizeof(float), PL_MEM_DATA);
    float *wd = pl_alloc((size_t)(N * K) * sizeof(float), PL_MEM_DATA);
    uint8_t *q = pl_alloc(pl_dtype_row_bytes(PL_NF4, N * K), PL_MEM_DATA);   /* the largest */
    float *x = pl_alloc((size_t)(M * K) * sizeof(float), PL_MEM_DATA);
    float *dy = pl_alloc((size_t)(M * N) * sizeof(float), PL_MEM_DATA);
    float *y1 = pl_alloc((size_t)(M * N) * sizeof(float), PL_MEM_DATA);
    float *y2 = pl_alloc((size_t)(M * N) * sizeof(float), PL_MEM_DATA);
    float *dx1 = pl_alloc((size_t)(M * K) * sizeof(float), PL_MEM_DATA);
    float *dx2 = pl_alloc((size_t)(M * K) * sizeof(float), PL_MEM_DATA);
    struct pl_rng r;
    pl_rng_seed(&r, 7);
    for (int64_t i = 0; i < N * K; i++) w[i] = (float)(pl_rng_uniform(&r) - 0.5) * (0.02f + (float)(i / K % 7) * 0.01f);
    for (int64_t i = 0; i < M * K; i++) x[i] = (float)(pl_rng_uniform(&r) - 0.5);
    for (int64_t i = 0; i < M * N; i++) dy[i] = (float)(pl_rng_uniform(&r) - 0.5);
    const enum pl_dtype ts[3] = { PL_NF4_DQ, PL_NF4_32, PL_NF4 };
    for (int k = 0; k < 3; k++) {
        assert_int_equal(pl_quant_row(ts[k], w, q, N * K), PL_OK);
        assert_int_equal(pl_dequant_row(ts[k], q, wd, N * K), PL_OK);
        assert_int_equal(pl_linear_fwd(y1, x, q, ts[k], NULL, M, K, N), PL_OK);
        assert_int_equal(pl_linear_fwd(y2, x, wd, PL_F32, NULL, M, K, N), PL_OK);
        memset(dx1, 0, (size_t)(M * K) * sizeof(float));
        memset(dx2, 0, (size_t)(M * K) * sizeof(float));
        assert_int_equal(pl_linear_bwd(dx1, NULL, NULL, dy, x, q, ts[k], M, K, N), PL_OK);
        assert_int_equal(pl_linear_bwd(dx2, NULL, NULL, dy, x, wd, PL_F32, M, K, N), PL_OK);
        double md = 0, mf = 0, bd = 0, bf = 0;
        for (int64_t i = 0; i < M * N; i++) { md = fmax(md, fabs(y1[i] - y2[i])); mf = fmax(mf, fabs(y2[i])); }
        for (int64_t i = 0; i < M * K; i++) { bd = fmax(bd, fabs(dx1[i] - dx2[i])); bf = fmax(bf, fabs(dx2[i])); }
        printf("  %s linear %lldx%lldx%lld: forward max diff %.2e of %.2e, backward %.2e of %.2e\n",
               pl_dtype_info(ts[k])->name, (long long)M, (long long)K, (long long)N, md, mf, bd, bf);
        assert_true(md <= 1e-5 * mf && mf > 0);
        assert_true(bd <= 1e-5 * bf && bf > 0);
    }
    pl_free(w); pl_free(wd); pl_free(q); pl_free(x); pl_free(dy);
    pl_free(y1); pl_free(y2); pl_free(dx1); pl_free(dx2);

    /* conversion of stories260K to nf4_dq: bytes are the format's, one unit per projection */
    struct pl_model *m = load(STORIES);
    struct pl_qlora_stats st;
    assert_int_equal(pl_qlora_quantize(m, PL_NF4_DQ, 0, &st), PL_OK);
    int64_t expect = 0, elems = 0;
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int p = 0; p < PL_PROJ_COUNT; p++) {
            const struct pl_tensor *t = m->layers[l].w[p];
            if (t->dtype != PL_NF4_DQ) continue;
            expect += (int64_t)pl_dtype_row_bytes(PL_NF4_DQ, t->shape[0] * t->shape[1]);
            elems += t->shape[0] * t->shape[1];
            assert_int_equal(pl_tensor_nbytes(t), pl_dtype_row_bytes(PL_NF4_DQ, t->shape[0] * t->shape[1]));
        }
    assert_int_equal(st.bytes_after, expect);
    /* the error sums: a 4-bit format's relative RMS error on trained weights */
    assert_int_equal(st.elements, elems);
    double rel = sqrt(st.err2 / st.ref2);
    printf("  stories260K nf4_dq: %lld -> %lld bytes, relative RMS error %.4f\n",
           (long long)st.bytes_before, (long long)st.bytes_after, rel);
    assert_true(rel > 0.02 && rel < 0.2);
    pl_model_free(m);
}

static void test_conversion(void **state)
{
    (void)state;
    struct pl_model *m = load(STORIES_BIN), *f = load(STORIES_BIN);
    int64_t heap_before = pl_mem_current(PL_MEM_WEIGHTS);
    struct pl_qlora_stats st;
    assert_int_equal(pl_qlora_quantize(m, PL_NF4, 0, &st), PL_OK);
    /* stories260K: q k v o gate up (64 columns) converted, down (172 columns) kept */
    assert_int_equal(st.converted, 6 * m->cfg.n_layers);
    assert_int_equal(st.kept, m->cfg.n_layers);
    assert_int_equal(m->layers[0].w[PL_PROJ_Q]->dtype, PL_NF4);
    assert_int_equal(m->layers[0].w[PL_PROJ_DOWN]->dtype, PL_F32);
    assert_int_equal(m->tok_embd->dtype, PL_F32);
    assert_int_equal(m->layers[0].attn_norm->dtype, PL_F32);
    assert_int_equal(st.bytes_after * 4 * 64, st.bytes_before * 36);   /* 36 bytes per 64 f32 */
    /* the shared llama2.c storage was released: only this model's copies remain for m */
    assert_true(pl_mem_current(PL_MEM_WEIGHTS) < heap_before);
    /* norms and embeddings carry the same values; loss close to the f32 model's */
    assert_true(fabs(pl_tensor_max_abs_diff(m->tok_embd, f->tok_embd)) == 0.0);
    struct pl_llama_ctx *cq = pl_llama_ctx_new(m, 1, 64, 0), *cf = pl_llama_ctx_new(f, 1, 64, 0);
    int32_t ids[64], tg[64];
    batch(ids, tg, 64, m->cfg.vocab_size, 3);
    for (int i = 0; i < 63; i++) tg[i] = ids[i + 1];
    tg[63] = -1;
    assert_int_equal(pl_llama_forward(cq, ids, 64, 0, 0), PL_OK);
    assert_int_equal(pl_llama_forward(cf, ids, 64, 0, 0), PL_OK);
    double lq = pl_llama_loss(cq, tg, 64, NULL), lf = pl_llama_loss(cf, tg, 64, NULL);
    printf("  stories260K loss f32 %.4f, nf4 %.4f\n", lf, lq);
    assert_true(fabs(lq - lf) < 0.1 * lf);
    assert_true(lq != lf);
    pl_llama_ctx_free(cq);
    pl_llama_ctx_free(cf);
    pl_model_free(f);
    pl_model_free(m);
}

static void test_random_models(void **state)
{
    (void)state;
    struct pl_model_config c = pl_memmodel_llama2_7b();
    c.n_layers = 2;
    c.dim = 256;
    c.hidden_dim = 704;
    c.n_heads = 4;
    c.n_kv_heads = 2;
    c.head_dim = 64;
    c.vocab_size = 1000;
    enum pl_dtype dts[3] = { PL_NF4, PL_Q8_0, PL_NF4_DQ }, eds[3] = { PL_BF16, PL_BF16, PL_Q8_0 };
    for (int k = 0; k < 3; k++) {
        int64_t w0 = pl_mem_current(PL_MEM_WEIGHTS);
        struct pl_model *m = NULL;
        assert_int_equal(pl_qlora_random_model(&m, &c, dts[k], eds[k], 1), PL_OK);
        assert_int_equal(m->layers[0].w[PL_PROJ_Q]->dtype, dts[k]);
        assert_int_equal(m->output->dtype, eds[k]);
        int64_t proj = 0;
        for (int p = 0; p < PL_PROJ_COUNT; p++) {
            int64_t in, out;
            pl_lora_proj_shape(&m->cfg, (enum pl_proj)p, &in, &out);
            proj += pl_memmodel_weight_bytes(dts[k], out, in);
        }
        int64_t expect = c.n_layers * proj + 2 * (int64_t)c.vocab_size * (int64_t)pl_dtype_row_bytes(eds[k], c.dim) +
                         (2 * c.n_layers + 1) * (int64_t)c.dim * 4;
        assert_int_equal(pl_mem_current(PL_MEM_WEIGHTS) - w0, expect);
        struct pl_llama_ctx *x = pl_llama_ctx_new(m, 2, 16, 0);
        int32_t ids[32];
        for (int i = 0; i < 32; i++) ids[i] = (i * 37) % c.vocab_size;
        assert_int_equal(pl_llama_forward(x, ids, 16, 0, 0), PL_OK);
        double s = 0;
        for (int64_t i = 0; i < 32LL * c.vocab_size; i++) {
            assert_true(isfinite(x->logits[i]));
            s += fabs(x->logits[i]);
        }
        assert_true(s > 0);
        pl_llama_ctx_free(x);
        if (dts[k] == PL_NF4_DQ) {   /* the block scales as written: mu + g·c within [0.04, 0.06] */
            const struct pl_tensor *w = m->layers[0].w[PL_PROJ_Q];
            int64_t n = w->shape[0] * w->shape[1];
            float *f = pl_alloc((size_t)n * sizeof(float), PL_MEM_WORKSPACE);
            assert_int_equal(pl_dequant_part(PL_NF4_DQ, pl_tensor_data(w), n, 0, f, n), PL_OK);
            double amax = 0;
            for (int64_t i = 0; i < n; i++) amax = fmax(amax, fabs(f[i]));
            assert_true(amax > 0.055 && amax <= 0.0601);
            pl_free(f);
        }
        /* the same seed gives the same blocks */
        struct pl_model *m2 = NULL;
        assert_int_equal(pl_qlora_random_model(&m2, &c, dts[k], eds[k], 1), PL_OK);
        assert_memory_equal(pl_tensor_data(m->layers[1].w[PL_PROJ_UP]),
                            pl_tensor_data(m2->layers[1].w[PL_PROJ_UP]),
                            pl_tensor_nbytes(m->layers[1].w[PL_PROJ_UP]));
        assert_memory_equal(pl_tensor_data(m->output), pl_tensor_data(m2->output), pl_tensor_nbytes(m->output));
        pl_model_free(m2);
        pl_model_free(m);
    }
    c.dim = 100;   /* not a whole number of blocks */
    struct pl_model *m = NULL;
    assert_int_equal(pl_qlora_random_model(&m, &c, PL_NF4, PL_BF16, 1), PL_ERR_ARG);
    assert_null(m);
}

/* IEEE half → float written out (independent of quant.c's conversion). */
static double half_value(uint16_t h)
{
    int e = (h >> 10) & 31, f = h & 1023;
    double v = e == 0 ? ldexp(f, -24) : ldexp(1024 + f, e - 25);
    return (h & 0x8000) ? -v : v;
}

/* A copy of t's values as f32 (same shape). */
static struct pl_tensor *as_f32(const struct pl_tensor *t)
{
    struct pl_tensor *f = pl_tensor_convert(t, PL_F32, PL_MEM_WEIGHTS);
    assert_non_null(f);
    return f;
}

/* The embedding and output head re-stored as q8_0 (pl_qlora_opts.embed_*):
 *  - bytes and dtypes; the lookup of a few rows equals x = d·q decoded here from the bytes;
 *  - the adapter gradients and loss of a step equal those of an all-f32 model holding exactly
 *    the dequantised values (the head's forward and input gradient through the q8_0 weight in
 *    the kernels' panels against the f32 products): rel. error <= 1e-4, loss 1e-5;
 *  - against the same step with a bf16 embedding and head: the loss within 0.5%, the
 *    gradient within grad_bound (stories260K measured 3.5e-4 and 1.1%, SmolLM2 5.3e-4, 6.2%). */
static void check_embed_q8_0(const char *path, int B, int T, double grad_bound)
{
    struct pl_model *q = load(path), *b = load(path), *f = load(path);
    const int tied = q->output == q->tok_embd;
    const int64_t V = q->cfg.vocab_size, D = q->cfg.dim;
    const int n_conv = q->tok_embd->dtype == PL_Q8_0 ? 0 : tied ? 1 : 2;   /* SmolLM2's file: q8_0 already */
    struct pl_qlora_opts o = { PL_NF4_SCALE_MSE, 1, PL_Q8_0 };
    struct pl_qlora_stats st;
    assert_int_equal(pl_qlora_quantize_opts(q, PL_NF4, 0, &o, &st), PL_OK);
    assert_int_equal(q->tok_embd->dtype, PL_Q8_0);
    assert_int_equal(q->output->dtype, PL_Q8_0);
    assert_int_equal(q->output == q->tok_embd, tied);
    assert_int_equal(st.embed_converted, n_conv);
    assert_int_equal(st.embed_bytes_after, n_conv * V * (D / 32) * 34);
    double rel = n_conv ? sqrt(st.embed_err2 / st.embed_ref2) : 0.0;
    assert_true(n_conv ? rel > 0 && rel < 0.01 : rel == 0.0);
    /* lookup against the bytes decoded here */
    int32_t tok[3] = { 0, (int32_t)(V / 2), (int32_t)(V - 1) };
    float *row = pl_alloc((size_t)3 * D * sizeof(float), PL_MEM_WORKSPACE);
    assert_int_equal(pl_embedding_fwd(row, tok, pl_tensor_data(q->tok_embd), PL_Q8_0, 3, V, D), PL_OK);
    const uint8_t *E = pl_tensor_data(q->tok_embd);
    for (int i = 0; i < 3; i++)
        for (int64_t j = 0; j < D; j++) {
            const uint8_t *blk = E + (size_t)tok[i] * (D / 32) * 34 + (size_t)(j / 32) * 34;
            uint16_t h = (uint16_t)(blk[0] | blk[1] << 8);
            assert_true(row[i * D + j] == (float)(half_value(h) * (int8_t)blk[2 + j % 32]));
        }
    pl_free(row);
    /* the all-f32 twin */
    dequantised_twin(f, q);
    struct pl_tensor *fe = as_f32(q->tok_embd), *fo = tied ? pl_tensor_retain(fe) : as_f32(q->output);
    pl_tensor_release(f->tok_embd);
    pl_tensor_release(f->output);
    f->tok_embd = fe;
    f->output = fo;
    double e = grad_rel_err(q, f, B, T);
    /* the bf16 embedding and head over the same nf4 projections */
    struct pl_qlora_opts ob = { PL_NF4_SCALE_MSE, 1, PL_BF16 };
    assert_int_equal(pl_qlora_quantize_opts(b, PL_NF4, 0, &ob, NULL), PL_OK);
    double lq, lb;
    double eb = grad_rel_err_loss(q, b, B, T, 5e-3, &lq, &lb);
    printf("  %s embedding+head q8_0 (rel. RMSE %.2e): gradient vs f32 path %.2e; vs bf16 head: loss %.5f vs %.5f (%+.2e), gradient %.2e\n",
           path, rel, e, lq, lb, (lq - lb) / lb, eb);
    assert_true(e <= 1e-4);
    assert_true(eb <= grad_bound);
    assert_true(lq != lb);
    pl_model_free(q);
    pl_model_free(b);
    pl_model_free(f);
}

static void test_embed_q8_0(void **state)
{
    (void)state;
    check_embed_q8_0(STORIES, 2, 32, 0.05);
    check_embed_q8_0(STORIES_BIN, 2, 32, 0.05);   /* one shared llama2.c storage */
    /* SmolLM2's file holds a q8_0 embedding already: the bf16 twin is its rounding; 30 layers
     * under random adapters amplify it more (measured 6.2%) */
    if (access(SMOL, R_OK) == 0) check_embed_q8_0(SMOL, 1, 24, 0.15);
    /* refused: a 4-bit embedding (the model left as it was) */
    struct pl_model *m = load(STORIES);
    struct pl_qlora_opts o = { PL_NF4_SCALE_MSE, 1, PL_NF4 };
    assert_int_equal(pl_qlora_quantize_opts(m, PL_NF4, 0, &o, NULL), PL_ERR_ARG);
    assert_non_null(strstr(pl_last_error(), "q8_0, bf16, f16 or f32"));
    assert_int_equal(m->tok_embd->dtype, PL_F32);
    pl_model_free(m);
}

static void test_errors(void **state)
{
    (void)state;
    struct pl_model *m = load(STORIES);
    assert_int_equal(pl_qlora_quantize(m, PL_Q4_K, 0, NULL), PL_ERR_ARG);
    assert_non_null(strstr(pl_last_error(), "q4_k"));
    struct pl_lora_cfg lc = pl_lora_defaults();
    struct pl_lora *a = NULL;
    assert_int_equal(pl_lora_new(&a, &m->cfg, &lc, 1), PL_OK);
    pl_lora_attach(a, m);
    assert_int_equal(pl_qlora_quantize(m, PL_NF4, 0, NULL), PL_ERR_STATE);
    pl_lora_free(a);
    /* under a budget the conversion fails cleanly and the model stays usable */
    pl_mem_fail_after(3);
    enum pl_status st = pl_qlora_quantize(m, PL_NF4, 0, NULL);
    pl_mem_fail_after(0);
    assert_int_equal(st, PL_ERR_NOMEM);
    struct pl_llama_ctx *x = pl_llama_ctx_new(m, 1, 8, 0);
    int32_t ids[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
    assert_int_equal(pl_llama_forward(x, ids, 8, 0, 0), PL_OK);
    pl_llama_ctx_free(x);
    pl_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grads_equal_dequantised_lora),
        cmocka_unit_test(test_conversion),
        cmocka_unit_test(test_nf4_dq_linear),
        cmocka_unit_test(test_random_models),
        cmocka_unit_test(test_embed_q8_0),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
