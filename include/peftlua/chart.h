/* chart.h — PNG charts for reports: line, grouped bar, scatter (with Pareto front), histogram.
 *
 * The renderer (src/report/chart.c) is the only file that includes gd.h;
 * the arithmetic that does not draw — tick choice and labels, ranges, histogram bins, the
 * Pareto front, smoothing, column min/max downsampling — lives in src/report/chart_axis.c, and image
 * comparison in src/report/chart_raster.c; both are usable (and tested) without libgd.
 *
 * Worked example:
 *
 *   double y[] = { 2.1, 1.7, 1.4, 1.3 };
 *   struct pl_chart_series s = { .name = "train", .y = y, .n = 4, .color = -1 };
 *   struct pl_chart_spec spec = { .kind = PL_CHART_LINE, .title = "Loss", .xlabel = "step",
 *                                 .series = &s, .nseries = 1 };
 *   struct pl_chart *c;
 *   if (pl_chart_render(&spec, &c) != PL_OK) fprintf(stderr, "%s\n", pl_last_error());
 *   else { fwrite(c->png, 1, c->png_size, f); pl_chart_free(c); }
 *
 * Data may hold NaN/inf (skipped; a line breaks there), log axes drop values <= 0, empty
 * series and all-equal values give a valid chart with a sensible axis. Lines with more points
 * than pixel columns are drawn from each column's min/max (spikes survive); scatter markers are
 * drawn once per occupied pixel. Text is anti-aliased TrueType (DejaVu Sans from Debian's
 * fonts-dejavu-core, or spec.font, or a few standard paths) and falls back to libgd's built-in
 * bitmap font when no font can be loaded. Colours are the Okabe–Ito colour-blind-safe palette.
 *
 * Memory: the chart, its label boxes and its PNG bytes come from pl_alloc (PL_MEM_DATA);
 * scratch arrays from PL_MEM_WORKSPACE. libgd allocates its own image memory with malloc;
 * its approximate size (4 bytes per pixel) is accounted with pl_mem_track(PL_MEM_WORKSPACE)
 * while the image exists.
 */
#ifndef PEFTLUA_CHART_H
#define PEFTLUA_CHART_H

#include <stddef.h>
#include <stdint.h>
#include "peftlua/status.h"

enum pl_chart_kind { PL_CHART_LINE = 0, PL_CHART_BAR, PL_CHART_SCATTER, PL_CHART_HIST };

#define PL_CHART_MIN_SIZE 64
#define PL_CHART_MAX_SIZE 8192
#define PL_CHART_NPALETTE 8
/* Okabe–Ito, reordered so that the first colours are the most distinct on white. */
extern const uint32_t pl_chart_palette[PL_CHART_NPALETTE];   /* 0xRRGGBB */

struct pl_chart_series {
    const char *name;          /* legend text; NULL or "" = no legend entry */
    const double *x;           /* line/scatter: x values; NULL = 0, 1, ..., n-1 */
    const double *y;           /* line/scatter: y; bar: one value per category; hist: samples */
    size_t n;
    int dashed;                /* line: dashed stroke (e.g. validation next to train) */
    int color;                 /* palette index; -1 = the series' position */
    const char *const *labels; /* scatter: optional per-point text (n entries, NULL ones skipped) */
    double smooth;             /* line: 0 = the chart's smooth, < 0 = none, else own EMA weight */
};

struct pl_chart_spec {
    enum pl_chart_kind kind;
    int width, height;         /* pixels; 0 = 640 x 400 */
    const char *title, *xlabel, *ylabel;
    int xlog, ylog;            /* logarithmic axes (bar/hist: ylog only) */
    double smooth;             /* line: EMA weight in [0, 1); the raw line is drawn faintly */
    const struct pl_chart_series *series;
    size_t nseries;
    const char *const *categories;  /* bar: category names along x */
    size_t ncategories;
    int bins;                  /* hist: number of bins; 0 = Sturges (capped at 100) */
    int pareto;                /* scatter: highlight the Pareto front over all series */
    int pareto_xdir, pareto_ydir;   /* +1 higher is better, -1 lower; 0 = x lower, y higher */
    const char *font;          /* TrueType file; NULL = search the standard places */
    int bitmap_font;           /* 1 = use the built-in bitmap font even if a TrueType one exists */
};

enum pl_chart_box_kind {
    PL_BOX_TITLE = 0, PL_BOX_XTICK, PL_BOX_YTICK, PL_BOX_XLABEL, PL_BOX_YLABEL,
    PL_BOX_LEGEND, PL_BOX_POINT_LABEL, PL_BOX_NOTE, PL_BOX_NKIND
};

/* A text box in image pixels: x0 <= x < x1, y0 <= y < y1. */
struct pl_chart_box {
    int x0, y0, x1, y1;
    int kind;                  /* enum pl_chart_box_kind */
    char text[48];             /* the label (truncated copy, for tests and debugging) */
};

struct pl_chart {
    int width, height;
    unsigned char *png;        /* the encoded image */
    size_t png_size;
    struct pl_chart_box plot;  /* the plot area (axes' rectangle) */
    struct pl_chart_box legend;/* union of legend entries; empty (x0 == x1) when none */
    struct pl_chart_box *boxes;/* every text box drawn */
    size_t nboxes;
    int ttf;                   /* 1 if TrueType text was used */
    char font[256];            /* the font file used ("" for the bitmap font) */
    size_t vertices;           /* line vertices / markers actually drawn (after downsampling) */
    size_t bin_count[2];       /* hist: number of bins and samples counted (finite, in range) */
};

/* Render spec to PNG. On failure *out is NULL and pl_last_error() says why. */
enum pl_status pl_chart_render(const struct pl_chart_spec *spec, struct pl_chart **out);
void pl_chart_free(struct pl_chart *c);
/* Write the chart's PNG to path. */
enum pl_status pl_chart_save(const struct pl_chart *c, const char *path);
const char *pl_chart_box_kind_name(int kind);   /* "title", "xtick", ... */

/* ---- Decoded images, for tests (golden comparison, browser screenshots) ---- */
struct pl_raster {
    int width, height;
    uint32_t *rgb;             /* width*height pixels, 0xRRGGBB, row-major from the top */
};
enum pl_status pl_png_decode(const void *bytes, size_t n, struct pl_raster **out);
enum pl_status pl_png_load(const char *path, struct pl_raster **out);
void pl_raster_free(struct pl_raster *r);
/* Largest per-channel difference between a and b and the number of pixels where some channel
 * differs by more than tol; PL_ERR_ARG if the sizes differ. */
enum pl_status pl_raster_diff(const struct pl_raster *a, const struct pl_raster *b, int tol,
                              int *maxdiff, size_t *nover);
/* Pixels in [x0,x1) x [y0,y1) (clipped) within tol (per channel) of one of the ncolors colours;
 * bbox (x0,y0,x1,y1) of those pixels, or all zero when none. */
size_t pl_raster_count_near(const struct pl_raster *r, const uint32_t *colors, size_t ncolors,
                            int tol, int x0, int y0, int x1, int y1, int bbox[4]);

/* ---- Axis arithmetic (src/report/chart_axis.c; no libgd) ---- */
#define PL_TICKS_MAX 32
struct pl_ticks {
    int n;
    double v[PL_TICKS_MAX];
    char label[PL_TICKS_MAX][24];
    double lo, hi;             /* the axis range (covers the data, ends on ticks for linear) */
};
/* Finite range of v (skipping NaN/inf, and values <= 0 when positive_only); 0 if none. */
int pl_chart_range(const double *v, size_t n, int positive_only, double *lo, double *hi);
/* Linear ticks: about `target` (>= 2) ticks at 1/2/2.5/5 x 10^k covering [lo, hi]; an empty or
 * degenerate range is widened first. */
void pl_ticks_linear(double lo, double hi, int target, struct pl_ticks *t);
/* Log ticks (lo, hi > 0): decades, thinned to at most `target`, or 1-2-5 within short ranges. */
void pl_ticks_log(double lo, double hi, int target, struct pl_ticks *t);
/* Format v for an axis whose tick step is step: fixed decimals just enough for the step, k/M/G
 * suffixes for large magnitudes, exponent form for tiny ones; never "-0". */
void pl_tick_format(double v, double step, double maxabs, char *buf, size_t n);
/* Histogram: nbins equal bins over [lo, hi] (last bin closed); counts[nbins]. Returns the
 * number of samples counted (finite and in range). */
size_t pl_hist_count(const double *v, size_t n, double lo, double hi, int nbins, size_t *counts);
int pl_hist_default_bins(size_t n);   /* Sturges: ceil(log2 n) + 1, within [1, 100] */
/* Indices (into idx, room for n) of the points on the Pareto front — finite points not
 * dominated by another, one of each set of duplicates — for directions xdir/ydir (+1 higher
 * better, -1 lower better), sorted by increasing x; *nfront their number. O(n log n). */
enum pl_status pl_pareto_front(const double *x, const double *y, size_t n, int xdir, int ydir,
                               size_t *idx, size_t *nfront);
/* Exponential moving average, debiased like TensorBoard: out[i] = s_i / (1 - w^(i+1)),
 * s_i = w s_{i-1} + (1 - w) y_i over finite y (non-finite y give NaN and are skipped). */
void pl_ema(const double *y, size_t n, double w, double *out);

/* Column min/max downsampling of a polyline already in pixel x coordinates: for each run of
 * consecutive points in one pixel column keeps the first, the minimum, the maximum and the last
 * (in input order), so spikes survive. Sorted px gives at most 4 vertices per column; a
 * non-finite point breaks the line (one NaN vertex per break). Never writes more than n
 * vertices; returns the number written. */
size_t pl_downsample_minmax(const double *px, const double *py, size_t n, double *out_x, double *out_y);

#endif
