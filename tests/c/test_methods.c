/* test_methods.c — DoRA and IA3 on stories260K: whole-model gradients against HF PEFT's own
 * autograd (float64) and against central finite differences, the saved-activation and
 * checkpointed paths agreeing (also on an NF4 QLoRA base), merge = adapter logits, and
 * save → load round trips in PEFT's layout.
 *
 * Owner: train. Goldens: tests/ref/methods/golden/<dora|ia3>_grad/{adapter/, grads.safetensors,
 * case.json} written by PEFT itself through tests/ref/methods/methods_ref.py (see its header
 * for the versions). Run from the repository root.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "peftlua/alloc.h"
#include "peftlua/json.h"
#include "peftlua/lora.h"
#include "peftlua/model.h"
#include "peftlua/qlora.h"
#include "peftlua/safetensors.h"
#include "peftlua/train.h"

#define MODEL "../shared/models/stories260K/stories260K.gguf"
#define GOLDEN "tests/ref/methods/golden"

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
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)b[i] * b[i];
    }
    return sqrt(num / (den > 0 ? den : 1e-30));
}

/* The golden case: ids/targets [2, 16], PEFT's loss. */
struct gcase { int32_t ids[32], tg[32]; double loss; };

static void read_case(const char *dir, struct gcase *c)
{
    char p[512];
    snprintf(p, sizeof p, "%s/case.json", dir);
    struct pl_json *j = pl_json_parse_file(p);
    if (!j) fail_msg("%s", pl_last_error());
    for (int k = 0; k < 2; k++) {
        struct pl_json *a = pl_json_get(j, k ? "targets" : "ids");
        assert_int_equal(pl_json_len(a), 2);
        for (int b = 0; b < 2; b++)
            for (int t = 0; t < 16; t++)
                (k ? c->tg : c->ids)[b * 16 + t] = (int32_t)pl_json_num(pl_json_at(pl_json_at(a, b), t), -9);
    }
    c->loss = pl_json_get_num(j, "loss", NAN);
    pl_json_free(j);
}

static struct pl_train_cfg method_cfg(int kind)
{
    struct pl_train_cfg c = pl_train_defaults();
    c.batch_size = 2;
    c.seq_len = 16;
    c.schedule = PL_SCHED_CONSTANT;
    c.max_grad_norm = 0;
    c.lora.kind = kind;
    if (kind == PL_ADAPTER_DORA) {
        c.lora.r = 4;
        c.lora.alpha = 8;
        c.lora.targets = (1u << PL_PROJ_COUNT) - 1;
    } else {
        c.lora.targets = (1u << PL_PROJ_K) | (1u << PL_PROJ_V) | (1u << PL_PROJ_DOWN);
        c.lora.ff_targets = 1u << PL_PROJ_DOWN;
    }
    return c;
}

/* A trainer whose adapters hold the values of the PEFT-saved adapter in dir. */
static struct pl_trainer *trainer_with(struct pl_model *m, int kind, const char *dir, int ckpt)
{
    struct pl_train_cfg c = method_cfg(kind);
    c.ckpt_every = ckpt;
    struct pl_trainer *t;
    if (pl_trainer_new(&t, m, &c) != PL_OK) fail_msg("%s", pl_last_error());
    struct pl_lora *a;
    if (pl_lora_load(&a, dir, &m->cfg) != PL_OK) fail_msg("%s", pl_last_error());
    assert_int_equal(a->cfg.kind, kind);
    assert_int_equal(a->n_params, pl_trainer_lora(t)->n_params);
    memcpy(pl_trainer_lora(t)->params, a->params, (size_t)a->n_params * sizeof(float));
    pl_lora_touch(pl_trainer_lora(t));
    pl_lora_free(a);
    return t;
}

/* Compare t's gradients with PEFT's: they are saved through the adapter writer (which puts
 * q/k rows in HF's order) and read back under the same names as the golden file. */
static double compare_grads(struct pl_trainer *t, const char *gdir, const char *tmp)
{
    struct pl_lora *a = pl_trainer_lora(t);
    float *keep = malloc((size_t)a->n_params * sizeof(float));
    memcpy(keep, a->params, (size_t)a->n_params * sizeof(float));
    memcpy(a->params, a->grads, (size_t)a->n_params * sizeof(float));
    if (pl_lora_save(a, tmp, "grads") != PL_OK) fail_msg("%s", pl_last_error());
    memcpy(a->params, keep, (size_t)a->n_params * sizeof(float));
    free(keep);
    char p[512];
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", tmp);
    struct pl_safetensors *ours, *gold;
    if (pl_safetensors_open(p, &ours) != PL_OK) fail_msg("%s", pl_last_error());
    snprintf(p, sizeof p, "%s/grads.safetensors", gdir);
    if (pl_safetensors_open(p, &gold) != PL_OK) fail_msg("%s", pl_last_error());
    assert_int_equal(pl_safetensors_count(ours), pl_safetensors_count(gold));
    double worst = 0;
    for (int64_t i = 0; i < pl_safetensors_count(gold); i++) {
        const struct pl_safetensors_info *gi = pl_safetensors_info(gold, i);
        int64_t k = pl_safetensors_find(ours, gi->name);
        if (k < 0) fail_msg("no gradient for %s", gi->name);
        const struct pl_safetensors_info *oi = pl_safetensors_info(ours, k);
        int64_t n = 1;
        for (int d = 0; d < gi->ndim; d++) n *= gi->shape[d];
        double e = rel_err(oi->data, gi->data, n);
        if (e > worst) worst = e;
        if (e > 1e-3) fail_msg("%s: relative error %.3g against PEFT", gi->name, e);
    }
    pl_safetensors_close(ours);
    pl_safetensors_close(gold);
    return worst;
}

static void check_peft_grads(int kind, const char *name)
{
    char gdir[256], adir[300], tmp[300];
    snprintf(gdir, sizeof gdir, GOLDEN "/%s_grad", name);
    snprintf(adir, sizeof adir, "%s/adapter", gdir);
    snprintf(tmp, sizeof tmp, "build/tmp/test_methods_%s_grads", name);
    struct gcase gc;
    read_case(gdir, &gc);
    for (int ckpt = 0; ckpt <= 1; ckpt++) {
        struct pl_model *m = load_model();
        struct pl_trainer *t = trainer_with(m, kind, adir, ckpt);
        double loss;
        if (pl_trainer_grad(t, gc.ids, gc.tg, 2, 16, &loss) != PL_OK) fail_msg("%s", pl_last_error());
        double worst = compare_grads(t, gdir, tmp);
        printf("  %s%s: loss %.6f (PEFT float64 %.6f), %d adapters, worst relative gradient error %.3g\n",
               name, ckpt ? " (checkpointed)" : "", loss, gc.loss, pl_trainer_lora(t)->n, worst);
        assert_true(fabs(loss - gc.loss) < 1e-4 * fabs(gc.loss));
        pl_trainer_free(t);
        pl_model_free(m);
    }
}

static void test_dora_grads_match_peft(void **state) { (void)state; check_peft_grads(PL_ADAPTER_DORA, "dora"); }
static void test_ia3_grads_match_peft(void **state) { (void)state; check_peft_grads(PL_ADAPTER_IA3, "ia3"); }

/* (L(p + h) − L(p − h)) / 2h for the parameter at p; touch: let DoRA recompute its norms. */
static double central(struct pl_trainer *t, struct pl_lora *a, const struct gcase *gc, float *p,
                      float keep, float h, int touch)
{
    double s, l[2];
    int64_t cnt;
    /* norm held: refresh the cached norms at the unperturbed parameters first */
    if (!touch && pl_trainer_eval(t, gc->ids, gc->tg, 2, 16, &s, &cnt) != PL_OK) fail_msg("%s", pl_last_error());
    for (int k = 0; k < 2; k++) {
        *p = k ? keep - h : keep + h;
        if (touch) pl_lora_touch(a);
        if (pl_trainer_eval(t, gc->ids, gc->tg, 2, 16, &s, &cnt) != PL_OK) fail_msg("%s", pl_last_error());
        l[k] = s / (double)cnt;
    }
    *p = keep;
    pl_lora_touch(a);
    return (l[0] - l[1]) / ((double)(keep + h) - (double)(keep - h));
}

/* Central differences of the mean loss for the largest-gradient entries of each tensor kind. */
static void check_fd(int kind, const char *name, int nf4)
{
    char adir[300];
    snprintf(adir, sizeof adir, GOLDEN "/%s_grad/adapter", name);
    struct gcase gc;
    read_case(GOLDEN "/dora_grad", &gc);
    struct pl_model *m = load_model();
    if (nf4 && pl_qlora_quantize(m, PL_NF4, (1u << PL_PROJ_COUNT) - 1, NULL) != PL_OK)
        fail_msg("%s", pl_last_error());
    struct pl_trainer *t = trainer_with(m, kind, adir, 0);
    double loss;
    if (pl_trainer_grad(t, gc.ids, gc.tg, 2, 16, &loss) != PL_OK) fail_msg("%s", pl_last_error());
    struct pl_lora *a = pl_trainer_lora(t);
    float *g = malloc((size_t)a->n_params * sizeof(float));
    memcpy(g, a->grads, (size_t)a->n_params * sizeof(float));
    /* per kind of tensor, the largest |gradient| entry of a few adapters */
    int checked = 0;
    double worst = 0;
    for (int i = 0; i < a->n; i += 3) {
        struct pl_lora_adapter *d = &a->ad[i];
        float *vs[3] = { d->A ? d->A : d->vec, d->B, d->mag };
        int64_t ns[3] = { d->A ? a->cfg.r * d->in : (d->ff ? d->in : d->out), a->cfg.r * d->out, d->out };
        for (int w = 0; w < 3; w++) {
            if (!vs[w]) continue;
            int64_t off = vs[w] - a->params, best = 0;
            for (int64_t k = 1; k < ns[w]; k++)
                if (fabsf(g[off + k]) > fabsf(g[off + best])) best = k;
            float *p = &a->params[off + best], keep = *p;
            const float h = 1e-2f * fmaxf(1.0f, fabsf(keep));
            /* DoRA: PEFT detaches the weight norm, so its gradient is that of the loss with
             * ‖W0 + s·BA‖ held at its current value: the cached norms stay (no touch) while A
             * or B move. The full derivative (norms recomputed) is printed beside it. */
            const int detached = kind == PL_ADAPTER_DORA && w < 2;
            double fd = central(t, a, &gc, p, keep, h, !detached);
            double full = detached ? central(t, a, &gc, p, keep, h, 1) : fd;
            double an = g[off + best];
            if (detached && i == 0)
                printf("  dora layer %d %s %s: gradient %.6g, central difference (norm held) %.6g, with the norm moving %.6g\n",
                       d->layer, pl_proj_names[d->proj], w ? "lora_B" : "lora_A", an, fd, full);
            double e = fabs(fd - an) / fmax(fabs(an), 1e-3);
            if (e > worst) worst = e;
            if (e > 1e-2)
                fail_msg("%s layer %d %s tensor %d: finite difference %.6g vs gradient %.6g", name, d->layer,
                         pl_proj_names[d->proj], w, fd, an);
            checked++;
        }
    }
    printf("  %s%s: %d entries, worst relative difference to central differences %.3g\n", name,
           nf4 ? " on an NF4 base" : "", checked, worst);
    assert_true(checked >= 3);
    free(g);
    pl_trainer_free(t);
    pl_model_free(m);
}

static void test_dora_finite_differences(void **state) { (void)state; check_fd(PL_ADAPTER_DORA, "dora", 0); check_fd(PL_ADAPTER_DORA, "dora", 1); }
static void test_ia3_finite_differences(void **state) { (void)state; check_fd(PL_ADAPTER_IA3, "ia3", 0); check_fd(PL_ADAPTER_IA3, "ia3", 1); }

/* Checkpointed gradients equal the saved-activation ones on an NF4 base. */
static void check_ckpt_nf4(int kind, const char *name)
{
    char adir[300];
    snprintf(adir, sizeof adir, GOLDEN "/%s_grad/adapter", name);
    struct gcase gc;
    read_case(GOLDEN "/dora_grad", &gc);
    float *g[2];
    int64_t n = 0;
    for (int ck = 0; ck <= 1; ck++) {
        struct pl_model *m = load_model();
        if (pl_qlora_quantize(m, PL_NF4, (1u << PL_PROJ_COUNT) - 1, NULL) != PL_OK) fail_msg("%s", pl_last_error());
        struct pl_trainer *t = trainer_with(m, kind, adir, ck ? 2 : 0);
        double loss;
        if (pl_trainer_grad(t, gc.ids, gc.tg, 2, 16, &loss) != PL_OK) fail_msg("%s", pl_last_error());
        n = pl_trainer_lora(t)->n_params;
        g[ck] = malloc((size_t)n * sizeof(float));
        memcpy(g[ck], pl_trainer_lora(t)->grads, (size_t)n * sizeof(float));
        pl_trainer_free(t);
        pl_model_free(m);
    }
    double e = rel_err(g[1], g[0], n);
    printf("  %s on NF4: checkpointed (every 2) vs saved-activation gradients, relative difference %.3g\n", name, e);
    assert_true(e < 1e-5);
    free(g[0]);
    free(g[1]);
}

static void test_ckpt_nf4(void **state)
{
    (void)state;
    check_ckpt_nf4(PL_ADAPTER_DORA, "dora");
    check_ckpt_nf4(PL_ADAPTER_IA3, "ia3");
}

/* Logits of the last forward for ids [1, 8]. */
static float *logits_of(struct pl_model *m, const int32_t *ids, int n)
{
    struct pl_llama_ctx *c = pl_llama_ctx_new(m, 1, n, 0);
    if (!c || pl_llama_forward(c, ids, n, 0, 0) != PL_OK) fail_msg("%s", pl_last_error());
    int64_t V = m->cfg.vocab_size;
    float *out = malloc((size_t)(n * V) * sizeof(float));
    memcpy(out, c->logits, (size_t)(n * V) * sizeof(float));
    pl_llama_ctx_free(c);
    return out;
}

/* save → load gives the same logits; merging gives them too (as f32 weights). */
static void check_save_load_merge(int kind, const char *name)
{
    char adir[300], tmp[300];
    snprintf(adir, sizeof adir, GOLDEN "/%s_grad/adapter", name);
    snprintf(tmp, sizeof tmp, "build/tmp/test_methods_%s_roundtrip", name);
    const int32_t ids[8] = { 1, 30, 40, 50, 30, 40, 50, 30 };
    struct pl_model *m = load_model();
    int64_t V = m->cfg.vocab_size;
    float *base = logits_of(m, ids, 8);
    struct pl_trainer *t = trainer_with(m, kind, adir, 0);
    float *with = logits_of(m, ids, 8);
    if (pl_lora_save(pl_trainer_lora(t), tmp, "llama") != PL_OK) fail_msg("%s", pl_last_error());
    pl_trainer_free(t);
    struct pl_lora *a;
    if (pl_lora_load(&a, tmp, &m->cfg) != PL_OK) fail_msg("%s", pl_last_error());
    pl_lora_attach(a, m);
    float *again = logits_of(m, ids, 8);
    if (pl_lora_merge(a, m) != PL_OK) fail_msg("%s", pl_last_error());
    pl_lora_free(a);
    float *merged = logits_of(m, ids, 8);
    double moved = 0, e_load = 0, e_merge = 0, scale = 0;
    for (int64_t i = 0; i < 8 * V; i++) {
        moved = fmax(moved, fabs(with[i] - base[i]));
        e_load = fmax(e_load, fabs(again[i] - with[i]));
        e_merge = fmax(e_merge, fabs(merged[i] - with[i]));
        scale = fmax(scale, fabs(with[i]));
    }
    printf("  %s: adapter moves logits by %.3g; save->load max |diff| %.3g; merged %.3g (logits up to %.3g)\n",
           name, moved, e_load, e_merge, scale);
    assert_true(moved > 1e-2);
    assert_true(e_load == 0.0);
    assert_true(e_merge < 1e-4 * fmax(1.0, scale));
    free(base); free(with); free(again); free(merged);
    pl_model_free(m);
}

static void test_save_load_merge(void **state)
{
    (void)state;
    check_save_load_merge(PL_ADAPTER_DORA, "dora");
    check_save_load_merge(PL_ADAPTER_IA3, "ia3");
}

/* New adapters leave the model unchanged; bad configurations are refused with a message. */
static void test_init_and_errors(void **state)
{
    (void)state;
    struct pl_model *m = load_model();
    struct pl_train_cfg c = method_cfg(PL_ADAPTER_DORA);
    c.lora.dropout = 0.1f;
    struct pl_trainer *t;
    assert_int_equal(pl_trainer_new(&t, m, &c), PL_ERR_UNSUPPORTED);
    printf("  %s\n", pl_last_error());
    c = method_cfg(PL_ADAPTER_IA3);
    c.lora.ff_targets = 1u << PL_PROJ_Q;
    assert_int_equal(pl_trainer_new(&t, m, &c), PL_ERR_ARG);
    printf("  %s\n", pl_last_error());
    struct pl_lora *a;
    assert_int_not_equal(pl_lora_load(&a, "tests/ref/methods/golden/ia3_grad/nonexistent", &m->cfg), PL_OK);
    const int32_t ids[8] = { 1, 30, 40, 50, 30, 40, 50, 30 };
    float *base = logits_of(m, ids, 8);
    for (int k = PL_ADAPTER_DORA; k <= PL_ADAPTER_IA3; k++) {
        c = method_cfg(k);
        if (pl_trainer_new(&t, m, &c) != PL_OK) fail_msg("%s", pl_last_error());
        float *l = logits_of(m, ids, 8);
        double d = 0;
        for (int64_t i = 0; i < 8 * m->cfg.vocab_size; i++) d = fmax(d, fabs(l[i] - base[i]));
        printf("  new %s adapters change the logits by %.3g\n", pl_adapter_kind_name(k), d);
        assert_true(d < 1e-5);
        free(l);
        pl_trainer_free(t);
    }
    free(base);
    pl_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dora_grads_match_peft),
        cmocka_unit_test(test_ia3_grads_match_peft),
        cmocka_unit_test(test_dora_finite_differences),
        cmocka_unit_test(test_ia3_finite_differences),
        cmocka_unit_test(test_ckpt_nf4),
        cmocka_unit_test(test_save_load_merge),
        cmocka_unit_test(test_init_and_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
