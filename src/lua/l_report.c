/* l_report.c — peft.report: charts as PNG images, PNG decoding for tests, HTML helpers.
 *
 * Owner: report (issue 6). HTML assembly (report.html{...}) is in lua/peft/report.lua, which
 * extends this table.
 *
 *   report.line{series = {{name=, x=, y=, dashed=, color=, smooth=}...}, smooth=, xlog=, ylog=, ...}
 *     (series smooth: false = never smoothed, a number = its own EMA weight; color: palette 1..8)
 *   report.bar{categories = {...}, series = {{name=, values={...}}...}, ylog=, ...}
 *   report.scatter{series = {{name=, x=, y=, labels=}...}, pareto=, pareto_x="low"|"high",
 *                  pareto_y="high"|"low", xlog=, ylog=, ...}
 *   report.hist{values = {...} | series = {{name=, values=}...}, bins=, ylog=, ...}
 *     common: title, xlabel, ylabel, width, height, font (TrueType path), bitmap_font
 *     -> peft.Image: img:save(path) (true | nil, msg), img:png() (bytes), img:size() (w, h),
 *        img:layout() (plot/legend rectangles, text boxes, font, vertices drawn), img:close()
 *   report.decode(png_bytes) / report.load(path) -> peft.Raster: r:size(), r:pixel(x, y)
 *        (0xRRGGBB, 0-based), r:diff(other, tol) (max channel difference, pixels over tol),
 *        r:count_near(colors, tol [, x0, y0, x1, y1]) (count, {x0, y0, x1, y1})
 *   report.palette() -> { 0xRRGGBB, ... }     report.escape(s)    report.base64(s)
 *   report.base64_decode(s)
 */
#include <math.h>
#include <string.h>
#include <lua.h>
#include <lauxlib.h>
#include "peftlua/alloc.h"
#include "peftlua/chart.h"
#include "peftlua/html.h"
#include "pl_lua.h"

#define IMAGE_MT "peft.Image"
#define RASTER_MT "peft.Raster"
#define SCRATCH_MT "peft.report.scratch"

/* ---- scratch: pl_alloc blocks that a Lua error must not leak (freed by __gc) ---- */
struct scratch { void **p; size_t n, cap; };

static int l_scratch_gc(lua_State *L)
{
    struct scratch *s = luaL_checkudata(L, 1, SCRATCH_MT);
    for (size_t i = 0; i < s->n; i++) pl_free(s->p[i]);
    pl_free(s->p);
    s->p = NULL;
    s->n = s->cap = 0;
    return 0;
}

static struct scratch *scratch_new(lua_State *L)
{
    struct scratch *s = lua_newuserdatauv(L, sizeof *s, 0);
    memset(s, 0, sizeof *s);
    if (luaL_newmetatable(L, SCRATCH_MT)) {
        lua_pushcfunction(L, l_scratch_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    return s;
}

static void *scratch_alloc(lua_State *L, struct scratch *s, size_t bytes)
{
    if (s->n == s->cap) {
        size_t ncap = s->cap ? 2 * s->cap : 16;
        void **np = s->p ? pl_realloc(s->p, ncap * sizeof *np) : pl_alloc(ncap * sizeof *np, PL_MEM_WORKSPACE);
        if (!np) luaL_error(L, "report: out of memory");
        s->p = np;
        s->cap = ncap;
    }
    void *q = pl_alloc(bytes ? bytes : 1, PL_MEM_WORKSPACE);
    if (!q) luaL_error(L, "report: out of memory for %d bytes", (int)bytes);
    s->p[s->n++] = q;
    return q;
}

/* ---- reading options ---- */

/* Numbers of the array field `key` of the table at idx; NULL (n = 0) if absent. */
static double *num_array(lua_State *L, struct scratch *sc, int idx, const char *key, const char *what, size_t *n)
{
    *n = 0;
    int t = lua_getfield(L, idx, key);
    if (t == LUA_TNIL) { lua_pop(L, 1); return NULL; }
    if (t != LUA_TTABLE) luaL_error(L, "%s: '%s' must be a list of numbers", what, key);
    size_t len = (size_t)lua_rawlen(L, -1);
    double *v = scratch_alloc(L, sc, len * sizeof *v);
    for (size_t i = 0; i < len; i++) {
        int ty = lua_rawgeti(L, -1, (lua_Integer)i + 1);
        if (ty != LUA_TNUMBER) luaL_error(L, "%s: %s[%d] is %s, not a number", what, key, (int)i + 1, lua_typename(L, ty));
        v[i] = lua_tonumber(L, -1);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    *n = len;
    return v;
}

/* The strings of list `key`; numbers are converted. Every string is also stored in the
 * keep-alive table at stack index `keep`, so the pointers stay valid until the call returns
 * (a converted number exists nowhere else). */
static const char **str_array(lua_State *L, struct scratch *sc, int keep, int idx, const char *key, const char *what,
                              size_t *n, int allow_holes, size_t len_hint)
{
    *n = 0;
    int t = lua_getfield(L, idx, key);
    if (t == LUA_TNIL) { lua_pop(L, 1); return NULL; }
    if (t != LUA_TTABLE) luaL_error(L, "%s: '%s' must be a list of strings", what, key);
    size_t len = allow_holes ? len_hint : (size_t)lua_rawlen(L, -1);
    const char **v = scratch_alloc(L, sc, (len ? len : 1) * sizeof *v);
    for (size_t i = 0; i < len; i++) {
        int ty = lua_rawgeti(L, -1, (lua_Integer)i + 1);
        if (ty == LUA_TNIL && allow_holes) v[i] = NULL;
        else if (ty == LUA_TSTRING || ty == LUA_TNUMBER) {
            v[i] = lua_tostring(L, -1);
            lua_pushvalue(L, -1);
            lua_rawseti(L, keep, (lua_Integer)lua_rawlen(L, keep) + 1);
        }
        else luaL_error(L, "%s: %s[%d] is %s, not a string", what, key, (int)i + 1, lua_typename(L, ty));
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    *n = len;
    return v;
}

struct image { struct pl_chart *c; };
static struct image *new_image(lua_State *L);

static const char *kind_name[] = { "line", "bar", "scatter", "hist" };

static int render(lua_State *L, enum pl_chart_kind kind)
{
    static const char *const common[] = {
        "title", "xlabel", "ylabel", "width", "height", "xlog", "ylog", "font", "bitmap_font", "series",
        /* kind-specific, checked below */
        "smooth", "categories", "pareto", "pareto_x", "pareto_y", "values", "bins", "name", NULL
    };
    const char *what = kind_name[kind];
    luaL_checktype(L, 1, LUA_TTABLE);
    pl_lua_check_options(L, 1, common, what);
    struct { const char *key; int ok; } specific[] = {
        { "smooth", kind == PL_CHART_LINE }, { "categories", kind == PL_CHART_BAR },
        { "pareto", kind == PL_CHART_SCATTER }, { "pareto_x", kind == PL_CHART_SCATTER },
        { "pareto_y", kind == PL_CHART_SCATTER }, { "values", kind == PL_CHART_HIST },
        { "bins", kind == PL_CHART_HIST }, { "name", kind == PL_CHART_HIST },
    };
    for (size_t i = 0; i < sizeof specific / sizeof specific[0]; i++) {
        if (lua_getfield(L, 1, specific[i].key) != LUA_TNIL && !specific[i].ok)
            luaL_error(L, "%s: unknown option '%s'", what, specific[i].key);
        lua_pop(L, 1);
    }
    struct scratch *sc = scratch_new(L);
    int sc_idx = lua_gettop(L);
    lua_newtable(L);   /* keeps converted label strings alive */
    int keep = lua_gettop(L);
    struct pl_chart_spec spec;
    memset(&spec, 0, sizeof spec);
    spec.kind = kind;
    spec.title = pl_lua_opt_str(L, 1, "title", NULL);
    spec.xlabel = pl_lua_opt_str(L, 1, "xlabel", NULL);
    spec.ylabel = pl_lua_opt_str(L, 1, "ylabel", NULL);
    lua_Integer w = pl_lua_opt_int(L, 1, "width", 640), h = pl_lua_opt_int(L, 1, "height", 400);
    if (w < PL_CHART_MIN_SIZE || w > PL_CHART_MAX_SIZE || h < PL_CHART_MIN_SIZE || h > PL_CHART_MAX_SIZE)
        return luaL_error(L, "%s: size %dx%d outside %d..%d pixels", what, (int)(w > 99999 ? 99999 : w),
                          (int)(h > 99999 ? 99999 : h), PL_CHART_MIN_SIZE, PL_CHART_MAX_SIZE);
    spec.width = (int)w;
    spec.height = (int)h;
    spec.xlog = pl_lua_opt_bool(L, 1, "xlog", 0);
    spec.ylog = pl_lua_opt_bool(L, 1, "ylog", 0);
    spec.font = pl_lua_opt_str(L, 1, "font", NULL);
    spec.bitmap_font = pl_lua_opt_bool(L, 1, "bitmap_font", 0);
    spec.smooth = pl_lua_opt_num(L, 1, "smooth", 0);
    if (!(spec.smooth >= 0 && spec.smooth < 1)) return luaL_error(L, "%s: smooth must be in [0, 1)", what);
    spec.pareto = pl_lua_opt_bool(L, 1, "pareto", 0);
    static const char *const dirs[] = { "low", "high", NULL };
    lua_getfield(L, 1, "pareto_x");
    spec.pareto_xdir = lua_isnil(L, -1) ? -1 : (luaL_checkoption(L, -1, NULL, dirs) ? 1 : -1);
    lua_getfield(L, 1, "pareto_y");
    spec.pareto_ydir = lua_isnil(L, -1) ? 1 : (luaL_checkoption(L, -1, NULL, dirs) ? 1 : -1);
    lua_pop(L, 2);
    lua_Integer bins = pl_lua_opt_int(L, 1, "bins", 0);
    if (bins < 0 || bins > 1000) return luaL_error(L, "%s: bins must be in 1..1000", what);
    spec.bins = (int)bins;

    size_t ncat = 0;
    if (kind == PL_CHART_BAR) spec.categories = str_array(L, sc, keep, 1, "categories", what, &ncat, 0, 0);
    spec.ncategories = ncat;

    int st = lua_getfield(L, 1, "series");
    size_t ns = 0;
    if (st != LUA_TNIL && st != LUA_TTABLE) return luaL_error(L, "%s: 'series' must be a list of tables", what);
    if (st == LUA_TTABLE) ns = (size_t)lua_rawlen(L, -1);
    int sidx = lua_gettop(L);
    int single_hist = kind == PL_CHART_HIST && st == LUA_TNIL;
    if (kind == PL_CHART_HIST && st != LUA_TNIL) {
        lua_getfield(L, 1, "values");
        if (!lua_isnil(L, -1)) return luaL_error(L, "hist: give either 'values' or 'series', not both");
        lua_pop(L, 1);
    }
    size_t nalloc = single_hist ? 1 : ns;
    struct pl_chart_series *ser = scratch_alloc(L, sc, (nalloc ? nalloc : 1) * sizeof *ser);
    memset(ser, 0, (nalloc ? nalloc : 1) * sizeof *ser);
    if (single_hist) {
        ser[0].y = num_array(L, sc, 1, "values", what, &ser[0].n);
        ser[0].name = pl_lua_opt_str(L, 1, "name", NULL);
        ser[0].color = -1;
        if (!ser[0].y && ser[0].n == 0) ser[0].y = NULL;
        ns = 1;
    } else {
        static const char *const skeys[] = { "name", "x", "y", "values", "dashed", "color", "labels", "smooth", NULL };
        for (size_t k = 0; k < ns; k++) {
            char sw[64];
            snprintf(sw, sizeof sw, "%s: series %d", what, (int)k + 1);
            if (lua_rawgeti(L, sidx, (lua_Integer)k + 1) != LUA_TTABLE) return luaL_error(L, "%s must be a table", sw);
            int e = lua_gettop(L);
            pl_lua_check_options(L, e, skeys, sw);
            struct pl_chart_series *s = &ser[k];
            s->name = pl_lua_opt_str(L, e, "name", NULL);
            s->dashed = pl_lua_opt_bool(L, e, "dashed", 0);
            lua_getfield(L, e, "smooth");   /* false = never smooth this series; number = own weight */
            if (lua_isboolean(L, -1) && !lua_toboolean(L, -1)) s->smooth = -1;
            else if (!lua_isnil(L, -1)) {
                if (kind != PL_CHART_LINE || !lua_isnumber(L, -1)) return luaL_error(L, "%s: smooth must be a number in [0, 1) or false (line charts)", sw);
                s->smooth = lua_tonumber(L, -1);
                if (!(s->smooth >= 0 && s->smooth < 1)) return luaL_error(L, "%s: smooth must be in [0, 1)", sw);
                if (s->smooth == 0) s->smooth = -1;
            }
            lua_pop(L, 1);
            lua_Integer col = pl_lua_opt_int(L, e, "color", 0);
            if (col < 0 || col > PL_CHART_NPALETTE) return luaL_error(L, "%s: color must be a palette index 1..%d", sw, PL_CHART_NPALETTE);
            s->color = col ? (int)col - 1 : -1;
            size_t nx = 0, ny = 0;
            if (kind == PL_CHART_LINE || kind == PL_CHART_SCATTER) {
                lua_getfield(L, e, "values");
                if (!lua_isnil(L, -1)) return luaL_error(L, "%s: use 'y' (and 'x'), not 'values'", sw);
                lua_pop(L, 1);
                s->x = num_array(L, sc, e, "x", sw, &nx);
                s->y = num_array(L, sc, e, "y", sw, &ny);
                if (!s->y) return luaL_error(L, "%s: 'y' is missing", sw);
                if (s->x && nx != ny) return luaL_error(L, "%s: x has %d values but y has %d", sw, (int)nx, (int)ny);
                s->n = ny;
                if (kind == PL_CHART_SCATTER) {
                    size_t nl;
                    s->labels = (const char *const *)str_array(L, sc, keep, e, "labels", sw, &nl, 1, ny);
                }
            } else {
                lua_getfield(L, e, "x");
                lua_getfield(L, e, "y");
                if (!lua_isnil(L, -1) || !lua_isnil(L, -2)) return luaL_error(L, "%s: use 'values', not x/y", sw);
                lua_pop(L, 2);
                s->y = num_array(L, sc, e, "values", sw, &ny);
                if (!s->y) return luaL_error(L, "%s: 'values' is missing", sw);
                s->n = ny;
                if (kind == PL_CHART_BAR && ny != ncat)
                    return luaL_error(L, "%s: %d values for %d categories", sw, (int)ny, (int)ncat);
            }
            lua_pop(L, 1);
        }
    }
    spec.series = ser;
    spec.nseries = ns;
    struct image *im = new_image(L);   /* closed until it holds the chart */
    enum pl_status rs = pl_chart_render(&spec, &im->c);
    lua_pushcfunction(L, l_scratch_gc);
    lua_pushvalue(L, sc_idx);
    lua_call(L, 1, 0);
    if (rs != PL_OK) return pl_lua_error(L);
    return 1;
}

static int l_report_line(lua_State *L) { return render(L, PL_CHART_LINE); }
static int l_report_bar(lua_State *L) { return render(L, PL_CHART_BAR); }
static int l_report_scatter(lua_State *L) { return render(L, PL_CHART_SCATTER); }
static int l_report_hist(lua_State *L) { return render(L, PL_CHART_HIST); }

/* ---- peft.Image ---- */

static struct image *new_image(lua_State *L)
{
    struct image *im = lua_newuserdatauv(L, sizeof *im, 0);
    im->c = NULL;
    luaL_setmetatable(L, IMAGE_MT);
    return im;
}

static struct pl_chart *check_image(lua_State *L, int idx)
{
    struct image *im = luaL_checkudata(L, idx, IMAGE_MT);
    if (!im->c) luaL_error(L, "image is closed");
    return im->c;
}

static int l_image_gc(lua_State *L)
{
    struct image *im = luaL_checkudata(L, 1, IMAGE_MT);
    pl_chart_free(im->c);
    im->c = NULL;
    return 0;
}

static int l_image_save(lua_State *L)
{
    struct pl_chart *c = check_image(L, 1);
    const char *path = luaL_checkstring(L, 2);
    if (pl_chart_save(c, path) != PL_OK) {
        luaL_pushfail(L);
        lua_pushstring(L, pl_last_error());
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int l_image_png(lua_State *L)
{
    struct pl_chart *c = check_image(L, 1);
    lua_pushlstring(L, (const char *)c->png, c->png_size);
    return 1;
}

static int l_image_size(lua_State *L)
{
    struct pl_chart *c = check_image(L, 1);
    lua_pushinteger(L, c->width);
    lua_pushinteger(L, c->height);
    return 2;
}

static void push_box(lua_State *L, const struct pl_chart_box *b, int with_text)
{
    lua_createtable(L, 0, 6);
    lua_pushinteger(L, b->x0); lua_setfield(L, -2, "x0");
    lua_pushinteger(L, b->y0); lua_setfield(L, -2, "y0");
    lua_pushinteger(L, b->x1); lua_setfield(L, -2, "x1");
    lua_pushinteger(L, b->y1); lua_setfield(L, -2, "y1");
    if (with_text) {
        lua_pushstring(L, pl_chart_box_kind_name(b->kind)); lua_setfield(L, -2, "kind");
        lua_pushstring(L, b->text); lua_setfield(L, -2, "text");
    }
}

static int l_image_layout(lua_State *L)
{
    struct pl_chart *c = check_image(L, 1);
    lua_createtable(L, 0, 8);
    push_box(L, &c->plot, 0);
    lua_setfield(L, -2, "plot");
    if (c->legend.x1 > c->legend.x0) { push_box(L, &c->legend, 0); lua_setfield(L, -2, "legend"); }
    lua_createtable(L, (int)c->nboxes, 0);
    for (size_t i = 0; i < c->nboxes; i++) {
        push_box(L, &c->boxes[i], 1);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, "boxes");
    if (c->ttf) lua_pushstring(L, c->font); else lua_pushboolean(L, 0);
    lua_setfield(L, -2, "font");
    lua_pushinteger(L, (lua_Integer)c->vertices);
    lua_setfield(L, -2, "vertices");
    if (c->bin_count[0]) {
        lua_pushinteger(L, (lua_Integer)c->bin_count[0]); lua_setfield(L, -2, "bins");
        lua_pushinteger(L, (lua_Integer)c->bin_count[1]); lua_setfield(L, -2, "counted");
    }
    return 1;
}

static int l_image_tostring(lua_State *L)
{
    struct image *im = luaL_checkudata(L, 1, IMAGE_MT);
    if (!im->c) lua_pushstring(L, "peft.Image (closed)");
    else lua_pushfstring(L, "peft.Image %dx%d (%d bytes PNG)", im->c->width, im->c->height, (int)im->c->png_size);
    return 1;
}

/* ---- peft.Raster ---- */
struct raster { struct pl_raster *r; };

static struct pl_raster *check_raster(lua_State *L, int idx)
{
    struct raster *r = luaL_checkudata(L, idx, RASTER_MT);
    if (!r->r) luaL_error(L, "raster is closed");
    return r->r;
}

static struct raster *new_raster(lua_State *L)
{
    struct raster *r = lua_newuserdatauv(L, sizeof *r, 0);
    r->r = NULL;
    luaL_setmetatable(L, RASTER_MT);
    return r;
}

static int l_report_decode(lua_State *L)
{
    size_t n;
    const char *b = luaL_checklstring(L, 1, &n);
    struct raster *r = new_raster(L);
    if (pl_png_decode(b, n, &r->r) != PL_OK) return pl_lua_error(L);
    return 1;
}

static int l_report_load(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    struct raster *r = new_raster(L);
    enum pl_status st = pl_png_load(path, &r->r);
    if (st == PL_ERR_IO) { luaL_pushfail(L); lua_pushstring(L, pl_last_error()); return 2; }
    if (st != PL_OK) return pl_lua_error(L);
    return 1;
}

static int l_raster_gc(lua_State *L)
{
    struct raster *r = luaL_checkudata(L, 1, RASTER_MT);
    pl_raster_free(r->r);
    r->r = NULL;
    return 0;
}

static int l_raster_size(lua_State *L)
{
    struct pl_raster *r = check_raster(L, 1);
    lua_pushinteger(L, r->width);
    lua_pushinteger(L, r->height);
    return 2;
}

static int l_raster_pixel(lua_State *L)
{
    struct pl_raster *r = check_raster(L, 1);
    lua_Integer x = luaL_checkinteger(L, 2), y = luaL_checkinteger(L, 3);
    if (x < 0 || y < 0 || x >= r->width || y >= r->height)
        return luaL_error(L, "pixel (%d, %d) outside the %dx%d image", (int)x, (int)y, r->width, r->height);
    lua_pushinteger(L, r->rgb[(size_t)y * (size_t)r->width + (size_t)x]);
    return 1;
}

static int l_raster_diff(lua_State *L)
{
    struct pl_raster *a = check_raster(L, 1), *b = check_raster(L, 2);
    lua_Integer tol = luaL_optinteger(L, 3, 0);
    int maxd;
    size_t nover;
    if (pl_raster_diff(a, b, (int)tol, &maxd, &nover) != PL_OK) return pl_lua_error(L);
    lua_pushinteger(L, maxd);
    lua_pushinteger(L, (lua_Integer)nover);
    return 2;
}

static int l_raster_count_near(lua_State *L)
{
    struct pl_raster *r = check_raster(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_Integer tol = luaL_checkinteger(L, 3);
    int x0 = (int)luaL_optinteger(L, 4, 0), y0 = (int)luaL_optinteger(L, 5, 0);
    int x1 = (int)luaL_optinteger(L, 6, r->width), y1 = (int)luaL_optinteger(L, 7, r->height);
    uint32_t cols[64];
    size_t nc = (size_t)lua_rawlen(L, 2);
    if (nc == 0 || nc > 64) return luaL_error(L, "count_near: 1..64 colours, got %d", (int)nc);
    for (size_t i = 0; i < nc; i++) {
        lua_rawgeti(L, 2, (lua_Integer)i + 1);
        cols[i] = (uint32_t)luaL_checkinteger(L, -1);
        lua_pop(L, 1);
    }
    int bb[4];
    size_t n = pl_raster_count_near(r, cols, nc, (int)tol, x0, y0, x1, y1, bb);
    lua_pushinteger(L, (lua_Integer)n);
    lua_createtable(L, 4, 0);
    for (int i = 0; i < 4; i++) { lua_pushinteger(L, bb[i]); lua_rawseti(L, -2, i + 1); }
    return 2;
}

/* ---- helpers ---- */

static int l_report_palette(lua_State *L)
{
    lua_createtable(L, PL_CHART_NPALETTE, 0);
    for (int i = 0; i < PL_CHART_NPALETTE; i++) {
        lua_pushinteger(L, pl_chart_palette[i]);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

/* push a pl_alloc'd result string and free it (lua_pushlstring may raise: keep it in scratch) */
static int push_owned(lua_State *L, char *s, size_t n)
{
    struct scratch *sc = scratch_new(L);
    sc->p = pl_alloc(sizeof *sc->p, PL_MEM_WORKSPACE);
    if (!sc->p) { pl_free(s); return luaL_error(L, "report: out of memory"); }
    sc->cap = 1;
    sc->p[sc->n++] = s;
    lua_pushlstring(L, s, n);
    lua_pushcfunction(L, l_scratch_gc);
    lua_pushvalue(L, -3);
    lua_call(L, 1, 0);
    return 1;
}

static int l_report_escape(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    char *o;
    size_t m;
    if (pl_html_escape(s, n, &o, &m) != PL_OK) return pl_lua_error(L);
    return push_owned(L, o, m);
}

static int l_report_base64(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    char *o;
    size_t m;
    if (pl_base64_encode(s, n, &o, &m) != PL_OK) return pl_lua_error(L);
    return push_owned(L, o, m);
}

static int l_report_base64_decode(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    unsigned char *o;
    size_t m;
    if (pl_base64_decode(s, n, &o, &m) != PL_OK) return pl_lua_error(L);
    return push_owned(L, (char *)o, m);
}


int luaopen_peft_report(lua_State *L)
{
    static const luaL_Reg image_methods[] = {
        { "save", l_image_save }, { "png", l_image_png }, { "size", l_image_size },
        { "layout", l_image_layout }, { "close", l_image_gc }, { NULL, NULL }
    };
    static const luaL_Reg raster_methods[] = {
        { "size", l_raster_size }, { "pixel", l_raster_pixel }, { "diff", l_raster_diff },
        { "count_near", l_raster_count_near }, { "close", l_raster_gc }, { NULL, NULL }
    };
    static const luaL_Reg fns[] = {
        { "line", l_report_line }, { "bar", l_report_bar }, { "scatter", l_report_scatter },
        { "hist", l_report_hist }, { "decode", l_report_decode }, { "load", l_report_load },
        { "palette", l_report_palette }, { "escape", l_report_escape }, { "base64", l_report_base64 },
        { "base64_decode", l_report_base64_decode }, { NULL, NULL }
    };
    pl_lua_new_class(L, IMAGE_MT, image_methods, l_image_gc, l_image_tostring);
    lua_pop(L, 1);
    pl_lua_new_class(L, RASTER_MT, raster_methods, l_raster_gc, NULL);
    lua_pop(L, 1);
    luaL_newlib(L, fns);
    return 1;
}
