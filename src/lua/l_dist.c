/* l_dist.c — peft.dist: this process's place in an MPI job (include/peftlua/dist.h).
 * Owner: dist. Extended by lua/peft/dist.lua (the data shard of a training run, parallel tuning).
 *
 *   peft.dist.compiled()     → true when built with MPI
 *   peft.dist.info()         → {compiled=, active=, launcher=, rank=, size=, local_rank=, local_size=}
 *   peft.dist.rank(), .size()  (0 and 1 for one process)
 *   peft.dist.sum(list)      → list: the element-wise sum over every rank, in a fixed order
 *                              (the same bits on every rank)
 *   peft.dist.bcast(s, root) → root's string s on every rank
 *   peft.dist.barrier()
 *   peft.dist.send(dest, tag, s)             (tag 0..29999)
 *   peft.dist.recv([src [, tag [, timeout]]]) → s, from, tag | nil on timeout
 *                              (src/tag nil: any; timeout seconds, nil: wait forever)
 *   peft.dist.stats()        → {bytes_sent, bytes_recv, reductions, reduce_seconds}
 *   peft.dist.reset_stats()
 * Calls that need other ranks raise in a one-process run, except sum/bcast/barrier (no-ops).
 */
#include <stdint.h>
#include <string.h>

#include "pl_lua.h"
#include "peftlua/alloc.h"
#include "peftlua/dist.h"

static int l_dist_compiled(lua_State *L) { lua_pushboolean(L, pl_dist_compiled()); return 1; }
static int l_dist_rank(lua_State *L) { lua_pushinteger(L, pl_dist_rank()); return 1; }
static int l_dist_size(lua_State *L) { lua_pushinteger(L, pl_dist_size()); return 1; }

static int l_dist_info(lua_State *L)
{
    lua_createtable(L, 0, 7);
    lua_pushboolean(L, pl_dist_compiled()); lua_setfield(L, -2, "compiled");
    lua_pushboolean(L, pl_dist_active()); lua_setfield(L, -2, "active");
    lua_pushstring(L, pl_dist_launcher()); lua_setfield(L, -2, "launcher");
    lua_pushinteger(L, pl_dist_rank()); lua_setfield(L, -2, "rank");
    lua_pushinteger(L, pl_dist_size()); lua_setfield(L, -2, "size");
    lua_pushinteger(L, pl_dist_local_rank()); lua_setfield(L, -2, "local_rank");
    lua_pushinteger(L, pl_dist_local_size()); lua_setfield(L, -2, "local_size");
    return 1;
}

static int l_dist_sum(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_Integer n = luaL_len(L, 1);
    luaL_argcheck(L, n >= 0 && n <= (1 << 24), 1, "at most 2^24 numbers");
    double *v = pl_alloc((size_t)(n > 0 ? n : 1) * sizeof(double), PL_MEM_WORKSPACE);
    if (!v) return luaL_error(L, "peft.dist.sum: out of memory");
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, 1, i);
        int ok;
        v[i - 1] = lua_tonumberx(L, -1, &ok);
        lua_pop(L, 1);
        if (!ok) { pl_free(v); return luaL_error(L, "peft.dist.sum: element %d is not a number", (int)i); }
    }
    if (pl_dist_sum_f64(v, n) != PL_OK) { pl_free(v); return pl_lua_error(L); }
    lua_createtable(L, (int)n, 0);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_pushnumber(L, v[i - 1]);
        lua_rawseti(L, -2, i);
    }
    pl_free(v);
    return 1;
}

static int check_rank(lua_State *L, int idx)
{
    lua_Integer r = luaL_checkinteger(L, idx);
    luaL_argcheck(L, r >= 0 && r < pl_dist_size(), idx, "not a rank of this job");
    return (int)r;
}

static int l_dist_bcast(lua_State *L)
{
    size_t n = 0;
    const char *s = lua_isnoneornil(L, 1) ? NULL : luaL_checklstring(L, 1, &n);
    int root = lua_isnoneornil(L, 2) ? 0 : check_rank(L, 2);
    if (pl_dist_rank() == root && !s) return luaL_argerror(L, 1, "the root must give a string");
    uint64_t len = (uint64_t)n;
    if (pl_dist_bcast(&len, sizeof len, root) != PL_OK) return pl_lua_error(L);
    char *b = pl_alloc((size_t)len + 1, PL_MEM_WORKSPACE);
    if (!b) return luaL_error(L, "peft.dist.bcast: out of memory for %llu bytes", (unsigned long long)len);
    if (pl_dist_rank() == root) memcpy(b, s, (size_t)len);
    if (pl_dist_bcast(b, (size_t)len, root) != PL_OK) { pl_free(b); return pl_lua_error(L); }
    lua_pushlstring(L, b, (size_t)len);
    pl_free(b);
    return 1;
}

static int l_dist_barrier(lua_State *L)
{
    if (pl_dist_barrier() != PL_OK) return pl_lua_error(L);
    return 0;
}

static int l_dist_send(lua_State *L)
{
    int dest = check_rank(L, 1);
    lua_Integer tag = luaL_checkinteger(L, 2);
    size_t n;
    const char *s = luaL_checklstring(L, 3, &n);
    luaL_argcheck(L, tag >= 0 && tag < 30000, 2, "tag must be in 0..29999");
    if (pl_dist_send(dest, (int)tag, s, n) != PL_OK) return pl_lua_error(L);
    return 0;
}

static int l_dist_recv(lua_State *L)
{
    int src = lua_isnoneornil(L, 1) ? -1 : check_rank(L, 1);
    lua_Integer tag = luaL_optinteger(L, 2, -1);
    double timeout = luaL_optnumber(L, 3, -1.0);
    luaL_argcheck(L, tag >= -1 && tag < 30000, 2, "tag must be in 0..29999 (nil: any)");
    char *b = NULL;
    size_t n = 0;
    int from = -1, tg = -1, timed_out = 0;
    if (pl_dist_recv(src, (int)tag, timeout, &b, &n, &from, &tg, &timed_out) != PL_OK) return pl_lua_error(L);
    if (timed_out) { lua_pushnil(L); return 1; }
    lua_pushlstring(L, b, n);
    pl_free(b);
    lua_pushinteger(L, from);
    lua_pushinteger(L, tg);
    return 3;
}

static int l_dist_stats(lua_State *L)
{
    struct pl_dist_stats s;
    pl_dist_get_stats(&s);
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, s.bytes_sent); lua_setfield(L, -2, "bytes_sent");
    lua_pushinteger(L, s.bytes_recv); lua_setfield(L, -2, "bytes_recv");
    lua_pushinteger(L, s.reductions); lua_setfield(L, -2, "reductions");
    lua_pushnumber(L, s.reduce_seconds); lua_setfield(L, -2, "reduce_seconds");
    return 1;
}

static int l_dist_reset_stats(lua_State *L)
{
    (void)L;
    pl_dist_reset_stats();
    return 0;
}

int luaopen_peft_dist(lua_State *L)
{
    static const luaL_Reg fns[] = {
        { "compiled", l_dist_compiled }, { "info", l_dist_info }, { "rank", l_dist_rank },
        { "size", l_dist_size }, { "sum", l_dist_sum }, { "bcast", l_dist_bcast },
        { "barrier", l_dist_barrier }, { "send", l_dist_send }, { "recv", l_dist_recv },
        { "stats", l_dist_stats }, { "reset_stats", l_dist_reset_stats }, { NULL, NULL }
    };
    /* the host initialised MPI already (src/host/main.c); an embedding program may not have */
    if (pl_dist_init() != PL_OK) return pl_lua_error(L);
    luaL_newlib(L, fns);
    return 1;
}
