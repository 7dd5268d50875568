/* kernels_attn.c — causal grouped-query attention forward/backward with a KV cache offset
 * (owner: kernels). Math and shapes in include/peftlua/kernels.h.
 *
 * llm.c style: the forward keeps the softmax probabilities [B,NH,T,Tk] for the backward.
 * Forward threads over (b, query head); backward over (b, kv head) because the query heads of
 * one group all add into the same dk/dv rows — one thread per group keeps that race-free and
 * the summation order fixed (heads, then tokens, in order), so results do not depend on the
 * thread count.
 */
#include "peftlua/kernels.h"
#include "peftlua/alloc.h"
#include "kernels_internal.h"

#include <math.h>
#include <string.h>

void pl_attention_fwd(float *out, float *probs, const float *q, const float *k, const float *v,
                      int64_t B, int64_t T, int64_t past, int64_t Tcap,
                      int64_t NH, int64_t NKV, int64_t HD)
{
    const int64_t Tk = past + T, grp = NH / NKV;
    const float scale = 1.0f / sqrtf((float)HD);
    #pragma omp parallel for schedule(dynamic, 1)
    for (int64_t bh = 0; bh < B * NH; bh++) {
        int64_t b = bh / NH, h = bh % NH, g = h / grp;
        for (int64_t t = 0; t < T; t++) {
            const float *qr = q + ((b * T + t) * NH + h) * HD;
            float *pr = probs + ((b * NH + h) * T + t) * Tk;
            float *o = out + ((b * T + t) * NH + h) * HD;
            int64_t lim = past + t;                       /* last key this query may see */
            float mx = -INFINITY;
            for (int64_t j = 0; j <= lim; j++) {
                float s = pl_k_dot(qr, k + ((b * Tcap + j) * NKV + g) * HD, HD) * scale;
                pr[j] = s;
                mx = s > mx ? s : mx;
            }
            float sum = 0.0f;
            for (int64_t j = 0; j <= lim; j++) {
                pr[j] = expf(pr[j] - mx);
                sum += pr[j];
            }
            float inv = 1.0f / sum;
            for (int64_t j = 0; j <= lim; j++) pr[j] *= inv;
            for (int64_t j = lim + 1; j < Tk; j++) pr[j] = 0.0f;
            memset(o, 0, (size_t)HD * sizeof(float));
            for (int64_t j = 0; j <= lim; j++)
                pl_k_axpy(o, pr[j], v + ((b * Tcap + j) * NKV + g) * HD, HD);
        }
    }
}

enum pl_status pl_attention_bwd(float *dq, float *dk, float *dv, const float *dout,
                                const float *probs, const float *q, const float *k,
                                const float *v, int64_t B, int64_t T, int64_t past, int64_t Tcap,
                                int64_t NH, int64_t NKV, int64_t HD)
{
    const int64_t Tk = past + T, grp = NH / NKV;
    const float scale = 1.0f / sqrtf((float)HD);
    int nth = pl_k_max_threads();
    float *ws = pl_alloc((size_t)nth * (size_t)(Tk > 0 ? Tk : 1) * sizeof(float), PL_MEM_WORKSPACE);
    if (!ws) return pl_fail(PL_ERR_NOMEM, "attention backward: cannot allocate %d rows of %lld scores",
                            nth, (long long)Tk);
    #pragma omp parallel for schedule(dynamic, 1) num_threads(nth)
    for (int64_t bg = 0; bg < B * NKV; bg++) {
        int64_t b = bg / NKV, g = bg % NKV;
        float *ds = ws + (size_t)pl_k_thread_id() * (size_t)Tk;
        for (int64_t h = g * grp; h < (g + 1) * grp; h++) {
            for (int64_t t = 0; t < T; t++) {
                const float *qr = q + ((b * T + t) * NH + h) * HD;
                const float *dor = dout + ((b * T + t) * NH + h) * HD;
                const float *pr = probs + ((b * NH + h) * T + t) * Tk;
                int64_t lim = past + t;
                float pdp = 0.0f;
                for (int64_t j = 0; j <= lim; j++) {
                    const float *vr = v + ((b * Tcap + j) * NKV + g) * HD;
                    ds[j] = pl_k_dot(dor, vr, HD);          /* dp[j] */
                    pdp += pr[j] * ds[j];
                    if (dv) pl_k_axpy(dv + ((b * Tcap + j) * NKV + g) * HD, pr[j], dor, HD);
                }
                for (int64_t j = 0; j <= lim; j++) ds[j] = pr[j] * (ds[j] - pdp) * scale;
                float *dqr = dq ? dq + ((b * T + t) * NH + h) * HD : NULL;
                for (int64_t j = 0; j <= lim; j++) {
                    if (dqr) pl_k_axpy(dqr, ds[j], k + ((b * Tcap + j) * NKV + g) * HD, HD);
                    if (dk) pl_k_axpy(dk + ((b * Tcap + j) * NKV + g) * HD, ds[j], qr, HD);
                }
            }
        }
    }
    pl_free(ws);
    return PL_OK;
}
