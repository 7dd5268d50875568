/* l_memory.c — peft.memory: the counting allocator's numbers, by category.
 *
 *   peft.memory.current([cat])  bytes now (total if no category)
 *   peft.memory.peak([cat])     high-water mark
 *   peft.memory.stats()         { weights = {current=, peak=}, ..., total = {...}, rss =, rss_peak = }
 *   peft.memory.reset_peak()
 *   peft.memory.budget([bytes]) get/set the allocation budget (0 = none)
 *   peft.memory.categories()    list of category names
 */
#include <lua.h>
#include <lauxlib.h>
#include "peftlua/alloc.h"

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

int luaopen_peft_memory(lua_State *L)
{
    static const luaL_Reg fns[] = {
        { "current", l_memory_current },
        { "peak", l_memory_peak },
        { "stats", l_memory_stats },
        { "reset_peak", l_memory_reset_peak },
        { "budget", l_memory_budget },
        { "categories", l_memory_categories },
        { NULL, NULL }
    };
    luaL_newlib(L, fns);
    return 1;
}
