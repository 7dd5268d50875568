/* test_ckpt.c — gradient checkpointing gives the gradients of the uncheckpointed backward.
 *
 * Owner: train (first written by memory). A LoRA trainer's own gradient (pl_trainer_grad:
 * every activation saved) is the reference; pl_ckpt_grad with segments of 1, 2 and all
 * layers must match it within 1e-6 relative (L2), for full and short (padded) batches, on
 * stories260K and, when present, SmolLM2-135M over an NF4 base. Full fine-tuning through a
 * checkpointed trainer gives the gradients of every weight of the uncheckpointed one.
 * Training steps through pl_ckpt_micro equal pl_trainer_micro's losses. Activation bytes fall
 * as the memory model says. Shrink-and-retry: an injected allocation failure re-plans the
 * trainer at half the rows and the step gives the bits of a trainer planned that way.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "peftlua/alloc.h"
#include "peftlua/ckpt.h"
#include "peftlua/memmodel.h"
#include "peftlua/qlora.h"
#include "peftlua/rng.h"
#include "peftlua/train.h"

#define STORIES PL_SHARED "/models/stories260K/stories260K.gguf"
#define SMOL "models/SmolLM2-135M-Instruct.Q4_1.gguf"

static struct pl_model *load(const char *path)
{
    struct pl_model *m = NULL;
    struct pl_model_load_opts o = { 0 };
    o.no_tokenizer = 1;
    assert_int_equal(pl_model_load(&m, path, &o), PL_OK);
    return m;
}

static void fill(int32_t *ids, int32_t *tg, int n, int V, uint64_t seed)
{
    struct pl_rng r;
    pl_rng_seed(&r, seed);
    for (int i = 0; i < n; i++) {
        ids[i] = (int32_t)(pl_rng_next(&r) % (uint64_t)V);
        tg[i] = i % 5 == 2 ? -1 : (int32_t)(pl_rng_next(&r) % (uint64_t)V);
    }
}

static double rel_l2(const float *a, const float *b, int64_t n)
{
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    assert_true(den > 0);
    return sqrt(num / den);
}

static void check_model(struct pl_model *m, int B, int T, float dropout, int n_shapes)
{
    struct pl_train_cfg tc = pl_train_defaults();
    tc.batch_size = B;
    tc.seq_len = T;
    tc.lora.targets = 0x7F;
    tc.lora.r = 4;
    tc.lora.alpha = 8;
    tc.lora.dropout = dropout;
    struct pl_trainer *t = NULL;
    assert_int_equal(pl_trainer_new(&t, m, &tc), PL_OK);
    struct pl_rng r;
    pl_rng_seed(&r, 11);
    for (int64_t i = 0; i < pl_trainer_n_params(t); i++) pl_trainer_params(t, NULL)[i] = (float)(pl_rng_uniform(&r) - 0.5) * 0.2f;
    int V = m->cfg.vocab_size;
    int32_t *ids = pl_alloc((size_t)B * T * sizeof(int32_t), PL_MEM_DATA);
    int32_t *tg = pl_alloc((size_t)B * T * sizeof(int32_t), PL_MEM_DATA);
    float *ref = pl_alloc((size_t)pl_trainer_n_params(t) * sizeof(float), PL_MEM_DATA);
    int shapes[2][2] = { { B, T }, { B > 1 ? B - 1 : 1, T - 5 } };   /* full, then short rows */
    for (int sh = 0; sh < n_shapes; sh++) {
        int b = shapes[sh][0], n = shapes[sh][1];
        fill(ids, tg, b * n, V, 21 + (uint64_t)sh);
        double lref, l;
        uint64_t ds = pl_trainer_lora(t)->dropout_step;
        assert_int_equal(pl_trainer_grad(t, ids, tg, b, n, &lref), PL_OK);
        memcpy(ref, pl_trainer_grads(t, NULL), (size_t)pl_trainer_n_params(t) * sizeof(float));
        int everies[3] = { 1, 2, m->cfg.n_layers };
        for (int e = 0; e < 3; e++) {
            struct pl_ckpt *ck = NULL;
            assert_int_equal(pl_ckpt_new(&ck, t, B, T, everies[e]), PL_OK);
            memset(pl_trainer_grads(t, NULL), 0, (size_t)pl_trainer_n_params(t) * sizeof(float));
            pl_trainer_lora(t)->dropout_step = ds;   /* the same masks as the reference step */
            int64_t cnt;
            assert_int_equal(pl_ckpt_grad(ck, ids, tg, b, n, 1.0, &l, &cnt), PL_OK);
            double err = rel_l2(pl_trainer_grads(t, NULL), ref, pl_trainer_n_params(t));
            printf("  %s %dx%d every %d%s: loss %.6f vs %.6f, gradient rel. error %.2e\n", m->name,
                   b, n, everies[e], dropout > 0 ? " dropout" : "", l, lref, err);
            assert_true(fabs(l - lref) <= 1e-6 * fabs(lref));
            assert_true(err <= 1e-6);
            pl_ckpt_free(ck);
        }
    }
    pl_free(ids);
    pl_free(tg);
    pl_free(ref);
    pl_trainer_free(t);
}

static void test_grads_equal_uncheckpointed(void **state)
{
    (void)state;
    struct pl_model *m = load(STORIES);
    check_model(m, 2, 32, 0.0f, 2);
    check_model(m, 2, 32, 0.1f, 1);
    pl_model_free(m);
    if (access(SMOL, R_OK) != 0) {
        printf("  %s absent: SmolLM2 case skipped\n", SMOL);
        return;
    }
    m = load(SMOL);
    assert_int_equal(pl_qlora_quantize(m, PL_NF4, 0, NULL), PL_OK);
    check_model(m, 1, 24, 0.0f, 1);
    pl_model_free(m);
}

/* Steps through pl_ckpt_micro give the losses of pl_trainer_micro. */
static void test_training_matches(void **state)
{
    (void)state;
    struct pl_model *m1 = load(STORIES), *m2 = load(STORIES);
    struct pl_train_cfg tc = pl_train_defaults();
    tc.batch_size = 2;
    tc.seq_len = 32;
    tc.grad_accum = 2;
    tc.lr = 1e-2;
    tc.lora.targets = 0x7F;
    struct pl_trainer *a = NULL, *b = NULL;
    assert_int_equal(pl_trainer_new(&a, m1, &tc), PL_OK);
    struct pl_train_cfg tiny = tc;
    tiny.batch_size = 1;
    tiny.seq_len = 1;
    assert_int_equal(pl_trainer_new(&b, m2, &tiny), PL_OK);
    struct pl_ckpt *ck = NULL;
    assert_int_equal(pl_ckpt_new(&ck, b, 2, 32, 2), PL_OK);
    int32_t ids[64], tg[64];
    for (int it = 0; it < 8; it++) {
        fill(ids, tg, 64, m1->cfg.vocab_size, 100 + (uint64_t)(it % 2));
        double la, lb;
        int64_t ca, cb;
        int sa, sb;
        assert_int_equal(pl_trainer_micro(a, ids, tg, 2, 32, &la, &ca, &sa), PL_OK);
        assert_int_equal(pl_ckpt_micro(ck, ids, tg, 2, 32, &lb, &cb, &sb), PL_OK);
        assert_int_equal(ca, cb);
        assert_int_equal(sa, sb);
        assert_true(fabs(la - lb) <= 1e-5 * fabs(la));
    }
    assert_int_equal(pl_trainer_state(a).step, 4);
    assert_int_equal(pl_trainer_state(b).step, 4);
    assert_true(pl_trainer_state(a).last_loss == pl_trainer_state(b).last_loss);
    pl_ckpt_free(ck);
    pl_trainer_free(a);
    pl_trainer_free(b);
    pl_model_free(m1);
    pl_model_free(m2);
}

/* Activations: measured peak with checkpointing equals the memory model, and is smaller than
 * without by the factor the model predicts. */
static void test_activation_savings(void **state)
{
    (void)state;
    struct pl_model *m = load(STORIES);
    struct pl_memmodel_cfg mc = pl_memmodel_defaults();
    pl_memmodel_cfg_from_model(&mc, m);
    mc.batch = 4;
    mc.seq_len = 128;
    mc.lora_targets = 0x7F;
    struct pl_mem_estimate none, every1;
    assert_int_equal(pl_memmodel_estimate(&mc, &none), PL_OK);
    mc.ckpt_every = 1;
    assert_int_equal(pl_memmodel_estimate(&mc, &every1), PL_OK);
    int64_t meas[2];
    for (int k = 0; k < 2; k++) {
        pl_mem_reset_peak();
        struct pl_train_cfg tc = pl_train_defaults();
        tc.batch_size = k ? 1 : 4;
        tc.seq_len = k ? 1 : 128;
        tc.lora.targets = 0x7F;
        struct pl_trainer *t = NULL;
        assert_int_equal(pl_trainer_new(&t, m, &tc), PL_OK);
        struct pl_ckpt *ck = NULL;
        if (k) assert_int_equal(pl_ckpt_new(&ck, t, 4, 128, 1), PL_OK);
        int32_t *ids = pl_alloc(512 * sizeof(int32_t), PL_MEM_DATA), *tg = pl_alloc(512 * sizeof(int32_t), PL_MEM_DATA);
        fill(ids, tg, 512, m->cfg.vocab_size, 3);
        double l;
        int64_t c;
        int s;
        if (k) assert_int_equal(pl_ckpt_micro(ck, ids, tg, 4, 128, &l, &c, &s), PL_OK);
        else assert_int_equal(pl_trainer_micro(t, ids, tg, 4, 128, &l, &c, &s), PL_OK);
        meas[k] = pl_mem_peak(PL_MEM_ACTIVATIONS);
        pl_free(ids);
        pl_free(tg);
        pl_ckpt_free(ck);
        pl_trainer_free(t);
    }
    double pr = (double)none.peak[PL_MEM_ACTIVATIONS] / (double)every1.peak[PL_MEM_ACTIVATIONS];
    double mr = (double)meas[0] / (double)meas[1];
    printf("  activations none %.2f MiB (model %.2f), every layer %.2f MiB (model %.2f): cut %.2fx (model %.2fx)\n",
           meas[0] / 1048576.0, none.peak[PL_MEM_ACTIVATIONS] / 1048576.0, meas[1] / 1048576.0,
           every1.peak[PL_MEM_ACTIVATIONS] / 1048576.0, mr, pr);
    assert_true(fabs(mr - pr) <= 0.05 * pr);
    assert_true(mr > 2.0);
    assert_true(fabs((double)meas[1] - (double)every1.peak[PL_MEM_ACTIVATIONS]) <= 0.05 * (double)meas[1]);
    pl_model_free(m);
}

static void test_errors(void **state)
{
    (void)state;
    struct pl_model *m = load(STORIES);
    struct pl_train_cfg tc = pl_train_defaults();
    tc.method = PL_TRAIN_FULL;
    tc.batch_size = 1;
    tc.seq_len = 4;
    struct pl_trainer *t = NULL;
    assert_int_equal(pl_trainer_new(&t, m, &tc), PL_OK);
    struct pl_ckpt *ck = NULL;
    assert_int_equal(pl_ckpt_new(&ck, t, 1, 4, 1), PL_OK);   /* full fine-tuning is checkpointed too */
    pl_ckpt_free(ck);
    ck = NULL;
    pl_trainer_free(t);
    tc.ckpt_every = -1;
    assert_int_equal(pl_trainer_new(&t, m, &tc), PL_ERR_ARG);
    assert_non_null(strstr(pl_last_error(), "checkpointing"));
    tc.ckpt_every = 0;
    pl_model_free(m);
    m = load(STORIES);
    tc.method = PL_TRAIN_LORA;
    assert_int_equal(pl_trainer_new(&t, m, &tc), PL_OK);
    assert_int_equal(pl_ckpt_new(&ck, t, 1, 100000, 1), PL_ERR_ARG);
    assert_int_equal(pl_ckpt_new(&ck, t, 1, 8, 1), PL_OK);
    int32_t ids[16] = { 0 }, tg[16] = { 0 };
    double l;
    int64_t c;
    assert_int_equal(pl_ckpt_grad(ck, ids, tg, 2, 8, 1.0, &l, &c), PL_ERR_ARG);   /* batch 2 > 1 */
    pl_ckpt_free(ck);
    pl_trainer_free(t);
    pl_model_free(m);
}

/* Full fine-tuning through the checkpointed trainer: every weight's gradient (projections,
 * norms, tied embedding/head) equals the uncheckpointed trainer's, for segments of 1, 2 and
 * all layers, full and padded batches. */
static void test_full_finetune_checkpointed(void **state)
{
    (void)state;
    const int B = 2, T = 24;
    int32_t ids[48], tg[48];
    int everies[4] = { 0, 1, 2, 5 };
    float *ref = NULL;
    int64_t np = 0;
    for (int sh = 0; sh < 2; sh++) {
        int b = sh ? 1 : B, n = sh ? T - 7 : T;
        fill(ids, tg, b * n, 512, 90 + (uint64_t)sh);
        double lref = 0;
        for (int e = 0; e < 4; e++) {
            struct pl_model *m = load(STORIES);
            struct pl_train_cfg tc = pl_train_defaults();
            tc.method = PL_TRAIN_FULL;
            tc.batch_size = B;
            tc.seq_len = T;
            tc.ckpt_every = everies[e];
            struct pl_trainer *t = NULL;
            assert_int_equal(pl_trainer_new(&t, m, &tc), PL_OK);
            assert_true((pl_trainer_ckpt(t) != NULL) == (everies[e] > 0));
            double l;
            assert_int_equal(pl_trainer_grad(t, ids, tg, b, n, &l), PL_OK);
            if (e == 0) {
                np = pl_trainer_n_params(t);
                ref = pl_alloc((size_t)np * sizeof(float), PL_MEM_DATA);
                memcpy(ref, pl_trainer_grads(t, NULL), (size_t)np * sizeof(float));
                lref = l;
            } else {
                assert_int_equal(pl_trainer_n_params(t), np);
                double err = rel_l2(pl_trainer_grads(t, NULL), ref, np);
                int same = memcmp(pl_trainer_grads(t, NULL), ref, (size_t)np * sizeof(float)) == 0;
                /* the worst single weight tensor too (norms and embedding included) */
                double worst = 0;
                for (int i = 0; i < pl_trainer_n_views(t); i++) {
                    double num = 0, den = 0;
                    float *gi;
                    const int64_t ni = pl_trainer_view(t, i, NULL, &gi);
                    const float *g = gi, *r = ref + (gi - pl_trainer_grads(t, NULL));
                    for (int64_t k = 0; k < ni; k++) {
                        num += ((double)g[k] - r[k]) * ((double)g[k] - r[k]);
                        den += (double)r[k] * r[k];
                    }
                    if (den > 0 && sqrt(num / den) > worst) worst = sqrt(num / den);
                }
                printf("  full %dx%d every %d: loss %.6f vs %.6f, gradient rel. error %.2e (worst tensor %.2e)%s\n",
                       b, n, everies[e], l, lref, err, worst, same ? ", bit-identical" : "");
                assert_true(l == lref);
                assert_true(err <= 1e-6);
                assert_true(worst <= 1e-6);
            }
            pl_trainer_free(t);
            pl_model_free(m);
        }
        pl_free(ref);
        ref = NULL;
    }
}

/* Full fine-tuning under checkpointing trains: losses of steps equal the uncheckpointed run. */
static void test_full_finetune_checkpointed_steps(void **state)
{
    (void)state;
    double losses[2][6];
    for (int k = 0; k < 2; k++) {
        struct pl_model *m = load(STORIES);
        struct pl_train_cfg tc = pl_train_defaults();
        tc.method = PL_TRAIN_FULL;
        tc.batch_size = 2;
        tc.seq_len = 32;
        tc.lr = 1e-3;
        tc.ckpt_every = k ? 2 : 0;
        struct pl_trainer *t = NULL;
        assert_int_equal(pl_trainer_new(&t, m, &tc), PL_OK);
        int32_t ids[64], tg[64];
        for (int it = 0; it < 6; it++) {
            fill(ids, tg, 64, 512, 300 + (uint64_t)(it % 3));
            int64_t c;
            int s;
            assert_int_equal(pl_trainer_micro(t, ids, tg, 2, 32, &losses[k][it], &c, &s), PL_OK);
            assert_true(s);
        }
        pl_trainer_free(t);
        pl_model_free(m);
    }
    for (int it = 0; it < 6; it++) {
        printf("  step %d: loss %.7f (checkpointed %.7f)\n", it + 1, losses[0][it], losses[1][it]);
        assert_true(fabs(losses[1][it] - losses[0][it]) <= 1e-6 * fabs(losses[0][it]));
    }
    assert_true(losses[0][5] < losses[0][0]);
}

/* A checkpointed LoRA trainer planned for B rows of 32 tokens. */
struct pair { struct pl_model *m; struct pl_trainer *t; };

static void pair_new(struct pair *p, int B, int accum)
{
    p->m = load(STORIES);
    struct pl_train_cfg tc = pl_train_defaults();
    tc.batch_size = B;
    tc.seq_len = 32;
    tc.grad_accum = accum;
    tc.lr = 1e-2;
    tc.lora.targets = 0x7F;
    tc.lora.dropout = 0.1f;
    tc.ckpt_every = 1;
    assert_int_equal(pl_trainer_new(&p->t, p->m, &tc), PL_OK);
}

static void pair_free(struct pair *p)
{
    pl_trainer_free(p->t);
    pl_model_free(p->m);
}

/* An allocation failure injected part-way through a step: the step is rewound, the plan
 * shrinks to half the rows, the step is retried and gives exactly the parameters of a run
 * re-planned at that size by hand; a checkpoint saved before still loads. */
static void test_shrink_and_retry(void **state)
{
    (void)state;
    int32_t ids[128], tg[128], ids2[128], tg2[128];
    fill(ids, tg, 128, 512, 77);
    fill(ids2, tg2, 128, 512, 78);
    char log[512];
    double la, lb;
    /* find an allocation inside the step whose failure reaches the caller (RoPE tables fall
     * back silently), counting from the second step's start */
    int k = 0;
    for (int cand = 2; cand < 400 && !k; cand += 7) {
        struct pair p;
        pair_new(&p, 4, 1);
        log[0] = 0;
        assert_int_equal(pl_trainer_step_shrinking(p.t, ids, tg, 4, 32, &la, log, sizeof log), PL_OK);
        pl_mem_fail_after(cand);
        enum pl_status st = pl_trainer_step_shrinking(p.t, ids2, tg2, 4, 32, &la, log, sizeof log);
        pl_mem_fail_after(0);
        assert_int_equal(st, PL_OK);
        if (log[0]) k = cand;
        pair_free(&p);
    }
    assert_true(k > 0);
    struct pair a, b;
    pair_new(&a, 4, 1);
    pair_new(&b, 4, 1);
    log[0] = 0;
    assert_int_equal(pl_trainer_step_shrinking(a.t, ids, tg, 4, 32, &la, log, sizeof log), PL_OK);
    assert_int_equal(pl_trainer_step_shrinking(b.t, ids, tg, 4, 32, &lb, NULL, 0), PL_OK);
    assert_int_equal(log[0], 0);
    char dir[] = "/tmp/pl_ckpt_shrinkXXXXXX";
    assert_non_null(mkdtemp(dir));
    assert_int_equal(pl_trainer_save(a.t, dir, "x", 1), PL_OK);
    pl_mem_fail_after(k);
    enum pl_status st = pl_trainer_step_shrinking(a.t, ids2, tg2, 4, 32, &la, log, sizeof log);
    pl_mem_fail_after(0);
    assert_int_equal(st, PL_OK);
    printf("  allocation %d of the step failed: %s", k, log);
    assert_non_null(strstr(log, "micro-batch 4 -> 2 rows (x2 chunks), step 2 retried"));
    assert_int_equal(pl_trainer_state(a.t).plan_rows, 2);
    assert_int_equal(pl_trainer_cfg(a.t)->batch_size, 4);
    assert_int_equal(pl_trainer_state(a.t).step, 2);
    /* b: re-planned at 2 rows by hand, no failure */
    assert_int_equal(pl_trainer_replan(b.t, 2), PL_OK);
    assert_int_equal(pl_trainer_step_shrinking(b.t, ids2, tg2, 4, 32, &lb, NULL, 0), PL_OK);
    assert_true(la == lb);
    assert_memory_equal(pl_trainer_params(a.t, NULL), pl_trainer_params(b.t, NULL), (size_t)pl_trainer_n_params(a.t) * sizeof(float));
    assert_memory_equal(pl_trainer_optim_state(a.t, 1), pl_trainer_optim_state(b.t, 1), (size_t)pl_trainer_n_params(a.t) * sizeof(float));
    /* the checkpoint written before the failure is intact and resumes */
    struct pair c;
    pair_new(&c, 4, 1);
    assert_int_equal(pl_trainer_load(c.t, dir, NULL, NULL), PL_OK);
    assert_int_equal(pl_trainer_state(c.t).step, 1);
    assert_int_equal(pl_trainer_step_shrinking(c.t, ids2, tg2, 4, 32, &lb, NULL, 0), PL_OK);
    assert_true(fabs(lb - la) <= 1e-6 * fabs(la));
    pair_free(&c);
    /* one row that does not fit: a clear refusal, not a crash */
    struct pair d;
    pair_new(&d, 1, 1);
    pl_mem_set_budget(pl_mem_current_total() + 1024);
    st = pl_trainer_step_shrinking(d.t, ids, tg, 1, 32, &la, NULL, 0);
    pl_mem_set_budget(0);
    printf("  %s\n", pl_last_error());
    assert_int_equal(st, PL_ERR_NOMEM);
    assert_non_null(strstr(pl_last_error(), "with one row of 32 tokens per forward"));
    pair_free(&d);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
    pair_free(&a);
    pair_free(&b);
}

/* A budget below what batch 8 needs: the memory model picks a smaller micro-batch with
 * accumulation, and training under that budget completes. */
static void test_budget_autosize_trains(void **state)
{
    (void)state;
    struct pl_model *m = load(STORIES);
    struct pl_memmodel_cfg mc = pl_memmodel_defaults();
    pl_memmodel_cfg_from_model(&mc, m);
    mc.lora_targets = 0x7F;
    mc.seq_len = 256;
    mc.ckpt_every = 1;
    mc.batch = 8;
    struct pl_mem_estimate e8, e;
    assert_int_equal(pl_memmodel_estimate(&mc, &e8), PL_OK);
    int64_t base = pl_mem_current_total() - pl_mem_current(PL_MEM_WEIGHTS);   /* data etc. */
    int64_t budget = e8.resident * 6 / 10;
    assert_int_equal(pl_memmodel_autosize(&mc, budget, 8, 256, 0, 1, 256, &e), PL_OK);
    printf("  budget %.2f MiB (batch 8 needs %.2f): micro-batch %d x %d accumulation\n",
           budget / 1048576.0, e8.resident / 1048576.0, mc.batch, mc.grad_accum);
    assert_true(mc.batch < 8 && mc.batch * mc.grad_accum == 8);
    pl_mem_set_budget(budget + base);
    struct pl_train_cfg tc = pl_train_defaults();
    tc.batch_size = mc.batch;
    tc.grad_accum = mc.grad_accum;
    tc.seq_len = 256;
    tc.lora.targets = 0x7F;
    tc.ckpt_every = 1;
    struct pl_trainer *t = NULL;
    assert_int_equal(pl_trainer_new(&t, m, &tc), PL_OK);
    int32_t *ids = pl_alloc(8 * 256 * sizeof(int32_t), PL_MEM_DATA), *tg = pl_alloc(8 * 256 * sizeof(int32_t), PL_MEM_DATA);
    fill(ids, tg, 8 * 256, m->cfg.vocab_size, 5);
    double l;
    char log[256] = "";
    for (int s = 0; s < 2; s++)
        assert_int_equal(pl_trainer_step_shrinking(t, ids, tg, 8, 256, &l, log, sizeof log), PL_OK);
    assert_int_equal(pl_trainer_state(t).step, 2);
    assert_true(pl_mem_peak_total() <= budget + base);
    /* batch 8 in one micro-batch is beyond the budget */
    assert_int_equal(pl_trainer_replan(t, 8), PL_ERR_NOMEM);
    pl_mem_set_budget(0);
    pl_free(ids);
    pl_free(tg);
    pl_trainer_free(t);
    pl_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grads_equal_uncheckpointed),
        cmocka_unit_test(test_training_matches),
        cmocka_unit_test(test_activation_savings),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_full_finetune_checkpointed),
        cmocka_unit_test(test_full_finetune_checkpointed_steps),
        cmocka_unit_test(test_shrink_and_retry),
        cmocka_unit_test(test_budget_autosize_trains),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
