/* chart.c — draws the charts of chart.h with libgd and encodes them as PNG; decodes PNGs for
 * tests (golden images, browser screenshots).
 *
 * Owner: report (issue 6). This is the only file that includes gd.h. Tick values, ranges,
 * bins, the Pareto front and downsampling come from src/report/chart_axis.c.
 *
 * Layout, top to bottom: title, legend rows (entries flow left to right and wrap, so the legend
 * never covers data), the plot area, tick labels, the x label; the y label is rotated on the
 * left. Elements are dropped (legend, axis labels, title) when an image is too small to hold
 * them. Tick counts follow the plot size, and are reduced until the x tick labels do not
 * overlap; bar chart category labels are staggered on two rows, then shortened with "..." if
 * they still collide. Every text box drawn is recorded in the chart, so tests can check it.
 *
 * Memory: libgd allocates the image (and its FreeType glyph cache) with malloc, outside
 * pl_alloc; the image's approximate size (4 bytes per pixel) is accounted with
 * pl_mem_track(PL_MEM_WORKSPACE) while it exists. gd's PNG buffer is copied into pl_alloc
 * memory and released at once.
 */
#include <errno.h>
#include <stdarg.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <gd.h>
#include <gdfonts.h>
#include <gdfontt.h>
#include <gdfontmb.h>
#include <gdfontl.h>
#include "peftlua/alloc.h"
#include "peftlua/fileio.h"
#include "peftlua/chart.h"

const uint32_t pl_chart_palette[PL_CHART_NPALETTE] = {
    0x0072B2, /* blue */
    0xD55E00, /* vermillion */
    0x009E73, /* bluish green */
    0xE69F00, /* orange */
    0xCC79A7, /* reddish purple */
    0x56B4E9, /* sky blue */
    0x000000, /* black */
    0xF0E442, /* yellow (weak on white: last) */
};

static const char *const box_names[PL_BOX_NKIND] = {
    "title", "xtick", "ytick", "xlabel", "ylabel", "legend", "point_label", "note"
};

const char *pl_chart_box_kind_name(int kind)
{
    return kind >= 0 && kind < PL_BOX_NKIND ? box_names[kind] : "?";
}

/* Standard places for a sans-serif TrueType font: Debian/Ubuntu (fonts-dejavu-core), Fedora,
 * Arch, FreeBSD/Homebrew prefixes, macOS. */
static const char *const font_paths[] = {
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/local/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/local/share/fonts/DejaVuSans.ttf",
    "/opt/homebrew/share/fonts/DejaVuSans.ttf",
    "/Library/Fonts/DejaVuSans.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "/Library/Fonts/Arial.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    NULL
};

enum { ROLE_SMALL, ROLE_BASE, ROLE_TITLE, NROLE };

struct role { double pt; int asc, desc; gdFontPtr bm; };

struct legend_entry { const char *name; int color; int dashed; int marker; int kind; };
enum { LEG_LINE, LEG_MARKER, LEG_BOX, LEG_FRONT };

struct ctx {
    const struct pl_chart_spec *s;
    struct pl_chart *c;
    gdImagePtr im;
    int W, H, pad, lw;
    int ttf;
    char font[256];
    struct role r[NROLE];
    size_t cap;
    enum pl_status st;
    /* colours */
    int white, text, muted, grid, axis;
    /* layout */
    int show_title, show_legend, show_xlabel, show_ylabel;
    int px0, py0, px1, py1;         /* plot rectangle, inclusive */
    struct pl_ticks xt, yt;
    int xt_every, yt_every;          /* label every k-th tick */
    int bar_rows;                    /* 1 or 2 rows of category labels */
    double xlo, xhi, ylo, yhi;       /* data ranges (before ticks) */
    int xlog, ylog;
    struct legend_entry *leg;
    size_t nleg;
    int leg_rows;
    /* hist */
    int nbins;
    double hlo, hhi;
};

/* ---------------- text ---------------- */

static void ascii_copy(char *dst, size_t n, const char *s)
{
    size_t i = 0;
    for (; s[i] && i + 1 < n; i++) dst[i] = (unsigned char)s[i] < 128 ? s[i] : '?';
    dst[i] = 0;
}

/* libgd decodes HTML entities ("&#233;", "&amp;") in FreeType strings; spell every '&' as
 * "&#38;" so user text is drawn literally. Long text is cut at a character boundary. */
static const char *ft_text(const char *s, char *buf, size_t n)
{
    size_t j = 0;
    for (size_t i = 0; s[i]; i++) {
        size_t need = s[i] == '&' ? 5 : 1;
        if (j + need + 1 > n) {
            while (j > 0 && ((unsigned char)buf[j] & 0xC0) == 0x80) j--;   /* not inside a sequence */
            break;
        }
        if (s[i] == '&') { memcpy(buf + j, "&#38;", 5); j += 5; }
        else buf[j++] = s[i];
    }
    buf[j] = 0;
    return buf;
}

static int ttf_bbox(struct ctx *x, const char *s, double pt, int brect[8])
{
    char buf[1024];
    char *err = gdImageStringFT(NULL, brect, 0, x->font, pt, 0, 0, 0, (char *)ft_text(s, buf, sizeof buf));
    return err == NULL;
}

static int text_w(struct ctx *x, const char *s, int role)
{
    if (!s || !*s) return 0;
    if (x->ttf) {
        int b[8];
        if (ttf_bbox(x, s, x->r[role].pt, b)) return b[2] - b[0] + 1;
    }
    return (int)strlen(s) * x->r[role].bm->w;
}

static int text_h(struct ctx *x, int role) { return x->r[role].asc + x->r[role].desc; }

static void add_box(struct ctx *x, int x0, int y0, int x1, int y1, int kind, const char *text)
{
    struct pl_chart *c = x->c;
    if (x->st != PL_OK) return;
    if (c->nboxes == x->cap) {
        size_t ncap = x->cap ? 2 * x->cap : 32;
        struct pl_chart_box *nb = pl_realloc(c->boxes, ncap * sizeof *nb);
        if (!nb) { x->st = pl_fail(PL_ERR_NOMEM, "chart: out of memory for label boxes"); return; }
        c->boxes = nb;
        x->cap = ncap;
    }
    struct pl_chart_box *b = &c->boxes[c->nboxes++];
    b->x0 = x0; b->y0 = y0; b->x1 = x1; b->y1 = y1; b->kind = kind;
    snprintf(b->text, sizeof b->text, "%s", text ? text : "");
}

/* Draw s with its box's top-left corner at (bx, by); records the box. */
static void draw_text(struct ctx *x, const char *s, int role, int bx, int by, int color, int kind)
{
    if (!s || !*s) return;
    int w = text_w(x, s, role), h = text_h(x, role);
    if (x->ttf) {
        int b[8];
        char buf[1024];
        if (!gdImageStringFT(x->im, b, color, x->font, x->r[role].pt, 0, bx, by + x->r[role].asc, (char *)ft_text(s, buf, sizeof buf))) {
            add_box(x, bx, by, bx + w, by + h, kind, s);
            return;
        }
    }
    char buf[512];
    ascii_copy(buf, sizeof buf, s);
    gdImageString(x->im, x->r[role].bm, bx, by, (unsigned char *)buf, color);
    add_box(x, bx, by, bx + w, by + h, kind, s);
}

/* Rotated 90 degrees (reading upwards), box top-left at (bx, by): h wide, w tall. */
static void draw_text_up(struct ctx *x, const char *s, int role, int bx, int by, int color, int kind)
{
    if (!s || !*s) return;
    int w = text_w(x, s, role), h = text_h(x, role);
    if (x->ttf) {
        int b[8];
        char buf[1024];
        if (!gdImageStringFT(x->im, b, color, x->font, x->r[role].pt, M_PI / 2, bx + x->r[role].asc, by + w, (char *)ft_text(s, buf, sizeof buf))) {
            add_box(x, bx, by, bx + h, by + w, kind, s);
            return;
        }
    }
    char buf[512];
    ascii_copy(buf, sizeof buf, s);
    gdImageStringUp(x->im, x->r[role].bm, bx, by + w, (unsigned char *)buf, color);
    add_box(x, bx, by, bx + h, by + w, kind, s);
}

/* s shortened with "..." to fit maxw pixels (UTF-8 aware); out has room for n bytes. */
static void fit_text(struct ctx *x, const char *s, int role, int maxw, char *out, size_t n)
{
    snprintf(out, n, "%s", s ? s : "");
    if (text_w(x, out, role) <= maxw) return;
    size_t len = strlen(out);
    while (len > 0) {
        len--;
        while (len > 0 && ((unsigned char)out[len] & 0xC0) == 0x80) len--;
        if (len + 4 > n) continue;
        memcpy(out + len, "...", 4);
        if (text_w(x, out, role) <= maxw) return;
    }
    out[0] = 0;
}

static void setup_fonts(struct ctx *x)
{
    const struct pl_chart_spec *s = x->s;
    double g = sqrt((double)x->W * x->H);
    double base = g / 52.0, lo = g >= 300 ? 7.5 : 5 + 2.5 * (g - 64) / 236;   /* tiny images: smaller floor */
    if (base < lo) base = lo;
    if (base > 18) base = 18;
    x->r[ROLE_SMALL].pt = base * 0.9;
    x->r[ROLE_BASE].pt = base;
    x->r[ROLE_TITLE].pt = base * 1.3;
    int big = x->W >= 900 && x->H >= 560, tiny = x->W < 260 || x->H < 180;
    x->r[ROLE_SMALL].bm = tiny ? gdFontGetTiny() : gdFontGetSmall();
    x->r[ROLE_BASE].bm = tiny ? gdFontGetTiny() : gdFontGetSmall();
    x->r[ROLE_TITLE].bm = big ? gdFontGetLarge() : tiny ? gdFontGetSmall() : gdFontGetMediumBold();
    x->ttf = 0;
    x->font[0] = 0;
    if (!s->bitmap_font) {
        const char *env = getenv("PEFT_FONT");
        const char *cands[2] = { s->font, env && *env ? env : NULL };
        for (int i = 0; i < 2 && !x->ttf; i++) {
            if (!cands[i]) continue;
            snprintf(x->font, sizeof x->font, "%s", cands[i]);
            int b[8];
            x->ttf = access(x->font, R_OK) == 0 && ttf_bbox(x, "Mg", 10, b);
        }
        for (int i = 0; font_paths[i] && !x->ttf && !s->font; i++) {
            snprintf(x->font, sizeof x->font, "%s", font_paths[i]);
            int b[8];
            x->ttf = access(x->font, R_OK) == 0 && ttf_bbox(x, "Mg", 10, b);
        }
        if (!x->ttf) x->font[0] = 0;
    }
    for (int k = 0; k < NROLE; k++) {
        int b[8];
        if (x->ttf && ttf_bbox(x, "\xc3\x81gjy|", x->r[k].pt, b)) {
            x->r[k].asc = -b[5] + 1;
            x->r[k].desc = b[1] + 1;
        } else {
            x->r[k].asc = x->r[k].bm->h;
            x->r[k].desc = 0;
        }
    }
}

/* ---------------- scales ---------------- */

static double tf(double v, int lg) { return lg ? log10(v) : v; }

static double sx(struct ctx *x, double v)
{
    double a = tf(x->xt.lo, x->xlog), b = tf(x->xt.hi, x->xlog);
    return x->px0 + (tf(v, x->xlog) - a) / (b - a) * (x->px1 - x->px0);
}

static double sy(struct ctx *x, double v)
{
    double a = tf(x->yt.lo, x->ylog), b = tf(x->yt.hi, x->ylog);
    return x->py1 - (tf(v, x->ylog) - a) / (b - a) * (x->py1 - x->py0);
}

static int clampi(double v)
{
    if (v != v) return 0;
    if (v < -100000) return -100000;
    if (v > 100000) return 100000;
    return (int)lround(v);
}

static int series_color(struct ctx *x, size_t i, int alpha)
{
    int ci = x->s->series[i].color;
    if (ci < 0) ci = (int)(i % PL_CHART_NPALETTE);
    uint32_t c = pl_chart_palette[ci % PL_CHART_NPALETTE];
    return gdTrueColorAlpha((c >> 16) & 255, (c >> 8) & 255, c & 255, alpha);
}

static double xval(const struct pl_chart_series *s, size_t i) { return s->x ? s->x[i] : (double)i; }

static int usable(double v, int lg) { return isfinite(v) && fabs(v) <= 1e300 && (!lg || v > 0); }

/* ---------------- data ranges ---------------- */

static enum pl_status compute_ranges(struct ctx *x)
{
    const struct pl_chart_spec *s = x->s;
    int anyx = 0, anyy = 0;
    double xl = 0, xh = 0, yl = 0, yh = 0;
    for (size_t k = 0; k < s->nseries; k++) {
        const struct pl_chart_series *se = &s->series[k];
        if (se->n && !se->y) return pl_fail(PL_ERR_ARG, "chart: series %zu has %zu points but no values", k + 1, se->n);
        if (s->kind == PL_CHART_LINE || s->kind == PL_CHART_SCATTER) {
            for (size_t i = 0; i < se->n; i++) {
                double xv = xval(se, i), yv = se->y[i];
                if (!usable(xv, x->xlog) || !usable(yv, x->ylog)) continue;
                if (!anyx) { xl = xh = xv; anyx = 1; } else { xl = fmin(xl, xv); xh = fmax(xh, xv); }
                if (!anyy) { yl = yh = yv; anyy = 1; } else { yl = fmin(yl, yv); yh = fmax(yh, yv); }
            }
        } else if (s->kind == PL_CHART_BAR) {
            if (se->n != s->ncategories)
                return pl_fail(PL_ERR_ARG, "chart: bar series %zu ('%s') has %zu values for %zu categories",
                               k + 1, se->name ? se->name : "", se->n, s->ncategories);
            double a, b;
            if (pl_chart_range(se->y, se->n, x->ylog, &a, &b)) {
                if (!anyy) { yl = a; yh = b; anyy = 1; } else { yl = fmin(yl, a); yh = fmax(yh, b); }
            }
        } else {
            double a, b;
            if (pl_chart_range(se->y, se->n, 0, &a, &b)) {
                if (!anyx) { xl = a; xh = b; anyx = 1; } else { xl = fmin(xl, a); xh = fmax(xh, b); }
            }
        }
    }
    if (s->kind == PL_CHART_HIST) {
        x->nbins = s->bins;
        size_t total = 0;
        for (size_t k = 0; k < s->nseries; k++) total += s->series[k].n;
        if (x->nbins <= 0) x->nbins = pl_hist_default_bins(total);
        if (x->nbins > 1000) return pl_fail(PL_ERR_ARG, "chart: %d histogram bins (at most 1000)", x->nbins);
        if (!anyx) { xl = 0; xh = 1; }
        if (xh == xl) { xl -= 0.5; xh += 0.5; }
        x->hlo = xl; x->hhi = xh;
        /* counts decide the y range */
        size_t *cnt = pl_alloc((size_t)x->nbins * sizeof *cnt, PL_MEM_WORKSPACE);
        if (!cnt) return pl_fail(PL_ERR_NOMEM, "chart: out of memory for histogram bins");
        yl = 0; yh = 0; anyy = 1;
        x->c->bin_count[0] = (size_t)x->nbins;
        for (size_t k = 0; k < s->nseries; k++) {
            x->c->bin_count[1] += pl_hist_count(s->series[k].y, s->series[k].n, x->hlo, x->hhi, x->nbins, cnt);
            for (int b = 0; b < x->nbins; b++) yh = fmax(yh, (double)cnt[b]);
        }
        pl_free(cnt);
        if (x->ylog) { yl = 0.8; if (yh < 1) yh = 1; }
        else if (yh == 0) yh = 1;
        anyx = 1;
    }
    if (s->kind == PL_CHART_BAR && !x->ylog) {
        if (!anyy) { yl = 0; yh = 1; anyy = 1; }
        yl = fmin(yl, 0);
        yh = fmax(yh, 0);
        /* headroom, so the tallest bar does not touch the frame */
        if (yh > 0) yh += 0.04 * (yh - yl);
        if (yl < 0) yl -= 0.04 * (yh - yl);
    }
    if (s->kind == PL_CHART_HIST && !x->ylog) yh *= 1.04;
    if (s->kind == PL_CHART_SCATTER && anyx) {
        /* a little room so markers at the extremes are not cut in half */
        if (x->xlog) { xl /= 1.08; xh *= 1.08; } else { double d = (xh - xl) * 0.04; xl -= d; xh += d; }
        if (x->ylog) { yl /= 1.08; yh *= 1.08; } else { double d = (yh - yl) * 0.04; yl -= d; yh += d; }
    }
    if (!anyx) { xl = x->xlog ? 1 : 0; xh = x->xlog ? 10 : 1; }
    if (!anyy) { yl = x->ylog ? 1 : 0; yh = x->ylog ? 10 : 1; }
    x->xlo = xl; x->xhi = xh; x->ylo = yl; x->yhi = yh;
    return PL_OK;
}

static void make_ticks(double lo, double hi, int lg, int target, struct pl_ticks *t)
{
    if (lg) pl_ticks_log(lo, hi, target, t);
    else pl_ticks_linear(lo, hi, target, t);
}

/* ---------------- legend ---------------- */

static enum pl_status collect_legend(struct ctx *x)
{
    const struct pl_chart_spec *s = x->s;
    x->leg = pl_calloc(s->nseries + 1, sizeof *x->leg, PL_MEM_WORKSPACE);
    if (!x->leg) return pl_fail(PL_ERR_NOMEM, "chart: out of memory for the legend");
    for (size_t k = 0; k < s->nseries; k++) {
        const char *nm = s->series[k].name;
        if (!nm || !*nm) continue;
        struct legend_entry *e = &x->leg[x->nleg++];
        e->name = nm;
        e->color = series_color(x, k, 0);
        e->dashed = s->series[k].dashed;
        e->marker = (int)(k % 4);
        e->kind = s->kind == PL_CHART_LINE ? LEG_LINE : s->kind == PL_CHART_SCATTER ? LEG_MARKER : LEG_BOX;
    }
    if (s->kind == PL_CHART_SCATTER && s->pareto) {
        struct legend_entry *e = &x->leg[x->nleg++];
        e->name = "Pareto front";
        e->color = x->text;
        e->kind = LEG_FRONT;
    }
    return PL_OK;
}

static int swatch_w(struct ctx *x) { return text_h(x, ROLE_BASE) * 2; }

/* Flow the legend entries into rows of at most avail pixels; returns the number of rows. When
 * draw is set, draws them starting at (left, top). */
static int legend_rows(struct ctx *x, int left, int top, int avail, int draw);

/* ---------------- layout ---------------- */

static int label_overlap(struct ctx *x, const struct pl_ticks *t, int every, int vertical)
{
    int prev_end = INT_MIN;
    int gap = text_h(x, ROLE_SMALL) / 2 + 2;
    for (int i = 0; i < t->n; i += every) {
        if (vertical) {
            int h = text_h(x, ROLE_SMALL);
            int c = clampi(sy(x, t->v[i]));
            int top = c - h / 2;          /* ticks go upward as i grows */
            if (prev_end != INT_MIN && top + h + 2 > prev_end) return 1;
            prev_end = top;
        } else {
            int w = text_w(x, t->label[i], ROLE_SMALL);
            int c = clampi(sx(x, t->v[i]));
            int l = c - w / 2;
            if (prev_end != INT_MIN && l < prev_end + gap) return 1;
            prev_end = l + w;
        }
    }
    return 0;
}

static int max_label_w(struct ctx *x, const struct pl_ticks *t)
{
    int m = 0;
    for (int i = 0; i < t->n; i++) { int w = text_w(x, t->label[i], ROLE_SMALL); if (w > m) m = w; }
    return m;
}

/* Category label boxes for bar charts: returns 1 if any two on the same row overlap. */
static int cat_overlap(struct ctx *x, int rows)
{
    const struct pl_chart_spec *s = x->s;
    double cw = (double)(x->px1 - x->px0) / (double)(s->ncategories ? s->ncategories : 1);
    int gap = text_h(x, ROLE_SMALL) / 2;
    for (int r = 0; r < rows; r++) {
        int prev = INT_MIN;
        for (size_t i = (size_t)r; i < s->ncategories; i += (size_t)rows) {
            int w = text_w(x, s->categories[i] ? s->categories[i] : "", ROLE_SMALL);
            int c = clampi(x->px0 + (i + 0.5) * cw);
            if (prev != INT_MIN && c - w / 2 < prev + gap) return 1;
            prev = c - w / 2 + w;
        }
    }
    return 0;
}

/* Distance from the plot's bottom edge to the x tick labels: clear of the tick marks and of
 * the lowest y tick label, which is centred on the bottom edge. */
static int xlabel_gap(struct ctx *x)
{
    int g = text_h(x, ROLE_SMALL) / 2 + 2;
    return g > 6 ? g : 6;
}

static void layout(struct ctx *x)
{
    const struct pl_chart_spec *s = x->s;
    int pad = x->pad, tick = 4;
    int hs = text_h(x, ROLE_SMALL), hb = text_h(x, ROLE_BASE), ht = text_h(x, ROLE_TITLE);
    int top = pad;
    if (x->show_title) top += ht + pad / 2;
    x->leg_rows = 0;
    if (x->show_legend && x->nleg) {
        x->leg_rows = legend_rows(x, pad, 0, x->W - 2 * pad, 0);
        top += x->leg_rows * (hb + 4) + pad / 2;
    }
    int bottom = x->H - 1 - pad;
    if (x->show_xlabel) bottom -= hb + pad / 3;
    int xrows = s->kind == PL_CHART_BAR ? x->bar_rows : 1;
    bottom -= xrows * (hs + 2) + xlabel_gap(x);
    top += hs / 2 + 1;   /* the top y tick label is centred on the frame */
    x->py0 = top;
    x->py1 = bottom > top + 1 ? bottom : top + 1;
    int ph = x->py1 - x->py0;
    int yt = ph / (hs * 3);
    if (yt < 2) yt = 2;
    if (yt > 10) yt = 10;
    make_ticks(x->ylo, x->yhi, x->ylog, yt, &x->yt);
    int left = pad;
    if (x->show_ylabel) left += hb + pad / 2;
    left += max_label_w(x, &x->yt) + tick + 3;
    x->px0 = left;
    /* x ticks: the last label may stick out past the plot's right edge by half its width */
    int right = x->W - 1 - pad;
    x->px1 = right;
    if (s->kind == PL_CHART_BAR) {
        if (x->px1 < x->px0 + 1) x->px1 = x->px0 + 1;
        x->xt.n = 0;
        x->xt.lo = 0; x->xt.hi = 1;
    } else {
        double lo = s->kind == PL_CHART_HIST ? x->hlo : x->xlo, hi = s->kind == PL_CHART_HIST ? x->hhi : x->xhi;
        int xt = (x->px1 - x->px0) / (hs * 6);
        if (xt < 2) xt = 2;
        if (xt > 12) xt = 12;
        for (int pass = 0; pass < 2; pass++) {
            make_ticks(lo, hi, x->xlog, xt, &x->xt);
            int firstw = text_w(x, x->xt.label[0], ROLE_SMALL);
            int lastw = text_w(x, x->xt.label[x->xt.n - 1], ROLE_SMALL);
            x->px1 = right - lastw / 2;
            if (x->px0 - firstw / 2 - 1 < pad) x->px0 = pad + firstw / 2 + 1;
            if (x->px1 < x->px0 + 1) x->px1 = x->px0 + 1;
        }
        x->xt_every = 1;
        while (label_overlap(x, &x->xt, 1, 0) && xt > 2) {
            xt--;
            make_ticks(lo, hi, x->xlog, xt, &x->xt);
        }
        while (label_overlap(x, &x->xt, x->xt_every, 0) && x->xt_every < x->xt.n) x->xt_every++;
    }
    x->yt_every = 1;
    while (label_overlap(x, &x->yt, x->yt_every, 1) && x->yt_every < x->yt.n) x->yt_every++;
}

/* ---------------- drawing helpers ---------------- */

static void thick_line(struct ctx *x, double ax, double ay, double bx, double by, int color)
{
    gdImageLine(x->im, clampi(ax), clampi(ay), clampi(bx), clampi(by), color);
}

/* Dashed polyline segment; *phase carries the dash position across segments. */
static void dashed_line(struct ctx *x, double ax, double ay, double bx, double by, int color, double *phase)
{
    double on = 6.0 * x->lw + 2, off = 4.0 * x->lw + 1, period = on + off;
    double dx = bx - ax, dy = by - ay, len = sqrt(dx * dx + dy * dy);
    if (len < 1e-9) return;
    if (len > 1e5) { thick_line(x, ax, ay, bx, by, color); return; }
    double t = 0;
    while (t < len) {
        double ph = fmod(*phase, period);
        double seg = ph < on ? on - ph : period - ph;
        double t2 = fmin(len, t + seg);
        if (ph < on)
            thick_line(x, ax + dx * t / len, ay + dy * t / len, ax + dx * t2 / len, ay + dy * t2 / len, color);
        *phase += t2 - t;
        t = t2;
    }
}

static void marker(struct ctx *x, int cx, int cy, int r, int shape, int color)
{
    gdPoint p[4];
    switch (shape) {
    case 1:
        gdImageFilledRectangle(x->im, cx - r + 1, cy - r + 1, cx + r - 1, cy + r - 1, color);
        break;
    case 2:
        p[0].x = cx; p[0].y = cy - r - 1;
        p[1].x = cx + r + 1; p[1].y = cy + r;
        p[2].x = cx - r - 1; p[2].y = cy + r;
        gdImageFilledPolygon(x->im, p, 3, color);
        break;
    case 3:
        p[0].x = cx; p[0].y = cy - r - 1;
        p[1].x = cx + r + 1; p[1].y = cy;
        p[2].x = cx; p[2].y = cy + r + 1;
        p[3].x = cx - r - 1; p[3].y = cy;
        gdImageFilledPolygon(x->im, p, 4, color);
        break;
    default:
        gdImageFilledEllipse(x->im, cx, cy, 2 * r + 1, 2 * r + 1, color);
    }
}

static int legend_rows(struct ctx *x, int left, int top, int avail, int draw)
{
    int hb = text_h(x, ROLE_BASE), sw = swatch_w(x), gap = hb;
    int rows = 1, cx = 0;
    for (size_t i = 0; i < x->nleg; i++) {
        char name[256];
        fit_text(x, x->leg[i].name, ROLE_BASE, avail - sw - 6, name, sizeof name);
        int w = sw + 6 + text_w(x, name, ROLE_BASE);
        if (cx > 0 && cx + w > avail) { rows++; cx = 0; }
        if (draw) {
            int ex = left + cx, ey = top + (rows - 1) * (hb + 4);
            int my = ey + hb / 2;
            struct legend_entry *e = &x->leg[i];
            gdImageSetThickness(x->im, x->lw);
            if (e->kind == LEG_LINE) {
                if (e->dashed) { double ph = 0; dashed_line(x, ex, my, ex + sw, my, e->color, &ph); }
                else thick_line(x, ex, my, ex + sw, my, e->color);
            } else if (e->kind == LEG_FRONT) {
                double ph = 0;
                dashed_line(x, ex, my, ex + sw, my, x->muted, &ph);
                gdImageSetThickness(x->im, 1);
                gdImageEllipse(x->im, ex + sw / 2, my, hb * 2 / 3 + 4, hb * 2 / 3 + 4, e->color);
            } else if (e->kind == LEG_MARKER) {
                marker(x, ex + sw / 2, my, hb / 3 > 2 ? hb / 3 : 2, e->marker, e->color);
            } else {
                gdImageFilledRectangle(x->im, ex + sw / 4, ey + 2, ex + sw * 3 / 4, ey + hb - 2, e->color);
            }
            gdImageSetThickness(x->im, 1);
            draw_text(x, name, ROLE_BASE, ex + sw + 6, ey, x->text, PL_BOX_LEGEND);
            int l = ex, r = ex + w, b = ey + hb;
            struct pl_chart_box *L = &x->c->legend;
            if (L->x1 == L->x0) { L->x0 = l; L->y0 = ey; L->x1 = r; L->y1 = b; }
            else { if (l < L->x0) L->x0 = l; if (ey < L->y0) L->y0 = ey; if (r > L->x1) L->x1 = r; if (b > L->y1) L->y1 = b; }
        }
        cx += w + gap;
    }
    return rows;
}

/* ---------------- series ---------------- */

static enum pl_status draw_lines(struct ctx *x)
{
    const struct pl_chart_spec *s = x->s;
    int ncol = x->px1 - x->px0 + 1;
    for (size_t k = 0; k < s->nseries; k++) {
        const struct pl_chart_series *se = &s->series[k];
        double smooth = se->smooth > 0 && se->smooth < 1 ? se->smooth : se->smooth < 0 ? 0 : s->smooth;
        size_t n = se->n;
        if (!n) continue;
        double *buf = pl_alloc(4 * n * sizeof *buf, PL_MEM_WORKSPACE);
        if (!buf) return pl_fail(PL_ERR_NOMEM, "chart: out of memory drawing series %zu (%zu points)", k + 1, n);
        double *px = buf, *py = buf + n, *ox = buf + 2 * n, *oy = buf + 3 * n;
        for (int pass = 0; pass < (smooth > 0 ? 2 : 1); pass++) {
            int sorted = 1;
            double prev = -INFINITY;
            int faint = smooth > 0 && pass == 0;
            if (smooth > 0 && pass == 1) pl_ema(se->y, n, smooth, oy);
            for (size_t i = 0; i < n; i++) {
                double xv = xval(se, i), yv = (smooth > 0 && pass == 1) ? oy[i] : se->y[i];
                if (usable(xv, x->xlog) && usable(yv, x->ylog)) {
                    px[i] = sx(x, xv);
                    py[i] = sy(x, yv);
                    if (px[i] < prev) sorted = 0;
                    prev = px[i];
                } else px[i] = py[i] = NAN;
            }
            size_t m;
            const double *vx = px, *vy = py;
            if (sorted && n > (size_t)(2 * ncol)) {
                m = pl_downsample_minmax(px, py, n, ox, oy);
                vx = ox; vy = oy;
            } else m = n;
            int color = series_color(x, k, faint ? 88 : 0);
            int lw = faint ? 1 : x->lw;
            gdImageSetThickness(x->im, lw);
            double phase = 0;
            for (size_t i = 0; i < m; i++) {
                if (!isfinite(vy[i])) continue;
                int has_prev = i > 0 && isfinite(vy[i - 1]);
                int has_next = i + 1 < m && isfinite(vy[i + 1]);
                if (has_prev) {
                    if (se->dashed) dashed_line(x, vx[i - 1], vy[i - 1], vx[i], vy[i], color, &phase);
                    else thick_line(x, vx[i - 1], vy[i - 1], vx[i], vy[i], color);
                } else if (!has_next) {
                    int r = lw + 2;   /* an isolated point: a dot, so a single value is visible */
                    gdImageFilledEllipse(x->im, clampi(vx[i]), clampi(vy[i]), 2 * r, 2 * r, color);
                }
            }
            x->c->vertices += m;
            gdImageSetThickness(x->im, 1);
        }
        pl_free(buf);
    }
    return PL_OK;
}

static enum pl_status draw_scatter(struct ctx *x)
{
    const struct pl_chart_spec *s = x->s;
    int pw = x->px1 - x->px0 + 1, ph = x->py1 - x->py0 + 1;
    int r = x->lw + 2;
    unsigned char *occ = pl_alloc((size_t)pw * (size_t)ph, PL_MEM_WORKSPACE);
    if (!occ) return pl_fail(PL_ERR_NOMEM, "chart: out of memory for the scatter occupancy map");
    size_t total = 0;
    for (size_t k = 0; k < s->nseries; k++) total += s->series[k].n;
    for (size_t k = 0; k < s->nseries; k++) {
        const struct pl_chart_series *se = &s->series[k];
        memset(occ, 0, (size_t)pw * (size_t)ph);
        int color = series_color(x, k, total > 2000 ? 40 : 0);
        for (size_t i = 0; i < se->n; i++) {
            double xv = xval(se, i), yv = se->y[i];
            if (!usable(xv, x->xlog) || !usable(yv, x->ylog)) continue;
            int cx = clampi(sx(x, xv)), cy = clampi(sy(x, yv));
            if (cx < x->px0 || cx > x->px1 || cy < x->py0 || cy > x->py1) continue;
            unsigned char *o = &occ[(size_t)(cy - x->py0) * (size_t)pw + (size_t)(cx - x->px0)];
            if (*o) continue;   /* one marker per pixel: 10^6 points cost what the pixels cost */
            *o = 1;
            marker(x, cx, cy, r, (int)(k % 4), color);
            x->c->vertices++;
        }
    }
    pl_free(occ);
    /* Pareto front over all series */
    if (s->pareto && total > 0) {
        double *xs = pl_alloc(total * 2 * sizeof *xs, PL_MEM_WORKSPACE);
        size_t *idx = pl_alloc(total * sizeof *idx, PL_MEM_WORKSPACE);
        if (!xs || !idx) { pl_free(xs); pl_free(idx); return pl_fail(PL_ERR_NOMEM, "chart: out of memory for the Pareto front"); }
        double *ys = xs + total;
        size_t m = 0;
        for (size_t k = 0; k < s->nseries; k++)
            for (size_t i = 0; i < s->series[k].n; i++) {
                double xv = xval(&s->series[k], i), yv = s->series[k].y[i];
                int ok = usable(xv, x->xlog) && usable(yv, x->ylog);
                xs[m] = ok ? xv : NAN;
                ys[m] = ok ? yv : NAN;
                m++;
            }
        size_t nf;
        enum pl_status st = pl_pareto_front(xs, ys, m, s->pareto_xdir, s->pareto_ydir, idx, &nf);
        if (st == PL_OK) {
            gdImageSetThickness(x->im, x->lw);
            double phase = 0;
            for (size_t j = 1; j < nf; j++) {
                /* staircase: the front is what is attainable, so step between its points */
                double ax = sx(x, xs[idx[j - 1]]), ay = sy(x, ys[idx[j - 1]]);
                double bx = sx(x, xs[idx[j]]), by = sy(x, ys[idx[j]]);
                int ydir = s->pareto_ydir ? s->pareto_ydir : 1, xdir = s->pareto_xdir ? s->pareto_xdir : -1;
                /* going right along the front, y moves the way that trades against x */
                double mx = (xdir < 0) == (ydir > 0) ? bx : ax, my = (xdir < 0) == (ydir > 0) ? ay : by;
                dashed_line(x, ax, ay, mx, my, x->muted, &phase);
                dashed_line(x, mx, my, bx, by, x->muted, &phase);
            }
            gdImageSetThickness(x->im, 2);
            for (size_t j = 0; j < nf; j++)
                gdImageEllipse(x->im, clampi(sx(x, xs[idx[j]])), clampi(sy(x, ys[idx[j]])), 4 * r + 3, 4 * r + 3, x->text);
            gdImageSetThickness(x->im, 1);
        }
        pl_free(xs);
        pl_free(idx);
        if (st != PL_OK) return st;
    }
    /* point labels (small series only) */
    for (size_t k = 0; k < s->nseries; k++) {
        const struct pl_chart_series *se = &s->series[k];
        if (!se->labels || se->n > 200) continue;
        for (size_t i = 0; i < se->n; i++) {
            double xv = xval(se, i), yv = se->y[i];
            if (!se->labels[i] || !usable(xv, x->xlog) || !usable(yv, x->ylog)) continue;
            int cx = clampi(sx(x, xv)), cy = clampi(sy(x, yv));
            int w = text_w(x, se->labels[i], ROLE_SMALL), h = text_h(x, ROLE_SMALL);
            int bx = cx + 2 * r + 5;   /* clear of the Pareto ring (radius 2r + 1.5) */
            if (bx + w > x->px1) bx = cx - 2 * r - 5 - w;   /* keep inside the plot */
            /* a translucent white backing keeps the label legible over the front's line */
            gdImageFilledRectangle(x->im, bx - 1, cy - h / 2, bx + w, cy - h / 2 + h - 1, gdTrueColorAlpha(255, 255, 255, 30));
            draw_text(x, se->labels[i], ROLE_SMALL, bx, cy - h / 2, x->text, PL_BOX_POINT_LABEL);
        }
    }
    return PL_OK;
}

static void bar_rect(struct ctx *x, double l, double r, double v, int color)
{
    double base = x->ylog ? x->yt.lo : 0;
    if (!x->ylog && (base < x->yt.lo || base > x->yt.hi)) base = x->yt.lo;
    int y0 = clampi(sy(x, v)), y1 = clampi(sy(x, base));
    if (y0 > y1) { int t = y0; y0 = y1; y1 = t; }
    int a = clampi(l), b = clampi(r) - 1;
    if (b < a) b = a;
    if (y1 == y0) y0 = y1 - 1;   /* a zero bar still shows as a hairline */
    gdImageFilledRectangle(x->im, a, y0, b, y1, color);
}

static void draw_bars(struct ctx *x)
{
    const struct pl_chart_spec *s = x->s;
    size_t nc = s->ncategories, ns = s->nseries ? s->nseries : 1;
    if (!nc) return;
    double cw = (double)(x->px1 - x->px0) / (double)nc;
    double gw = cw * 0.8, bw = gw / (double)ns;
    for (size_t c = 0; c < nc; c++)
        for (size_t k = 0; k < s->nseries; k++) {
            double v = s->series[k].y[c];
            if (!usable(v, x->ylog)) continue;
            double l = x->px0 + c * cw + (cw - gw) / 2 + k * bw;
            bar_rect(x, l, l + bw - (ns > 1 ? 1 : 0), v, series_color(x, k, 0));
            x->c->vertices++;
        }
}

static enum pl_status draw_hist(struct ctx *x)
{
    const struct pl_chart_spec *s = x->s;
    size_t *cnt = pl_alloc((size_t)x->nbins * sizeof *cnt, PL_MEM_WORKSPACE);
    if (!cnt) return pl_fail(PL_ERR_NOMEM, "chart: out of memory for histogram bins");
    double bwid = (x->hhi - x->hlo) / x->nbins;
    for (size_t k = 0; k < s->nseries; k++) {
        pl_hist_count(s->series[k].y, s->series[k].n, x->hlo, x->hhi, x->nbins, cnt);
        int color = series_color(x, k, s->nseries > 1 ? 50 : 0);
        for (int b = 0; b < x->nbins; b++) {
            if (!cnt[b]) continue;
            double l = sx(x, x->hlo + b * bwid), r = sx(x, x->hlo + (b + 1) * bwid);
            bar_rect(x, l, r, (double)cnt[b], color);
            x->c->vertices++;
        }
    }
    pl_free(cnt);
    return PL_OK;
}

/* ---------------- frame, ticks, labels ---------------- */

static void draw_axes(struct ctx *x)
{
    const struct pl_chart_spec *s = x->s;
    /* grid */
    for (int i = 0; i < x->yt.n; i++) {
        int y = clampi(sy(x, x->yt.v[i]));
        if (y > x->py0 && y < x->py1) gdImageLine(x->im, x->px0 + 1, y, x->px1 - 1, y, x->grid);
    }
    if (s->kind == PL_CHART_LINE || s->kind == PL_CHART_SCATTER)
        for (int i = 0; i < x->xt.n; i++) {
            int xx = clampi(sx(x, x->xt.v[i]));
            if (xx > x->px0 && xx < x->px1) gdImageLine(x->im, xx, x->py0 + 1, xx, x->py1 - 1, x->grid);
        }
}

/* Unlabelled 2..9 ticks between consecutive decades of a log axis. */
static void minor_log_ticks(struct ctx *x, const struct pl_ticks *t, int vertical)
{
    for (int i = 0; i + 1 < t->n; i++) {
        if (fabs(t->v[i + 1] / t->v[i] - 10) > 1e-6) continue;
        for (int m = 2; m <= 9; m++) {
            double v = t->v[i] * m;
            if (vertical) { int y = clampi(sy(x, v)); gdImageLine(x->im, x->px0 - 2, y, x->px0, y, x->axis); }
            else { int xx = clampi(sx(x, v)); gdImageLine(x->im, xx, x->py1, xx, x->py1 + 2, x->axis); }
        }
    }
}

static void draw_frame_and_labels(struct ctx *x)
{
    const struct pl_chart_spec *s = x->s;
    int hs = text_h(x, ROLE_SMALL);
    gdImageRectangle(x->im, x->px0, x->py0, x->px1, x->py1, x->axis);
    if (x->ylog) minor_log_ticks(x, &x->yt, 1);
    if (x->xlog && s->kind != PL_CHART_BAR) minor_log_ticks(x, &x->xt, 0);
    /* y ticks and labels */
    for (int i = 0; i < x->yt.n; i++) {
        int y = clampi(sy(x, x->yt.v[i]));
        gdImageLine(x->im, x->px0 - 4, y, x->px0, y, x->axis);
        if (i % x->yt_every) continue;
        int w = text_w(x, x->yt.label[i], ROLE_SMALL);
        draw_text(x, x->yt.label[i], ROLE_SMALL, x->px0 - 7 - w, y - hs / 2, x->text, PL_BOX_YTICK);
    }
    int ly = x->py1 + xlabel_gap(x);
    if (s->kind == PL_CHART_BAR) {
        size_t nc = s->ncategories;
        double cw = (double)(x->px1 - x->px0) / (double)(nc ? nc : 1);
        int maxw = (int)(cw * x->bar_rows) - hs / 2;
        for (size_t i = 0; i < nc; i++) {
            char lab[256];
            int c = clampi(x->px0 + (i + 0.5) * cw);
            int edge = c < x->W - 1 - c ? c : x->W - 1 - c;   /* centred labels stay in the image */
            fit_text(x, s->categories[i] ? s->categories[i] : "", ROLE_SMALL, maxw < 2 * edge ? maxw : 2 * edge, lab, sizeof lab);
            gdImageLine(x->im, c, x->py1, c, x->py1 + 4, x->axis);
            int w = text_w(x, lab, ROLE_SMALL);
            int row = (int)(i % (size_t)x->bar_rows);
            draw_text(x, lab, ROLE_SMALL, c - w / 2, ly + row * (hs + 2), x->text, PL_BOX_XTICK);
        }
    } else {
        for (int i = 0; i < x->xt.n; i++) {
            int xx = clampi(sx(x, x->xt.v[i]));
            gdImageLine(x->im, xx, x->py1, xx, x->py1 + 4, x->axis);
            if (i % x->xt_every) continue;
            int w = text_w(x, x->xt.label[i], ROLE_SMALL);
            draw_text(x, x->xt.label[i], ROLE_SMALL, xx - w / 2, ly, x->text, PL_BOX_XTICK);
        }
    }
    int xrows = s->kind == PL_CHART_BAR ? x->bar_rows : 1;
    if (x->show_xlabel && s->xlabel && *s->xlabel) {
        char lab[256];
        fit_text(x, s->xlabel, ROLE_BASE, x->W - 2 * x->pad, lab, sizeof lab);
        int w = text_w(x, lab, ROLE_BASE);
        int cx = (x->px0 + x->px1) / 2 - w / 2;
        if (cx + w > x->W - x->pad) cx = x->W - x->pad - w;
        if (cx < x->pad) cx = x->pad;
        draw_text(x, lab, ROLE_BASE, cx, ly + xrows * (hs + 2) + x->pad / 3, x->text, PL_BOX_XLABEL);
    }
    if (x->show_ylabel && s->ylabel && *s->ylabel) {
        char lab[256];
        fit_text(x, s->ylabel, ROLE_BASE, x->py1 - x->py0, lab, sizeof lab);
        int w = text_w(x, lab, ROLE_BASE);
        int cy = (x->py0 + x->py1) / 2 - w / 2;
        if (cy < 0) cy = 0;
        draw_text_up(x, lab, ROLE_BASE, x->pad, cy, x->text, PL_BOX_YLABEL);
    }
    if (x->show_title && s->title && *s->title) {
        char lab[256];
        fit_text(x, s->title, ROLE_TITLE, x->W - 2 * x->pad, lab, sizeof lab);
        int w = text_w(x, lab, ROLE_TITLE);
        draw_text(x, lab, ROLE_TITLE, (x->W - w) / 2, x->pad, x->text, PL_BOX_TITLE);
    }
    if (x->show_legend && x->nleg) {
        int top = x->pad + (x->show_title ? text_h(x, ROLE_TITLE) + x->pad / 2 : 0);
        legend_rows(x, x->pad, top, x->W - 2 * x->pad, 1);
    }
}

static int has_data(struct ctx *x)
{
    const struct pl_chart_spec *s = x->s;
    for (size_t k = 0; k < s->nseries; k++)
        for (size_t i = 0; i < s->series[k].n; i++) {
            double xv = s->kind == PL_CHART_LINE || s->kind == PL_CHART_SCATTER ? xval(&s->series[k], i) : 1;
            if (usable(xv, x->xlog) && usable(s->series[k].y[i], x->ylog && s->kind != PL_CHART_HIST)) return 1;
        }
    return 0;
}

/* ---------------- entry points ---------------- */

static enum pl_status check_spec(const struct pl_chart_spec *s)
{
    if (!s) return pl_fail(PL_ERR_ARG, "chart: no spec");
    if (s->kind < PL_CHART_LINE || s->kind > PL_CHART_HIST) return pl_fail(PL_ERR_ARG, "chart: unknown kind %d", (int)s->kind);
    int w = s->width ? s->width : 640, h = s->height ? s->height : 400;
    if (w < PL_CHART_MIN_SIZE || h < PL_CHART_MIN_SIZE || w > PL_CHART_MAX_SIZE || h > PL_CHART_MAX_SIZE)
        return pl_fail(PL_ERR_ARG, "chart: size %dx%d outside %d..%d pixels", w, h, PL_CHART_MIN_SIZE, PL_CHART_MAX_SIZE);
    if (s->nseries && !s->series) return pl_fail(PL_ERR_ARG, "chart: %zu series but no series array", s->nseries);
    if (!(s->smooth >= 0 && s->smooth < 1)) return pl_fail(PL_ERR_ARG, "chart: smooth %g outside [0, 1)", s->smooth);
    if (s->kind == PL_CHART_BAR && s->ncategories && !s->categories)
        return pl_fail(PL_ERR_ARG, "chart: %zu categories but no names", s->ncategories);
    if ((s->kind == PL_CHART_BAR || s->kind == PL_CHART_HIST) && s->xlog)
        return pl_fail(PL_ERR_ARG, "chart: a %s chart has no log x axis", s->kind == PL_CHART_BAR ? "bar" : "histogram");
    if (s->bins < 0) return pl_fail(PL_ERR_ARG, "chart: %d histogram bins", s->bins);
    return PL_OK;
}

enum pl_status pl_chart_render(const struct pl_chart_spec *spec, struct pl_chart **out)
{
    *out = NULL;
    enum pl_status st = check_spec(spec);
    if (st != PL_OK) return st;
    struct ctx x;
    memset(&x, 0, sizeof x);
    x.s = spec;
    x.W = spec->width ? spec->width : 640;
    x.H = spec->height ? spec->height : 400;
    x.xlog = spec->xlog;
    x.ylog = spec->ylog;
    x.c = pl_calloc(1, sizeof *x.c, PL_MEM_DATA);
    if (!x.c) return pl_fail(PL_ERR_NOMEM, "chart: out of memory");
    x.c->width = x.W;
    x.c->height = x.H;
    x.im = gdImageCreateTrueColor(x.W, x.H);
    if (!x.im) { pl_free(x.c); return pl_fail(PL_ERR_NOMEM, "chart: libgd could not create a %dx%d image", x.W, x.H); }
    int64_t imbytes = (int64_t)x.W * x.H * 4;
    pl_mem_track(PL_MEM_WORKSPACE, imbytes);
    gdImageAlphaBlending(x.im, 1);
    x.white = gdTrueColor(255, 255, 255);
    x.text = gdTrueColor(34, 34, 34);
    x.muted = gdTrueColor(110, 110, 110);
    x.grid = gdTrueColor(229, 229, 229);
    x.axis = gdTrueColor(90, 90, 90);
    gdImageFilledRectangle(x.im, 0, 0, x.W - 1, x.H - 1, x.white);
    x.lw = (int)lround(fmin(x.W, x.H) / 260.0);
    if (x.lw < 1) x.lw = 1;
    if (x.lw > 4) x.lw = 4;
    x.pad = (int)(sqrt((double)x.W * x.H) / 60);
    if (x.pad < 3) x.pad = 3;
    setup_fonts(&x);
    x.c->ttf = x.ttf;
    snprintf(x.c->font, sizeof x.c->font, "%s", x.font);

    st = compute_ranges(&x);
    if (st == PL_OK) st = collect_legend(&x);
    if (st == PL_OK) {
        x.show_title = spec->title && *spec->title;
        x.show_legend = x.nleg > 0;
        x.show_xlabel = spec->xlabel && *spec->xlabel;
        x.show_ylabel = spec->ylabel && *spec->ylabel;
        x.bar_rows = 1;
        /* shed decorations until the plot area is a reasonable share of the image */
        for (int step = 0;; step++) {
            layout(&x);
            int ok = x.py1 - x.py0 >= x.H / 3 && x.px1 - x.px0 >= x.W / 3;
            if (ok || step >= 4) break;
            if (step == 0 && x.leg_rows > 1) x.show_legend = x.leg_rows <= 2 && x.H >= 200;
            else if (step <= 1 && x.show_legend) x.show_legend = 0;
            else if (step <= 2 && (x.show_xlabel || x.show_ylabel)) x.show_xlabel = x.show_ylabel = 0;
            else x.show_title = 0;
        }
        if (spec->kind == PL_CHART_BAR && cat_overlap(&x, 1)) {
            x.bar_rows = 2;
            layout(&x);
        }
        draw_axes(&x);
        gdImageSetClip(x.im, x.px0 + 1, x.py0 + 1, x.px1 - 1, x.py1 - 1);
        switch (spec->kind) {
        case PL_CHART_LINE: st = draw_lines(&x); break;
        case PL_CHART_SCATTER: st = draw_scatter(&x); break;
        case PL_CHART_BAR: draw_bars(&x); break;
        case PL_CHART_HIST: st = draw_hist(&x); break;
        }
        gdImageSetClip(x.im, 0, 0, x.W - 1, x.H - 1);
        if (st == PL_OK && !has_data(&x)) {
            const char *note = "no data";
            int w = text_w(&x, note, ROLE_BASE), h = text_h(&x, ROLE_BASE);
            draw_text(&x, note, ROLE_BASE, (x.px0 + x.px1 - w) / 2, (x.py0 + x.py1 - h) / 2, x.muted, PL_BOX_NOTE);
        }
        if (st == PL_OK) draw_frame_and_labels(&x);
        if (st == PL_OK) st = x.st;
    }
    x.c->plot.x0 = x.px0; x.c->plot.y0 = x.py0; x.c->plot.x1 = x.px1 + 1; x.c->plot.y1 = x.py1 + 1;
    if (st == PL_OK) {
        int size = 0;
        void *png = gdImagePngPtr(x.im, &size);
        if (!png || size <= 0) st = pl_fail(PL_ERR_NOMEM, "chart: libgd could not encode the %dx%d PNG", x.W, x.H);
        else {
            x.c->png = pl_alloc((size_t)size, PL_MEM_DATA);
            if (!x.c->png) st = pl_fail(PL_ERR_NOMEM, "chart: out of memory for a %d-byte PNG", size);
            else { memcpy(x.c->png, png, (size_t)size); x.c->png_size = (size_t)size; }
        }
        if (png) gdFree(png);
    }
    gdImageDestroy(x.im);
    pl_mem_track(PL_MEM_WORKSPACE, -imbytes);
    pl_free(x.leg);
    if (st != PL_OK) { pl_chart_free(x.c); return st; }
    *out = x.c;
    return PL_OK;
}

void pl_chart_free(struct pl_chart *c)
{
    if (!c) return;
    pl_free(c->png);
    pl_free(c->boxes);
    pl_free(c);
}

enum pl_status pl_chart_save(const struct pl_chart *c, const char *path)
{
    const void *parts[1] = { c->png };
    size_t sizes[1] = { c->png_size };
    return pl_file_write_atomic(path, parts, sizes, 1);
}

/* ---------------- decoding ---------------- */

/* libgd reports decoding problems through a process-wide callback that prints to stderr by
 * default; while decoding we keep the first message for our own error instead. */
static _Thread_local char gd_msg[200];

static void gd_quiet(int priority, const char *fmt, va_list ap)
{
    (void)priority;
    if (gd_msg[0]) return;
    vsnprintf(gd_msg, sizeof gd_msg, fmt, ap);
    size_t l = strlen(gd_msg);
    while (l > 0 && (gd_msg[l - 1] == '\n' || gd_msg[l - 1] == ' ')) gd_msg[--l] = 0;
}

enum pl_status pl_png_decode(const void *bytes, size_t n, struct pl_raster **out)
{
    *out = NULL;
    static const unsigned char sig[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n' };
    if (n < 8 || memcmp(bytes, sig, 8) != 0) return pl_fail(PL_ERR_FORMAT, "png: not a PNG (%zu bytes, bad signature)", n);
    if (n > INT_MAX) return pl_fail(PL_ERR_FORMAT, "png: %zu bytes is too large", n);
    gd_msg[0] = 0;
    gdSetErrorMethod(gd_quiet);
    gdImagePtr im = gdImageCreateFromPngPtr((int)n, (void *)bytes);
    gdClearErrorMethod();
    if (!im) return pl_fail(PL_ERR_FORMAT, "png: cannot decode the image (%zu bytes): %s", n, gd_msg[0] ? gd_msg : "libgd failed");
    int w = gdImageSX(im), h = gdImageSY(im);
    struct pl_raster *r = pl_calloc(1, sizeof *r, PL_MEM_WORKSPACE);
    uint32_t *px = r ? pl_alloc((size_t)w * (size_t)h * sizeof *px, PL_MEM_WORKSPACE) : NULL;
    if (!px) {
        pl_free(r);
        gdImageDestroy(im);
        return pl_fail(PL_ERR_NOMEM, "png: out of memory for a %dx%d image", w, h);
    }
    for (int y = 0; y < h; y++)
        for (int xx = 0; xx < w; xx++) {
            int c = gdImageGetTrueColorPixel(im, xx, y);
            /* composite any transparency over white, as a browser would show it */
            int a = gdTrueColorGetAlpha(c);
            int rr = gdTrueColorGetRed(c), gg = gdTrueColorGetGreen(c), bb = gdTrueColorGetBlue(c);
            if (a) {
                rr = (rr * (127 - a) + 255 * a) / 127;
                gg = (gg * (127 - a) + 255 * a) / 127;
                bb = (bb * (127 - a) + 255 * a) / 127;
            }
            px[(size_t)y * (size_t)w + (size_t)xx] = ((uint32_t)rr << 16) | ((uint32_t)gg << 8) | (uint32_t)bb;
        }
    gdImageDestroy(im);
    r->width = w;
    r->height = h;
    r->rgb = px;
    *out = r;
    return PL_OK;
}

enum pl_status pl_png_load(const char *path, struct pl_raster **out)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return pl_fail(PL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    enum pl_status st = PL_OK;
    unsigned char *buf = NULL;
    long n = -1;
    if (fseek(f, 0, SEEK_END) == 0) n = ftell(f);
    if (n < 0 || fseek(f, 0, SEEK_SET) != 0) st = pl_fail(PL_ERR_IO, "%s: cannot determine the size", path);
    if (st == PL_OK) {
        buf = pl_alloc(n > 0 ? (size_t)n : 1, PL_MEM_WORKSPACE);
        if (!buf) st = pl_fail(PL_ERR_NOMEM, "%s: out of memory for %ld bytes", path, n);
        else if (fread(buf, 1, (size_t)n, f) != (size_t)n) st = pl_fail(PL_ERR_IO, "%s: short read", path);
    }
    fclose(f);
    if (st == PL_OK) {
        st = pl_png_decode(buf, (size_t)n, out);
        if (st != PL_OK) st = pl_fail(st, "%s: %s", path, pl_last_error());
    }
    pl_free(buf);
    return st;
}
