/* optim.c — the optimizer table (AdamW, SGD with momentum, Lion), learning-rate schedules,
 * global-norm clipping.
 *
 * Owner: train. The math is stated in include/peftlua/optim.h. A new optimizer is one step
 * function and one row of `optimizers` below: the trainer allocates n_state state vectors per
 * trained vector, checkpoints them and calls step; the Lua layer and the memory model read the
 * name and n_state from the table. Each update is an independent
 * per-element formula, so the loops are parallel over elements with no reductions and give the
 * same bits for any thread count; the norm is a sequential double sum (fixed order).
 */
#include <math.h>
#include <string.h>
#include "peftlua/optim.h"
#include "peftlua/options.h"

struct pl_adamw_cfg pl_adamw_defaults(void)
{
    struct pl_adamw_cfg c = { 0.9, 0.999, 1e-8, 0.01 };
    return c;
}

/* AdamW's update 16 elements at a time (AVX-512F): the scalar loop's operations in its order,
 * no contraction into FMAs (the C loop has none: ISO C mode), vsqrtps/vdivps correctly rounded
 * like their scalar forms — the same bits. The scalar loop does not vectorise (sqrtf may set
 * errno) and was 6% of a SmolLM2 full fine-tuning step in compute bf16 (perf). */
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define PL_ADAMW_X86 1
__attribute__((target("avx512f")))
static void adamw_x16(float *param, const float *grad, float *m, float *v, int64_t i0, int64_t i1,
                      float decay, float omb1, float b2, float omb2, float bc2_sqrt, float eps,
                      float step_size)
{
    const __m512 vdecay = _mm512_set1_ps(decay), vomb1 = _mm512_set1_ps(omb1);
    const __m512 vb2 = _mm512_set1_ps(b2), vomb2 = _mm512_set1_ps(omb2);
    const __m512 vbc2 = _mm512_set1_ps(bc2_sqrt), veps = _mm512_set1_ps(eps);
    const __m512 vstep = _mm512_set1_ps(step_size);
    for (int64_t i = i0; i < i1; i += 16) {
        const int64_t left = i1 - i;
        const __mmask16 k = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
        __m512 g = _mm512_maskz_loadu_ps(k, grad + i), mm = _mm512_maskz_loadu_ps(k, m + i);
        __m512 vv = _mm512_maskz_loadu_ps(k, v + i);
        __m512 p = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, param + i), vdecay);
        __m512 mi = _mm512_add_ps(mm, _mm512_mul_ps(vomb1, _mm512_sub_ps(g, mm)));
        __m512 vi = _mm512_add_ps(_mm512_mul_ps(vb2, vv), _mm512_mul_ps(vomb2, _mm512_mul_ps(g, g)));
        _mm512_mask_storeu_ps(m + i, k, mi);
        _mm512_mask_storeu_ps(v + i, k, vi);
        __m512 denom = _mm512_add_ps(_mm512_div_ps(_mm512_sqrt_ps(vi), vbc2), veps);
        /* masked-off lanes divide 0 by eps: no trap (exceptions are masked), never stored */
        _mm512_mask_storeu_ps(param + i, k, _mm512_sub_ps(p, _mm512_mul_ps(vstep, _mm512_div_ps(mi, denom))));
    }
}
#endif

void pl_adamw_step(float *param, const float *grad, float *m, float *v, int64_t n,
                   const struct pl_adamw_cfg *cfg, double lr, int64_t t)
{
    /* torch computes the bias corrections in double (Python floats) and the update in f32. */
    const double bc1 = 1.0 - pow(cfg->beta1, (double)t);
    const double bc2 = 1.0 - pow(cfg->beta2, (double)t);
    const float step_size = (float)(lr / bc1);
    const float bc2_sqrt = (float)sqrt(bc2);
    const float decay = (float)(1.0 - lr * cfg->weight_decay);
    const float b2 = (float)cfg->beta2;
    const float omb1 = (float)(1.0 - cfg->beta1), omb2 = (float)(1.0 - cfg->beta2);
    const float eps = (float)cfg->eps;
#ifdef PL_ADAMW_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) {
        const int64_t blk = 4096, nb = (n + blk - 1) / blk;
#pragma omp parallel for schedule(static) if (n > 65536)
        for (int64_t b = 0; b < nb; b++)
            adamw_x16(param, grad, m, v, b * blk, b * blk + blk < n ? b * blk + blk : n, decay, omb1,
                      b2, omb2, bc2_sqrt, eps, step_size);
        return;
    }
#endif
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) {
        float g = grad[i];
        float p = param[i] * decay;
        float mi = m[i] + omb1 * (g - m[i]);          /* torch: exp_avg.lerp_(g, 1-β1) */
        float vi = b2 * v[i] + omb2 * (g * g);
        m[i] = mi;
        v[i] = vi;
        float denom = sqrtf(vi) / bc2_sqrt + eps;
        param[i] = p - step_size * (mi / denom);
    }
}

void pl_sgd_step(float *param, const float *grad, float *buf, int64_t n,
                 const struct pl_sgd_cfg *cfg, double lr, int first)
{
    const float mu = (float)cfg->momentum, damp = (float)(1.0 - cfg->dampening);
    const float wd = (float)cfg->weight_decay, flr = (float)lr;
    const int nesterov = cfg->nesterov, use_mom = cfg->momentum != 0.0;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) {
        float g = grad[i];
        if (wd != 0.0f) g += wd * param[i];
        if (use_mom) {
            float b = first ? g : mu * buf[i] + damp * g;
            buf[i] = b;
            g = nesterov ? g + mu * b : b;
        }
        param[i] -= flr * g;
    }
}

/* Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms", Algorithm 2), in
 * f32 with the operations in the order of the reference (tests/ref/train/lion_ref.py). */
void pl_lion_step(float *param, const float *grad, float *m, int64_t n, double beta1,
                  double beta2, double weight_decay, double lr)
{
    const float b1 = (float)beta1, omb1 = (float)(1.0 - beta1);
    const float b2 = (float)beta2, omb2 = (float)(1.0 - beta2);
    const float decay = (float)(1.0 - lr * weight_decay), flr = (float)lr;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) {
        const float g = grad[i];
        const float c = m[i] * b1 + omb1 * g;
        const float s = c > 0.0f ? 1.0f : c < 0.0f ? -1.0f : 0.0f;   /* sign(0) = 0, as torch */
        float p = param[i];
        if (weight_decay != 0.0) p *= decay;
        param[i] = p - flr * s;
        m[i] = m[i] * b2 + omb2 * g;
    }
}

/* ---- the table: each entry adapts the shared hyper-parameters to its step function ---- */

static void adamw_entry(float *param, const float *grad, float *const *state, int64_t n,
                        const struct pl_optim_hparams *h, double lr, int64_t t)
{
    struct pl_adamw_cfg c = { h->beta1, h->beta2, h->eps, h->weight_decay };
    pl_adamw_step(param, grad, state[0], state[1], n, &c, lr, t);
}

static void sgd_entry(float *param, const float *grad, float *const *state, int64_t n,
                      const struct pl_optim_hparams *h, double lr, int64_t t)
{
    struct pl_sgd_cfg c = { h->momentum, 0.0, h->weight_decay, h->nesterov };
    pl_sgd_step(param, grad, state[0], n, &c, lr, t == 1);
}

static void lion_entry(float *param, const float *grad, float *const *state, int64_t n,
                       const struct pl_optim_hparams *h, double lr, int64_t t)
{
    (void)t;
    pl_lion_step(param, grad, state[0], n, h->beta1, h->beta2, h->weight_decay, lr);
}

/* Index order is enum pl_optim_kind's for the first two (checkpoints store the index). */
static const struct pl_optimizer optimizers[] = {
    { "adamw", 2, adamw_entry, "AdamW: decoupled weight decay, bias-corrected moments (beta1, beta2, eps)" },
    { "sgd", 1, sgd_entry, "SGD with momentum (momentum, nesterov); weight decay as L2" },
    { "lion", 1, lion_entry, "Lion: sign of the interpolated momentum (beta1, beta2; typical lr 3-10x below AdamW's)" },
};
#define PL_N_OPTIM ((int)(sizeof optimizers / sizeof optimizers[0]))

int pl_optimizer_count(void) { return PL_N_OPTIM; }

const struct pl_optimizer *pl_optimizer_get(int kind)
{
    return kind >= 0 && kind < PL_N_OPTIM ? &optimizers[kind] : NULL;
}

int pl_optimizer_find(const char *name)
{
    for (int i = 0; name && i < PL_N_OPTIM; i++)
        if (strcmp(name, optimizers[i].name) == 0) return i;
    return -1;
}

static const char *const sched_names[] = { "constant", "linear", "cosine" };

/* the option table's choices, in enum pl_schedule order (src/train/options.c) */
int pl_schedule_from_name(const char *name)
{
    return pl_option_choice("schedule", name);
}

const char *pl_schedule_name(enum pl_schedule s)
{
    return (unsigned)s < 3 ? sched_names[s] : "?";
}

double pl_lr_at(enum pl_schedule s, double base_lr, int64_t step, int64_t warmup, int64_t total,
                double min_ratio)
{
    if (step < 0) step = 0;
    if (warmup > 0 && step < warmup) return base_lr * (double)(step + 1) / (double)warmup;
    double f = 1.0;
    if (s != PL_SCHED_CONSTANT) {
        int64_t span = total - warmup;
        double prog = span > 0 ? (double)(step - warmup) / (double)span : 1.0;
        if (prog > 1.0) prog = 1.0;
        f = s == PL_SCHED_LINEAR ? 1.0 - prog : 0.5 * (1.0 + cos(M_PI * prog));
        f = min_ratio + (1.0 - min_ratio) * f;
    }
    return base_lr * f;
}

double pl_grad_global_norm(float *const *grads, const int64_t *ns, int count)
{
    double s = 0.0;
    for (int k = 0; k < count; k++) {
        const float *g = grads[k];
        for (int64_t i = 0; i < ns[k]; i++) s += (double)g[i] * (double)g[i];
    }
    return sqrt(s);
}

double pl_clip_grad_norm(float *const *grads, const int64_t *ns, int count, double max_norm)
{
    double norm = pl_grad_global_norm(grads, ns, count);
    if (max_norm <= 0.0 || !isfinite(norm)) return norm;
    double coef = max_norm / (norm + 1e-6);
    if (coef >= 1.0) return norm;
    const float c = (float)coef;
    for (int k = 0; k < count; k++) {
        float *g = grads[k];
        for (int64_t i = 0; i < ns[k]; i++) g[i] *= c;
    }
    return norm;
}
