/* dora.c — DoRA (weight-decomposed LoRA) on one projection: initialisation, forward,
 * backward and merge, in HF PEFT's formulation (peft/tuners/lora/dora.py, DoraLinearLayer):
 *
 *   n[o]   = ‖W0[o,:] + s·(B A)[o,:]‖₂          per output row, over the input dimension
 *   g[o]   = m[o] / n[o]                          m: lora_magnitude_vector [out]
 *   z      = x W0ᵀ + s · (x Aᵀ) Bᵀ                [rows, out]
 *   y      = g ⊙ z + b                            (PEFT: base + (g−1)·base + g·s·lora)
 *
 * n is detached in the backward, as PEFT does ("weight_norm = weight_norm.detach()"):
 *   dm[o]  = Σ_rows dy[., o] · z[., o] / n[o]
 *   dz     = dy ⊙ g;  dx = dz W0 + LoRA's dx(dz);  dA, dB = LoRA's gradients with dz.
 * m starts at ‖W0[o,:]‖ (B = 0), so a new adapter leaves the model unchanged.
 *
 * Owner: train. Called from src/adapt/lora.c only (lora_internal.h). The norms depend only on the
 * parameters, so they are cached per adapter and recomputed when struct pl_lora's version
 * moved (an optimizer step, a load, pl_lora_touch).
 */
#include <math.h>
#include <string.h>

#include "peftlua/alloc.h"
#include "peftlua/kernels.h"
#include "peftlua/status.h"
#include "peftlua/tensor.h"
#include "lora_internal.h"

/* The base weight as f32 [out, in] in a workspace the caller frees. */
static float *base_f32(const struct pl_tensor *w, const struct pl_lora_adapter *d)
{
    if (w->ndim != 2 || w->shape[0] != d->out || w->shape[1] != d->in) {
        pl_fail(PL_ERR_ARG, "dora: layer %d %s weight is not [%lld, %lld]", d->layer,
                pl_proj_names[d->proj], (long long)d->out, (long long)d->in);
        return NULL;
    }
    float *W = pl_alloc((size_t)(d->out * d->in) * sizeof(float), PL_MEM_WORKSPACE);
    if (!W) {
        pl_fail(PL_ERR_NOMEM, "dora: out of memory for a %lld x %lld weight", (long long)d->out,
                (long long)d->in);
        return NULL;
    }
    if (pl_tensor_read_f32(w, W) != PL_OK) { pl_free(W); return NULL; }
    return W;
}

/* norm[o] = ‖W[o,:] + scale·(B A)[o,:]‖ (scale 0: ‖W[o,:]‖), summed in double. */
static void row_norms(float *norm, const float *W, const float *A, const float *B, float scale,
                      int64_t out, int64_t in, int64_t r)
{
#pragma omp parallel for schedule(static)
    for (int64_t o = 0; o < out; o++) {
        const float *w = W + (size_t)o * in;
        const float *b = B + (size_t)o * r;
        double ss = 0;
        for (int64_t i = 0; i < in; i++) {
            double v = w[i];
            if (scale != 0.0f) {
                double t = 0;
                for (int64_t k = 0; k < r; k++) t += (double)b[k] * A[(size_t)k * in + i];
                v += (double)scale * t;
            }
            ss += v * v;
        }
        norm[o] = (float)sqrt(ss);
    }
}

enum pl_status pl_dora_init(struct pl_lora *a, struct pl_lora_adapter *d, const struct pl_tensor *w)
{
    float *W = base_f32(w, d);
    if (!W) return PL_ERR_NOMEM;
    row_norms(d->mag, W, d->A, d->B, 0.0f, d->out, d->in, a->cfg.r);
    pl_free(W);
    d->norm_ver = -1;
    return PL_OK;
}

static enum pl_status ensure_norms(struct pl_lora *a, struct pl_lora_adapter *d,
                                   const struct pl_tensor *w)
{
    if (d->norm_ver == a->version) return PL_OK;
    float *W = base_f32(w, d);
    if (!W) return PL_ERR_NOMEM;
    row_norms(d->wnorm, W, d->A, d->B, a->scale, d->out, d->in, a->cfg.r);
    pl_free(W);
    d->norm_ver = a->version;
    return PL_OK;
}

enum pl_status pl_dora_fwd(struct pl_lora *a, struct pl_lora_adapter *d, const struct pl_tensor *w,
                           const struct pl_tensor *b, float *y, const float *x, int64_t n)
{
    enum pl_status st = ensure_norms(a, d, w);
    if (st != PL_OK) return st;
    const int64_t r = a->cfg.r, out = d->out;
    float *xa = a->training ? d->xa : pl_alloc((size_t)(n * r) * sizeof(float), PL_MEM_WORKSPACE);
    if (!xa) return pl_fail(PL_ERR_NOMEM, "dora: out of memory for %lld rows", (long long)n);
    /* y = x W0ᵀ + b + s · xAᵀBᵀ, then z = y − b and y = g ⊙ z + b */
    pl_lora_fwd(y, xa, x, d->A, d->B, a->scale, n, d->in, out, r);
    if (!a->training) pl_free(xa);
    const float *bias = b ? (const float *)pl_tensor_data(b) : NULL;
    float *zs = a->training ? d->ysave : NULL;
    const float *mag = d->mag, *nrm = d->wnorm;
#pragma omp parallel for schedule(static) if (n * out > 65536)
    for (int64_t i = 0; i < n; i++) {
        float *yr = y + (size_t)(i * out);
        for (int64_t o = 0; o < out; o++) {
            float bo = bias ? bias[o] : 0.0f;
            float z = yr[o] - bo;
            if (zs) zs[(size_t)(i * out + o)] = z;
            yr[o] = mag[o] / nrm[o] * z + bo;
        }
    }
    return PL_OK;
}

enum pl_status pl_dora_bwd(struct pl_lora *a, struct pl_lora_adapter *d, const struct pl_tensor *w,
                           float *dx, const float *dy, const float *x, int64_t n)
{
    const int64_t r = a->cfg.r, out = d->out, in = d->in;
    const float *zs = d->ysave, *mag = d->mag, *nrm = d->wnorm;
    float *dz = a->dy_work;
    /* dm[o] = Σ_i dy[i,o] z[i,o] / n[o]  (columns split over threads: fixed order per o) */
#pragma omp parallel for schedule(static) if (n * out > 65536)
    for (int64_t o = 0; o < out; o++) {
        double s = 0;
        for (int64_t i = 0; i < n; i++) s += (double)dy[(size_t)(i * out + o)] * zs[(size_t)(i * out + o)];
        d->dmag[o] += (float)(s / nrm[o]);
    }
#pragma omp parallel for schedule(static) if (n * out > 65536)
    for (int64_t i = 0; i < n; i++)
        for (int64_t o = 0; o < out; o++)
            dz[(size_t)(i * out + o)] = dy[(size_t)(i * out + o)] * (mag[o] / nrm[o]);
    enum pl_status st = PL_OK;
    if (dx) st = pl_linear_bwd(dx, NULL, NULL, dz, x, pl_tensor_data(w), w->dtype, n, in, out);
    if (st != PL_OK) return st;
    return pl_lora_bwd(dx, d->dA, d->dB, dz, d->xa, x, d->A, d->B, a->scale, n, in, out, r);
}

void pl_dora_merge_into(const struct pl_lora *a, const struct pl_lora_adapter *d, float *W)
{
    pl_lora_merge_into(W, d->A, d->B, a->scale, d->out, d->in, a->cfg.r);
    const int64_t in = d->in;
#pragma omp parallel for schedule(static)
    for (int64_t o = 0; o < d->out; o++) {
        float *w = W + (size_t)(o * in);
        double ss = 0;
        for (int64_t i = 0; i < in; i++) ss += (double)w[i] * w[i];
        float g = (float)(d->mag[o] / sqrt(ss));
        for (int64_t i = 0; i < in; i++) w[i] *= g;
    }
}
