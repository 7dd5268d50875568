/* optim.h — optimizers, learning-rate schedules and gradient clipping over flat f32 vectors.
 *
 * Torch7-optim style: each optimizer is one small function that updates a flat
 * parameter vector in place from a flat gradient vector and its own flat state vectors. The
 * trainer lays every trained parameter (LoRA A/B, or the f32 master copy of every weight in
 * full fine-tuning) out contiguously, so one call updates everything.
 *
 * Math (matches torch.optim, checked against it by tests/ref/train/optim_ref.py):
 *   AdamW  (decoupled weight decay, Loshchilov & Hutter), step t >= 1:
 *     p ← p − lr·wd·p
 *     m ← β1·m + (1−β1)·g            v ← β2·v + (1−β2)·g²
 *     p ← p − (lr / (1−β1^t)) · m / (sqrt(v) / sqrt(1−β2^t) + eps)
 *   SGD with momentum (torch.optim.SGD):
 *     g ← g + wd·p
 *     first step: b ← g;  later: b ← μ·b + (1−dampening)·g
 *     nesterov: g ← g + μ·b, else g ← b;   p ← p − lr·g
 *   Lion (Chen et al. 2023, Algorithm 2; not in torch.optim — tests/ref/train/lion_ref.py
 *   writes the algorithm in torch ops):
 *     c ← β1·m + (1−β1)·g;   p ← p − lr·wd·p;   p ← p − lr·sign(c)   (sign(0) = 0)
 *     m ← β2·m + (1−β2)·g    (the paper's defaults: β1 0.9, β2 0.99, lr 3-10x below AdamW's)
 *   Schedules (factor × base rate; 0-based step, S total steps, W warmup steps):
 *     warmup (step < W): (step+1)/W — the first update is not wasted at rate 0
 *     then constant: 1;  linear: max(0, (S−step)/(S−W));  cosine: 0.5·(1+cos(π·(step−W)/(S−W)))
 *     and a floor: factor ← min_ratio + (1−min_ratio)·factor after warmup.
 *   Clipping (torch.nn.utils.clip_grad_norm_): n = sqrt(Σ g²) over all vectors;
 *     if max_norm > 0: g ← g · min(1, max_norm / (n + 1e-6)).
 *
 * Determinism: every function is a fixed-order loop (reductions in double, in index order), so
 * results depend only on the inputs, never on threads.
 *
 * Example:
 *   struct pl_adamw_cfg c = pl_adamw_defaults();  c.weight_decay = 0.01;
 *   float lr = pl_lr_at(PL_SCHED_COSINE, 3e-4, step, warmup, total, 0.0);
 *   double norm = pl_clip_grad_norm(&grad, &n, 1, 1.0);
 *   pl_adamw_step(param, grad, m, v, n, &c, lr, step + 1);
 */
#ifndef PEFTLUA_OPTIM_H
#define PEFTLUA_OPTIM_H

#include <stdint.h>
#include "peftlua/status.h"

struct pl_adamw_cfg {
    double beta1, beta2, eps, weight_decay;
};
struct pl_adamw_cfg pl_adamw_defaults(void);   /* 0.9, 0.999, 1e-8, 0.01 (torch defaults) */

/* One AdamW update of n parameters. m, v: state vectors (zero before the first step).
 * t: 1-based step count (for bias correction). */
void pl_adamw_step(float *param, const float *grad, float *m, float *v, int64_t n,
                   const struct pl_adamw_cfg *cfg, double lr, int64_t t);

struct pl_sgd_cfg {
    double momentum, dampening, weight_decay;
    int nesterov;
};
/* One SGD update. buf: momentum buffer (unused when momentum == 0). first: nonzero on the
 * first step (the buffer is initialised with the gradient, as torch does). */
void pl_sgd_step(float *param, const float *grad, float *buf, int64_t n,
                 const struct pl_sgd_cfg *cfg, double lr, int first);

/* One Lion update of n parameters; m: the momentum (zero before the first step). */
void pl_lion_step(float *param, const float *grad, float *m, int64_t n, double beta1,
                  double beta2, double weight_decay, double lr);

/* The optimizer table. Every optimizer reads what it needs from one set of hyper-parameters
 * and keeps n_state vectors of n floats (zero before the first step) per trained vector. */
#define PL_OPTIM_MAX_STATE 2
struct pl_optim_hparams {
    double beta1, beta2, eps, weight_decay, momentum;
    int nesterov;
};
/* One update; t: 1-based count of applied updates (bias correction, SGD's first step). */
typedef void (*pl_optim_step_fn)(float *param, const float *grad, float *const *state,
                                 int64_t n, const struct pl_optim_hparams *h, double lr, int64_t t);
struct pl_optimizer {
    const char *name;       /* as users spell it: "adamw", "sgd", "lion" */
    int n_state;            /* state vectors per trained vector (<= PL_OPTIM_MAX_STATE) */
    pl_optim_step_fn step;
    const char *help;
};
int pl_optimizer_count(void);
/* Entry `kind` (0 .. count-1; the index is what a trainer configuration and a checkpoint
 * store), NULL when out of range. */
const struct pl_optimizer *pl_optimizer_get(int kind);
/* Index of the optimizer called name, -1 if none. */
int pl_optimizer_find(const char *name);

enum pl_schedule { PL_SCHED_CONSTANT = 0, PL_SCHED_LINEAR, PL_SCHED_COSINE };
/* "constant" | "linear" | "cosine" → enum; -1 if unknown. */
int pl_schedule_from_name(const char *name);
const char *pl_schedule_name(enum pl_schedule s);

/* Learning rate for 0-based optimizer step `step` of `total` steps with `warmup` warmup steps
 * (formulas above; steps past `total` keep the final factor). */
double pl_lr_at(enum pl_schedule s, double base_lr, int64_t step, int64_t warmup, int64_t total,
                double min_ratio);

/* Global L2 norm of `count` vectors (grads[i] has ns[i] floats), accumulated in double. */
double pl_grad_global_norm(float *const *grads, const int64_t *ns, int count);
/* Clip in place to max_norm (<= 0: no clipping). Returns the norm before clipping. A
 * non-finite norm leaves the gradients unchanged and is returned as is (callers skip the step). */
double pl_clip_grad_norm(float *const *grads, const int64_t *ns, int count, double max_norm);

#endif
