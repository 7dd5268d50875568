/* chart_raster.c — comparing decoded images: per-pixel differences (golden tests) and counting
 * pixels near given colours (ink in a plot area, charts in a browser screenshot).
 *
 * Owner: report (issue 6). Decoding itself needs libgd and lives in src/report/chart.c; this file
 * works on struct pl_raster only.
 */
#include <limits.h>
#include <stdlib.h>
#include "peftlua/alloc.h"
#include "peftlua/chart.h"

void pl_raster_free(struct pl_raster *r)
{
    if (!r) return;
    pl_free(r->rgb);
    pl_free(r);
}

enum pl_status pl_raster_diff(const struct pl_raster *a, const struct pl_raster *b, int tol,
                              int *maxdiff, size_t *nover)
{
    *maxdiff = 0;
    *nover = 0;
    if (a->width != b->width || a->height != b->height)
        return pl_fail(PL_ERR_ARG, "png: sizes differ (%dx%d vs %dx%d)", a->width, a->height, b->width, b->height);
    size_t n = (size_t)a->width * (size_t)a->height;
    for (size_t i = 0; i < n; i++) {
        uint32_t p = a->rgb[i], q = b->rgb[i];
        int m = 0;
        for (int sh = 0; sh <= 16; sh += 8) {
            int d = abs((int)((p >> sh) & 255) - (int)((q >> sh) & 255));
            if (d > m) m = d;
        }
        if (m > *maxdiff) *maxdiff = m;
        if (m > tol) (*nover)++;
    }
    return PL_OK;
}

size_t pl_raster_count_near(const struct pl_raster *r, const uint32_t *colors, size_t ncolors,
                            int tol, int x0, int y0, int x1, int y1, int bbox[4])
{
    if (x0 < 0) x0 = 0;
    if (y0 < 0) y0 = 0;
    if (x1 > r->width) x1 = r->width;
    if (y1 > r->height) y1 = r->height;
    size_t count = 0;
    int bx0 = INT_MAX, by0 = INT_MAX, bx1 = -1, by1 = -1;
    for (int y = y0; y < y1; y++)
        for (int xx = x0; xx < x1; xx++) {
            uint32_t p = r->rgb[(size_t)y * (size_t)r->width + (size_t)xx];
            for (size_t k = 0; k < ncolors; k++) {
                uint32_t q = colors[k];
                if (abs((int)((p >> 16) & 255) - (int)((q >> 16) & 255)) <= tol &&
                    abs((int)((p >> 8) & 255) - (int)((q >> 8) & 255)) <= tol &&
                    abs((int)(p & 255) - (int)(q & 255)) <= tol) {
                    count++;
                    if (xx < bx0) bx0 = xx;
                    if (y < by0) by0 = y;
                    if (xx + 1 > bx1) bx1 = xx + 1;
                    if (y + 1 > by1) by1 = y + 1;
                    break;
                }
            }
        }
    if (bbox) {
        if (count) { bbox[0] = bx0; bbox[1] = by0; bbox[2] = bx1; bbox[3] = by1; }
        else bbox[0] = bbox[1] = bbox[2] = bbox[3] = 0;
    }
    return count;
}
