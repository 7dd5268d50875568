/* ia3.c — IA3 on one projection: forward, backward and merge, in HF PEFT's formulation
 * (peft/tuners/ia3/layer.py, Linear): a learned vector l ("ia3_l", initialised to ones)
 *   output scaling (k_proj, v_proj):      y = l ⊙ (x Wᵀ + b)        l: [out]
 *     dl[o] = Σ_rows dy[., o] · (x Wᵀ + b)[., o];   dx = (dy ⊙ l) W
 *   input scaling (feedforward, down_proj): y = (x ⊙ l) Wᵀ + b      l: [in]
 *     t = dy W;  dl[i] = Σ_rows t[., i] · x[., i];  dx = t ⊙ l
 * Owner: train. Called from src/adapt/lora.c only (lora_internal.h).
 */
#include <string.h>

#include "peftlua/alloc.h"
#include "peftlua/kernels.h"
#include "peftlua/status.h"
#include "peftlua/tensor.h"
#include "lora_internal.h"

const float *pl_ia3_in(struct pl_lora *a, struct pl_lora_adapter *d, const float *x, int64_t n)
{
    const int64_t in = d->in, N = n * in;
    if (N > a->xs_cap) {
        pl_free(a->xs);
        a->xs = pl_alloc((size_t)N * sizeof(float), PL_MEM_WORKSPACE);
        a->xs_cap = a->xs ? N : 0;
        if (!a->xs) {
            pl_fail(PL_ERR_NOMEM, "ia3: out of memory for %lld scaled input rows", (long long)n);
            return NULL;
        }
    }
    float *xs = a->xs;
    const float *l = d->vec;
#pragma omp parallel for schedule(static) if (N > 65536)
    for (int64_t i = 0; i < n; i++)
        for (int64_t k = 0; k < in; k++) xs[(size_t)(i * in + k)] = x[(size_t)(i * in + k)] * l[k];
    return xs;
}

enum pl_status pl_ia3_out_fwd(struct pl_lora *a, struct pl_lora_adapter *d, float *y, int64_t n)
{
    const int64_t out = d->out;
    float *ys = a->training ? d->ysave : NULL;
    const float *l = d->vec;
#pragma omp parallel for schedule(static) if (n * out > 65536)
    for (int64_t i = 0; i < n; i++) {
        float *yr = y + (size_t)(i * out);
        if (ys) memcpy(ys + (size_t)(i * out), yr, (size_t)out * sizeof(float));
        for (int64_t o = 0; o < out; o++) yr[o] *= l[o];
    }
    return PL_OK;
}

enum pl_status pl_ia3_bwd(struct pl_lora *a, struct pl_lora_adapter *d, const struct pl_tensor *w,
                          float *dx, const float *dy, const float *x, int64_t n)
{
    const int64_t in = d->in, out = d->out;
    const float *l = d->vec;
    float *t = a->dy_work;
    enum pl_status st;
    if (!d->ff) {
        const float *ys = d->ysave;
#pragma omp parallel for schedule(static) if (n * out > 65536)
        for (int64_t o = 0; o < out; o++) {
            double s = 0;
            for (int64_t i = 0; i < n; i++) s += (double)dy[(size_t)(i * out + o)] * ys[(size_t)(i * out + o)];
            d->dvec[o] += (float)s;
        }
        if (!dx) return PL_OK;
#pragma omp parallel for schedule(static) if (n * out > 65536)
        for (int64_t i = 0; i < n; i++)
            for (int64_t o = 0; o < out; o++) t[(size_t)(i * out + o)] = dy[(size_t)(i * out + o)] * l[o];
        return pl_linear_bwd(dx, NULL, NULL, t, x, pl_tensor_data(w), w->dtype, n, in, out);
    }
    memset(t, 0, (size_t)(n * in) * sizeof(float));
    if ((st = pl_linear_bwd(t, NULL, NULL, dy, x, pl_tensor_data(w), w->dtype, n, in, out)) != PL_OK)
        return st;
#pragma omp parallel for schedule(static) if (n * in > 65536)
    for (int64_t k = 0; k < in; k++) {
        double s = 0;
        for (int64_t i = 0; i < n; i++) s += (double)t[(size_t)(i * in + k)] * x[(size_t)(i * in + k)];
        d->dvec[k] += (float)s;
    }
    if (dx) {
#pragma omp parallel for schedule(static) if (n * in > 65536)
        for (int64_t i = 0; i < n; i++)
            for (int64_t k = 0; k < in; k++) dx[(size_t)(i * in + k)] += t[(size_t)(i * in + k)] * l[k];
    }
    return PL_OK;
}

void pl_ia3_merge_into(const struct pl_lora_adapter *d, float *W, float *bias)
{
    const int64_t in = d->in, out = d->out;
    const float *l = d->vec;
#pragma omp parallel for schedule(static)
    for (int64_t o = 0; o < out; o++) {
        float *w = W + (size_t)(o * in);
        if (d->ff) for (int64_t k = 0; k < in; k++) w[k] *= l[k];
        else for (int64_t k = 0; k < in; k++) w[k] *= l[o];
    }
    if (bias && !d->ff)
        for (int64_t o = 0; o < out; o++) bias[o] *= l[o];
}
