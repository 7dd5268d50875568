/* chart_axis.c — the chart arithmetic that does not draw: data ranges, tick values and their
 * labels, histogram bins, the Pareto front, EMA smoothing, min/max downsampling.
 *
 * Owner: report (issue 6). No libgd here (src/report/chart.c draws); everything is testable alone.
 * Values beyond +-1e300 are treated like inf so axis arithmetic never overflows.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "peftlua/alloc.h"
#include "peftlua/chart.h"

#define PL_HUGE 1e300

static int usable(double v, int positive_only)
{
    return isfinite(v) && fabs(v) <= PL_HUGE && (!positive_only || v > 0);
}

int pl_chart_range(const double *v, size_t n, int positive_only, double *lo, double *hi)
{
    int any = 0;
    double a = 0, b = 0;
    for (size_t i = 0; i < n; i++) {
        if (!usable(v[i], positive_only)) continue;
        if (!any) { a = b = v[i]; any = 1; }
        else { if (v[i] < a) a = v[i]; if (v[i] > b) b = v[i]; }
    }
    if (any) { *lo = a; *hi = b; }
    return any;
}

/* Smallest number of decimals d with step*10^d (nearly) an integer. */
static int decimals_for(double step)
{
    step = fabs(step);
    if (!(step > 0) || !isfinite(step)) return 0;
    for (int d = 0; d < 12; d++) {
        double s = step * pow(10, d);
        if (fabs(s - nearbyint(s)) < 1e-6 * fmax(1.0, s)) return d;
    }
    return 12;
}

/* "1e-05" -> "1e-5", "2.5e+07" -> "2.5e7" */
static void compact_exp(char *buf)
{
    char *e = strchr(buf, 'e');
    if (!e) return;
    char *p = e + 1, *w = e + 1;
    if (*p == '+') p++;
    else if (*p == '-') *w++ = *p++;
    while (*p == '0' && p[1]) p++;
    memmove(w, p, strlen(p) + 1);
}

void pl_tick_format(double v, double step, double maxabs, char *buf, size_t n)
{
    step = fabs(step);
    if (v == 0 || (step > 0 && fabs(v) < step * 1e-6)) { snprintf(buf, n, "0"); return; }
    if (maxabs >= 1e5 && step >= 1) {
        static const char *suf[] = { "k", "M", "G", "T", "P", "E" };
        double scale = 1e3;
        int k = 0;
        while (k < 5 && maxabs / scale >= 1000) { scale *= 1e3; k++; }
        int d = decimals_for(step / scale);
        if (d > 3) d = 3;
        snprintf(buf, n, "%.*f%s", d, v / scale, suf[k]);
        return;
    }
    if (maxabs < 1e-3 || maxabs >= 1e15) {
        int d = (int)(floor(log10(fabs(maxabs))) - floor(log10(step > 0 ? step : maxabs)));
        if (d < 0) d = 0;
        if (d > 6) d = 6;
        snprintf(buf, n, "%.*e", d, v);
        compact_exp(buf);
        return;
    }
    int d = decimals_for(step);
    if (d > 9) d = 9;
    snprintf(buf, n, "%.*f", d, v);
    if (strcmp(buf, "-0") == 0 || (buf[0] == '-' && strspn(buf + 1, "0.") == strlen(buf + 1)))
        memmove(buf, buf + 1, strlen(buf));
}

static void widen(double *lo, double *hi)
{
    if (!isfinite(*lo) || !isfinite(*hi)) { *lo = 0; *hi = 1; return; }
    if (*lo > *hi) { double t = *lo; *lo = *hi; *hi = t; }
    double m = fmax(fabs(*lo), fabs(*hi));
    if (*hi - *lo <= 1e-9 * m || *hi == *lo) {
        double c = 0.5 * (*lo + *hi);
        double d = fabs(c) * 0.1;
        if (d == 0) d = 1;
        *lo = c - d;
        *hi = c + d;
    }
}

void pl_ticks_linear(double lo, double hi, int target, struct pl_ticks *t)
{
    static const double nice[] = { 1, 2, 2.5, 5, 10 };
    if (target < 2) target = 2;
    if (target > PL_TICKS_MAX) target = PL_TICKS_MAX;
    widen(&lo, &hi);
    double raw = (hi - lo) / (target - 1);
    double mag = pow(10, floor(log10(raw)));
    int k = 0;
    while (k < 4 && nice[k] * mag < raw * (1 - 1e-9)) k++;
    double step, start, end;
    long nt;
    for (;;) {
        step = nice[k] * mag;
        start = floor(lo / step + 1e-9) * step;
        end = ceil(hi / step - 1e-9) * step;
        nt = lround((end - start) / step) + 1;
        if (nt <= PL_TICKS_MAX && nt <= 2L * target) break;
        if (++k == 5) { k = 0; mag *= 10; }
    }
    t->n = (int)nt;
    t->lo = start;
    t->hi = end;
    double maxabs = fmax(fabs(start), fabs(end));
    for (int i = 0; i < t->n; i++) {
        double v = start + i * step;
        if (fabs(v) < step * 1e-9) v = 0;
        t->v[i] = v;
        pl_tick_format(v, step, maxabs, t->label[i], sizeof t->label[i]);
    }
}

static void format_log(double v, char *buf, size_t n)
{
    if (v >= 1e-4 && v < 1e6) snprintf(buf, n, "%g", v);
    else { snprintf(buf, n, "%.0e", v); compact_exp(buf); }
}

void pl_ticks_log(double lo, double hi, int target, struct pl_ticks *t)
{
    if (target < 2) target = 2;
    if (target > PL_TICKS_MAX) target = PL_TICKS_MAX;
    if (!(lo > 0) || !isfinite(lo)) lo = 1;
    if (!(hi > 0) || !isfinite(hi)) hi = 10;
    if (lo > hi) { double s = lo; lo = hi; hi = s; }
    if (hi <= lo * (1 + 1e-9)) { lo /= 2; hi *= 2; }
    int e0 = (int)floor(log10(lo) + 1e-9), e1 = (int)ceil(log10(hi) - 1e-9);
    if (e1 <= e0) e1 = e0 + 1;
    int nd = e1 - e0;
    t->n = 0;
    if (nd <= 1) {
        /* within one decade: 1-2-5 ticks, range from the last candidate <= lo to the first >= hi */
        static const double m[] = { 1, 2, 5 };
        double cand[8];
        int nc = 0;
        for (int e = e0; e <= e1; e++)
            for (int j = 0; j < 3 && nc < 8; j++) {
                double v = m[j] * pow(10, e);
                if (e == e1 && j > 0) break;
                cand[nc++] = v;
            }
        int a = 0, b = nc - 1;
        while (a + 1 < nc && cand[a + 1] <= lo * (1 + 1e-9)) a++;
        while (b - 1 >= 0 && cand[b - 1] >= hi * (1 - 1e-9)) b--;
        for (int i = a; i <= b; i++) {
            t->v[t->n] = cand[i];
            format_log(cand[i], t->label[t->n], sizeof t->label[0]);
            t->n++;
        }
        t->lo = cand[a];
        t->hi = cand[b];
        return;
    }
    /* every stride-th decade, aligned to multiples of stride, at most target ticks */
    int stride = 1, a0, a1;
    for (;; stride++) {
        a0 = (int)(floor((double)e0 / stride) * stride);
        a1 = (int)(ceil((double)e1 / stride) * stride);
        if ((a1 - a0) / stride + 1 <= target) break;
    }
    e0 = a0;
    e1 = a1;
    for (int e = e0; e <= e1 && t->n < PL_TICKS_MAX; e += stride) {
        double v = pow(10, e);
        t->v[t->n] = v;
        format_log(v, t->label[t->n], sizeof t->label[0]);
        t->n++;
    }
    t->lo = pow(10, e0);
    t->hi = t->v[t->n - 1];
}

int pl_hist_default_bins(size_t n)
{
    if (n < 2) return 1;
    int b = (int)ceil(log2((double)n)) + 1;
    return b > 100 ? 100 : b;
}

size_t pl_hist_count(const double *v, size_t n, double lo, double hi, int nbins, size_t *counts)
{
    size_t used = 0;
    if (nbins < 1) return 0;
    memset(counts, 0, (size_t)nbins * sizeof *counts);
    if (!(hi > lo)) {
        for (size_t i = 0; i < n; i++)
            if (v[i] == lo) { counts[0]++; used++; }
        return used;
    }
    double scale = nbins / (hi - lo);
    for (size_t i = 0; i < n; i++) {
        double x = v[i];
        if (!isfinite(x) || x < lo || x > hi) continue;
        long b = (long)((x - lo) * scale);
        if (b >= nbins) b = nbins - 1;
        if (b < 0) b = 0;
        counts[b]++;
        used++;
    }
    return used;
}

struct pareto_pt { double a, b, x; size_t i; };

static int pareto_cmp(const void *pa, const void *pb)
{
    const struct pareto_pt *p = pa, *q = pb;
    if (p->a != q->a) return p->a > q->a ? -1 : 1;   /* better a first */
    if (p->b != q->b) return p->b > q->b ? -1 : 1;
    return p->i < q->i ? -1 : p->i > q->i;
}

static int front_cmp(const void *pa, const void *pb)
{
    const struct pareto_pt *p = pa, *q = pb;
    if (p->x != q->x) return p->x < q->x ? -1 : 1;
    return p->i < q->i ? -1 : p->i > q->i;
}

enum pl_status pl_pareto_front(const double *x, const double *y, size_t n, int xdir, int ydir,
                               size_t *idx, size_t *nfront)
{
    *nfront = 0;
    if (n == 0) return PL_OK;
    if (xdir == 0) xdir = -1;
    if (ydir == 0) ydir = 1;
    struct pareto_pt *p = pl_alloc(n * sizeof *p, PL_MEM_WORKSPACE);
    if (!p) return pl_fail(PL_ERR_NOMEM, "chart: out of memory computing the Pareto front of %zu points", n);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (!usable(x[i], 0) || !usable(y[i], 0)) continue;
        p[m].a = xdir > 0 ? x[i] : -x[i];
        p[m].b = ydir > 0 ? y[i] : -y[i];
        p[m].x = x[i];
        p[m].i = i;
        m++;
    }
    qsort(p, m, sizeof *p, pareto_cmp);
    /* sweep from the best a: a point is on the front iff its b beats every b seen so far
     * (points seen earlier have a better-or-equal a). */
    size_t k = 0;
    double best = -INFINITY;
    for (size_t j = 0; j < m; j++)
        if (p[j].b > best) { best = p[j].b; p[k++] = p[j]; }
    qsort(p, k, sizeof *p, front_cmp);
    for (size_t j = 0; j < k; j++) idx[j] = p[j].i;
    *nfront = k;
    pl_free(p);
    return PL_OK;
}

void pl_ema(const double *y, size_t n, double w, double *out)
{
    if (!(w >= 0) || w >= 1) w = 0;
    double s = 0, wk = 1;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(y[i])) { out[i] = NAN; continue; }
        s = w * s + (1 - w) * y[i];
        wk *= w;
        out[i] = wk < 1 ? s / (1 - wk) : y[i];
    }
}

size_t pl_downsample_minmax(const double *px, const double *py, size_t n, double *ox, double *oy)
{
    size_t m = 0;
    size_t i = 0;
    while (i < n) {
        if (!isfinite(px[i]) || !isfinite(py[i])) {
            if (m > 0 && !isnan(oy[m - 1])) { ox[m] = px[i]; oy[m] = NAN; m++; }
            i++;
            continue;
        }
        double col = floor(px[i]);
        double first = py[i], last = py[i], mn = py[i], mx = py[i];
        size_t imn = i, imx = i;
        size_t j = i + 1;
        while (j < n && isfinite(px[j]) && isfinite(py[j]) && floor(px[j]) == col) {
            if (py[j] < mn) { mn = py[j]; imn = j; }
            if (py[j] > mx) { mx = py[j]; imx = j; }
            last = py[j];
            j++;
        }
        /* first, the column's extremes in the order they occur (unless they are the first or
         * last point themselves), last: never more vertices than input points. */
        ox[m] = px[i]; oy[m] = first; m++;
        size_t e1 = imn < imx ? imn : imx, e2 = imn < imx ? imx : imn;
        if (e1 != i && e1 != j - 1) { ox[m] = px[e1]; oy[m] = py[e1]; m++; }
        if (e2 != i && e2 != j - 1 && e2 != e1) { ox[m] = px[e2]; oy[m] = py[e2]; m++; }
        if (j - 1 != i) { ox[m] = px[j - 1]; oy[m] = last; m++; }
        (void)mn; (void)mx;
        i = j;
    }
    return m;
}
