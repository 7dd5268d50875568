/* kernels_attn.c — causal grouped-query attention forward/backward with a KV cache offset
 * (owner: kernels). Math and shapes in include/peftlua/kernels.h.
 *
 * llm.c style: the forward keeps the softmax probabilities [B,NH,T,Tk] for the backward.
 * The products are BLAS sgemm calls over strided views (a head's rows of q are NH*HD apart,
 * a kv head's rows NKV*HD apart), taken in blocks of QB query rows so that each block only
 * multiplies the keys it can see (the causal triangle costs about half a full square).
 *
 * Forward threads over (b, query head); backward over (b, kv head) because all query heads of
 * one group add into the same dk/dv rows — one thread per group keeps that race-free and the
 * summation order fixed (heads, then query blocks, in order). Inside those regions every
 * pl_sgemm is one single-threaded BLAS call (blas.h), and since every product has the same
 * shape whichever thread runs it, results are bit-identical for any thread count.
 *
 * In compute mode bf16 (gemm16.h) with T >= PL_GEMM16_MIN_ROWS both directions run attn16.c
 * instead (the products in bf16 with f32 sums; softmax and its backward the same f32 loops).
 */
#include "peftlua/kernels.h"
#include "peftlua/alloc.h"
#include "peftlua/blas.h"
#include "kernels_internal.h"

#include <math.h>
#include <string.h>

#define QB 64   /* query rows per block */

void pl_attention_fwd(float *out, float *probs, const float *q, const float *k, const float *v,
                      int64_t B, int64_t T, int64_t past, int64_t Tcap,
                      int64_t NH, int64_t NKV, int64_t HD)
{
    const int64_t Tk = past + T, grp = NH / NKV;
    const int64_t ldq = NH * HD, ldk = NKV * HD;
    const float scale = 1.0f / sqrtf((float)HD);
    if (pl_attn16_fwd(out, probs, q, k, v, B, T, past, Tcap, NH, NKV, HD)) return;   /* compute bf16 */
    #pragma omp parallel for schedule(dynamic, 1) if(PL_K_PAR(B * NH * T * Tk * HD))
    for (int64_t bh = 0; bh < B * NH; bh++) {
        int64_t b = bh / NH, h = bh % NH, g = h / grp;
        const float *Q = q + (b * T * NH + h) * HD;
        const float *Kg = k + (b * Tcap * NKV + g) * HD;
        const float *Vg = v + (b * Tcap * NKV + g) * HD;
        float *O = out + (b * T * NH + h) * HD;
        float *P = probs + (b * NH + h) * T * Tk;
        for (int64_t t0 = 0; t0 < T; t0 += QB) {
            int64_t nt = T - t0 < QB ? T - t0 : QB;
            int64_t nk = past + t0 + nt;                  /* keys visible to this block */
            float *Pb = P + t0 * Tk;
            /* S = scale · Q_blk · K[0:nk]ᵀ */
            pl_sgemm(0, 1, nt, nk, HD, scale, Q + t0 * ldq, ldq, Kg, ldk, 0.0f, Pb, Tk);
            for (int64_t i = 0; i < nt; i++) {
                float *pr = Pb + i * Tk;
                int64_t lim = past + t0 + i;              /* last key this query may see */
                float mx = -INFINITY;
                #pragma omp simd reduction(max:mx)
                for (int64_t j = 0; j <= lim; j++) mx = pr[j] > mx ? pr[j] : mx;
                float sum = 0.0f;
                #pragma omp simd reduction(+:sum)
                for (int64_t j = 0; j <= lim; j++) {
                    pr[j] = pl_k_expf(pr[j] - mx);
                    sum += pr[j];
                }
                float inv = 1.0f / sum;
                #pragma omp simd
                for (int64_t j = 0; j <= lim; j++) pr[j] *= inv;
                for (int64_t j = lim + 1; j < Tk; j++) pr[j] = 0.0f;
            }
            /* O_blk = P_blk[:, 0:nk] · V[0:nk] (masked entries are exact zeros) */
            pl_sgemm(0, 0, nt, HD, nk, 1.0f, Pb, Tk, Vg, ldk, 0.0f, O + t0 * ldq, ldq);
        }
    }
}

enum pl_status pl_attention_bwd(float *dq, float *dk, float *dv, const float *dout,
                                const float *probs, const float *q, const float *k,
                                const float *v, int64_t B, int64_t T, int64_t past, int64_t Tcap,
                                int64_t NH, int64_t NKV, int64_t HD)
{
    const int64_t Tk = past + T, grp = NH / NKV;
    const int64_t ldq = NH * HD, ldk = NKV * HD;
    const float scale = 1.0f / sqrtf((float)HD);
    if (pl_attn16_bwd(dq, dk, dv, dout, probs, q, k, v, B, T, past, Tcap, NH, NKV, HD))
        return PL_OK;                                                    /* compute bf16 */
    int nth = pl_k_max_threads();
    if (nth > B * NKV) nth = (int)(B * NKV);
    if (nth < 1) nth = 1;
    size_t per = (size_t)QB * (size_t)(Tk > 0 ? Tk : 1);
    float *ws = pl_alloc((size_t)nth * per * sizeof(float), PL_MEM_WORKSPACE);
    if (!ws) return pl_fail(PL_ERR_NOMEM, "attention backward: cannot allocate %d blocks of %d x %lld scores",
                            nth, QB, (long long)Tk);
    #pragma omp parallel for schedule(dynamic, 1) num_threads(nth) if(PL_K_PAR(B * NH * T * Tk * HD))
    for (int64_t bg = 0; bg < B * NKV; bg++) {
        int64_t b = bg / NKV, g = bg % NKV;
        float *dS = ws + (size_t)pl_k_thread_id() * per;
        const float *Kg = k + (b * Tcap * NKV + g) * HD;
        const float *Vg = v + (b * Tcap * NKV + g) * HD;
        float *dKg = dk ? dk + (b * Tcap * NKV + g) * HD : NULL;
        float *dVg = dv ? dv + (b * Tcap * NKV + g) * HD : NULL;
        for (int64_t h = g * grp; h < (g + 1) * grp; h++) {
            const float *Q = q + (b * T * NH + h) * HD;
            const float *dO = dout + (b * T * NH + h) * HD;
            float *dQ = dq ? dq + (b * T * NH + h) * HD : NULL;
            const float *P = probs + (b * NH + h) * T * Tk;
            for (int64_t t0 = 0; t0 < T; t0 += QB) {
                int64_t nt = T - t0 < QB ? T - t0 : QB;
                int64_t nk = past + t0 + nt;
                const float *Pb = P + t0 * Tk;
                /* dV[0:nk] += P_blkᵀ · dO_blk */
                if (dVg) pl_sgemm(1, 0, nk, HD, nt, 1.0f, Pb, Tk, dO + t0 * ldq, ldq, 1.0f, dVg, ldk);
                if (!dQ && !dKg) continue;
                /* dP = dO_blk · V[0:nk]ᵀ ;  dS = P ⊙ (dP − Σ_j P dP) · scale */
                pl_sgemm(0, 1, nt, nk, HD, 1.0f, dO + t0 * ldq, ldq, Vg, ldk, 0.0f, dS, nk);
                for (int64_t i = 0; i < nt; i++) {
                    const float *pr = Pb + i * Tk;
                    float *ds = dS + i * nk;
                    int64_t lim = past + t0 + i;
                    float pdp = 0.0f;
                    #pragma omp simd reduction(+:pdp)
                    for (int64_t j = 0; j <= lim; j++) pdp += pr[j] * ds[j];
                    for (int64_t j = 0; j <= lim; j++) ds[j] = pr[j] * (ds[j] - pdp) * scale;
                    for (int64_t j = lim + 1; j < nk; j++) ds[j] = 0.0f;
                }
                /* dQ_blk += dS · K[0:nk];   dK[0:nk] += dSᵀ · Q_blk */
                if (dQ) pl_sgemm(0, 0, nt, HD, nk, 1.0f, dS, nk, Kg, ldk, 1.0f, dQ + t0 * ldq, ldq);
                if (dKg) pl_sgemm(1, 0, nk, HD, nt, 1.0f, dS, nk, Q + t0 * ldq, ldq, 1.0f, dKg, ldk);
            }
        }
    }
    pl_free(ws);
    return PL_OK;
}
