/* train_config.c — a trainer configuration set option by option through the option table
 * (options.h: pl_train_cfg_set, the values checked and worded as the Lua layer words them), and
 * the memory model's inputs taken from that same configuration (pl_memmodel_cfg_from_train),
 * so that a C program states a run once and the trainer and the memory model read the same
 * values.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peftlua/gemm16.h"
#include "peftlua/memmodel.h"
#include "peftlua/options.h"
#include "peftlua/train.h"

static enum pl_status bad(const struct pl_option *o, const char *v, const char *why)
{
    return pl_fail(PL_ERR_ARG, "%s = \"%s\" %s", o->name, v, why);
}

/* a number of the option's type and range */
static enum pl_status number(const struct pl_option *o, const char *v, double *out)
{
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    char r[96], why[160];
    if (end == v || *end || errno) {
        snprintf(why, sizeof why, "must be %s", pl_option_range_text(o, r, sizeof r));
        return bad(o, v, why);
    }
    if (o->type == PL_OPT_INTEGER && (d != (double)(long long)d)) {
        snprintf(why, sizeof why, "must be %s", pl_option_range_text(o, r, sizeof r));
        return bad(o, v, why);
    }
    if (pl_option_check_number(o, d, why, sizeof why)) return bad(o, v, why);
    *out = d;
    return PL_OK;
}

static enum pl_status boolean(const struct pl_option *o, const char *v, int *out)
{
    if (!strcmp(v, "true") || !strcmp(v, "1")) { *out = 1; return PL_OK; }
    if (!strcmp(v, "false") || !strcmp(v, "0")) { *out = 0; return PL_OK; }
    return bad(o, v, "must be true or false");
}

/* "q_proj,v_proj" (commas or spaces) or "all" → target bits */
static enum pl_status targets(const struct pl_option *o, const char *v, uint32_t *out)
{
    if (!strcmp(v, "all")) { *out = (1u << PL_PROJ_COUNT) - 1; return PL_OK; }
    uint32_t t = 0;
    char name[32];
    for (const char *p = v; *p;) {
        size_t n = strcspn(p, ", ");
        if (n) {
            if (n >= sizeof name) return bad(o, v, "names a module peftlua does not know");
            memcpy(name, p, n);
            name[n] = 0;
            int k = pl_lora_target_from_name(name);
            if (k < 0)
                return pl_fail(PL_ERR_ARG, "%s: unknown module \"%s\" (use q_proj k_proj v_proj o_proj gate_proj up_proj down_proj)",
                               o->name, name);
            t |= 1u << k;
        }
        p += n;
        if (*p) p++;
    }
    if (!t) return bad(o, v, "must name at least one module");
    *out = t;
    return PL_OK;
}

enum pl_status pl_train_cfg_set(struct pl_train_cfg *c, const char *name, const char *value)
{
    const struct pl_option *o = pl_option_find(name);
    if (!o) return pl_fail(PL_ERR_ARG, "unknown option '%s'", name ? name : "(null)");
    if (!value) return pl_fail(PL_ERR_ARG, "%s: no value", name);
    char why[512];
    if (o->choices) {
        int k = pl_option_check_choice(o, value, why, sizeof why);
        if (k < 0) return bad(o, value, why);
    }
    double d = 0;
    int b = 0;
    enum pl_status st = PL_OK;
    if (o->type == PL_OPT_INTEGER || o->type == PL_OPT_NUMBER) {
        if ((st = number(o, value, &d)) != PL_OK) return st;
    } else if (o->type == PL_OPT_BOOLEAN) {
        if ((st = boolean(o, value, &b)) != PL_OK) return st;
    }
    if (!strcmp(name, "method")) {
        if (!strcmp(value, "qlora"))
            return pl_fail(PL_ERR_UNSUPPORTED, "method = \"qlora\" is a quantised base: pl_qlora_quantize the model, then method \"lora\" (or \"dora\", \"ia3\")");
        c->method = strcmp(value, "full") ? PL_TRAIN_LORA : PL_TRAIN_FULL;
        c->lora.kind = !strcmp(value, "dora") ? PL_ADAPTER_DORA : !strcmp(value, "ia3") ? PL_ADAPTER_IA3 : PL_ADAPTER_LORA;
        if (c->lora.kind == PL_ADAPTER_IA3) {   /* PEFT's IA3 defaults: k, v and down, down scaled on its input */
            c->lora.targets = (1u << PL_PROJ_K) | (1u << PL_PROJ_V) | (1u << PL_PROJ_DOWN);
            c->lora.ff_targets = 1u << PL_PROJ_DOWN;
        } else {
            c->lora.ff_targets = 0;
        }
    } else if (!strcmp(name, "optimizer")) c->optim = (enum pl_optim_kind)pl_option_choice(name, value);
    else if (!strcmp(name, "precision")) c->precision = (enum pl_precision)pl_precision_from_name(value);
    else if (!strcmp(name, "compute")) c->compute = pl_compute_from_name(value);
    else if (!strcmp(name, "schedule")) c->schedule = (enum pl_schedule)pl_schedule_from_name(value);
    else if (!strcmp(name, "batch_size")) c->batch_size = (int32_t)d;
    else if (!strcmp(name, "max_seq_len")) c->seq_len = (int32_t)d;
    else if (!strcmp(name, "grad_accum")) c->grad_accum = (int32_t)d;
    else if (!strcmp(name, "max_iters")) c->total_steps = (int64_t)d;
    else if (!strcmp(name, "learning_rate")) c->lr = d;
    else if (!strcmp(name, "weight_decay")) c->weight_decay = d;
    else if (!strcmp(name, "momentum")) c->momentum = d;
    else if (!strcmp(name, "warmup")) c->warmup = (int64_t)d;
    else if (!strcmp(name, "min_lr_ratio")) c->min_lr_ratio = d;
    else if (!strcmp(name, "max_grad_norm")) c->max_grad_norm = d;
    else if (!strcmp(name, "seed")) c->seed = (uint64_t)(int64_t)d;
    else if (!strcmp(name, "loss_scale")) c->loss_scale = d;
    else if (!strcmp(name, "growth_interval")) c->growth_interval = (int32_t)d;
    else if (!strcmp(name, "lora_rank")) {   /* alpha follows (its default, 2 x rank) until set after */
        c->lora.r = (int32_t)d;
        c->lora.alpha = 2.0f * (float)d;
    }
    else if (!strcmp(name, "lora_alpha")) c->lora.alpha = (float)d;
    else if (!strcmp(name, "lora_dropout")) c->lora.dropout = (float)d;
    else if (!strcmp(name, "rslora")) c->lora.use_rslora = b;
    else if (!strcmp(name, "targets")) {
        uint32_t t;
        if ((st = targets(o, value, &t)) != PL_OK) return st;
        c->lora.targets = t;
        if (c->lora.kind == PL_ADAPTER_IA3) c->lora.ff_targets = t & (1u << PL_PROJ_DOWN);
    } else if (!strcmp(name, "feedforward")) {
        uint32_t t;
        if ((st = targets(o, value, &t)) != PL_OK) return st;
        if (c->lora.kind != PL_ADAPTER_IA3) return pl_fail(PL_ERR_ARG, "feedforward is an IA3 option (method = \"ia3\")");
        if (t & ~c->lora.targets) return bad(o, value, "is not among the targets");
        c->lora.ff_targets = t;
    } else if (!strcmp(name, "layers")) {
        int n = 0;
        for (const char *p = value; *p;) {
            char *end;
            long l = strtol(p, &end, 10);
            if (end == p || l < 0 || l > 1 << 20) return bad(o, value, "must be a list of integers >= 0");
            if (n >= PL_LORA_MAX_LAYERS) return bad(o, value, "names too many layers");
            c->lora.layers[n++] = (int32_t)l;
            p = end + strspn(end, ", ");
        }
        c->lora.n_layers_sel = n;
    } else if (!strcmp(name, "checkpointing")) {
        char *end;
        long k = strtol(value, &end, 10);
        if (!strcmp(value, "true")) c->ckpt_every = 1;
        else if (!strcmp(value, "false")) c->ckpt_every = 0;
        else if (end != value && !*end && k >= 1 && k <= 1 << 20) c->ckpt_every = (int32_t)k;
        else return bad(o, value, "must be false, true or an integer >= 1");
    } else {
        return pl_fail(PL_ERR_UNSUPPORTED, "%s is an option of the run (peft.train.run), not of the trainer", name);
    }
    return PL_OK;
}

void pl_memmodel_cfg_from_train(struct pl_memmodel_cfg *m, const struct pl_train_cfg *t)
{
    m->method = t->method == PL_TRAIN_FULL ? PL_MEMM_FULL : PL_MEMM_LORA;
    m->precision = (enum pl_memm_precision)t->precision;   /* the same choices, in the same order */
    m->optim_sgd = t->optim == PL_OPTIM_SGD;
    m->optim = t->optim;
    m->batch = t->plan_rows > 0 ? t->plan_rows : t->batch_size;
    m->seq_len = t->seq_len;
    m->grad_accum = t->grad_accum;
    m->ckpt_every = t->ckpt_every;
    m->lora_r = t->lora.r;
    m->lora_targets = t->lora.targets;
    m->lora_n_layers = t->lora.n_layers_sel;
    m->lora_dropout = t->lora.dropout;
    m->adapter_kind = t->lora.kind;
    m->ia3_ff_targets = t->lora.kind == PL_ADAPTER_IA3 ? t->lora.ff_targets : 0;
    m->compute = (int32_t)t->compute;
}
