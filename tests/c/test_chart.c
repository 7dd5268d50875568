/* test_chart.c — the chart engine (owner: report): tick values and labels, histogram bins,
 * the Pareto front, EMA, min/max downsampling against hand-computed values; rendering of
 * every chart kind at small and large sizes with structural checks on the result (decoded
 * size, ink inside the plot area, legend, tick labels not overlapping and inside the image);
 * edge cases (empty, one point, NaN/inf, all-equal, 10^6 points); bad arguments; allocation
 * failures at every step without leaks; HTML escaping and base64. Golden images are compared
 * in tests/lua/test_report.lua (through the Lua API, which is what users call).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "peftlua/alloc.h"
#include "peftlua/chart.h"
#include "peftlua/html.h"

/* ---------------------------------------------------------------- axis arithmetic */

static void test_ticks_linear(void **state)
{
    (void)state;
    struct pl_ticks t;
    pl_ticks_linear(0, 1, 6, &t);
    assert_int_equal(t.n, 6);
    const char *want[] = { "0", "0.2", "0.4", "0.6", "0.8", "1.0" };   /* one decimal throughout, zero plain */
    for (int i = 0; i < 6; i++) {
        assert_string_equal(t.label[i], want[i]);
        assert_true(fabs(t.v[i] - 0.2 * i) < 1e-12);
    }
    /* range is extended to multiples of the step */
    pl_ticks_linear(3, 997, 5, &t);
    assert_true(t.lo == 0 && t.hi == 1000);
    assert_int_equal(t.n, 5);
    assert_string_equal(t.label[1], "250");
    /* negative to positive, with zero exactly on a tick and never "-0" */
    pl_ticks_linear(-3.7, 12.2, 5, &t);
    assert_true(t.lo <= -3.7 && t.hi >= 12.2);
    int zero = 0;
    for (int i = 0; i < t.n; i++) {
        assert_true(strcmp(t.label[i], "-0") != 0);
        if (t.v[i] == 0) { zero = 1; assert_string_equal(t.label[i], "0"); }
    }
    assert_true(zero);
    /* degenerate range is widened around the value */
    pl_ticks_linear(5, 5, 5, &t);
    assert_true(t.lo <= 4.5 && t.hi >= 5.5 && t.hi - t.lo <= 2);
    pl_ticks_linear(0, 0, 5, &t);
    assert_true(t.lo <= -1 && t.hi >= 1);
    /* large values use suffixes, small ones exponents */
    pl_ticks_linear(0, 2.5e9, 6, &t);
    assert_string_equal(t.label[t.n - 1], "2.5G");
    assert_string_equal(t.label[1], "0.5G");
    pl_ticks_linear(0, 3e-5, 4, &t);
    assert_string_equal(t.label[1], "1e-5");
    assert_string_equal(t.label[0], "0");
    /* decimals just enough for the step: 0.25 steps need two */
    char buf[24];
    pl_tick_format(0.75, 0.25, 1, buf, sizeof buf);
    assert_string_equal(buf, "0.75");
    pl_tick_format(1.5, 0.5, 3, buf, sizeof buf);
    assert_string_equal(buf, "1.5");
    pl_tick_format(-1e-17, 0.1, 1, buf, sizeof buf);
    assert_string_equal(buf, "0");
    pl_tick_format(120000, 20000, 200000, buf, sizeof buf);
    assert_string_equal(buf, "120k");
    /* huge ranges stay finite */
    pl_ticks_linear(-1e300, 1e300, 5, &t);
    assert_true(t.n >= 2 && isfinite(t.lo) && isfinite(t.hi));
}

static void test_ticks_log(void **state)
{
    (void)state;
    struct pl_ticks t;
    pl_ticks_log(1.5e-6, 2e-4, 8, &t);
    assert_int_equal(t.n, 4);
    assert_true(fabs(t.lo - 1e-6) < 1e-20 && fabs(t.hi - 1e-3) < 1e-15);
    assert_string_equal(t.label[0], "1e-6");
    assert_string_equal(t.label[2], "0.0001");
    assert_string_equal(t.label[3], "0.001");
    /* within one decade: 1-2-5 */
    pl_ticks_log(2, 8, 6, &t);
    assert_int_equal(t.n, 3);
    assert_string_equal(t.label[0], "2");
    assert_string_equal(t.label[1], "5");
    assert_string_equal(t.label[2], "10");
    /* many decades are thinned to at most target ticks */
    pl_ticks_log(1e-30, 1e30, 5, &t);
    assert_true(t.n <= 5 && t.n >= 2);
    assert_true(t.lo <= 1e-30 && t.hi >= 1e30);
    /* bad input does not crash */
    pl_ticks_log(-1, NAN, 5, &t);
    assert_true(t.n >= 2 && t.lo > 0);
}

static void test_hist_and_range(void **state)
{
    (void)state;
    double v[] = { 0, 0.5, 1, 1.5, 2, 2, NAN, INFINITY, -1, 3, 1e301 };
    size_t counts[4];
    size_t used = pl_hist_count(v, 11, 0, 2, 4, counts);
    assert_int_equal(used, 6);   /* 0, .5, 1, 1.5, 2, 2: NaN, inf, -1, 3 and 1e301 out */
    assert_int_equal(counts[0], 1);
    assert_int_equal(counts[1], 1);
    assert_int_equal(counts[2], 1);
    assert_int_equal(counts[3], 3);   /* the last bin is closed: both 2s and 1.5 */
    assert_int_equal(pl_hist_default_bins(1000), 11);
    assert_int_equal(pl_hist_default_bins(0), 1);
    assert_int_equal(pl_hist_default_bins((size_t)1 << 40), 41);
    double lo, hi;
    assert_true(pl_chart_range(v, 11, 0, &lo, &hi));
    assert_true(lo == -1 && hi == 3);
    assert_true(pl_chart_range(v, 11, 1, &lo, &hi));
    assert_true(lo == 0.5 && hi == 3);
    double bad[] = { NAN, -INFINITY };
    assert_false(pl_chart_range(bad, 2, 0, &lo, &hi));
}

static void test_pareto(void **state)
{
    (void)state;
    /* time (lower better) vs quality (higher better) */
    double x[] = { 10, 20, 15, 30, 12, 20, NAN, 25, 20 };
    double y[] = { 0.5, 0.8, 0.6, 0.9, 0.45, 0.7, 0.99, 0.8, 0.8 };
    size_t idx[9], nf;
    assert_int_equal(pl_pareto_front(x, y, 9, -1, 1, idx, &nf), PL_OK);
    /* front: (10,.5) (15,.6) (20,.8) (30,.9); (12,.45) dominated by (10,.5), (25,.8) by (20,.8),
     * the duplicate (20,.8) at index 8 is kept once, NaN skipped */
    assert_int_equal(nf, 4);
    assert_int_equal(idx[0], 0);
    assert_int_equal(idx[1], 2);
    assert_true(idx[2] == 1 || idx[2] == 8);
    assert_int_equal(idx[3], 3);
    /* both higher-better: only (30, .9) */
    assert_int_equal(pl_pareto_front(x, y, 9, 1, 1, idx, &nf), PL_OK);
    assert_int_equal(nf, 1);
    assert_int_equal(idx[0], 3);
    assert_int_equal(pl_pareto_front(x, y, 0, 1, 1, idx, &nf), PL_OK);
    assert_int_equal(nf, 0);
}

static void test_ema(void **state)
{
    (void)state;
    double y[] = { 1, 3, NAN, 5 };
    double o[5];
    pl_ema(y, 4, 0.5, o);
    /* s1 = .5*1 = .5, /(1-.5) = 1; s2 = .25 + 1.5 = 1.75, /(1-.25) = 2.3333; NaN; s3 = .875 + 2.5 = 3.375, /(1-.125) */
    assert_true(fabs(o[0] - 1) < 1e-12);
    assert_true(fabs(o[1] - 1.75 / 0.75) < 1e-12);
    assert_true(isnan(o[2]));
    assert_true(fabs(o[3] - 3.375 / 0.875) < 1e-12);
    double c[5] = { 2, 2, 2, 2, 2 };
    pl_ema(c, 5, 0.9, o);
    for (int i = 0; i < 5; i++) assert_true(fabs(o[i] - 2) < 1e-12);
}

static void test_downsample(void **state)
{
    (void)state;
    size_t n = 1000000;
    double *px = malloc(n * sizeof *px), *py = malloc(n * sizeof *py);
    double *ox = malloc(n * sizeof *ox), *oy = malloc(n * sizeof *oy);
    assert_non_null(px); assert_non_null(py); assert_non_null(ox); assert_non_null(oy);
    for (size_t i = 0; i < n; i++) {
        px[i] = 10 + 500.0 * (double)i / (double)n;
        py[i] = 100 + 20 * sin((double)i * 1e-4);
    }
    py[123457] = -500;   /* single-sample spikes must survive */
    py[765431] = 900;
    py[400000] = NAN;    /* and a gap breaks the line */
    size_t m = pl_downsample_minmax(px, py, n, ox, oy);
    assert_true(m <= 4 * 501 + 2);
    double mn = INFINITY, mx = -INFINITY;
    int breaks = 0;
    for (size_t i = 0; i < m; i++) {
        if (isnan(oy[i])) { breaks++; continue; }
        if (oy[i] < mn) mn = oy[i];
        if (oy[i] > mx) mx = oy[i];
    }
    assert_true(mn == -500 && mx == 900);
    assert_int_equal(breaks, 1);
    /* short input: unchanged */
    double a[] = { 1, 2, 3 }, b[] = { 5, 6, 7 };
    assert_int_equal(pl_downsample_minmax(a, b, 3, ox, oy), 3);
    assert_true(oy[2] == 7);
    free(px); free(py); free(ox); free(oy);
}

/* ---------------------------------------------------------------- rendering */

static int boxes_overlap(const struct pl_chart_box *a, const struct pl_chart_box *b)
{
    return a->x0 < b->x1 && b->x0 < a->x1 && a->y0 < b->y1 && b->y0 < a->y1;
}

/* Structural checks every rendered chart must pass. */
static void check_chart(const struct pl_chart *c, int w, int h, int expect_ink)
{
    assert_int_equal(c->width, w);
    assert_int_equal(c->height, h);
    struct pl_raster *r;
    assert_int_equal(pl_png_decode(c->png, c->png_size, &r), PL_OK);
    assert_int_equal(r->width, w);
    assert_int_equal(r->height, h);
    /* plot area inside the image and not degenerate */
    assert_true(c->plot.x0 >= 0 && c->plot.y0 >= 0 && c->plot.x1 <= w && c->plot.y1 <= h);
    if (!(c->plot.x1 - c->plot.x0 >= w / 4 && c->plot.y1 - c->plot.y0 >= h / 5))
        fail_msg("%dx%d: plot area (%d,%d)-(%d,%d) too small", w, h, c->plot.x0, c->plot.y0, c->plot.x1, c->plot.y1);
    for (size_t i = 0; i < c->nboxes; i++) {
        const struct pl_chart_box *b = &c->boxes[i];
        if (b->kind == PL_BOX_POINT_LABEL) continue;
        if (!(b->x0 >= 0 && b->y0 >= 0 && b->x1 <= w && b->y1 <= h))
            fail_msg("%dx%d: %s box '%s' (%d,%d)-(%d,%d) leaves the image", w, h, pl_chart_box_kind_name(b->kind),
                     b->text, b->x0, b->y0, b->x1, b->y1);
        for (size_t j = i + 1; j < c->nboxes; j++) {
            const struct pl_chart_box *d = &c->boxes[j];
            if (d->kind == PL_BOX_POINT_LABEL || d->kind == PL_BOX_NOTE) continue;
            if (boxes_overlap(b, d))
                fail_msg("%dx%d: %s '%s' overlaps %s '%s'", w, h, pl_chart_box_kind_name(b->kind), b->text,
                         pl_chart_box_kind_name(d->kind), d->text);
        }
    }
    /* ink: palette-coloured pixels inside the plot area, none outside it apart from the legend */
    size_t in = pl_raster_count_near(r, pl_chart_palette, 6, 40, c->plot.x0 + 1, c->plot.y0 + 1,
                                     c->plot.x1 - 1, c->plot.y1 - 1, NULL);
    if (expect_ink) assert_true(in >= (size_t)expect_ink);
    else assert_int_equal(in, 0);
    pl_raster_free(r);
}

static size_t count_kind(const struct pl_chart *c, int kind)
{
    size_t n = 0;
    for (size_t i = 0; i < c->nboxes; i++) n += c->boxes[i].kind == kind;
    return n;
}

static void test_render_kinds_and_sizes(void **state)
{
    (void)state;
    static const int sizes[][2] = { { 64, 64 }, { 160, 100 }, { 320, 200 }, { 640, 400 }, { 1600, 1000 }, { 400, 900 } };
    double x[50], y1[50], y2[50];
    for (int i = 0; i < 50; i++) { x[i] = i * 20; y1[i] = 2 * exp(-i / 15.0) + 0.3; y2[i] = 2.2 * exp(-i / 18.0) + 0.5; }
    const char *cats[] = { "LoRA r=8", "QLoRA r=8 (4-bit)", "DoRA", "IA3", "prefix tuning", "full fine-tune" };
    double tv[] = { 41, 58, 52, 33, 36, 120 }, mv[] = { 610, 402, 640, 560, 575, 1900 };
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        int w = sizes[si][0], h = sizes[si][1];
        struct pl_chart_series ls[2] = { { .name = "train", .x = x, .y = y1, .n = 50, .color = -1 },
                                         { .name = "validation", .x = x, .y = y2, .n = 50, .dashed = 1, .color = -1 } };
        struct pl_chart_spec spec = { .kind = PL_CHART_LINE, .width = w, .height = h, .title = "Loss curve of a long run name",
                                      .xlabel = "step", .ylabel = "loss", .series = ls, .nseries = 2 };
        struct pl_chart *c;
        assert_int_equal(pl_chart_render(&spec, &c), PL_OK);
        check_chart(c, w, h, 20);
        assert_true(count_kind(c, PL_BOX_XTICK) >= 1 && count_kind(c, PL_BOX_YTICK) >= 1);
        if (w >= 320) {
            assert_int_equal(count_kind(c, PL_BOX_LEGEND), 2);
            assert_true(c->legend.x1 > c->legend.x0);
            assert_int_equal(count_kind(c, PL_BOX_TITLE), 1);
            assert_true(count_kind(c, PL_BOX_XTICK) >= 3);
        }
        pl_chart_free(c);

        struct pl_chart_series bs[2] = { { .name = "time", .y = tv, .n = 6, .color = -1 }, { .name = "memory", .y = mv, .n = 6, .color = -1 } };
        spec = (struct pl_chart_spec){ .kind = PL_CHART_BAR, .width = w, .height = h, .title = "Per method",
                                       .categories = cats, .ncategories = 6, .series = bs, .nseries = 2, .ylog = si % 2 };
        assert_int_equal(pl_chart_render(&spec, &c), PL_OK);
        check_chart(c, w, h, 20);
        pl_chart_free(c);

        struct pl_chart_series ss = { .name = "methods", .x = tv, .y = mv, .n = 6, .labels = cats, .color = -1 };
        spec = (struct pl_chart_spec){ .kind = PL_CHART_SCATTER, .width = w, .height = h, .series = &ss, .nseries = 1,
                                       .pareto = 1, .pareto_xdir = -1, .pareto_ydir = -1, .xlog = 1 };
        assert_int_equal(pl_chart_render(&spec, &c), PL_OK);
        check_chart(c, w, h, 6);
        pl_chart_free(c);

        struct pl_chart_series hs = { .y = y1, .n = 50, .color = -1 };
        spec = (struct pl_chart_spec){ .kind = PL_CHART_HIST, .width = w, .height = h, .series = &hs, .nseries = 1, .bins = 10 };
        assert_int_equal(pl_chart_render(&spec, &c), PL_OK);
        check_chart(c, w, h, 20);
        assert_int_equal(c->bin_count[0], 10);
        assert_int_equal(c->bin_count[1], 50);
        pl_chart_free(c);
    }
}

static void test_edge_cases(void **state)
{
    (void)state;
    struct pl_chart *c;
    /* no series at all, and an empty series */
    for (int k = PL_CHART_LINE; k <= PL_CHART_HIST; k++) {
        struct pl_chart_spec spec = { .kind = k, .title = "empty" };
        assert_int_equal(pl_chart_render(&spec, &c), PL_OK);
        check_chart(c, 640, 400, 0);
        assert_int_equal(count_kind(c, PL_BOX_NOTE), 1);   /* "no data" */
        pl_chart_free(c);
        struct pl_chart_series e = { .name = "nothing", .y = NULL, .n = 0, .color = -1 };
        spec.series = &e;
        spec.nseries = 1;
        assert_int_equal(pl_chart_render(&spec, &c), PL_OK);
        check_chart(c, 640, 400, 0);
        pl_chart_free(c);
    }
    /* one point */
    double one = 3.5;
    for (int k = PL_CHART_LINE; k <= PL_CHART_SCATTER; k += 2) {
        struct pl_chart_series s = { .name = "one", .y = &one, .n = 1, .color = -1 };
        struct pl_chart_spec spec = { .kind = k, .series = &s, .nseries = 1 };
        assert_int_equal(pl_chart_render(&spec, &c), PL_OK);
        check_chart(c, 640, 400, 10);   /* the single point is visible */
        pl_chart_free(c);
    }
    /* NaN/inf everywhere, all-equal values, log axes with non-positive values */
    double weird[] = { NAN, 1, INFINITY, 2, -INFINITY, 3, NAN, 0, -5, 1e308 };
    double flat[] = { 7, 7, 7, 7 };
    for (int k = PL_CHART_LINE; k <= PL_CHART_HIST; k++) {
        for (int lg = 0; lg < 2; lg++) {
            const char *cats[10] = { "a", "b", "c", "d", "e", "f", "g", "h", "i", "j" };
            struct pl_chart_series s[2] = { { .name = "weird", .y = weird, .n = 10, .color = -1 },
                                            { .name = "flat", .y = flat, .n = 4, .color = -1 } };
            struct pl_chart_spec spec = { .kind = k, .series = s, .nseries = k == PL_CHART_BAR ? 1 : 2, .ylog = lg,
                                          .xlog = lg && (k == PL_CHART_LINE || k == PL_CHART_SCATTER),
                                          .categories = cats, .ncategories = 10, .smooth = 0.5 * (k == PL_CHART_LINE) };
            assert_int_equal(pl_chart_render(&spec, &c), PL_OK);
            check_chart(c, 640, 400, 5);
            pl_chart_free(c);
            struct pl_chart_series f = { .name = "flat", .y = flat, .n = 4, .color = -1 };
            spec.series = &f;
            spec.nseries = 1;
            spec.ncategories = 4;
            assert_int_equal(pl_chart_render(&spec, &c), PL_OK);
            check_chart(c, 640, 400, 5);
            pl_chart_free(c);
        }
    }
}

static void test_million_points(void **state)
{
    (void)state;
    size_t n = 1000000;
    double *y = malloc(n * sizeof *y);
    double *x = malloc(n * sizeof *x);
    assert_non_null(y);
    assert_non_null(x);
    for (size_t i = 0; i < n; i++) { x[i] = (double)i; y[i] = sin((double)i * 1e-3) + (double)(i % 7) * 0.01; }
    y[500000] = 25;   /* a spike */
    struct pl_chart *c;
    struct pl_chart_series s = { .name = "1e6 points", .y = y, .n = n, .color = -1 };
    struct pl_chart_spec spec = { .kind = PL_CHART_LINE, .series = &s, .nseries = 1, .title = "million" };
    assert_int_equal(pl_chart_render(&spec, &c), PL_OK);
    check_chart(c, 640, 400, 500);
    /* downsampled: at most 4 vertices per pixel column */
    assert_true(c->vertices <= (size_t)4 * (size_t)(c->plot.x1 - c->plot.x0 + 1));
    /* the spike is drawn: palette ink in the top tenth of the plot, near the middle */
    struct pl_raster *r;
    assert_int_equal(pl_png_decode(c->png, c->png_size, &r), PL_OK);
    int mid = (c->plot.x0 + c->plot.x1) / 2;
    size_t top = pl_raster_count_near(r, pl_chart_palette, 1, 40, mid - 3, c->plot.y0 + 1, mid + 4,
                                      c->plot.y0 + (c->plot.y1 - c->plot.y0) / 10, NULL);
    assert_true(top > 0);
    pl_raster_free(r);
    pl_chart_free(c);
    /* scatter and histogram of 10^6 values */
    struct pl_chart_series sc = { .name = "cloud", .x = y, .y = x, .n = n, .color = -1 };
    spec = (struct pl_chart_spec){ .kind = PL_CHART_SCATTER, .series = &sc, .nseries = 1, .pareto = 1 };
    assert_int_equal(pl_chart_render(&spec, &c), PL_OK);
    check_chart(c, 640, 400, 500);
    assert_true(c->vertices < n / 4);   /* one marker per occupied pixel */
    pl_chart_free(c);
    struct pl_chart_series hs = { .y = y, .n = n, .color = -1 };
    spec = (struct pl_chart_spec){ .kind = PL_CHART_HIST, .series = &hs, .nseries = 1 };
    assert_int_equal(pl_chart_render(&spec, &c), PL_OK);
    check_chart(c, 640, 400, 500);
    assert_int_equal(c->bin_count[0], 21);   /* Sturges: ceil(log2 1e6) + 1 */
    assert_int_equal(c->bin_count[1], n);
    pl_chart_free(c);
    free(x);
    free(y);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    struct pl_chart *c = (struct pl_chart *)1;
    struct pl_chart_spec spec = { .kind = PL_CHART_LINE, .width = 10, .height = 400 };
    assert_int_equal(pl_chart_render(&spec, &c), PL_ERR_ARG);
    assert_null(c);
    assert_non_null(strstr(pl_last_error(), "size 10x400"));
    double v[] = { 1, 2, 3 };
    const char *cats[] = { "a", "b" };
    struct pl_chart_series s = { .name = "m", .y = v, .n = 3, .color = -1 };
    spec = (struct pl_chart_spec){ .kind = PL_CHART_BAR, .series = &s, .nseries = 1, .categories = cats, .ncategories = 2 };
    assert_int_equal(pl_chart_render(&spec, &c), PL_ERR_ARG);
    assert_non_null(strstr(pl_last_error(), "3 values for 2 categories"));
    spec = (struct pl_chart_spec){ .kind = PL_CHART_LINE, .series = &s, .nseries = 1, .smooth = 1.5 };
    assert_int_equal(pl_chart_render(&spec, &c), PL_ERR_ARG);
    assert_non_null(strstr(pl_last_error(), "smooth"));
    spec = (struct pl_chart_spec){ .kind = (enum pl_chart_kind)9 };
    assert_int_equal(pl_chart_render(&spec, &c), PL_ERR_ARG);
    struct pl_raster *r = (struct pl_raster *)1;
    assert_int_equal(pl_png_decode("not a png at all", 16, &r), PL_ERR_FORMAT);
    assert_null(r);
    /* a real PNG cut in half: libgd reports it, we fail cleanly */
    double v2[] = { 1, 2 };
    struct pl_chart_series s2 = { .y = v2, .n = 2, .color = -1 };
    struct pl_chart_spec sp2 = { .kind = PL_CHART_LINE, .series = &s2, .nseries = 1, .width = 100, .height = 80 };
    assert_int_equal(pl_chart_render(&sp2, &c), PL_OK);
    assert_int_equal(pl_png_decode(c->png, c->png_size / 2, &r), PL_ERR_FORMAT);
    assert_null(r);
    assert_non_null(strstr(pl_last_error(), "truncated"));   /* libpng's reason, not on stderr */
    pl_chart_free(c);
    assert_int_equal(pl_png_load("/nonexistent/x.png", &r), PL_ERR_IO);
    assert_non_null(strstr(pl_last_error(), "/nonexistent/x.png"));
}

static void test_fonts(void **state)
{
    (void)state;
    double v[] = { 1, 3, 2 };
    struct pl_chart_series s = { .name = "s", .y = v, .n = 3, .color = -1 };
    struct pl_chart *a, *b;
    struct pl_chart_spec spec = { .kind = PL_CHART_LINE, .series = &s, .nseries = 1, .title = "bitmap", .bitmap_font = 1 };
    assert_int_equal(pl_chart_render(&spec, &a), PL_OK);
    assert_int_equal(a->ttf, 0);
    assert_string_equal(a->font, "");
    check_chart(a, 640, 400, 10);
    /* a font file that does not exist falls back to the bitmap font, it is not an error */
    spec.bitmap_font = 0;
    spec.font = "/nonexistent/font.ttf";
    assert_int_equal(pl_chart_render(&spec, &b), PL_OK);
    assert_int_equal(b->ttf, 0);
    pl_chart_free(b);
    /* DejaVu Sans (fonts-dejavu-core, installed by scripts/deps.sh) is found by the search */
    spec.font = NULL;
    assert_int_equal(pl_chart_render(&spec, &b), PL_OK);
    if (!b->ttf) fail_msg("no TrueType font found; install fonts-dejavu-core");
    assert_non_null(strstr(b->font, ".ttf"));
    check_chart(b, 640, 400, 10);
    /* the text differs from the bitmap rendering: anti-aliased grey levels exist */
    struct pl_raster *ra, *rb;
    assert_int_equal(pl_png_decode(a->png, a->png_size, &ra), PL_OK);
    assert_int_equal(pl_png_decode(b->png, b->png_size, &rb), PL_OK);
    int md;
    size_t nover;
    assert_int_equal(pl_raster_diff(ra, rb, 8, &md, &nover), PL_OK);
    assert_true(nover > 100);
    pl_raster_free(ra);
    pl_raster_free(rb);
    pl_chart_free(a);
    pl_chart_free(b);
}

static void test_memory_accounting(void **state)
{
    (void)state;
    double v[200];
    for (int i = 0; i < 200; i++) v[i] = sin(i * 0.1);
    struct pl_chart_series s = { .name = "s", .y = v, .n = 200, .color = -1 };
    struct pl_chart_spec spec = { .kind = PL_CHART_LINE, .series = &s, .nseries = 1, .width = 800, .height = 500, .smooth = 0.5 };
    int64_t data0 = pl_mem_current(PL_MEM_DATA), ws0 = pl_mem_current(PL_MEM_WORKSPACE);
    pl_mem_reset_peak();
    struct pl_chart *c;
    assert_int_equal(pl_chart_render(&spec, &c), PL_OK);
    /* gd's image (800*500*4 bytes) was accounted while it existed */
    assert_true(pl_mem_peak(PL_MEM_WORKSPACE) - ws0 >= 800 * 500 * 4);
    assert_int_equal(pl_mem_current(PL_MEM_WORKSPACE), ws0);
    assert_true(pl_mem_current(PL_MEM_DATA) - data0 >= (int64_t)c->png_size);
    pl_chart_free(c);
    assert_int_equal(pl_mem_current(PL_MEM_DATA), data0);
    /* every allocation failing in turn: a clean PL_ERR_NOMEM, nothing leaked (see asan) */
    int failures = 0;
    for (int k = 1; k < 40; k++) {
        pl_mem_fail_after(k);
        enum pl_status st = pl_chart_render(&spec, &c);
        pl_mem_fail_after(0);
        if (st == PL_OK) { pl_chart_free(c); break; }
        assert_int_equal(st, PL_ERR_NOMEM);
        assert_null(c);
        failures++;
        assert_int_equal(pl_mem_current(PL_MEM_DATA), data0);
        assert_int_equal(pl_mem_current(PL_MEM_WORKSPACE), ws0);
    }
    assert_true(failures >= 3);
}

static void test_save(void **state)
{
    (void)state;
    double v[] = { 1, 2 };
    struct pl_chart_series s = { .y = v, .n = 2, .color = -1 };
    struct pl_chart_spec spec = { .kind = PL_CHART_LINE, .series = &s, .nseries = 1, .width = 200, .height = 120 };
    struct pl_chart *c;
    assert_int_equal(pl_chart_render(&spec, &c), PL_OK);
    assert_int_equal(pl_chart_save(c, "/nonexistent-dir/x.png"), PL_ERR_IO);
    assert_non_null(strstr(pl_last_error(), "/nonexistent-dir/x.png"));
    char path[] = "/tmp/pl_chart_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(pl_chart_save(c, path), PL_OK);
    struct pl_raster *r;
    assert_int_equal(pl_png_load(path, &r), PL_OK);
    assert_int_equal(r->width, 200);
    assert_int_equal(r->height, 120);
    assert_int_equal(r->rgb[0], 0xFFFFFF);   /* white background */
    pl_raster_free(r);
    remove(path);
    pl_chart_free(c);
}

/* ---------------------------------------------------------------- html helpers */

static void test_escape(void **state)
{
    (void)state;
    char *o;
    size_t n;
    const char in[] = "<script>alert('x')</script> & \"q\"";
    assert_int_equal(pl_html_escape(in, strlen(in), &o, &n), PL_OK);
    assert_string_equal(o, "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;");
    assert_int_equal(n, strlen(o));
    pl_free(o);
    /* NUL, control bytes and invalid UTF-8 become U+FFFD; valid UTF-8 passes */
    const char mixed[] = "a\0b\x01\xff\xc3\xa9\xe2\x82\xac\xed\xa0\x80\n";
    assert_int_equal(pl_html_escape(mixed, sizeof mixed - 1, &o, &n), PL_OK);
    assert_string_equal(o, "a\xEF\xBF\xBD" "b\xEF\xBF\xBD\xEF\xBF\xBD\xc3\xa9\xe2\x82\xac\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\n");
    pl_free(o);
}

static void test_base64(void **state)
{
    (void)state;
    /* RFC 4648 test vectors */
    const char *in[] = { "", "f", "fo", "foo", "foob", "fooba", "foobar" };
    const char *out[] = { "", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy" };
    for (int i = 0; i < 7; i++) {
        char *o;
        size_t n;
        assert_int_equal(pl_base64_encode(in[i], strlen(in[i]), &o, &n), PL_OK);
        assert_string_equal(o, out[i]);
        unsigned char *d;
        size_t m;
        assert_int_equal(pl_base64_decode(o, n, &d, &m), PL_OK);
        assert_int_equal(m, strlen(in[i]));
        assert_memory_equal(d, in[i], m);
        pl_free(o);
        pl_free(d);
    }
    unsigned char all[256];
    for (int i = 0; i < 256; i++) all[i] = (unsigned char)i;
    char *o;
    size_t n, m;
    unsigned char *d;
    assert_int_equal(pl_base64_encode(all, 256, &o, &n), PL_OK);
    assert_int_equal(n, 344);
    assert_int_equal(pl_base64_decode(o, n, &d, &m), PL_OK);
    assert_int_equal(m, 256);
    assert_memory_equal(d, all, 256);
    pl_free(o);
    pl_free(d);
    assert_int_equal(pl_base64_decode("Zm9v!", 5, &d, &m), PL_ERR_FORMAT);
    assert_int_equal(pl_base64_decode("Zm9", 3, &d, &m), PL_ERR_FORMAT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ticks_linear),
        cmocka_unit_test(test_ticks_log),
        cmocka_unit_test(test_hist_and_range),
        cmocka_unit_test(test_pareto),
        cmocka_unit_test(test_ema),
        cmocka_unit_test(test_downsample),
        cmocka_unit_test(test_render_kinds_and_sizes),
        cmocka_unit_test(test_edge_cases),
        cmocka_unit_test(test_million_points),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_fonts),
        cmocka_unit_test(test_memory_accounting),
        cmocka_unit_test(test_save),
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_base64),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
