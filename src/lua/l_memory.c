/* l_memory.c — peft.memory: the counting allocator's numbers, by category.
 *
 *   peft.memory.current([cat])  bytes now (total if no category)
 *   peft.memory.peak([cat])     high-water mark
 *   peft.memory.stats()         { weights = {current=, peak=}, ..., total = {...}, rss =, rss_peak = }
 *   peft.memory.reset_peak()
 *   peft.memory.budget([bytes]) get/set the allocation budget (0 = none)
 *   peft.memory.categories()    list of category names
 *   peft.memory.fail_after(n)   make the n-th next engine allocation fail (tests of recovery
 *                               paths; 0 turns it off)
 *
 * The profiler's timeline (src/core/alloc.c; lua/peft/memory.lua adds save_json and summary):
 *   peft.memory.mark([label])         snapshot: current bytes by category, the peak since the
 *                                     previous mark by category and total, RSS and its peak;
 *                                     returns this mark's entry (as timeline() gives them);
 *                                     if the timeline cannot be allocated (a tight budget),
 *                                     the entry and a message, without raising
 *   peft.memory.timeline()            { {t=, label=, first=, last=, current={<cat>=, total=},
 *                                       peak={<cat>=, total=}, rss=, rss_peak=}, ... } oldest first
 *   peft.memory.clear_timeline()
 *   peft.memory.timeline_cap([n])     get/set the entry cap (even, >= 2; setting clears);
 *                                     returns cap, stride (marks per entry), marks taken
 *   peft.memory.json([pretty])        the whole profile as one JSON document (src/train/memprof.c)
 *   peft.memory.decode_json(s)        a JSON text as Lua values (objects: tables by key, arrays:
 *                                     sequences, null: nil; integral numbers as integers);
 *                                     nil, message when s is not JSON
 *   peft.memory.read_json(path)       the same for a file (memory.json); nil, message on failure
 */
#include <lua.h>
#include <lauxlib.h>
#include <math.h>
#include "peftlua/alloc.h"
#include "peftlua/json.h"
#include "pl_lua.h"

static int l_memory_cat(lua_State *L, int idx)
{
    const char *name = luaL_checkstring(L, idx);
    int c = pl_mem_cat_from_name(name);
    if (c < 0) return luaL_argerror(L, idx, lua_pushfstring(L, "unknown memory category '%s'", name));
    return c;
}

static int l_memory_current(lua_State *L)
{
    lua_pushinteger(L, lua_isnoneornil(L, 1) ? pl_mem_current_total() : pl_mem_current(l_memory_cat(L, 1)));
    return 1;
}

static int l_memory_peak(lua_State *L)
{
    lua_pushinteger(L, lua_isnoneornil(L, 1) ? pl_mem_peak_total() : pl_mem_peak(l_memory_cat(L, 1)));
    return 1;
}

static int l_memory_stats(lua_State *L)
{
    lua_newtable(L);
    for (int c = 0; c < PL_MEM_NCAT; c++) {
        lua_createtable(L, 0, 2);
        lua_pushinteger(L, pl_mem_current(c));
        lua_setfield(L, -2, "current");
        lua_pushinteger(L, pl_mem_peak(c));
        lua_setfield(L, -2, "peak");
        lua_setfield(L, -2, pl_mem_cat_name(c));
    }
    lua_createtable(L, 0, 2);
    lua_pushinteger(L, pl_mem_current_total());
    lua_setfield(L, -2, "current");
    lua_pushinteger(L, pl_mem_peak_total());
    lua_setfield(L, -2, "peak");
    lua_setfield(L, -2, "total");
    lua_pushinteger(L, pl_mem_rss());
    lua_setfield(L, -2, "rss");
    lua_pushinteger(L, pl_mem_rss_peak());
    lua_setfield(L, -2, "rss_peak");
    return 1;
}

static int l_memory_reset_peak(lua_State *L)
{
    (void)L;
    pl_mem_reset_peak();
    return 0;
}

static int l_memory_budget(lua_State *L)
{
    if (!lua_isnoneornil(L, 1)) {
        lua_Integer b = luaL_checkinteger(L, 1);
        luaL_argcheck(L, b >= 0, 1, "budget must be >= 0");
        pl_mem_set_budget(b);
    }
    lua_pushinteger(L, pl_mem_budget());
    return 1;
}

static int l_memory_categories(lua_State *L)
{
    lua_createtable(L, PL_MEM_NCAT, 0);
    for (int c = 0; c < PL_MEM_NCAT; c++) {
        lua_pushstring(L, pl_mem_cat_name(c));
        lua_rawseti(L, -2, c + 1);
    }
    return 1;
}

static void l_memory_bytes(lua_State *L, const int64_t *v, int64_t total)
{
    lua_createtable(L, 0, PL_MEM_NCAT + 1);
    for (int c = 0; c < PL_MEM_NCAT; c++) {
        lua_pushinteger(L, v[c]);
        lua_setfield(L, -2, pl_mem_cat_name(c));
    }
    lua_pushinteger(L, total);
    lua_setfield(L, -2, "total");
}

static void l_memory_push_snap(lua_State *L, const struct pl_mem_snap *s)
{
    lua_createtable(L, 0, 8);
    lua_pushnumber(L, s->t); lua_setfield(L, -2, "t");
    lua_pushstring(L, s->label); lua_setfield(L, -2, "label");
    lua_pushinteger(L, s->first); lua_setfield(L, -2, "first");
    lua_pushinteger(L, s->last); lua_setfield(L, -2, "last");
    l_memory_bytes(L, s->current, s->current_total); lua_setfield(L, -2, "current");
    l_memory_bytes(L, s->peak, s->peak_total); lua_setfield(L, -2, "peak");
    lua_pushinteger(L, s->rss); lua_setfield(L, -2, "rss");
    lua_pushinteger(L, s->rss_peak); lua_setfield(L, -2, "rss_peak");
}

static int l_memory_mark(lua_State *L)
{
    const char *label = luaL_optstring(L, 1, "");
    struct pl_mem_snap s;
    enum pl_status st = pl_mem_mark(label, &s);
    l_memory_push_snap(L, &s);
    if (st == PL_OK) return 1;
    lua_pushstring(L, pl_last_error());   /* the timeline could not be allocated: profiling */
    return 2;                             /* must not stop a run, so no error is raised */
}

static int l_memory_timeline(lua_State *L)
{
    size_t n = pl_mem_timeline_len();
    lua_createtable(L, (int)n, 0);
    struct pl_mem_snap s;
    for (size_t i = 0; i < n && pl_mem_timeline_get(i, &s) == PL_OK; i++) {
        l_memory_push_snap(L, &s);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

static int l_memory_clear_timeline(lua_State *L)
{
    (void)L;
    pl_mem_timeline_clear();
    return 0;
}

static int l_memory_timeline_cap(lua_State *L)
{
    if (!lua_isnoneornil(L, 1)) {
        lua_Integer n = luaL_checkinteger(L, 1);
        luaL_argcheck(L, n >= 2 && n % 2 == 0 && n <= (1 << 24), 1, "timeline cap must be an even number in 2..16777216");
        if (pl_mem_timeline_set_cap((size_t)n) != PL_OK) return pl_lua_error(L);
    }
    lua_pushinteger(L, (lua_Integer)pl_mem_timeline_cap());
    lua_pushinteger(L, pl_mem_timeline_stride());
    lua_pushinteger(L, pl_mem_timeline_marks());
    return 3;
}

static int l_memory_json(lua_State *L)
{
    char *s = pl_mem_json(lua_toboolean(L, 1));
    if (!s) return pl_lua_error(L);
    lua_pushstring(L, s);
    pl_free(s);
    return 1;
}

static int l_memory_json_gc(lua_State *L)
{
    struct pl_json **box = luaL_checkudata(L, 1, "peft.memory.json");
    pl_json_free(*box);
    *box = NULL;
    return 0;
}

/* A box whose __gc frees the parsed tree, made before parsing: converting may raise (out of
 * memory) and must not leak the tree. */
static struct pl_json **l_memory_json_box(lua_State *L)
{
    struct pl_json **box = lua_newuserdatauv(L, sizeof *box, 0);
    *box = NULL;
    if (luaL_newmetatable(L, "peft.memory.json")) {
        lua_pushcfunction(L, l_memory_json_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    return box;
}

/* the document as Lua values, or nil, message */
static int l_memory_json_result(lua_State *L, struct pl_json **box)
{
    if (!*box) {
        luaL_pushfail(L);
        lua_pushstring(L, pl_last_error());
        return 2;
    }
    pl_lua_push_json(L, *box);
    pl_json_free(*box);
    *box = NULL;
    return 1;
}

static int l_memory_decode_json(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    struct pl_json **box = l_memory_json_box(L);
    *box = pl_json_parse(s, n, "JSON text");
    return l_memory_json_result(L, box);
}

static int l_memory_read_json(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    struct pl_json **box = l_memory_json_box(L);
    *box = pl_json_parse_file(path);
    return l_memory_json_result(L, box);
}

static int l_memory_fail_after(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 1);
    luaL_argcheck(L, n >= 0, 1, "n must be >= 0 (0 turns injection off)");
    pl_mem_fail_after(n);
    return 0;
}

int luaopen_peft_memory(lua_State *L)
{
    static const luaL_Reg fns[] = {
        { "current", l_memory_current },
        { "peak", l_memory_peak },
        { "stats", l_memory_stats },
        { "reset_peak", l_memory_reset_peak },
        { "budget", l_memory_budget },
        { "categories", l_memory_categories },
        { "mark", l_memory_mark },
        { "timeline", l_memory_timeline },
        { "clear_timeline", l_memory_clear_timeline },
        { "timeline_cap", l_memory_timeline_cap },
        { "json", l_memory_json },
        { "decode_json", l_memory_decode_json },
        { "read_json", l_memory_read_json },
        { "fail_after", l_memory_fail_after },
        { NULL, NULL }
    };
    luaL_newlib(L, fns);
    return 1;
}
