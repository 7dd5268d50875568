/* test_kernels.c — layer kernels of include/peftlua/kernels.h (owner: kernels).
 *
 * 1. Every backward kernel against central finite differences of L = Σ out ⊙ R (R random), the
 *    loss accumulated in f64 and the step divided by the exactly representable f32 difference.
 *    Criterion: ‖g − g_fd‖₂ / ‖g_fd‖₂ ≤ 2e-3 (f32 kernels, h = 1e-2; measured errors are ~1e-5).
 * 2. Forward outputs and gradients against PyTorch float64 autograd goldens
 *    (tests/ref/kernels/kernels_golden.bin, from tests/ref/kernels/make_goldens.py):
 *    |c − ref| ≤ 1e-5 + 1e-4·|ref| element-wise.
 * 3. Linear over Q8_0, Q4_1, Q4_K, NF4, f16, bf16 weights equals dequantise-then-f32-linear
 *    within 1e-5 of the output's max magnitude (forward and dx), with a workspace far below a
 *    whole f32 copy of the weight.
 * 4. Thread-count independence: 1 vs 2 threads bit-identical for pl_sgemm, the linear (f32
 *    and quantised, fwd and bwd), LoRA, attention (fwd, bwd), RMSNorm, embedding, cross-entropy.
 * 5. pl_sgemm (every transpose, split and unsplit shapes) against f64 loops.
 * 6. Bad arguments give a status and a one-line message.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "peftlua/alloc.h"
#include "peftlua/blas.h"
#include "peftlua/kernels.h"
#include "peftlua/quant.h"
#include "peftlua/status.h"
#include "peftlua/tensor.h"
#include "../../src/tensor/kernels_internal.h"   /* pl_k_expf: the kernels' own exp */

#define GOLDEN "tests/ref/kernels/kernels_golden.bin"
#define FD_H 1e-2f
#define FD_TOL 2e-3

static void set_threads(int n)
{
#ifdef _OPENMP
    omp_set_num_threads(n);
#else
    (void)n;
#endif
}

/* ------------------------------------------------------------------ helpers */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static float frand(void)   /* uniform in [-1, 1) */
{
    rng_state ^= rng_state << 13; rng_state ^= rng_state >> 7; rng_state ^= rng_state << 17;
    return (float)((double)(rng_state >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}
static float *rnd(int64_t n, float scale)
{
    float *p = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) p[i] = frand() * scale;
    return p;
}
static float *zeros(int64_t n) { return calloc((size_t)n, sizeof(float)); }

static double dot_d(const float *a, const float *b, int64_t n)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

typedef double (*loss_fn)(void *ctx);

/* Central differences of f over every element of param; returns ‖g − fd‖ / ‖fd‖. */
static double fd_rel_err(loss_fn f, void *ctx, float *param, int64_t n, const float *g)
{
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        float save = param[i];
        float up = save + FD_H, dn = save - FD_H;
        param[i] = up;  double lp = f(ctx);
        param[i] = dn;  double lm = f(ctx);
        param[i] = save;
        double fd = (lp - lm) / ((double)up - (double)dn);
        num += (g[i] - fd) * (g[i] - fd);
        den += fd * fd;
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

#define ASSERT_FD(f, ctx, param, n, g, what) do {                                   \
        double e_ = fd_rel_err(f, ctx, param, n, g);                                \
        print_message("  fd %-24s rel err %.2e\n", what, e_);                       \
        if (!(e_ <= FD_TOL)) fail_msg("%s: finite-difference relative error %.3g > %.1g", \
                                       what, e_, FD_TOL);                           \
    } while (0)

/* ------------------------------------------------------------------ golden file */

struct rec { char name[33]; int kind, ndim, shape[4]; int64_t n; void *data; };
static struct rec *recs;
static int nrecs;

static int load_goldens(void **state)
{
    (void)state;
    FILE *f = fopen(GOLDEN, "rb");
    if (!f) { fprintf(stderr, "cannot open %s (run from the repository root)\n", GOLDEN); return -1; }
    char magic[8]; int32_t hdr[2];
    if (fread(magic, 1, 8, f) != 8 || memcmp(magic, "PLKERNEL", 8) != 0 ||
        fread(hdr, 4, 2, f) != 2 || hdr[0] != 1) { fclose(f); return -1; }
    nrecs = hdr[1];
    recs = calloc((size_t)nrecs, sizeof *recs);
    for (int i = 0; i < nrecs; i++) {
        struct rec *r = &recs[i];
        int32_t h[6];
        if (fread(r->name, 1, 32, f) != 32 || fread(h, 4, 6, f) != 6) { fclose(f); return -1; }
        r->kind = h[0]; r->ndim = h[1];
        r->n = 1;
        for (int d = 0; d < 4; d++) { r->shape[d] = h[2 + d]; r->n *= h[2 + d]; }
        r->data = malloc((size_t)r->n * 4);
        if (fread(r->data, 4, (size_t)r->n, f) != (size_t)r->n) { fclose(f); return -1; }
    }
    fclose(f);
    return 0;
}

static int free_goldens(void **state)
{
    (void)state;
    for (int i = 0; i < nrecs; i++) free(recs[i].data);
    free(recs);
    return 0;
}

static struct rec *grec(const char *name)
{
    for (int i = 0; i < nrecs; i++)
        if (strcmp(recs[i].name, name) == 0) return &recs[i];
    fail_msg("golden record %s missing", name);
    return NULL;
}
static float *gf(const char *name) { return (float *)grec(name)->data; }
static int32_t *gi(const char *name) { return (int32_t *)grec(name)->data; }

static void assert_close(const float *c, const char *refname, int64_t n)
{
    struct rec *r = grec(refname);
    assert_int_equal(r->n, n);
    const float *ref = r->data;
    for (int64_t i = 0; i < n; i++)
        if (!(fabsf(c[i] - ref[i]) <= 1e-5f + 1e-4f * fabsf(ref[i])))
            fail_msg("%s[%lld]: got %.8g, PyTorch %.8g", refname, (long long)i, c[i], ref[i]);
}

/* ------------------------------------------------------------------ RMSNorm */

struct rms_ctx { float *x, *w, *R, *out, *rstd; int64_t N, C; };
static double rms_loss(void *p)
{
    struct rms_ctx *c = p;
    pl_rmsnorm_fwd(c->out, c->rstd, c->x, c->w, c->N, c->C, 1e-5f);
    return dot_d(c->out, c->R, c->N * c->C);
}

static void test_rmsnorm_fd(void **state)
{
    (void)state;
    struct rms_ctx c = { rnd(5 * 12, 1.5f), rnd(12, 1.0f), rnd(5 * 12, 1.0f), zeros(60), zeros(5), 5, 12 };
    float *dx = zeros(60), *dw = zeros(12);
    rms_loss(&c);
    pl_rmsnorm_bwd(dx, dw, c.R, c.rstd, c.x, c.w, 5, 12);
    ASSERT_FD(rms_loss, &c, c.x, 60, dx, "rmsnorm dx");
    ASSERT_FD(rms_loss, &c, c.w, 12, dw, "rmsnorm dw");
    /* accumulation: a second backward doubles the gradients */
    float dx1 = dx[7], dw1 = dw[3];
    pl_rmsnorm_bwd(dx, dw, c.R, c.rstd, c.x, c.w, 5, 12);
    assert_float_equal(dx[7], 2 * dx1, 1e-6f * fabsf(dx1) + 1e-12f);
    assert_float_equal(dw[3], 2 * dw1, 1e-6f * fabsf(dw1) + 1e-12f);
    free(c.x); free(c.w); free(c.R); free(c.out); free(c.rstd); free(dx); free(dw);
}

static void test_rmsnorm_golden(void **state)
{
    (void)state;
    float y[96], rstd[6], dx[96] = {0}, dw[16] = {0};
    pl_rmsnorm_fwd(y, rstd, gf("rms.x"), gf("rms.w"), 6, 16, 1e-5f);
    assert_close(y, "rms.y", 96);
    pl_rmsnorm_bwd(dx, dw, gf("rms.dout"), rstd, gf("rms.x"), gf("rms.w"), 6, 16);
    assert_close(dx, "rms.dx", 96);
    assert_close(dw, "rms.dw", 16);
}

/* The row sums (Σx², Σ g·w·x) are f64 `omp simd` reductions (lanes summed in the compiler's
 * fixed order): rstd and dx against the sequential f64 sums of the kernel before, on SmolLM2's
 * row size: every rstd and dx within 1 ulp of them (an f64 sum's reordering moves it by ~1e-16
 * relatively, far inside one f32 ulp, so nearly all are the same bits: at least 99.9%). */
static void test_rmsnorm_sums(void **state)
{
    (void)state;
    const int64_t N = 2000, C = 576;
    float *x = rnd(N * C, 2.0f), *w = rnd(C, 1.0f), *g = rnd(N * C, 1.0f);
    float *y = zeros(N * C), *rs = zeros(N), *dx = zeros(N * C);
    pl_rmsnorm_fwd(y, rs, x, w, N, C, 1e-5f);
    pl_rmsnorm_bwd(dx, NULL, g, rs, x, w, N, C);
    int64_t same = 0, same_dx = 0;
    for (int64_t n = 0; n < N; n++) {
        const float *xr = x + n * C, *gr = g + n * C;
        double ss = 0.0, dot = 0.0;
        for (int64_t c = 0; c < C; c++) ss += (double)xr[c] * xr[c];
        float r = (float)(1.0 / sqrt(ss / (double)C + (double)1e-5f));
        assert_true(fabsf(r - rs[n]) <= nextafterf(fabsf(r), INFINITY) - fabsf(r));
        same += r == rs[n];
        for (int64_t c = 0; c < C; c++) dot += (double)gr[c] * w[c] * xr[c];
        float k = (float)((double)rs[n] * rs[n] * rs[n] * dot / (double)C);
        for (int64_t c = 0; c < C; c++) {
            float d = rs[n] * (gr[c] * w[c]) - k * xr[c];
            float ulp = nextafterf(fabsf(d), INFINITY) - fabsf(d);
            assert_true(fabsf(d - dx[n * C + c]) <= ulp);
            same_dx += d == dx[n * C + c];
        }
    }
    printf("  rmsnorm sums: rstd the same bits in %lld of %lld rows, dx in %lld of %lld\n",
           (long long)same, (long long)N, (long long)same_dx, (long long)(N * C));
    assert_true(same >= N - N / 1000 && same_dx >= N * C - N * C / 1000);
    free(x); free(w); free(g); free(y); free(rs); free(dx);
}

/* ------------------------------------------------------------------ RoPE */

struct rope_ctx { float *x, *R, *out; int32_t *pos; int64_t N, H, HD; enum pl_rope_mode mode; };
static double rope_loss(void *p)
{
    struct rope_ctx *c = p;
    pl_rope_fwd(c->out, c->x, c->pos, c->N, c->H, c->HD, 10000.0f, c->mode);
    return dot_d(c->out, c->R, c->N * c->H * c->HD);
}

static void test_rope_fd(void **state)
{
    (void)state;
    int32_t pos[4] = {0, 3, 17, 250};
    for (int mode = 0; mode < 2; mode++) {
        int64_t n = 4 * 3 * 8;
        struct rope_ctx c = { rnd(n, 1), rnd(n, 1), zeros(n), pos, 4, 3, 8, (enum pl_rope_mode)mode };
        float *dx = zeros(n);
        pl_rope_bwd(dx, c.R, pos, 4, 3, 8, 10000.0f, c.mode);
        ASSERT_FD(rope_loss, &c, c.x, n, dx, mode ? "rope neox dx" : "rope normal dx");
        /* in place equals out of place */
        float *inpl = malloc((size_t)n * sizeof(float));
        memcpy(inpl, c.x, (size_t)n * sizeof(float));
        pl_rope_fwd(c.out, c.x, pos, 4, 3, 8, 10000.0f, c.mode);
        pl_rope_fwd(inpl, inpl, pos, 4, 3, 8, 10000.0f, c.mode);
        assert_memory_equal(inpl, c.out, (size_t)n * sizeof(float));
        /* position 0 is the identity */
        assert_memory_equal(c.out, c.x, 3 * 8 * sizeof(float));
        free(inpl); free(c.x); free(c.R); free(c.out); free(dx);
    }
}

/* The kernel builds a (cos, sin) table when positions repeat (a batch) and computes per token
 * otherwise; both must give the same bits, for both modes and a head dim over 128. */
static void test_rope_table_vs_direct(void **state)
{
    (void)state;
    const int64_t H = 2, HD = 160, T = 5, B = 3, N = B * T, row = H * HD;
    int32_t pos[15], pair[2];
    for (int64_t n = 0; n < N; n++) pos[n] = (int32_t)(7 + n % T);       /* span 5 <= 15 */
    float *x = rnd(N * row, 1), *yt = zeros(N * row), *y2 = zeros(2 * row), *x2 = zeros(2 * row);
    for (int mode = 0; mode < 2; mode++) {
        pl_rope_fwd(yt, x, pos, N, H, HD, 500000.0f, (enum pl_rope_mode)mode);
        for (int64_t n = 0; n < N; n++) {
            pair[0] = pos[n]; pair[1] = pos[n] + 1000;                   /* span 1001 > 2 */
            memcpy(x2, x + n * row, (size_t)row * sizeof(float));
            memcpy(x2 + row, x + n * row, (size_t)row * sizeof(float));
            pl_rope_fwd(y2, x2, pair, 2, H, HD, 500000.0f, (enum pl_rope_mode)mode);
            assert_memory_equal(y2, yt + n * row, (size_t)row * sizeof(float));
        }
    }
    free(x); free(yt); free(y2); free(x2);
}

/* pl_rope_keep: the kept table gives the same bits as a fresh one (forward and backward, both
 * modes, head dims of 64 and 160), stays allocated while on (one table), is rebuilt when the
 * positions or head dim change, and is freed when turned off. */
static void test_rope_keep(void **state)
{
    (void)state;
    const int64_t H = 3, N = 40;
    int32_t pos[40], pos2[40];
    for (int64_t n = 0; n < N; n++) { pos[n] = (int32_t)(n % 20); pos2[n] = (int32_t)(5 + n % 17); }
    const int64_t ws0 = pl_mem_current(PL_MEM_WORKSPACE);
    for (int hdi = 0; hdi < 2; hdi++) {
        const int64_t HD = hdi ? 160 : 64, row = H * HD;
        float *x = rnd(N * row, 1), *ref[4], *got[4];
        for (int i = 0; i < 4; i++) { ref[i] = zeros(N * row); got[i] = zeros(N * row); }
        for (int keep = 0; keep < 2; keep++) {
            float **o = keep ? got : ref;
            pl_rope_keep(keep);
            for (int rep = 0; rep < 2; rep++)   /* the second call of each reuses the table */
                for (int mode = 0; mode < 2; mode++) {
                    pl_rope_fwd(o[mode], x, rep ? pos2 : pos, N, H, HD, 10000.0f, (enum pl_rope_mode)mode);
                    if (keep) assert_true(pl_mem_current(PL_MEM_WORKSPACE) > ws0);
                    pl_rope_bwd(o[2 + mode], x, rep ? pos2 : pos, N, H, HD, 10000.0f, (enum pl_rope_mode)mode);
                }
            pl_rope_keep(0);
            assert_int_equal(pl_mem_current(PL_MEM_WORKSPACE), ws0);
        }
        for (int i = 0; i < 4; i++) {
            assert_memory_equal(ref[i], got[i], (size_t)(N * row) * sizeof(float));
            free(ref[i]); free(got[i]);
        }
        free(x);
    }
}

static void test_rope_golden(void **state)
{
    (void)state;
    const int64_t n = 6 * 2 * 8;
    float y[96], dx[96];
    const char *names[2][2] = {{"rope.normal.y", "rope.normal.dx"}, {"rope.neox.y", "rope.neox.dx"}};
    for (int mode = 0; mode < 2; mode++) {
        pl_rope_fwd(y, gf("rope.x"), gi("rope.pos"), 6, 2, 8, 10000.0f, (enum pl_rope_mode)mode);
        assert_close(y, names[mode][0], n);
        memset(dx, 0, sizeof dx);
        pl_rope_bwd(dx, gf("rope.dout"), gi("rope.pos"), 6, 2, 8, 10000.0f, (enum pl_rope_mode)mode);
        assert_close(dx, names[mode][1], n);
    }
}

/* ------------------------------------------------------------------ attention */

struct att_ctx { float *q, *k, *v, *R, *out, *probs; int64_t B, T, past, Tcap, NH, NKV, HD; };
static double att_loss(void *p)
{
    struct att_ctx *c = p;
    pl_attention_fwd(c->out, c->probs, c->q, c->k, c->v, c->B, c->T, c->past, c->Tcap,
                     c->NH, c->NKV, c->HD);
    return dot_d(c->out, c->R, c->B * c->T * c->NH * c->HD);
}

static void att_fd_case(int64_t B, int64_t T, int64_t past, int64_t Tcap, int64_t NH, int64_t NKV,
                        int64_t HD)
{
    int64_t nq = B * T * NH * HD, nk = B * Tcap * NKV * HD, Tk = past + T;
    struct att_ctx c = { rnd(nq, 1.5f), rnd(nk, 1.5f), rnd(nk, 1), rnd(nq, 1), zeros(nq),
                         zeros(B * NH * T * Tk), B, T, past, Tcap, NH, NKV, HD };
    float *dq = zeros(nq), *dk = zeros(nk), *dv = zeros(nk);
    att_loss(&c);
    assert_int_equal(pl_attention_bwd(dq, dk, dv, c.R, c.probs, c.q, c.k, c.v, B, T, past, Tcap,
                                      NH, NKV, HD), PL_OK);
    ASSERT_FD(att_loss, &c, c.q, nq, dq, "attention dq");
    ASSERT_FD(att_loss, &c, c.k, nk, dk, "attention dk");
    ASSERT_FD(att_loss, &c, c.v, nk, dv, "attention dv");
    /* rows of the cache beyond past+T get no gradient */
    for (int64_t b = 0; b < B; b++)
        for (int64_t j = Tk; j < Tcap; j++)
            for (int64_t i = 0; i < NKV * HD; i++)
                assert_true(dk[(b * Tcap + j) * NKV * HD + i] == 0.0f);
    free(c.q); free(c.k); free(c.v); free(c.R); free(c.out); free(c.probs);
    free(dq); free(dk); free(dv);
}

static void test_attention_fd(void **state)
{
    (void)state;
    att_fd_case(2, 4, 0, 4, 4, 2, 8);     /* grouped query, training shape */
    att_fd_case(1, 3, 2, 6, 2, 1, 4);     /* KV cache with past positions and a spare slot */
    att_fd_case(1, 3, 0, 3, 3, 3, 5);     /* plain multi-head, odd head dim */
}

static void att_golden_case(const char *pre, int64_t B, int64_t T, int64_t past, int64_t Tcap,
                            int64_t NH, int64_t NKV, int64_t HD)
{
    char n[64];
    int64_t nq = B * T * NH * HD, nk = B * Tcap * NKV * HD, np = B * NH * T * (past + T);
#define G(s) (snprintf(n, sizeof n, "%s.%s", pre, s), n)
    float *q = gf(G("q")), *k = gf(G("k")), *v = gf(G("v")), *dout = gf(G("dout"));
    float *y = zeros(nq), *p = zeros(np), *dq = zeros(nq), *dk = zeros(nk), *dv = zeros(nk);
    pl_attention_fwd(y, p, q, k, v, B, T, past, Tcap, NH, NKV, HD);
    assert_close(y, G("y"), nq);
    assert_close(p, G("p"), np);
    assert_int_equal(pl_attention_bwd(dq, dk, dv, dout, p, q, k, v, B, T, past, Tcap, NH, NKV, HD), PL_OK);
    assert_close(dq, G("dq"), nq);
    assert_close(dk, G("dk"), nk);
    assert_close(dv, G("dv"), nk);
#undef G
    free(y); free(p); free(dq); free(dk); free(dv);
}

static void test_attention_golden(void **state)
{
    (void)state;
    att_golden_case("att", 2, 5, 0, 5, 4, 2, 8);
    att_golden_case("attc", 2, 3, 4, 8, 4, 1, 8);
}

/* Plain f64 loops of the same math (verified by finite differences above on small shapes) at a
 * size where the kernel takes several query blocks, with a KV-cache offset: fwd and bwd. */
static void test_attention_blocks(void **state)
{
    (void)state;
    const int64_t B = 2, T = 150, past = 20, Tcap = 175, NH = 4, NKV = 2, HD = 16, Tk = past + T;
    int64_t nq = B * T * NH * HD, nk = B * Tcap * NKV * HD;
    float *q = rnd(nq, 1), *k = rnd(nk, 1), *v = rnd(nk, 1), *dout = rnd(nq, 1);
    float *y = zeros(nq), *p = zeros(B * NH * T * Tk), *dq = zeros(nq), *dk = zeros(nk), *dv = zeros(nk);
    pl_attention_fwd(y, p, q, k, v, B, T, past, Tcap, NH, NKV, HD);
    assert_int_equal(pl_attention_bwd(dq, dk, dv, dout, p, q, k, v, B, T, past, Tcap, NH, NKV, HD), PL_OK);
    double *rdq = calloc((size_t)nq, sizeof(double)), *rdk = calloc((size_t)nk, sizeof(double));
    double *rdv = calloc((size_t)nk, sizeof(double)), *pr = malloc((size_t)Tk * sizeof(double));
    double *dp = malloc((size_t)Tk * sizeof(double));
    double sc = 1.0 / sqrt((double)HD), ey = 0, my = 0;
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < NH; h++) {
            int64_t g = h / (NH / NKV);
            for (int64_t t = 0; t < T; t++) {
                const float *qr = q + ((b * T + t) * NH + h) * HD, *dor = dout + ((b * T + t) * NH + h) * HD;
                int64_t lim = past + t;
                double mx = -1e300, sum = 0, pdp = 0;
                for (int64_t j = 0; j <= lim; j++) {
                    pr[j] = sc * dot_d(qr, k + ((b * Tcap + j) * NKV + g) * HD, HD);
                    mx = pr[j] > mx ? pr[j] : mx;
                }
                for (int64_t j = 0; j <= lim; j++) { pr[j] = exp(pr[j] - mx); sum += pr[j]; }
                for (int64_t j = 0; j <= lim; j++) pr[j] /= sum;
                for (int64_t d = 0; d < HD; d++) {
                    double o = 0;
                    for (int64_t j = 0; j <= lim; j++) o += pr[j] * v[((b * Tcap + j) * NKV + g) * HD + d];
                    ey = fmax(ey, fabs(o - y[((b * T + t) * NH + h) * HD + d]));
                    my = fmax(my, fabs(o));
                }
                for (int64_t j = 0; j <= lim; j++) {
                    dp[j] = dot_d(dor, v + ((b * Tcap + j) * NKV + g) * HD, HD);
                    pdp += pr[j] * dp[j];
                    for (int64_t d = 0; d < HD; d++) rdv[((b * Tcap + j) * NKV + g) * HD + d] += pr[j] * dor[d];
                }
                for (int64_t j = 0; j <= lim; j++) {
                    double ds = pr[j] * (dp[j] - pdp) * sc;
                    for (int64_t d = 0; d < HD; d++) {
                        rdq[((b * T + t) * NH + h) * HD + d] += ds * k[((b * Tcap + j) * NKV + g) * HD + d];
                        rdk[((b * Tcap + j) * NKV + g) * HD + d] += ds * qr[d];
                    }
                }
            }
        }
    double e[3] = {0, 0, 0}, m[3] = {0, 0, 0};
    for (int64_t i = 0; i < nq; i++) { e[0] = fmax(e[0], fabs(dq[i] - rdq[i])); m[0] = fmax(m[0], fabs(rdq[i])); }
    for (int64_t i = 0; i < nk; i++) {
        e[1] = fmax(e[1], fabs(dk[i] - rdk[i])); m[1] = fmax(m[1], fabs(rdk[i]));
        e[2] = fmax(e[2], fabs(dv[i] - rdv[i])); m[2] = fmax(m[2], fabs(rdv[i]));
    }
    if (!(ey <= 1e-5 * my && e[0] <= 1e-5 * m[0] && e[1] <= 1e-5 * m[1] && e[2] <= 1e-5 * m[2]))
        fail_msg("blocked attention vs f64 loops: out %.3g dq %.3g dk %.3g dv %.3g (relative to max)",
                 ey / my, e[0] / m[0], e[1] / m[1], e[2] / m[2]);
    free(q); free(k); free(v); free(dout); free(y); free(p); free(dq); free(dk); free(dv);
    free(rdq); free(rdk); free(rdv); free(pr); free(dp);
}

/* Generation one token at a time through the cache equals the batched forward. */
static void test_attention_kv_incremental(void **state)
{
    (void)state;
    const int64_t T = 6, NH = 4, NKV = 2, HD = 8;
    float *q = rnd(T * NH * HD, 1), *k = rnd(T * NKV * HD, 1), *v = rnd(T * NKV * HD, 1);
    float *y = zeros(T * NH * HD), *p = zeros(NH * T * T), *y1 = zeros(NH * HD), *p1 = zeros(NH * T);
    pl_attention_fwd(y, p, q, k, v, 1, T, 0, T, NH, NKV, HD);
    for (int64_t t = 0; t < T; t++) {
        pl_attention_fwd(y1, p1, q + t * NH * HD, k, v, 1, 1, t, T, NH, NKV, HD);
        for (int64_t i = 0; i < NH * HD; i++)
            assert_float_equal(y1[i], y[t * NH * HD + i], 1e-6f);
    }
    free(q); free(k); free(v); free(y); free(p); free(y1); free(p1);
}

/* ------------------------------------------------------------------ SwiGLU, residual */

struct swi_ctx { float *g, *u, *R, *out; int64_t N; };
static double swi_loss(void *p)
{
    struct swi_ctx *c = p;
    pl_swiglu_fwd(c->out, c->g, c->u, c->N);
    return dot_d(c->out, c->R, c->N);
}

static void test_swiglu(void **state)
{
    (void)state;
    struct swi_ctx c = { rnd(40, 4), rnd(40, 1), rnd(40, 1), zeros(40), 40 };
    float *dg = zeros(40), *du = zeros(40);
    pl_swiglu_bwd(dg, du, c.R, c.g, c.u, 40);
    ASSERT_FD(swi_loss, &c, c.g, 40, dg, "swiglu dgate");
    ASSERT_FD(swi_loss, &c, c.u, 40, du, "swiglu dup");
    free(c.g); free(c.u); free(c.R); free(c.out); free(dg); free(du);

    float y[50], dg2[50] = {0}, du2[50] = {0};
    pl_swiglu_fwd(y, gf("swi.g"), gf("swi.u"), 50);
    assert_close(y, "swi.y", 50);
    pl_swiglu_bwd(dg2, du2, gf("swi.dout"), gf("swi.g"), gf("swi.u"), 50);
    assert_close(dg2, "swi.dg", 50);
    assert_close(du2, "swi.du", 50);
}

static void test_residual(void **state)
{
    (void)state;
    float a[5] = {1, 2, 3, 4, 5}, b[5] = {0.5f, -2, 1, 0, 8}, y[5];
    float da[5] = {1, 1, 1, 1, 1}, db[5] = {0}, dy[5] = {1, -1, 2, 0, 3};
    pl_residual_fwd(y, a, b, 5);
    for (int i = 0; i < 5; i++) assert_float_equal(y[i], a[i] + b[i], 0);
    pl_residual_bwd(da, db, dy, 5);
    for (int i = 0; i < 5; i++) {
        assert_float_equal(da[i], 1 + dy[i], 0);
        assert_float_equal(db[i], dy[i], 0);
    }
    pl_residual_fwd(a, a, b, 5);     /* in place */
    assert_memory_equal(a, y, sizeof y);
}

/* ------------------------------------------------------------------ linear (f32), LoRA */

struct lin_ctx { float *x, *W, *b, *R, *y; int64_t M, K, N; };
static double lin_loss(void *p)
{
    struct lin_ctx *c = p;
    assert_int_equal(pl_linear_fwd(c->y, c->x, c->W, PL_F32, c->b, c->M, c->K, c->N), PL_OK);
    return dot_d(c->y, c->R, c->M * c->N);
}

static void test_linear_f32(void **state)
{
    (void)state;
    struct lin_ctx c = { rnd(4 * 9, 1), rnd(6 * 9, 0.5f), rnd(6, 1), rnd(4 * 6, 1), zeros(24), 4, 9, 6 };
    float *dx = zeros(36), *dW = zeros(54), *db = zeros(6);
    assert_int_equal(pl_linear_bwd(dx, dW, db, c.R, c.x, c.W, PL_F32, 4, 9, 6), PL_OK);
    ASSERT_FD(lin_loss, &c, c.x, 36, dx, "linear dx");
    ASSERT_FD(lin_loss, &c, c.W, 54, dW, "linear dW");
    ASSERT_FD(lin_loss, &c, c.b, 6, db, "linear dbias");
    free(c.x); free(c.W); free(c.b); free(c.R); free(c.y); free(dx); free(dW); free(db);

    float y[35], gdx[60] = {0}, gdW[84] = {0}, gdb[7] = {0};
    assert_int_equal(pl_linear_fwd(y, gf("lin.x"), gf("lin.W"), PL_F32, gf("lin.b"), 5, 12, 7), PL_OK);
    assert_close(y, "lin.y", 35);
    assert_int_equal(pl_linear_bwd(gdx, gdW, gdb, gf("lin.dout"), gf("lin.x"), gf("lin.W"), PL_F32,
                                   5, 12, 7), PL_OK);
    assert_close(gdx, "lin.dx", 60);
    assert_close(gdW, "lin.dW", 84);
    assert_close(gdb, "lin.db", 7);
}

struct lora_ctx { float *x, *A, *B, *R, *y, *xa; int64_t M, K, N, r; float s; };
static double lora_loss(void *p)
{
    struct lora_ctx *c = p;
    memset(c->y, 0, (size_t)(c->M * c->N) * sizeof(float));
    pl_lora_fwd(c->y, c->xa, c->x, c->A, c->B, c->s, c->M, c->K, c->N, c->r);
    return dot_d(c->y, c->R, c->M * c->N);
}

static void test_lora(void **state)
{
    (void)state;
    struct lora_ctx c = { rnd(4 * 10, 1), rnd(3 * 10, 0.5f), rnd(6 * 3, 0.5f), rnd(24, 1),
                          zeros(24), zeros(12), 4, 10, 6, 3, 1.5f };
    float *dx = zeros(40), *dA = zeros(30), *dB = zeros(18);
    lora_loss(&c);
    assert_int_equal(pl_lora_bwd(dx, dA, dB, c.R, c.xa, c.x, c.A, c.B, c.s, 4, 10, 6, 3), PL_OK);
    ASSERT_FD(lora_loss, &c, c.x, 40, dx, "lora dx");
    ASSERT_FD(lora_loss, &c, c.A, 30, dA, "lora dA");
    ASSERT_FD(lora_loss, &c, c.B, 18, dB, "lora dB");
    free(c.x); free(c.A); free(c.B); free(c.R); free(c.y); free(c.xa); free(dx); free(dA); free(dB);

    float y[35] = {0}, xa[15], gdx[60] = {0}, gdA[36] = {0}, gdB[21] = {0};
    pl_lora_fwd(y, xa, gf("lora.x"), gf("lora.A"), gf("lora.B"), 2.0f, 5, 12, 7, 3);
    assert_close(y, "lora.y", 35);
    assert_int_equal(pl_lora_bwd(gdx, gdA, gdB, gf("lora.dout"), xa, gf("lora.x"), gf("lora.A"),
                                 gf("lora.B"), 2.0f, 5, 12, 7, 3), PL_OK);
    assert_close(gdx, "lora.dx", 60);
    assert_close(gdA, "lora.dA", 36);
    assert_close(gdB, "lora.dB", 21);
}

/* ------------------------------------------------------------------ cross-entropy */

struct ce_ctx { float *logits, *losses, *lse; int32_t *tg; int64_t N, V; };
static double ce_loss(void *p)
{
    struct ce_ctx *c = p;
    double mean;
    assert_int_equal(pl_crossentropy_fwd(c->losses, c->lse, &mean, NULL, c->logits, c->tg, c->N, c->V), PL_OK);
    return mean;
}

static void test_crossentropy(void **state)
{
    (void)state;
    int32_t tg[5] = {2, -100, 0, 6, -1};
    struct ce_ctx c = { rnd(5 * 7, 3), zeros(5), zeros(5), tg, 5, 7 };
    double mean; int64_t cnt;
    assert_int_equal(pl_crossentropy_fwd(c.losses, c.lse, &mean, &cnt, c.logits, tg, 5, 7), PL_OK);
    assert_int_equal(cnt, 3);
    float *dl = zeros(35);
    pl_crossentropy_bwd(dl, c.lse, c.logits, tg, 1.0f / (float)cnt, 5, 7);
    ASSERT_FD(ce_loss, &c, c.logits, 35, dl, "cross-entropy dlogits");
    for (int v = 0; v < 7; v++) assert_true(dl[1 * 7 + v] == 0.0f && dl[4 * 7 + v] == 0.0f);
    /* in place gives the same */
    float *inpl = malloc(35 * sizeof(float));
    memcpy(inpl, c.logits, 35 * sizeof(float));
    pl_crossentropy_bwd(inpl, c.lse, inpl, tg, 1.0f / (float)cnt, 5, 7);
    assert_memory_equal(inpl, dl, 35 * sizeof(float));
    free(inpl); free(c.logits); free(c.losses); free(c.lse); free(dl);

    float losses[6], lse[6], d[66];
    assert_int_equal(pl_crossentropy_fwd(losses, lse, &mean, &cnt, gf("ce.logits"), gi("ce.targets"),
                                         6, 11), PL_OK);
    assert_int_equal(cnt, 4);
    assert_close(losses, "ce.losses", 6);
    float m = (float)mean;
    assert_close(&m, "ce.mean", 1);
    pl_crossentropy_bwd(d, lse, gf("ce.logits"), gi("ce.targets"), 1.0f / (float)cnt, 6, 11);
    assert_close(d, "ce.dlogits", 66);
}

/* ------------------------------------------------------------------ embedding */

struct emb_ctx { float *W, *R, *out; int32_t *tok; int64_t N, V, C; };
static double emb_loss(void *p)
{
    struct emb_ctx *c = p;
    assert_int_equal(pl_embedding_fwd(c->out, c->tok, c->W, PL_F32, c->N, c->V, c->C), PL_OK);
    return dot_d(c->out, c->R, c->N * c->C);
}

static void test_embedding(void **state)
{
    (void)state;
    int32_t tok[6] = {1, 4, 1, 0, 4, 4};
    struct emb_ctx c = { rnd(5 * 6, 1), rnd(6 * 6, 1), zeros(36), tok, 6, 5, 6 };
    float *dW = zeros(30);
    pl_embedding_bwd(dW, c.R, tok, 6, 5, 6);
    ASSERT_FD(emb_loss, &c, c.W, 30, dW, "embedding dW");
    for (int i = 0; i < 6; i++) assert_true(dW[2 * 6 + i] == 0.0f && dW[3 * 6 + i] == 0.0f);
    free(c.W); free(c.R); free(c.out); free(dW);

    float y[56], gdW[80] = {0};
    assert_int_equal(pl_embedding_fwd(y, gi("emb.tok"), gf("emb.W"), PL_F32, 7, 10, 8), PL_OK);
    assert_close(y, "emb.y", 56);
    pl_embedding_bwd(gdW, gf("emb.dout"), gi("emb.tok"), 7, 10, 8);
    assert_close(gdW, "emb.dW", 80);
}

/* Embedding rows of a quantised table equal the dequantised rows. */
static void test_embedding_quant(void **state)
{
    (void)state;
    const int64_t V = 9, C = 256;
    float *W = rnd(V * C, 1);
    size_t rb = pl_dtype_row_bytes(PL_Q4_K, C);
    uint8_t *Wq = malloc(V * rb);
    for (int64_t v = 0; v < V; v++) assert_int_equal(pl_quant_row(PL_Q4_K, W + v * C, Wq + v * rb, C), PL_OK);
    int32_t tok[3] = {8, 0, 8};
    float out[3 * 256], ref[256];
    assert_int_equal(pl_embedding_fwd(out, tok, Wq, PL_Q4_K, 3, V, C), PL_OK);
    assert_int_equal(pl_dequant_row(PL_Q4_K, Wq + 8 * rb, ref, C), PL_OK);
    assert_memory_equal(out, ref, sizeof ref);
    assert_memory_equal(out + 2 * C, ref, sizeof ref);
    free(W); free(Wq);
}

/* ------------------------------------------------------------------ quantised linear */

static double max_abs(const float *a, int64_t n)
{
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fabs(a[i]) > m ? fabs(a[i]) : m;
    return m;
}

static void quant_linear_case(enum pl_dtype t, int64_t M)
{
    const int64_t K = 512, N = 2000;
    const char *name = pl_dtype_info(t)->name;
    float *W = rnd(N * K, 0.2f), *x = rnd(M * K, 1), *b = rnd(N, 1), *dy = rnd(M * N, 1);
    size_t rb = pl_dtype_row_bytes(t, K);
    assert_true(rb > 0);
    uint8_t *Wq = malloc(N * rb);
    float *Wd = malloc((size_t)(N * K) * sizeof(float));
    for (int64_t n = 0; n < N; n++) {
        assert_int_equal(pl_quant_row(t, W + n * K, Wq + n * rb, K), PL_OK);
        assert_int_equal(pl_dequant_row(t, Wq + n * rb, Wd + n * K, K), PL_OK);
    }
    float *yq = zeros(M * N), *yf = zeros(M * N), *y1 = zeros(M * N);
    float *dxq = zeros(M * K), *dxf = zeros(M * K), *dx1 = zeros(M * K);

    set_threads(2);
    int64_t ws0 = pl_mem_current(PL_MEM_WORKSPACE);
    pl_mem_reset_peak();
    assert_int_equal(pl_linear_fwd(yq, x, Wq, t, b, M, K, N), PL_OK);
    assert_int_equal(pl_linear_bwd(dxq, NULL, NULL, dy, x, Wq, t, M, K, N), PL_OK);
    int64_t ws_peak = pl_mem_peak(PL_MEM_WORKSPACE) - ws0;
    if (ws_peak >= N * K * 4 / 2)
        fail_msg("%s: linear workspace %lld bytes is not far below a whole f32 copy (%lld)",
                 name, (long long)ws_peak, (long long)(N * K * 4));
    assert_int_equal(pl_mem_current(PL_MEM_WORKSPACE), ws0);

    assert_int_equal(pl_linear_fwd(yf, x, Wd, PL_F32, b, M, K, N), PL_OK);
    assert_int_equal(pl_linear_bwd(dxf, NULL, NULL, dy, x, Wd, PL_F32, M, K, N), PL_OK);
    double ey = 0, ex = 0;
    for (int64_t i = 0; i < M * N; i++) ey = fmax(ey, fabs(yq[i] - yf[i]));
    for (int64_t i = 0; i < M * K; i++) ex = fmax(ex, fabs(dxq[i] - dxf[i]));
    ey /= max_abs(yf, M * N);
    ex /= max_abs(dxf, M * K);
    if (!(ey <= 1e-5 && ex <= 1e-5))
        fail_msg("%s M=%lld: quantised linear vs dequantised f32: fwd rel %.3g, dx rel %.3g (limit 1e-5)",
                 name, (long long)M, ey, ex);

    set_threads(1);
    assert_int_equal(pl_linear_fwd(y1, x, Wq, t, b, M, K, N), PL_OK);
    assert_int_equal(pl_linear_bwd(dx1, NULL, NULL, dy, x, Wq, t, M, K, N), PL_OK);
    set_threads(2);
    if (memcmp(y1, yq, (size_t)(M * N) * sizeof(float)) != 0 ||
        memcmp(dx1, dxq, (size_t)(M * K) * sizeof(float)) != 0)
        fail_msg("%s M=%lld: quantised linear differs between 1 and 2 threads", name, (long long)M);
    /* the quantised weight cannot take a weight gradient */
    float dWdummy[1];
    assert_int_equal(pl_linear_bwd(NULL, dWdummy, NULL, dy, x, Wq, t, M, K, N), PL_ERR_ARG);
    free(W); free(x); free(b); free(dy); free(Wq); free(Wd);
    free(yq); free(yf); free(y1); free(dxq); free(dxf); free(dx1);
}

static void test_linear_quant(void **state)
{
    (void)state;
    enum pl_dtype types[] = {PL_Q8_0, PL_Q4_1, PL_Q4_K, PL_NF4, PL_F16, PL_BF16};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        quant_linear_case(types[i], 7);      /* decode-sized: many narrow panels */
        quant_linear_case(types[i], 600);    /* training-sized: 256-row panels x 2 row blocks */
    }
}

/* ------------------------------------------------------------------ thread independence */

static void test_thread_independence(void **state)
{
    (void)state;
    const int64_t B = 2, T = 133, NH = 4, NKV = 2, HD = 16, C = 200, V = 300;
    int64_t nq = B * T * NH * HD, nk = B * T * NKV * HD, np = B * NH * T * T;
    float *q = rnd(nq, 1), *k = rnd(nk, 1), *v = rnd(nk, 1), *dout = rnd(nq, 1);
    float *x = rnd(B * T * C, 1), *w = rnd(C, 1), *dyc = rnd(B * T * C, 1);
    float *logits = rnd(B * T * V, 3);
    int32_t *tok = malloc((size_t)(B * T) * sizeof(int32_t));
    for (int64_t i = 0; i < B * T; i++) tok[i] = (int32_t)((i * 7) % 11) - 1;   /* some -1s */
    float *res[2][9];
    for (int run = 0; run < 2; run++) {
        set_threads(run + 1);
        float **r = res[run];
        r[0] = zeros(nq); r[1] = zeros(np); r[2] = zeros(nq); r[3] = zeros(nk); r[4] = zeros(nk);
        r[5] = zeros(B * T * C); r[6] = zeros(C); r[7] = zeros(V * C); r[8] = zeros(B * T * V);
        pl_attention_fwd(r[0], r[1], q, k, v, B, T, 0, T, NH, NKV, HD);
        assert_int_equal(pl_attention_bwd(r[2], r[3], r[4], dout, r[1], q, k, v, B, T, 0, T, NH, NKV, HD), PL_OK);
        float *rs = zeros(B * T);
        pl_rmsnorm_fwd(r[5], rs, x, w, B * T, C, 1e-6f);
        pl_rmsnorm_bwd(r[5], r[6], dyc, rs, x, w, B * T, C);
        pl_embedding_bwd(r[7], dyc, tok, B * T, V, C);
        float *ls = zeros(B * T), *lse = zeros(B * T);
        double mean;
        assert_int_equal(pl_crossentropy_fwd(ls, lse, &mean, NULL, logits, tok, B * T, V), PL_OK);
        pl_crossentropy_bwd(r[8], lse, logits, tok, 0.25f, B * T, V);
        free(rs); free(ls); free(lse);
    }
    set_threads(2);
    const char *what[9] = {"attention out", "attention probs", "attention dq", "attention dk",
                           "attention dv", "rmsnorm dx", "rmsnorm dw", "embedding dW", "cross-entropy dlogits"};
    int64_t sz[9] = {nq, np, nq, nk, nk, B * T * C, C, V * C, B * T * V};
    for (int i = 0; i < 9; i++) {
        if (memcmp(res[0][i], res[1][i], (size_t)sz[i] * sizeof(float)) != 0)
            fail_msg("%s differs between 1 and 2 threads", what[i]);
        free(res[0][i]); free(res[1][i]);
    }
    free(q); free(k); free(v); free(dout); free(x); free(w); free(dyc); free(logits); free(tok);
}

/* ------------------------------------------------------------------ pl_sgemm */

/* Every transpose combination, for shapes cut into tiles both ways, by rows, by columns and
 * not at all, against f64 loops (≤ 1e-5 of the largest magnitude), with beta = 1 accumulating onto
 * C, padded leading dimensions, and 1 vs 2 threads bit-identical. */
static void test_sgemm(void **state)
{
    (void)state;
    const int64_t shapes[4][3] = {{600, 700, 50}, {300, 8, 600}, {1, 700, 300}, {5, 7, 3}};
    for (int si = 0; si < 4; si++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                int64_t M = shapes[si][0], N = shapes[si][1], K = shapes[si][2];
                int64_t lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 1, ldc = N + 2;
                float *A = rnd((ta ? K : M) * lda, 1), *Bm = rnd((tb ? N : K) * ldb, 1);
                float *C0 = rnd(M * ldc, 1), *C1 = malloc((size_t)(M * ldc) * sizeof(float));
                float *C2 = malloc((size_t)(M * ldc) * sizeof(float));
                memcpy(C1, C0, (size_t)(M * ldc) * sizeof(float));
                memcpy(C2, C0, (size_t)(M * ldc) * sizeof(float));
                set_threads(2);
                pl_sgemm(ta, tb, M, N, K, 0.5f, A, lda, Bm, ldb, 1.0f, C1, ldc);
                set_threads(1);
                pl_sgemm(ta, tb, M, N, K, 0.5f, A, lda, Bm, ldb, 1.0f, C2, ldc);
                set_threads(2);
                assert_memory_equal(C1, C2, (size_t)(M * ldc) * sizeof(float));
                double err = 0, mx = 0;
                for (int64_t i = 0; i < M; i++)
                    for (int64_t j = 0; j < N; j++) {
                        double acc = 0;
                        for (int64_t k = 0; k < K; k++)
                            acc += (double)(ta ? A[k * lda + i] : A[i * lda + k]) *
                                   (tb ? Bm[j * ldb + k] : Bm[k * ldb + j]);
                        double ref = 0.5 * acc + C0[i * ldc + j];
                        err = fmax(err, fabs(ref - C1[i * ldc + j]));
                        mx = fmax(mx, fabs(ref));
                    }
                if (!(err <= 1e-5 * mx))
                    fail_msg("sgemm %lldx%lldx%lld ta=%d tb=%d: error %.3g of max %.3g",
                             (long long)M, (long long)N, (long long)K, ta, tb, err, mx);
                /* the padding between rows of C is untouched */
                for (int64_t i = 0; i < M; i++)
                    for (int64_t j = N; j < ldc; j++) assert_true(C1[i * ldc + j] == C0[i * ldc + j]);
                free(A); free(Bm); free(C0); free(C1); free(C2);
            }
}

/* f32 linear and LoRA at sizes where pl_sgemm splits: 1 vs 2 threads bit-identical. */
static void test_linear_lora_threads(void **state)
{
    (void)state;
    const int64_t M = 300, K = 96, N = 600, r = 8;
    float *x = rnd(M * K, 1), *W = rnd(N * K, 0.3f), *b = rnd(N, 1), *dy = rnd(M * N, 1);
    float *A = rnd(r * K, 0.3f), *Bm = rnd(N * r, 0.3f);
    float *out[2][8];
    int64_t sz[8] = {M * N, M * K, N * K, N, M * r, M * K, r * K, N * r};
    for (int run = 0; run < 2; run++) {
        set_threads(run + 1);
        float **o = out[run];
        for (int i = 0; i < 8; i++) o[i] = zeros(sz[i]);
        assert_int_equal(pl_linear_fwd(o[0], x, W, PL_F32, b, M, K, N), PL_OK);
        assert_int_equal(pl_linear_bwd(o[1], o[2], o[3], dy, x, W, PL_F32, M, K, N), PL_OK);
        pl_lora_fwd(o[0], o[4], x, A, Bm, 2.0f, M, K, N, r);
        assert_int_equal(pl_lora_bwd(o[5], o[6], o[7], dy, o[4], x, A, Bm, 2.0f, M, K, N, r), PL_OK);
    }
    set_threads(2);
    const char *what[8] = {"linear+lora y", "linear dx", "linear dW", "linear dbias", "lora xa",
                           "lora dx", "lora dA", "lora dB"};
    for (int i = 0; i < 8; i++) {
        if (memcmp(out[0][i], out[1][i], (size_t)sz[i] * sizeof(float)) != 0)
            fail_msg("%s differs between 1 and 2 threads", what[i]);
        free(out[0][i]); free(out[1][i]);
    }
    free(x); free(W); free(b); free(dy); free(A); free(Bm);
}

/* ------------------------------------------------------------------ exp */

/* The vectorised exp of the softmax/cross-entropy/SwiGLU loops against libm's double exp on a
 * dense sweep of [-87, 88]: relative error ≤ 2e-7; below the range it gives a tiny positive. */
static void test_expf(void **state)
{
    (void)state;
    double worst = 0;
    float at = 0;
    for (int64_t i = 0; i <= 2000000; i++) {
        float x = -87.0f + 175.0f * (float)i / 2000000.0f;
        double e = exp((double)x), rel = fabs((double)pl_k_expf(x) - e) / e;
        if (rel > worst) { worst = rel; at = x; }
    }
    if (!(worst <= 2e-7)) fail_msg("pl_k_expf: relative error %.3g at x = %.9g", worst, at);
    assert_true(pl_k_expf(-1000.0f) > 0.0f && pl_k_expf(-1000.0f) < 1e-37f);
    assert_true(pl_k_expf(0.0f) == 1.0f);
}

/* ------------------------------------------------------------------ errors */

static void test_errors(void **state)
{
    (void)state;
    float W[4 * 8] = {0}, out[16], x[8] = {0}, y[4];
    int32_t tok[2] = {1, 4};
    assert_int_equal(pl_embedding_fwd(out, tok, W, PL_F32, 2, 4, 8), PL_ERR_ARG);
    assert_non_null(strstr(pl_last_error(), "token id 4"));
    int32_t tg[1] = {9};
    float l[1], z[1];
    assert_int_equal(pl_crossentropy_fwd(l, z, NULL, NULL, W, tg, 1, 8), PL_ERR_ARG);
    assert_non_null(strstr(pl_last_error(), "target 9"));
    /* K = 8 is not a whole number of 32-element Q8_0 blocks */
    assert_int_equal(pl_linear_fwd(y, x, W, PL_Q8_0, NULL, 1, 8, 4), PL_ERR_ARG);
    assert_non_null(strstr(pl_last_error(), "q8_0"));
    assert_int_equal(pl_linear_fwd(y, x, W, PL_I32, NULL, 1, 8, 4), PL_ERR_UNSUPPORTED);
    assert_int_equal(pl_linear_fwd(y, x, W, (enum pl_dtype)99, NULL, 1, 8, 4), PL_ERR_UNSUPPORTED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rmsnorm_fd),
        cmocka_unit_test(test_rmsnorm_golden),
        cmocka_unit_test(test_rmsnorm_sums),
        cmocka_unit_test(test_rope_fd),
        cmocka_unit_test(test_rope_golden),
        cmocka_unit_test(test_rope_table_vs_direct),
        cmocka_unit_test(test_rope_keep),
        cmocka_unit_test(test_attention_fd),
        cmocka_unit_test(test_attention_golden),
        cmocka_unit_test(test_attention_blocks),
        cmocka_unit_test(test_attention_kv_incremental),
        cmocka_unit_test(test_swiglu),
        cmocka_unit_test(test_residual),
        cmocka_unit_test(test_linear_f32),
        cmocka_unit_test(test_lora),
        cmocka_unit_test(test_crossentropy),
        cmocka_unit_test(test_embedding),
        cmocka_unit_test(test_embedding_quant),
        cmocka_unit_test(test_linear_quant),
        cmocka_unit_test(test_thread_independence),
        cmocka_unit_test(test_sgemm),
        cmocka_unit_test(test_linear_lora_threads),
        cmocka_unit_test(test_expf),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, load_goldens, free_goldens);
}
