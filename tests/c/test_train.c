/* test_train.c — the trainer on stories260K: whole-model LoRA and full gradients against the
 * PyTorch autograd goldens, learning, gradient accumulation, determinism, checkpoint/resume
 * bit-identity, adapter save → load → merge, and micro-batches run as chunks of fewer planned
 * rows (after a shrink) giving the unsplit micro-batch's gradients and losses.
 *
 * Owner: train. Goldens: tests/ref/train/golden/stories260K_grads.bin from
 * tests/ref/train/train_ref.py (see its header). Run from the repository root; the model is
 * read from ../shared/models/stories260K/stories260K.gguf.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "peftlua/alloc.h"
#include "peftlua/lora.h"
#include "peftlua/model.h"
#include "peftlua/train.h"

#define MODEL PL_SHARED "/models/stories260K/stories260K.gguf"
#define GOLDEN "tests/ref/train/golden/stories260K_grads.bin"

#define SMOL_MODEL "models/SmolLM2-135M-Instruct.Q4_1.gguf"
#define SMOL_GOLDEN "tests/ref/train/golden/smollm2_grads.bin"

static struct pl_model *load_model_at(const char *path)
{
    struct pl_model *m = NULL;
    struct pl_model_load_opts o = { NULL, 1 };
    if (pl_model_load(&m, path, &o) != PL_OK) fail_msg("%s", pl_last_error());
    return m;
}
static struct pl_model *load_model(void) { return load_model_at(MODEL); }

/* ---- golden reader ---- */
struct gad { int layer, proj, in, out; float *A, *B, *dA, *dB; };
struct gpar { char name[160]; int64_t numel; double norm; int k; int32_t *idx; float *g; };
struct golden {
    int B, T, r; float alpha; int n_ad;
    int32_t *ids, *targets;
    double loss_lora, loss_base;
    struct gad *ad;
    int n_par;
    struct gpar *par;
};

static void rd(FILE *f, void *p, size_t n) { if (fread(p, 1, n, f) != n) fail_msg("short golden file"); }
static void *rdn(FILE *f, size_t n) { void *p = malloc(n ? n : 1); rd(f, p, n); return p; }

static struct golden *load_golden_at(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    struct golden *g = calloc(1, sizeof *g);
    char magic[8];
    int32_t v[4];
    rd(f, magic, 8);
    assert_memory_equal(magic, "PLTRGRD1", 8);
    rd(f, v, 16);
    assert_int_equal(v[0], 1);
    g->B = v[1]; g->T = v[2]; g->r = v[3];
    rd(f, &g->alpha, 4);
    rd(f, &g->n_ad, 4);
    g->ids = rdn(f, (size_t)g->B * g->T * 4);
    g->targets = rdn(f, (size_t)g->B * g->T * 4);
    rd(f, &g->loss_lora, 8);
    rd(f, &g->loss_base, 8);
    g->ad = calloc((size_t)g->n_ad, sizeof *g->ad);
    for (int i = 0; i < g->n_ad; i++) {
        struct gad *a = &g->ad[i];
        int32_t h[4];
        rd(f, h, 16);
        a->layer = h[0]; a->proj = h[1]; a->in = h[2]; a->out = h[3];
        size_t na = (size_t)g->r * a->in * 4, nb = (size_t)g->r * a->out * 4;
        a->A = rdn(f, na); a->B = rdn(f, nb); a->dA = rdn(f, na); a->dB = rdn(f, nb);
    }
    rd(f, &g->n_par, 4);
    g->par = calloc((size_t)g->n_par, sizeof *g->par);
    for (int i = 0; i < g->n_par; i++) {
        struct gpar *p = &g->par[i];
        int32_t len;
        rd(f, &len, 4);
        assert_true(len > 0 && len < (int)sizeof p->name);
        rd(f, p->name, (size_t)len);
        p->name[len] = 0;
        rd(f, &p->numel, 8);
        rd(f, &p->norm, 8);
        rd(f, &p->k, 4);
        p->idx = rdn(f, (size_t)p->k * 4);
        p->g = rdn(f, (size_t)p->k * 4);
    }
    fclose(f);
    return g;
}

static void free_golden(struct golden *g)
{
    for (int i = 0; i < g->n_ad; i++) { free(g->ad[i].A); free(g->ad[i].B); free(g->ad[i].dA); free(g->ad[i].dB); }
    for (int i = 0; i < g->n_par; i++) { free(g->par[i].idx); free(g->par[i].g); }
    free(g->ad); free(g->par); free(g->ids); free(g->targets); free(g);
}

static double rel_err(const float *a, const float *b, int64_t n)
{
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)b[i] * b[i];
    }
    return sqrt(num / (den > 0 ? den : 1e-30));
}

static struct pl_train_cfg base_cfg(int B, int T)
{
    struct pl_train_cfg c = pl_train_defaults();
    c.batch_size = B;
    c.seq_len = T;
    c.schedule = PL_SCHED_CONSTANT;
    c.max_grad_norm = 0;
    return c;
}

static void check_lora_grads(const char *model, const char *golden)
{
    struct golden *g = load_golden_at(golden);
    struct pl_model *m = load_model_at(model);
    struct pl_train_cfg c = base_cfg(g->B, g->T + 7);   /* planned longer than the batch */
    c.lora.r = g->r;
    c.lora.alpha = g->alpha;
    c.lora.targets = 0;
    for (int i = 0; i < g->n_ad; i++) c.lora.targets |= 1u << g->ad[i].proj;
    if (g->n_ad < __builtin_popcount(c.lora.targets) * m->cfg.n_layers) {   /* layer 0 only */
        c.lora.n_layers_sel = 1;
        c.lora.layers[0] = 0;
    }
    struct pl_trainer *t;
    if (pl_trainer_new(&t, m, &c) != PL_OK) fail_msg("%s", pl_last_error());
    assert_int_equal(pl_trainer_lora(t)->n, g->n_ad);
    for (int i = 0; i < g->n_ad; i++) {
        struct pl_lora_adapter *d = pl_lora_get(pl_trainer_lora(t), g->ad[i].layer, (enum pl_proj)g->ad[i].proj);
        assert_non_null(d);
        assert_int_equal(d->in, g->ad[i].in);
        assert_int_equal(d->out, g->ad[i].out);
        memcpy(d->A, g->ad[i].A, (size_t)g->r * d->in * 4);
        memcpy(d->B, g->ad[i].B, (size_t)g->r * d->out * 4);
    }
    double loss;
    if (pl_trainer_grad(t, g->ids, g->targets, g->B, g->T, &loss) != PL_OK) fail_msg("%s", pl_last_error());
    printf("  LoRA loss %.6f (torch %.6f)\n", loss, g->loss_lora);
    assert_true(fabs(loss - g->loss_lora) < 1e-4 * fabs(g->loss_lora));
    double worst = 0;
    for (int i = 0; i < g->n_ad; i++) {
        struct pl_lora_adapter *d = pl_lora_get(pl_trainer_lora(t), g->ad[i].layer, (enum pl_proj)g->ad[i].proj);
        double ea = rel_err(d->dA, g->ad[i].dA, (int64_t)g->r * d->in);
        double eb = rel_err(d->dB, g->ad[i].dB, (int64_t)g->r * d->out);
        if (ea > worst) worst = ea;
        if (eb > worst) worst = eb;
        if (ea > 1e-3 || eb > 1e-3)
            fail_msg("layer %d %s: relative error dA %.3g dB %.3g", d->layer, pl_proj_names[d->proj], ea, eb);
    }
    printf("  LoRA gradients: %d adapters, worst relative error %.3g\n", g->n_ad, worst);
    pl_trainer_free(t);
    pl_model_free(m);
    free_golden(g);
}

static void test_lora_grads_match_torch(void **state)
{
    (void)state;
    check_lora_grads(MODEL, GOLDEN);
}

static void check_full_grads(const char *model, const char *golden)
{
    struct golden *g = load_golden_at(golden);
    struct pl_model *m = load_model_at(model);
    struct pl_train_cfg c = base_cfg(g->B, g->T + 7);   /* planned longer than the batch */
    c.method = PL_TRAIN_FULL;
    struct pl_trainer *t;
    if (pl_trainer_new(&t, m, &c) != PL_OK) fail_msg("%s", pl_last_error());
    assert_int_equal(pl_trainer_n_params(t), pl_model_param_count(m));
    double loss;
    if (pl_trainer_grad(t, g->ids, g->targets, g->B, g->T, &loss) != PL_OK) fail_msg("%s", pl_last_error());
    printf("  full loss %.6f (torch %.6f)\n", loss, g->loss_base);
    assert_true(fabs(loss - g->loss_base) < 1e-4 * fabs(g->loss_base));
    double worst = 0, worst_norm = 0;
    float *got = malloc(256 * sizeof(float));
    for (int i = 0; i < g->n_par; i++) {
        struct gpar *p = &g->par[i];
        int64_t n = 0;
        float *gr = pl_trainer_find_grad(t, p->name, &n);
        if (!gr) fail_msg("no gradient for %s", p->name);
        assert_int_equal(n, p->numel);
        double s = 0;
        for (int64_t k = 0; k < n; k++) s += (double)gr[k] * gr[k];
        double en = fabs(sqrt(s) - p->norm) / p->norm;
        assert_true(p->k <= 256);
        for (int k = 0; k < p->k; k++) got[k] = gr[p->idx[k]];
        /* sampled entries: relative to the sample's own magnitude */
        double es = rel_err(got, p->g, p->k);
        if (en > worst_norm) worst_norm = en;
        if (es > worst) worst = es;
        if (en > 1e-3 || es > 1e-3)
            fail_msg("%s: relative error norm %.3g, entries %.3g", p->name, en, es);
    }
    printf("  full gradients: %d tensors, worst relative error norm %.3g entries %.3g\n",
           g->n_par, worst_norm, worst);
    free(got);
    pl_trainer_free(t);
    pl_model_free(m);
    free_golden(g);
}

static void test_full_grads_match_torch(void **state)
{
    (void)state;
    check_full_grads(MODEL, GOLDEN);
}

/* SmolLM2-135M (fetched by `make model`): skipped when the file is absent. */
static void test_smollm2_grads_match_torch(void **state)
{
    (void)state;
    if (access(SMOL_MODEL, R_OK) != 0) {
        printf("  %s not present (make model): skipped\n", SMOL_MODEL);
        skip();
    }
#if defined(__SANITIZE_ADDRESS__)
    /* The -O1 sanitizer build's forward differs from the optimised one by ~3e-5 in this loss
     * and the deepest gradients then miss 1e-3 by a hair; the numerics are checked in the
     * normal build, the memory safety of the same code by the stories260K tests above. */
    printf("  sanitizer build: SmolLM2 numerics are checked in the optimised build\n");
    skip();
#endif
    check_lora_grads(SMOL_MODEL, SMOL_GOLDEN);
    check_full_grads(SMOL_MODEL, SMOL_GOLDEN);
}

/* A learnable batch: each row repeats a short random motif. */
static void motif_batch(int32_t *ids, int32_t *tg, int B, int T, uint64_t seed, int V)
{
    struct pl_rng r;
    pl_rng_seed(&r, seed);
    for (int b = 0; b < B; b++) {
        int32_t motif[5];
        for (int k = 0; k < 5; k++) motif[k] = 3 + (int32_t)(pl_rng_next(&r) % (uint64_t)(V - 3));
        for (int t = 0; t <= T; t++) {
            int32_t v = motif[t % 5];
            if (t < T) ids[b * T + t] = v;
            if (t > 0) tg[b * T + t - 1] = v;
        }
    }
}

/* Run `steps` LoRA (or full) steps over motif batches from step `from`; losses[] get each step's loss. */
static void run_steps(struct pl_trainer *t, int from, int steps, double *losses)
{
    const int B = pl_trainer_cfg(t)->batch_size, T = pl_trainer_cfg(t)->seq_len;
    int32_t *ids = malloc((size_t)B * T * 4), *tg = malloc((size_t)B * T * 4);
    for (int s = from; s < from + steps; s++) {
        for (int a = 0; a < pl_trainer_cfg(t)->grad_accum; a++) {
            motif_batch(ids, tg, B, T, 1000 + (uint64_t)(s * pl_trainer_cfg(t)->grad_accum + a) % 4,
                        pl_trainer_model(t)->cfg.vocab_size);
            double l;
            int64_t cnt;
            int stepped;
            if (pl_trainer_micro(t, ids, tg, B, T, &l, &cnt, &stepped) != PL_OK) fail_msg("%s", pl_last_error());
            assert_int_equal(stepped, a == pl_trainer_cfg(t)->grad_accum - 1);
        }
        losses[s - from] = pl_trainer_state(t).last_loss;
    }
    free(ids);
    free(tg);
}

static struct pl_train_cfg learn_cfg(void)
{
    struct pl_train_cfg c = base_cfg(2, 24);
    c.lr = 1e-2;
    c.lora.r = 8;
    c.lora.alpha = 16;
    c.lora.dropout = 0.1f;
    c.lora.targets = (1u << PL_PROJ_Q) | (1u << PL_PROJ_V) | (1u << PL_PROJ_DOWN);
    c.schedule = PL_SCHED_COSINE;
    c.warmup = 3;
    c.total_steps = 30;
    c.max_grad_norm = 1.0;
    c.seed = 5;
    return c;
}

static void test_lora_learns_deterministically(void **state)
{
    (void)state;
    struct pl_model *m = load_model();
    struct pl_train_cfg c = learn_cfg();
    double a[30], b[30];
    struct pl_trainer *t;
    assert_int_equal(pl_trainer_new(&t, m, &c), PL_OK);
    run_steps(t, 0, 30, a);
    pl_trainer_free(t);
    printf("  LoRA loss %.4f -> %.4f over 30 steps\n", a[0], a[29]);
    assert_true(a[29] < 0.5 * a[0]);
    assert_int_equal(pl_trainer_new(&t, m, &c), PL_OK);
    run_steps(t, 0, 30, b);
    pl_trainer_free(t);
    assert_memory_equal(a, b, sizeof a);   /* same seed, same threads: same bits */
    pl_model_free(m);
}

static void test_resume_is_bit_identical(void **state)
{
    (void)state;
    struct pl_model *m = load_model();
    struct pl_train_cfg c = learn_cfg();
    c.grad_accum = 2;
    double full[12], part[12];
    struct pl_trainer *t;
    assert_int_equal(pl_trainer_new(&t, m, &c), PL_OK);
    run_steps(t, 0, 12, full);
    float *want = malloc((size_t)pl_trainer_n_params(t) * 4);
    memcpy(want, pl_trainer_params(t, NULL), (size_t)pl_trainer_n_params(t) * 4);
    pl_trainer_free(t);

    char dir[] = "/tmp/pl_test_ckpt_XXXXXX";
    assert_non_null(mkdtemp(dir));
    assert_int_equal(pl_trainer_new(&t, m, &c), PL_OK);
    run_steps(t, 0, 5, part);
    const char blob[] = "data-position-7";
    if (pl_trainer_save(t, dir, blob, sizeof blob) != PL_OK) fail_msg("%s", pl_last_error());
    run_steps(t, 5, 2, part + 5);   /* progress after the checkpoint is thrown away */
    pl_trainer_free(t);
    assert_true(pl_trainer_has_checkpoint(dir));

    assert_int_equal(pl_trainer_new(&t, m, &c), PL_OK);
    void *got = NULL;
    size_t got_n = 0;
    if (pl_trainer_load(t, dir, &got, &got_n) != PL_OK) fail_msg("%s", pl_last_error());
    assert_int_equal(got_n, sizeof blob);
    assert_memory_equal(got, blob, sizeof blob);
    pl_free(got);
    assert_int_equal(pl_trainer_state(t).step, 5);
    run_steps(t, 5, 7, part + 5);
    assert_memory_equal(full, part, sizeof full);
    assert_memory_equal(want, pl_trainer_params(t, NULL), (size_t)pl_trainer_n_params(t) * 4);
    printf("  resumed at step 5: 12-step loss trajectory and parameters bit-identical\n");

    /* a corrupted state file is refused with a message and leaves the trainer alone */
    char path[256], cmd[600];
    snprintf(cmd, sizeof cmd, "f=$(ls %s/state-*.bin) && printf 'X' | dd of=$f bs=1 seek=200 conv=notrunc 2>/dev/null", dir);
    assert_int_equal(system(cmd), 0);
    float keep = pl_trainer_params(t, NULL)[0];
    assert_int_not_equal(pl_trainer_load(t, dir, NULL, NULL), PL_OK);
    assert_non_null(strstr(pl_last_error(), "checksum"));
    assert_true(pl_trainer_params(t, NULL)[0] == keep);
    /* a checkpoint of another configuration is refused */
    pl_trainer_free(t);
    struct pl_train_cfg c2 = c;
    c2.lora.r = 4;
    assert_int_equal(pl_trainer_new(&t, m, &c2), PL_OK);
    assert_int_not_equal(pl_trainer_load(t, dir, NULL, NULL), PL_OK);
    pl_trainer_free(t);
    snprintf(path, sizeof path, "rm -rf %s", dir);
    assert_int_equal(system(path), 0);
    free(want);
    pl_model_free(m);
}

static void test_grad_accum_equals_big_batch(void **state)
{
    (void)state;
    /* two micro-batches of 1 row with equal target counts == one batch of 2 rows */
    struct pl_model *m = load_model();
    const int T = 12;
    int32_t ids[2 * 12], tg[2 * 12];
    motif_batch(ids, tg, 2, T, 77, m->cfg.vocab_size);
    struct pl_train_cfg c = base_cfg(2, T);
    c.optim = PL_OPTIM_SGD;   /* plain SGD with lr 1: the update is the gradient itself */
    c.momentum = 0;
    c.lr = 1.0;
    c.lora.targets = (1u << PL_PROJ_COUNT) - 1;
    struct pl_trainer *t1, *t2;
    double l;
    int64_t cnt;
    int stepped;
    assert_int_equal(pl_trainer_new(&t1, m, &c), PL_OK);
    for (int64_t i = 0; i < pl_trainer_n_params(t1); i++) pl_trainer_params(t1, NULL)[i] = 0.01f * (float)sin((double)i);
    assert_int_equal(pl_trainer_micro(t1, ids, tg, 2, T, &l, &cnt, &stepped), PL_OK);
    assert_int_equal(stepped, 1);
    pl_lora_detach(pl_trainer_lora(t1));   /* one model, two trainers: t2 attaches its own adapters */
    c.grad_accum = 2;
    assert_int_equal(pl_trainer_new(&t2, m, &c), PL_OK);
    for (int64_t i = 0; i < pl_trainer_n_params(t2); i++) pl_trainer_params(t2, NULL)[i] = 0.01f * (float)sin((double)i);
    assert_int_equal(pl_trainer_micro(t2, ids, tg, 1, T, &l, &cnt, &stepped), PL_OK);
    assert_int_equal(stepped, 0);
    assert_int_equal(pl_trainer_micro(t2, ids + T, tg + T, 1, T, &l, &cnt, &stepped), PL_OK);
    assert_int_equal(stepped, 1);
    for (int64_t i = 0; i < pl_trainer_n_params(t1); i++) {
        pl_trainer_params(t1, NULL)[i] -= 0.01f * (float)sin((double)i);
        pl_trainer_params(t2, NULL)[i] -= 0.01f * (float)sin((double)i);
    }
    double e = rel_err(pl_trainer_params(t2, NULL), pl_trainer_params(t1, NULL), pl_trainer_n_params(t1));
    printf("  accumulation vs big batch: relative difference %.3g\n", e);
    assert_true(e < 1e-4);
    assert_true(fabs(pl_trainer_state(t1).last_loss - pl_trainer_state(t2).last_loss) < 1e-5);
    pl_trainer_free(t2);
    pl_trainer_free(t1);
    pl_model_free(m);
}

/* A micro-batch run as chunks of fewer planned rows (pl_trainer_replan, as after a shrink)
 * gives the unsplit micro-batch's loss and gradient: LoRA (all targets, dropout 0.1, so the
 * chunks must see the unsplit masks) and full fine-tuning, with and without checkpointing,
 * chunks of 1, 2 and 3 rows (3 + 1: uneven), rows with different scored counts and one row
 * with nothing scored. A few optimizer steps then follow the unsplit run's losses. */
static void check_chunks(int full, int ckpt)
{
    const int B = 4, T = 20;
    int32_t ids[4 * 20], tg[4 * 20];
    struct pl_model *m0 = load_model();
    motif_batch(ids, tg, B, T, 31, m0->cfg.vocab_size);
    pl_model_free(m0);
    for (int i = 0; i < T; i++) tg[2 * T + i] = -1;          /* row 2: nothing scored */
    for (int i = 0; i < 7; i++) tg[1 * T + i] = -1;          /* row 1: 13 of 20 scored */
    struct pl_train_cfg c = base_cfg(B, T);
    c.method = full ? PL_TRAIN_FULL : PL_TRAIN_LORA;
    c.ckpt_every = ckpt;
    c.lr = full ? 1e-3 : 1e-2;
    c.lora.targets = (1u << PL_PROJ_COUNT) - 1;
    c.lora.dropout = 0.1f;
    c.lora.r = 4;
    c.lora.alpha = 8;
    struct pl_model *mr = load_model();
    struct pl_trainer *ref;
    assert_int_equal(pl_trainer_new(&ref, mr, &c), PL_OK);
    if (!full)   /* non-zero B so every adapter has a gradient */
        for (int64_t i = 0; i < pl_trainer_n_params(ref); i++) pl_trainer_params(ref, NULL)[i] = 0.05f * (float)sin(0.37 * (double)i);
    double lref;
    assert_int_equal(pl_trainer_grad(ref, ids, tg, B, T, &lref), PL_OK);
    float *gref = malloc((size_t)pl_trainer_n_params(ref) * sizeof(float));
    memcpy(gref, pl_trainer_grads(ref, NULL), (size_t)pl_trainer_n_params(ref) * sizeof(float));
    double steps_ref[3];
    for (int k = 0; k < 3; k++) {
        int64_t cnt;
        int st;
        assert_int_equal(pl_trainer_micro(ref, ids, tg, B, T, &steps_ref[k], &cnt, &st), PL_OK);
        assert_int_equal(cnt, 3 * T - 7);
    }
    const int rows[3] = { 1, 2, 3 };
    for (int r = 0; r < 3; r++) {
        struct pl_model *m = load_model();
        struct pl_trainer *t;
        assert_int_equal(pl_trainer_new(&t, m, &c), PL_OK);
        if (!full)
            for (int64_t i = 0; i < pl_trainer_n_params(t); i++) pl_trainer_params(t, NULL)[i] = 0.05f * (float)sin(0.37 * (double)i);
        assert_int_equal(pl_trainer_replan(t, rows[r]), PL_OK);
        assert_int_equal(pl_trainer_state(t).plan_rows, rows[r]);
        double l;
        assert_int_equal(pl_trainer_grad(t, ids, tg, B, T, &l), PL_OK);
        double e = rel_err(pl_trainer_grads(t, NULL), gref, pl_trainer_n_params(t));
        int same = memcmp(pl_trainer_grads(t, NULL), gref, (size_t)pl_trainer_n_params(t) * sizeof(float)) == 0;
        double steps[3], worst = 0;
        for (int k = 0; k < 3; k++) {
            int64_t cnt;
            int st;
            assert_int_equal(pl_trainer_micro(t, ids, tg, B, T, &steps[k], &cnt, &st), PL_OK);
            assert_int_equal(cnt, 3 * T - 7);
            double d = fabs(steps[k] - steps_ref[k]) / fabs(steps_ref[k]);
            if (d > worst) worst = d;
        }
        printf("  %s%s, chunks of %d rows: loss %.9f vs %.9f, gradient rel. error %.2e%s; 3 steps: loss rel. diff <= %.1e\n",
               full ? "full" : "lora dropout", ckpt ? " checkpointed" : "", rows[r], l, lref, e,
               same ? " (bit-identical)" : "", worst);
        assert_true(fabs(l - lref) <= 1e-6 * fabs(lref));
        assert_true(e <= 1e-6);
        assert_true(worst <= 1e-5);
        if (!full) assert_int_equal(pl_trainer_lora(t)->dropout_step, pl_trainer_lora(ref)->dropout_step);
        pl_trainer_free(t);
        pl_model_free(m);
    }
    /* evaluation in chunks: the same sum and count */
    double s1, s2;
    int64_t c1, c2;
    assert_int_equal(pl_trainer_eval(ref, ids, tg, B, T, &s1, &c1), PL_OK);
    assert_int_equal(pl_trainer_replan(ref, 1), PL_OK);
    assert_int_equal(pl_trainer_eval(ref, ids, tg, B, T, &s2, &c2), PL_OK);
    assert_int_equal(c1, c2);
    assert_true(fabs(s1 - s2) <= 1e-6 * fabs(s1));
    free(gref);
    pl_trainer_free(ref);
    pl_model_free(mr);
}

static void test_chunks_equal_unsplit(void **state)
{
    (void)state;
    check_chunks(0, 0);
    check_chunks(0, 1);
    check_chunks(1, 0);
    check_chunks(1, 2);
}

/* Re-planning: a failed shrink at one row says so; an unplanned trainer refuses steps. */
static void test_shrink_errors(void **state)
{
    (void)state;
    struct pl_model *m = load_model();
    struct pl_train_cfg c = base_cfg(2, 16);
    struct pl_trainer *t;
    c.plan_rows = 3;   /* more than batch_size */
    assert_int_equal(pl_trainer_new(&t, m, &c), PL_ERR_ARG);
    assert_non_null(strstr(pl_last_error(), "plan_rows"));
    c.plan_rows = 1;   /* planned smaller from the start */
    assert_int_equal(pl_trainer_new(&t, m, &c), PL_OK);
    assert_int_equal(pl_trainer_state(t).plan_rows, 1);
    pl_trainer_free(t);
    c.plan_rows = 0;
    assert_int_equal(pl_trainer_new(&t, m, &c), PL_OK);
    assert_int_equal(pl_trainer_state(t).plan_rows, 2);
    int rows = 0;
    assert_int_equal(pl_trainer_shrink(t, &rows), PL_OK);
    assert_int_equal(rows, 1);
    assert_int_equal(pl_trainer_shrink(t, &rows), PL_ERR_NOMEM);
    assert_non_null(strstr(pl_last_error(), "one row of 16 tokens"));
    assert_int_equal(pl_trainer_replan(t, 0), PL_ERR_ARG);
    /* a plan that cannot be allocated leaves the trainer unplanned, refusing steps */
    pl_mem_set_budget(pl_mem_current_total() + 4096);
    assert_int_equal(pl_trainer_replan(t, 2), PL_ERR_NOMEM);
    pl_mem_set_budget(0);
    assert_int_equal(pl_trainer_state(t).plan_rows, 0);
    int32_t ids[16] = { 1 }, tg[16] = { 2 };
    double l;
    int64_t cnt;
    int st;
    assert_int_equal(pl_trainer_micro(t, ids, tg, 1, 16, &l, &cnt, &st), PL_ERR_STATE);
    assert_non_null(strstr(pl_last_error(), "no activation plan"));
    assert_int_equal(pl_trainer_replan(t, 2), PL_OK);
    assert_int_equal(pl_trainer_micro(t, ids, tg, 1, 16, &l, &cnt, &st), PL_OK);
    tg[3] = 1 << 30;
    assert_int_equal(pl_trainer_micro(t, ids, tg, 1, 16, &l, &cnt, &st), PL_ERR_ARG);
    assert_non_null(strstr(pl_last_error(), "outside the vocabulary"));
    pl_trainer_free(t);
    pl_model_free(m);
}

static void test_save_load_merge_logits(void **state)
{
    (void)state;
    struct pl_model *m = load_model();
    struct pl_train_cfg c = learn_cfg();
    c.lora.dropout = 0;
    c.lora.targets = (1u << PL_PROJ_COUNT) - 1;
    struct pl_trainer *t;
    assert_int_equal(pl_trainer_new(&t, m, &c), PL_OK);
    double losses[6];
    run_steps(t, 0, 6, losses);   /* nonzero B */
    char dir[] = "/tmp/pl_test_adapter_XXXXXX";
    assert_non_null(mkdtemp(dir));
    if (pl_lora_save(pl_trainer_lora(t), dir, "stories260K") != PL_OK) fail_msg("%s", pl_last_error());
    /* logits of base + live adapters */
    const int T = 10, V = m->cfg.vocab_size;
    int32_t ids[10] = { 1, 403, 407, 261, 378, 1131 % 512, 29, 400, 300, 17 };
    struct pl_llama_ctx *ctx = pl_llama_ctx_new(m, 1, T, 0);
    assert_int_equal(pl_llama_forward(ctx, ids, T, 0, 0), PL_OK);
    float *with = malloc((size_t)T * V * 4);
    memcpy(with, ctx->logits, (size_t)T * V * 4);
    pl_llama_ctx_free(ctx);
    pl_trainer_free(t);   /* detaches */

    /* reload into the plain base model, check, then merge */
    struct pl_lora *a;
    if (pl_lora_load(&a, dir, &m->cfg) != PL_OK) fail_msg("%s", pl_last_error());
    pl_lora_attach(a, m);
    ctx = pl_llama_ctx_new(m, 1, T, 0);
    assert_int_equal(pl_llama_forward(ctx, ids, T, 0, 0), PL_OK);
    double e1 = 0;
    for (int64_t i = 0; i < (int64_t)T * V; i++) e1 = fmax(e1, fabs(ctx->logits[i] - with[i]));
    pl_llama_ctx_free(ctx);
    assert_int_equal(pl_lora_merge(a, m), PL_OK);
    assert_null(m->linear_hook);
    ctx = pl_llama_ctx_new(m, 1, T, 0);
    assert_int_equal(pl_llama_forward(ctx, ids, T, 0, 0), PL_OK);
    double e2 = 0, spread = 0;
    for (int64_t i = 0; i < (int64_t)T * V; i++) {
        e2 = fmax(e2, fabs(ctx->logits[i] - with[i]));
        spread = fmax(spread, fabs(with[i]));
    }
    pl_llama_ctx_free(ctx);
    printf("  reloaded adapter: max |dlogit| %.3g; merged: %.3g (logits up to %.3g)\n", e1, e2, spread);
    assert_true(e1 <= 1e-5);
    assert_true(e2 <= 1e-5 * fmax(1.0, spread));
    pl_lora_free(a);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
    free(with);
    pl_model_free(m);
}

static void test_full_finetune_learns(void **state)
{
    (void)state;
    struct pl_model *m = load_model();
    struct pl_train_cfg c = learn_cfg();
    c.method = PL_TRAIN_FULL;
    c.lr = 3e-3;
    struct pl_trainer *t;
    assert_int_equal(pl_trainer_new(&t, m, &c), PL_OK);
    double l[20];
    run_steps(t, 0, 20, l);
    printf("  full fine-tuning loss %.4f -> %.4f over 20 steps\n", l[0], l[19]);
    assert_true(l[19] < 0.5 * l[0]);
    pl_trainer_free(t);
    pl_model_free(m);
}

static void test_bad_config(void **state)
{
    (void)state;
    struct pl_model *m = load_model();
    struct pl_train_cfg c = base_cfg(2, 8);
    struct pl_trainer *t = NULL;
    c.grad_accum = 0;
    assert_int_equal(pl_trainer_new(&t, m, &c), PL_ERR_ARG);
    assert_non_null(strstr(pl_last_error(), "grad_accum"));
    c = base_cfg(2, 8);
    c.lora.r = 0;
    assert_int_equal(pl_trainer_new(&t, m, &c), PL_ERR_ARG);
    c = base_cfg(2, 8);
    assert_int_equal(pl_trainer_new(&t, m, &c), PL_OK);
    int32_t ids[3 * 9] = { 0 }, tg[3 * 9] = { 0 };
    double l;
    int64_t cnt;
    int stepped;
    assert_int_equal(pl_trainer_micro(t, ids, tg, 3, 9, &l, &cnt, &stepped), PL_ERR_ARG);
    assert_non_null(strstr(pl_last_error(), "does not fit"));
    tg[0] = 100000;
    assert_int_not_equal(pl_trainer_micro(t, ids, tg, 2, 8, &l, &cnt, &stepped), PL_OK);
    pl_trainer_free(t);
    pl_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lora_grads_match_torch),
        cmocka_unit_test(test_full_grads_match_torch),
        cmocka_unit_test(test_smollm2_grads_match_torch),
        cmocka_unit_test(test_lora_learns_deterministically),
        cmocka_unit_test(test_resume_is_bit_identical),
        cmocka_unit_test(test_grad_accum_equals_big_batch),
        cmocka_unit_test(test_chunks_equal_unsplit),
        cmocka_unit_test(test_shrink_errors),
        cmocka_unit_test(test_save_load_merge_logits),
        cmocka_unit_test(test_full_finetune_learns),
        cmocka_unit_test(test_bad_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
