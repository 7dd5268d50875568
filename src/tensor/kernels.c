/* kernels.c — element-wise and row-wise layer kernels (owner: kernels): embedding, RMSNorm,
 * RoPE, SwiGLU, residual, cross-entropy. Linear/LoRA live in kernels_linear.c, attention in
 * kernels_attn.c. The math of each kernel is stated in include/peftlua/kernels.h; comments here
 * say why the code is shaped as it is.
 *
 * Determinism: every parallel loop splits work into pieces independent of the thread count
 * (rows, or fixed column chunks) and each output element is reduced by one thread in a fixed
 * order, so results are bit-identical for any OMP_NUM_THREADS.
 */
#include "peftlua/kernels.h"
#include "peftlua/alloc.h"
#include "peftlua/quant.h"
#include "kernels_internal.h"

#include <pthread.h>
#include <stdatomic.h>

#include <math.h>
#include <string.h>
#if defined(__F16C__) && defined(__AVX__)
#include <immintrin.h>
#endif

/* Column chunk for kernels that reduce over rows into a per-column gradient (dW of embedding,
 * dw of RMSNorm): each chunk belongs to one thread, rows are visited in order. */
#define PL_K_COLCHUNK 64

/* ------------------------------------------------------------------------ embedding */

enum pl_status pl_embedding_fwd(float *out, const int32_t *tokens, const void *W,
                                enum pl_dtype wtype, int64_t N, int64_t V, int64_t C)
{
    if ((int)wtype < 0 || (int)wtype >= PL_DTYPE_COUNT)
        return pl_fail(PL_ERR_UNSUPPORTED, "embedding: unknown weight dtype %d", (int)wtype);
    size_t rb = pl_dtype_row_bytes(wtype, C);
    if (rb == 0)
        return pl_fail(PL_ERR_ARG, "embedding: row of %lld elements is not a whole number of %s blocks",
                       (long long)C, pl_dtype_info(wtype)->name);
    for (int64_t n = 0; n < N; n++)
        if (tokens[n] < 0 || tokens[n] >= V)
            return pl_fail(PL_ERR_ARG, "embedding: token id %d at position %lld is outside the vocabulary [0,%lld)",
                           (int)tokens[n], (long long)n, (long long)V);
    const uint8_t *w = W;
    if (wtype == PL_F32) {
        for (int64_t n = 0; n < N; n++)
            memcpy(out + n * C, w + (size_t)tokens[n] * rb, (size_t)C * sizeof(float));
        return PL_OK;
    }
    for (int64_t n = 0; n < N; n++) {
        enum pl_status st = pl_dequant_row(wtype, w + (size_t)tokens[n] * rb, out + n * C, C);
        if (st != PL_OK) return st;
    }
    return PL_OK;
}

void pl_embedding_bwd(float *dW, const float *dout, const int32_t *tokens,
                      int64_t N, int64_t V, int64_t C)
{
    /* A token may repeat, so rows of dW collide: split over columns instead of rows. */
    int64_t nchunk = (C + PL_K_COLCHUNK - 1) / PL_K_COLCHUNK;
    #pragma omp parallel for schedule(static) if(PL_K_PAR(N * C))
    for (int64_t ch = 0; ch < nchunk; ch++) {
        int64_t c0 = ch * PL_K_COLCHUNK, c1 = c0 + PL_K_COLCHUNK < C ? c0 + PL_K_COLCHUNK : C;
        for (int64_t n = 0; n < N; n++) {
            int32_t t = tokens[n];
            if (t < 0 || t >= V) continue;
            float *d = dW + (int64_t)t * C;
            const float *g = dout + n * C;
            for (int64_t c = c0; c < c1; c++) d[c] += g[c];
        }
    }
}

/* ------------------------------------------------------------------------ RMSNorm */

void pl_rmsnorm_fwd(float *out, float *rstd, const float *x, const float *w,
                    int64_t N, int64_t C, float eps)
{
    #pragma omp parallel for schedule(static) if(PL_K_PAR(N * C))
    for (int64_t n = 0; n < N; n++) {
        const float *xr = x + n * C;
        float *o = out + n * C;
        double ss = 0.0;                 /* f64 sum: C up to a few thousand, cheap, exact enough */
        #pragma omp simd reduction(+:ss)
        for (int64_t c = 0; c < C; c++) ss += (double)xr[c] * xr[c];
        float r = (float)(1.0 / sqrt(ss / (double)C + (double)eps));
        if (rstd) rstd[n] = r;
        for (int64_t c = 0; c < C; c++) o[c] = (xr[c] * r) * w[c];
    }
}

void pl_rmsnorm_bwd(float *dx, float *dw, const float *dout, const float *rstd,
                    const float *x, const float *w, int64_t N, int64_t C)
{
    if (dx) {
        #pragma omp parallel for schedule(static) if(PL_K_PAR(N * C))
        for (int64_t n = 0; n < N; n++) {
            const float *xr = x + n * C, *g = dout + n * C;
            float *d = dx + n * C;
            float r = rstd[n];
            double dot = 0.0;
            #pragma omp simd reduction(+:dot)
            for (int64_t c = 0; c < C; c++) dot += (double)g[c] * w[c] * xr[c];
            float k = (float)((double)r * r * r * dot / (double)C);
            for (int64_t c = 0; c < C; c++) d[c] += r * (g[c] * w[c]) - k * xr[c];
        }
    }
    if (dw) {
        int64_t nchunk = (C + PL_K_COLCHUNK - 1) / PL_K_COLCHUNK;
        #pragma omp parallel for schedule(static) if(PL_K_PAR(N * C))
        for (int64_t ch = 0; ch < nchunk; ch++) {
            int64_t c0 = ch * PL_K_COLCHUNK, c1 = c0 + PL_K_COLCHUNK < C ? c0 + PL_K_COLCHUNK : C;
            for (int64_t n = 0; n < N; n++) {
                const float *xr = x + n * C, *g = dout + n * C;
                float r = rstd[n];
                for (int64_t c = c0; c < c1; c++) dw[c] += g[c] * xr[c] * r;
            }
        }
    }
}

/* ------------------------------------------------------------------------ RoPE */

/* cos/sin of pos * theta^(-2i/HD), in f64 then rounded: every path below uses this one
 * function, so a table and a direct computation give the same bits. */
static inline double rope_freq(int64_t i, int64_t HD, double theta)
{
    return pow(theta, -2.0 * (double)i / (double)HD);
}

static inline void rope_cs_f(float *c, float *s, int32_t p, double freq)
{
    double a = (double)p * freq;
    *c = (float)cos(a);
    *s = (float)sin(a);
}

static inline void rope_cs(float *c, float *s, int32_t p, int64_t i, int64_t HD, double theta)
{
    rope_cs_f(c, s, p, rope_freq(i, HD, theta));
}

/* Rotate pairs i0 .. i0+ni-1 of one token's H heads by +angle (sign = 1) or -angle (sign = -1),
 * writing or adding; cs holds (cos, sin) of those pairs. */
static void rope_token(float *out, const float *x, const float *cs, int64_t H, int64_t HD,
                       int64_t i0, int64_t ni, enum pl_rope_mode mode, float sign, int accumulate)
{
    int64_t half = HD / 2;
    for (int64_t h = 0; h < H; h++) {
        const float *xh = x + h * HD;
        float *oh = out + h * HD;
        for (int64_t k = 0; k < ni; k++) {
            int64_t i = i0 + k;
            float c = cs[2 * k], s = sign * cs[2 * k + 1];
            int64_t ia = mode == PL_ROPE_NEOX ? i : 2 * i;
            int64_t ib = mode == PL_ROPE_NEOX ? i + half : 2 * i + 1;
            float a0 = xh[ia], b0 = xh[ib];
            float ra = a0 * c - b0 * s, rb = a0 * s + b0 * c;
            if (accumulate) { oh[ia] += ra; oh[ib] += rb; }
            else            { oh[ia] = ra;  oh[ib] = rb; }
        }
    }
}

/* The table kept across calls while pl_rope_keep(1) is in force (a training step: the same
 * positions for q and k of every layer, forward and backward — 120 tables a SmolLM2 step).
 * One cached table, keyed by everything it depends on; a caller finding it busy (another
 * thread) builds its own as before. */
static pthread_mutex_t rope_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic int rope_keep_on;
static float *rope_tab;
static int64_t rope_tab_n, rope_key_span, rope_key_half, rope_key_hd;
static int32_t rope_key_pmin;
static float rope_key_theta;

void pl_rope_keep(int on)
{
    pthread_mutex_lock(&rope_lock);
    atomic_store(&rope_keep_on, on != 0);
    if (!on) {
        pl_free(rope_tab);
        rope_tab = NULL;
        rope_tab_n = 0;
    }
    pthread_mutex_unlock(&rope_lock);
}

static void rope_fill(float *tab, int32_t pmin, int64_t span, int64_t half, int64_t HD, float theta)
{
    /* the frequencies once (pow per pair, not per pair and position: the same doubles) */
    double freq[256];
    const int hoist = half <= 256;
    if (hoist)
        for (int64_t i = 0; i < half; i++) freq[i] = rope_freq(i, HD, theta);
    #pragma omp parallel for schedule(static) if(PL_K_PAR(span * half * 8))
    for (int64_t r = 0; r < span; r++)
        for (int64_t i = 0; i < half; i++) {
            float *cs = &tab[(r * half + i) * 2];
            if (hoist) rope_cs_f(cs, cs + 1, (int32_t)(pmin + r), freq[i]);
            else rope_cs(cs, cs + 1, (int32_t)(pmin + r), i, HD, theta);
        }
}

/* Positions repeat across a batch (and trig dominates the cost), so when the positions span
 * no more values than there are tokens, the (cos, sin) table of that span is built once;
 * otherwise, or if the table cannot be allocated, each token computes its own row. */
static void rope_apply(float *out, const float *x, const int32_t *pos, int64_t N, int64_t H,
                       int64_t HD, float theta, enum pl_rope_mode mode, float sign, int accumulate)
{
    int64_t half = HD / 2;
    if (N <= 0 || half <= 0) return;
    int32_t pmin = pos[0], pmax = pos[0];
    for (int64_t n = 1; n < N; n++) {
        pmin = pos[n] < pmin ? pos[n] : pmin;
        pmax = pos[n] > pmax ? pos[n] : pmax;
    }
    int64_t span = (int64_t)pmax - pmin + 1;
    if (span <= N && atomic_load(&rope_keep_on) && pthread_mutex_trylock(&rope_lock) == 0) {
        if (!(rope_tab && rope_key_pmin == pmin && rope_key_span == span && rope_key_half == half &&
              rope_key_hd == HD && rope_key_theta == theta)) {
            if (rope_tab_n < span * half * 2) {
                pl_free(rope_tab);
                rope_tab = pl_alloc((size_t)(span * half * 2) * sizeof(float), PL_MEM_WORKSPACE);
                rope_tab_n = rope_tab ? span * half * 2 : 0;
            }
            if (rope_tab) {
                rope_fill(rope_tab, pmin, span, half, HD, theta);
                rope_key_pmin = pmin; rope_key_span = span; rope_key_half = half;
                rope_key_hd = HD; rope_key_theta = theta;
            }
        }
        if (rope_tab) {
            #pragma omp parallel for schedule(static) if(PL_K_PAR(N * H * HD))
            for (int64_t n = 0; n < N; n++)
                rope_token(out + n * H * HD, x + n * H * HD, rope_tab + (pos[n] - pmin) * half * 2, H, HD,
                           0, half, mode, sign, accumulate);
            pthread_mutex_unlock(&rope_lock);
            return;
        }
        pthread_mutex_unlock(&rope_lock);
    }
    float *tab = span <= N ? pl_alloc((size_t)span * (size_t)half * 2 * sizeof(float), PL_MEM_WORKSPACE)
                           : NULL;
    if (tab) {
        rope_fill(tab, pmin, span, half, HD, theta);
        #pragma omp parallel for schedule(static) if(PL_K_PAR(N * H * HD))
        for (int64_t n = 0; n < N; n++)
            rope_token(out + n * H * HD, x + n * H * HD, tab + (pos[n] - pmin) * half * 2, H, HD,
                       0, half, mode, sign, accumulate);
        pl_free(tab);
        return;
    }
    #pragma omp parallel for schedule(static) if(PL_K_PAR(N * half * 8))
    for (int64_t n = 0; n < N; n++) {
        float cs[2 * 64];              /* pairs in slices of 64 keep the stack small */
        for (int64_t i0 = 0; i0 < half; i0 += 64) {
            int64_t ni = half - i0 < 64 ? half - i0 : 64;
            for (int64_t k = 0; k < ni; k++) rope_cs(&cs[2 * k], &cs[2 * k + 1], pos[n], i0 + k, HD, theta);
            rope_token(out + n * H * HD, x + n * H * HD, cs, H, HD, i0, ni, mode, sign, accumulate);
        }
    }
}

void pl_rope_fwd(float *out, const float *x, const int32_t *pos, int64_t N, int64_t H,
                 int64_t HD, float theta, enum pl_rope_mode mode)
{
    rope_apply(out, x, pos, N, H, HD, theta, mode, 1.0f, 0);
}

void pl_rope_bwd(float *dx, const float *dout, const int32_t *pos, int64_t N, int64_t H,
                 int64_t HD, float theta, enum pl_rope_mode mode)
{
    /* The rotation is orthogonal: its transpose is the rotation by -angle. */
    rope_apply(dx, dout, pos, N, H, HD, theta, mode, -1.0f, 1);
}

/* ------------------------------------------------------------------------ SwiGLU */

void pl_swiglu_fwd(float *out, const float *gate, const float *up, int64_t N)
{
    #pragma omp parallel for simd schedule(static) if(PL_K_PAR(N))
    for (int64_t i = 0; i < N; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + pl_k_expf(-g)) * up[i];
    }
}

void pl_swiglu_bwd(float *dgate, float *dup, const float *dout, const float *gate,
                   const float *up, int64_t N)
{
    #pragma omp parallel for simd schedule(static) if(PL_K_PAR(N))
    for (int64_t i = 0; i < N; i++) {
        float g = gate[i];
        float s = 1.0f / (1.0f + pl_k_expf(-g));
        if (dgate) dgate[i] += dout[i] * up[i] * s * (1.0f + g * (1.0f - s));
        if (dup) dup[i] += dout[i] * g * s;
    }
}

/* ------------------------------------------------------------------------ residual */

void pl_residual_fwd(float *out, const float *a, const float *b, int64_t N)
{
    #pragma omp parallel for schedule(static) if(PL_K_PAR(N))
    for (int64_t i = 0; i < N; i++) out[i] = a[i] + b[i];
}

void pl_residual_bwd(float *da, float *db, const float *dout, int64_t N)
{
    #pragma omp parallel for schedule(static) if(PL_K_PAR(N))
    for (int64_t i = 0; i < N; i++) {
        if (da) da[i] += dout[i];
        if (db) db[i] += dout[i];
    }
}

/* ------------------------------------------------------------------------ fill, copy */

/* Large buffers in pieces of whole 4 KiB pages shared by the threads: a training step's
 * backward zeroes and copies ~700 MiB of activation gradients, and one thread's memset left
 * the other spinning (~4% of a 2-thread quickstart step). */
#define FILL_PIECE ((int64_t)1 << 16)   /* floats: 256 KiB */

/* dst[0..n) = src[0..n), or 0 where src is NULL. */
static void fill_pieces(float *dst, const float *src, int64_t n)
{
    if (n <= 0) return;
    const int64_t np = (n + FILL_PIECE - 1) / FILL_PIECE;
    #pragma omp parallel for schedule(static) if(np > 1)
    for (int64_t p = 0; p < np; p++) {
        const int64_t i = p * FILL_PIECE, m = n - i < FILL_PIECE ? n - i : FILL_PIECE;
        if (src) memcpy(dst + i, src + i, (size_t)m * sizeof(float));
        else memset(dst + i, 0, (size_t)m * sizeof(float));
    }
}

void pl_fill_zero(float *x, int64_t n) { fill_pieces(x, NULL, n); }

void pl_copy_f32(float *dst, const float *src, int64_t n) { fill_pieces(dst, src, n); }

/* ------------------------------------------------------------------------ cross-entropy */

enum pl_status pl_crossentropy_fwd(float *losses, float *lse, double *mean, int64_t *count,
                                   const float *logits, const int32_t *targets,
                                   int64_t N, int64_t V)
{
    for (int64_t n = 0; n < N; n++)
        if (targets[n] >= V)
            return pl_fail(PL_ERR_ARG, "cross-entropy: target %d at position %lld is outside the vocabulary [0,%lld)",
                           (int)targets[n], (long long)n, (long long)V);
    #pragma omp parallel for schedule(static) if(PL_K_PAR(N * V))
    for (int64_t n = 0; n < N; n++) {
        const float *l = logits + n * V;
        float mx = l[0];
        #pragma omp simd reduction(max:mx)
        for (int64_t v = 1; v < V; v++) mx = l[v] > mx ? l[v] : mx;
        /* The simd sum keeps a fixed number of lanes, so its order is fixed per build. */
        float s = 0.0f;
        #pragma omp simd reduction(+:s)
        for (int64_t v = 0; v < V; v++) s += pl_k_expf(l[v] - mx);
        float z = mx + logf(s);
        lse[n] = z;
        losses[n] = targets[n] < 0 ? 0.0f : z - l[targets[n]];
    }
    /* The mean is reduced serially in row order, so it does not depend on the thread count. */
    double sum = 0.0;
    int64_t cnt = 0;
    for (int64_t n = 0; n < N; n++) {
        if (targets[n] < 0) continue;
        cnt++;
        sum += losses[n];
    }
    if (mean) *mean = cnt ? sum / (double)cnt : 0.0;
    if (count) *count = cnt;
    return PL_OK;
}

void pl_crossentropy_bwd(float *dlogits, const float *lse, const float *logits,
                         const int32_t *targets, float scale, int64_t N, int64_t V)
{
    #pragma omp parallel for schedule(static) if(PL_K_PAR(N * V))
    for (int64_t n = 0; n < N; n++) {
        float *d = dlogits + n * V;
        const float *l = logits + n * V;
        int32_t t = targets[n];
        if (t < 0 || t >= V) {
            memset(d, 0, (size_t)V * sizeof(float));
            continue;
        }
        float z = lse[n];
        #pragma omp simd
        for (int64_t v = 0; v < V; v++) d[v] = scale * pl_k_expf(l[v] - z);
        d[t] -= scale;
    }
}

/* ------------------------------------------------------------------------ 16-bit activations */

/* Elements per parallel piece of the conversions (a piece boundary never changes a result:
 * every element is converted on its own). */
#define PL_K_CVT_CHUNK 8192

static inline uint16_t act_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    /* NaN: keep it a (quiet) NaN, since adding the rounding bias could carry it into inf */
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

static inline float act_bf16_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

void pl_act16_store(uint16_t *dst, const float *src, int64_t n, enum pl_dtype t)
{
    const int64_t nch = (n + PL_K_CVT_CHUNK - 1) / PL_K_CVT_CHUNK;
    #pragma omp parallel for schedule(static) if(PL_K_PAR(n))
    for (int64_t ch = 0; ch < nch; ch++) {
        int64_t i = ch * PL_K_CVT_CHUNK, e = i + PL_K_CVT_CHUNK < n ? i + PL_K_CVT_CHUNK : n;
        if (t == PL_F16) {
#if defined(__F16C__) && defined(__AVX__)
            for (; i + 8 <= e; i += 8)
                _mm_storeu_si128((__m128i *)(dst + i),
                                 _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
#endif
            for (; i < e; i++) dst[i] = pl_f32_to_f16(src[i]);
        } else {
            #pragma omp simd
            for (int64_t j = i; j < e; j++) dst[j] = act_bf16(src[j]);
        }
    }
}

void pl_act16_load(float *dst, const uint16_t *src, int64_t n, enum pl_dtype t)
{
    const int64_t nch = (n + PL_K_CVT_CHUNK - 1) / PL_K_CVT_CHUNK;
    #pragma omp parallel for schedule(static) if(PL_K_PAR(n))
    for (int64_t ch = 0; ch < nch; ch++) {
        int64_t i = ch * PL_K_CVT_CHUNK, e = i + PL_K_CVT_CHUNK < n ? i + PL_K_CVT_CHUNK : n;
        if (t == PL_F16) {
#if defined(__F16C__) && defined(__AVX__)
            for (; i + 8 <= e; i += 8)
                _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
#endif
            for (; i < e; i++) dst[i] = pl_f16_to_f32(src[i]);
        } else {
            #pragma omp simd
            for (int64_t j = i; j < e; j++) dst[j] = act_bf16_f32(src[j]);
        }
    }
}
