/* l_tune.c — peft.tune, the C half: the optimiser userdata and the test functions
 * (owner: tune). lua/peft/tune.lua builds the user-facing API on top (named parameters,
 * categorical values, bayes{}, minimize, history, Pareto front).
 *
 *   tune._optimizer(spec, opts) -> peft.TuneOptimizer
 *       spec: array of {name=, type="real"|"int"|"cat", lo=, hi=, log=, pow2=, choices={labels}}
 *       opts: {seed=, n_init=, acq="ei"|"ucb", kernel="matern52"|"rbf", xi=, kappa=,
 *              candidates=, restarts=, failures="penalty"|"model",
 *              feasible=function(values) -> boolean}
 *   o:ask([q]) -> {values...} (q = nil) or a list of q of them; categoricals as 0-based indices
 *   o:tell(values, y [, metrics])   y nil/NaN/inf = failed trial; metrics {name = number}
 *   o:best() -> values, y | nil      o:count()      o:obs(i) -> values, y|nil, metrics
 *   o:pending()   o:clear_pending()  o:save(path)   o:load(path)   o:close()
 *   tune.testfn(name) -> {name=, d=, lo={}, hi={}, fmin=, f=function(x)}
 *   tune.study_run(name, random, seed, budget) -> simple regret
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <lua.h>
#include <lauxlib.h>
#include "peftlua/alloc.h"
#include "peftlua/tune.h"
#include "pl_lua.h"

#define TUNE_MT "peft.TuneOptimizer"

struct l_tune { struct pl_tune *t; };

static struct l_tune *l_tune_check(lua_State *L, int idx)
{
    struct l_tune *u = luaL_checkudata(L, idx, TUNE_MT);
    if (!u->t) luaL_error(L, "tune optimizer is closed");
    return u;
}

static const char *const SPEC_KEYS[] = { "name", "type", "lo", "hi", "log", "pow2", "choices", NULL };
static const char *const OPT_KEYS[] = { "seed", "n_init", "acq", "kernel", "xi", "kappa", "candidates", "restarts", "failures", "feasible", NULL };

/* Strings read below stay anchored in the spec table (argument 1) for the whole call; the
 * engine copies names and labels, so nothing outlives it. */
static int l_tune_new(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    pl_lua_check_options(L, 2, OPT_KEYS, "tune");
    int np = (int)luaL_len(L, 1);
    luaL_argcheck(L, np >= 1 && np <= 4096, 1, "the search space needs 1..4096 parameters");
    struct l_tune *u = lua_newuserdatauv(L, sizeof *u, 1);   /* closed state first */
    u->t = NULL;
    luaL_setmetatable(L, TUNE_MT);
    int ud = lua_gettop(L);
    struct pl_tune_param *ps = lua_newuserdatauv(L, sizeof *ps * np, 0);   /* scratch, GC-owned */
    memset(ps, 0, sizeof *ps * np);
    lua_newtable(L);                     /* ud + 2: anchors the label arrays until the call ends */
    for (int i = 0; i < np; i++) {
        lua_geti(L, 1, i + 1);
        int e = lua_gettop(L);
        if (!lua_istable(L, e)) return luaL_error(L, "tune: space entry %d is not a table", i + 1);
        pl_lua_check_options(L, e, SPEC_KEYS, "tune space entry");
        ps[i].name = pl_lua_opt_str(L, e, "name", NULL);
        if (!ps[i].name) return luaL_error(L, "tune: space entry %d has no name", i + 1);
        const char *ty = pl_lua_opt_str(L, e, "type", "real");
        if (strcmp(ty, "real") == 0) ps[i].type = PL_TUNE_REAL;
        else if (strcmp(ty, "int") == 0) ps[i].type = PL_TUNE_INT;
        else if (strcmp(ty, "cat") == 0) ps[i].type = PL_TUNE_CAT;
        else return luaL_error(L, "tune: parameter '%s': unknown type '%s' (real, int or cat)", ps[i].name, ty);
        ps[i].lo = pl_lua_opt_num(L, e, "lo", 0);
        ps[i].hi = pl_lua_opt_num(L, e, "hi", 0);
        ps[i].log = pl_lua_opt_bool(L, e, "log", 0);
        ps[i].pow2 = pl_lua_opt_bool(L, e, "pow2", 0);
        if (ps[i].type == PL_TUNE_CAT) {
            lua_getfield(L, e, "choices");
            if (!lua_istable(L, -1)) return luaL_error(L, "tune: parameter '%s': choices must be a list of labels", ps[i].name);
            int nc = (int)luaL_len(L, -1);
            if (nc > 100000) return luaL_error(L, "tune: parameter '%s': too many choices", ps[i].name);
            const char **ch = lua_newuserdatauv(L, sizeof(char *) * (nc > 0 ? nc : 1), 0);
            lua_rawseti(L, ud + 2, i + 1);
            for (int c = 0; c < nc; c++) {
                lua_geti(L, -1, c + 1);
                if (lua_type(L, -1) != LUA_TSTRING)
                    return luaL_error(L, "tune: parameter '%s': choice label %d is not a string", ps[i].name, c + 1);
                ch[c] = lua_tostring(L, -1);
                lua_pop(L, 1);
            }
            ps[i].choices = ch;
            ps[i].n_choices = nc;
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    struct pl_tune_opts o = pl_tune_defaults();
    o.seed = (uint64_t)pl_lua_opt_int(L, 2, "seed", 1);
    o.n_init = (int)pl_lua_opt_int(L, 2, "n_init", 0);
    const char *acq = pl_lua_opt_str(L, 2, "acq", "ei");
    if (strcmp(acq, "ei") == 0) o.acq = PL_TUNE_EI;
    else if (strcmp(acq, "ucb") == 0) o.acq = PL_TUNE_UCB;
    else return luaL_error(L, "tune: unknown acquisition '%s' (ei or ucb)", acq);
    const char *kn = pl_lua_opt_str(L, 2, "kernel", "matern52");
    if (strcmp(kn, "matern52") == 0) o.kernel = PL_GP_MATERN52;
    else if (strcmp(kn, "rbf") == 0) o.kernel = PL_GP_RBF;
    else return luaL_error(L, "tune: unknown kernel '%s' (matern52 or rbf)", kn);
    o.xi = pl_lua_opt_num(L, 2, "xi", o.xi);
    o.kappa = pl_lua_opt_num(L, 2, "kappa", o.kappa);
    o.n_candidates = (int)pl_lua_opt_int(L, 2, "candidates", o.n_candidates);
    o.n_restarts = (int)pl_lua_opt_int(L, 2, "restarts", o.n_restarts);
    const char *fm = pl_lua_opt_str(L, 2, "failures", "penalty");
    if (strcmp(fm, "penalty") == 0) o.failure_model = 0;
    else if (strcmp(fm, "model") == 0) o.failure_model = 1;
    else return luaL_error(L, "tune: failures must be 'penalty' or 'model', not '%s'", fm);
    if (!lua_isnoneornil(L, 2)) {
        lua_getfield(L, 2, "feasible");
        if (!lua_isnil(L, -1) && !lua_isfunction(L, -1)) return luaL_error(L, "tune: feasible must be a function");
        lua_setiuservalue(L, ud, 1);
    }
    if (pl_tune_new(&u->t, ps, np, &o)) return pl_lua_error(L);
    lua_settop(L, ud);
    return 1;
}

static void push_values(lua_State *L, const struct pl_tune *t, const double *v)
{
    int np = pl_tune_nparams(t);
    lua_createtable(L, np, 0);
    for (int i = 0; i < np; i++) {
        if (pl_tune_param(t, i)->type == PL_TUNE_REAL) lua_pushnumber(L, v[i]);
        else lua_pushinteger(L, (lua_Integer)v[i]);
        lua_rawseti(L, -2, i + 1);
    }
}

static void check_values(lua_State *L, int idx, const struct pl_tune *t, double *v)
{
    luaL_checktype(L, idx, LUA_TTABLE);
    int np = pl_tune_nparams(t);
    if (luaL_len(L, idx) != np) luaL_error(L, "tune: expected %d parameter values, got %d", np, (int)luaL_len(L, idx));
    for (int i = 0; i < np; i++) {
        lua_geti(L, idx, i + 1);
        if (!lua_isnumber(L, -1)) luaL_error(L, "tune: parameter '%s' is not a number", pl_tune_param(t, i)->name);
        v[i] = lua_tonumber(L, -1);
        lua_pop(L, 1);
    }
}

struct tramp { lua_State *L; const struct pl_tune *t; int failed; };

/* The constraint callback: calls the Lua function (uservalue 1 of the optimizer, pushed at
 * the stack top by l_tune_ask) under pcall, so a Lua error never unwinds through the engine. */
static int l_tune_feasible(const double *v, void *ud)
{
    struct tramp *tr = ud;
    lua_State *L = tr->L;
    if (!lua_checkstack(L, 3)) { pl_fail(PL_ERR_NOMEM, "tune: Lua stack overflow in the constraint"); return -1; }
    lua_pushvalue(L, -1);
    push_values(L, tr->t, v);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        tr->failed = 1;
        lua_setfield(L, LUA_REGISTRYINDEX, "peft.tune.error");
        pl_fail(PL_ERR_ARG, "tune: the constraint raised an error");
        return -1;
    }
    int ok = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return ok;
}

static int l_tune_ask(lua_State *L)
{
    struct l_tune *u = l_tune_check(L, 1);
    int single = lua_isnoneornil(L, 2);
    lua_Integer q = luaL_optinteger(L, 2, 1);
    luaL_argcheck(L, q >= 1 && q <= 10000, 2, "batch size must be 1..10000");
    int np = pl_tune_nparams(u->t);
    double *v = lua_newuserdatauv(L, sizeof(double) * np * (size_t)q, 0);
    int vidx = lua_gettop(L);
    struct tramp tr = { L, u->t, 0 };
    if (lua_getiuservalue(L, 1, 1) == LUA_TFUNCTION) pl_tune_set_feasible(u->t, l_tune_feasible, &tr);
    enum pl_status st = pl_tune_ask(u->t, (int)q, v);
    pl_tune_set_feasible(u->t, NULL, NULL);
    lua_settop(L, vidx);
    if (tr.failed) {
        lua_getfield(L, LUA_REGISTRYINDEX, "peft.tune.error");
        lua_pushnil(L);
        lua_setfield(L, LUA_REGISTRYINDEX, "peft.tune.error");
        return lua_error(L);
    }
    if (st) return pl_lua_error(L);
    if (single) { push_values(L, u->t, v); return 1; }
    lua_createtable(L, (int)q, 0);
    for (int k = 0; k < q; k++) { push_values(L, u->t, v + (size_t)k * np); lua_rawseti(L, -2, k + 1); }
    return 1;
}

static int l_tune_tell(lua_State *L)
{
    struct l_tune *u = l_tune_check(L, 1);
    int np = pl_tune_nparams(u->t);
    double *v = lua_newuserdatauv(L, sizeof(double) * np, 0);
    check_values(L, 2, u->t, v);
    double y = NAN;
    if (!lua_isnoneornil(L, 3)) {
        if (!lua_isnumber(L, 3)) return luaL_argerror(L, 3, "value must be a number or nil (failed trial)");
        y = lua_tonumber(L, 3);
    }
    int nm = 0;
    const char **keys = NULL;
    double *vals = NULL;
    if (!lua_isnoneornil(L, 4)) {
        luaL_checktype(L, 4, LUA_TTABLE);
        lua_pushnil(L);
        while (lua_next(L, 4)) { nm++; lua_pop(L, 1); }
        keys = lua_newuserdatauv(L, sizeof(char *) * (nm ? nm : 1), 0);
        vals = lua_newuserdatauv(L, sizeof(double) * (nm ? nm : 1), 0);
        int k = 0;
        lua_pushnil(L);
        while (lua_next(L, 4)) {
            if (lua_type(L, -2) != LUA_TSTRING) return luaL_error(L, "tune: metric names must be strings");
            if (!lua_isnumber(L, -1)) return luaL_error(L, "tune: metric '%s' is not a number", lua_tostring(L, -2));
            keys[k] = lua_tostring(L, -2);
            vals[k] = lua_tonumber(L, -1);
            k++;
            lua_pop(L, 1);
        }
        /* sort by name so histories are written in a stable order */
        for (int a = 1; a < nm; a++)
            for (int b = a; b > 0 && strcmp(keys[b - 1], keys[b]) > 0; b--) {
                const char *tk = keys[b]; keys[b] = keys[b - 1]; keys[b - 1] = tk;
                double tv = vals[b]; vals[b] = vals[b - 1]; vals[b - 1] = tv;
            }
    }
    if (pl_tune_tell_metrics(u->t, v, y, nm, keys, vals)) return pl_lua_error(L);
    return 0;
}

static int l_tune_best(lua_State *L)
{
    struct l_tune *u = l_tune_check(L, 1);
    double *v = lua_newuserdatauv(L, sizeof(double) * pl_tune_nparams(u->t), 0), y;
    if (pl_tune_best(u->t, v, &y)) { lua_pushnil(L); return 1; }
    push_values(L, u->t, v);
    lua_pushnumber(L, y);
    return 2;
}

static int l_tune_count(lua_State *L)
{
    lua_pushinteger(L, pl_tune_count(l_tune_check(L, 1)->t));
    return 1;
}

static int l_tune_obs(lua_State *L)
{
    struct l_tune *u = l_tune_check(L, 1);
    lua_Integer i = luaL_checkinteger(L, 2);
    luaL_argcheck(L, i >= 1 && i <= pl_tune_count(u->t), 2, "observation index out of range");
    double *v = lua_newuserdatauv(L, sizeof(double) * pl_tune_nparams(u->t), 0), y;
    pl_tune_obs(u->t, (int)i - 1, v, &y);
    push_values(L, u->t, v);
    if (isnan(y)) lua_pushnil(L); else lua_pushnumber(L, y);
    const char *const *keys;
    const double *vals;
    int nm = pl_tune_obs_metrics(u->t, (int)i - 1, &keys, &vals);
    lua_createtable(L, 0, nm);
    for (int k = 0; k < nm; k++) { lua_pushnumber(L, vals[k]); lua_setfield(L, -2, keys[k]); }
    return 3;
}

static int l_tune_pending(lua_State *L)
{
    lua_pushinteger(L, pl_tune_pending(l_tune_check(L, 1)->t));
    return 1;
}

static int l_tune_clear_pending(lua_State *L)
{
    pl_tune_clear_pending(l_tune_check(L, 1)->t);
    return 0;
}

/* t:save(path) / t:load(path): true; nil, message when the file cannot be read or written
 * (as io.open); anything else raises. */
static int save_or_load(lua_State *L, int save)
{
    struct l_tune *u = l_tune_check(L, 1);
    const char *path = luaL_checkstring(L, 2);
    enum pl_status st = save ? pl_tune_save(u->t, path) : pl_tune_load(u->t, path);
    if (st == PL_ERR_IO) { lua_pushnil(L); lua_pushstring(L, pl_last_error()); return 2; }
    if (st) return pl_lua_error(L);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_tune_save(lua_State *L) { return save_or_load(L, 1); }
static int l_tune_load(lua_State *L) { return save_or_load(L, 0); }

static int l_tune_release(lua_State *L)
{
    struct l_tune *u = luaL_checkudata(L, 1, TUNE_MT);
    pl_tune_free(u->t);
    u->t = NULL;
    return 0;
}

static int l_tune_tostring(lua_State *L)
{
    struct l_tune *u = luaL_checkudata(L, 1, TUNE_MT);
    if (!u->t) lua_pushstring(L, "peft.TuneOptimizer (closed)");
    else lua_pushfstring(L, "peft.TuneOptimizer (%d parameters, %d trials)", pl_tune_nparams(u->t), pl_tune_count(u->t));
    return 1;
}

static int l_tune_testfn_call(lua_State *L)
{
    const struct pl_tune_testfn *tf = lua_touserdata(L, lua_upvalueindex(1));
    luaL_checktype(L, 1, LUA_TTABLE);
    double x[6];
    if (luaL_len(L, 1) != tf->d) return luaL_error(L, "tune: %s takes %d coordinates, got %d", tf->name, tf->d, (int)luaL_len(L, 1));
    for (int k = 0; k < tf->d; k++) {
        lua_geti(L, 1, k + 1);
        if (!lua_isnumber(L, -1)) return luaL_error(L, "tune: %s: coordinate %d is not a number", tf->name, k + 1);
        x[k] = lua_tonumber(L, -1);
        lua_pop(L, 1);
    }
    lua_pushnumber(L, tf->f(x));
    return 1;
}

static int l_tune_testfn(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    const struct pl_tune_testfn *tf = pl_tune_testfn(name);
    if (!tf) return luaL_error(L, "tune: unknown test function '%s' (branin, hartmann3, hartmann6)", name);
    lua_createtable(L, 0, 6);
    lua_pushstring(L, tf->name); lua_setfield(L, -2, "name");
    lua_pushinteger(L, tf->d); lua_setfield(L, -2, "d");
    lua_pushnumber(L, tf->fmin); lua_setfield(L, -2, "fmin");
    lua_createtable(L, tf->d, 0);
    for (int k = 0; k < tf->d; k++) { lua_pushnumber(L, tf->lo[k]); lua_rawseti(L, -2, k + 1); }
    lua_setfield(L, -2, "lo");
    lua_createtable(L, tf->d, 0);
    for (int k = 0; k < tf->d; k++) { lua_pushnumber(L, tf->hi[k]); lua_rawseti(L, -2, k + 1); }
    lua_setfield(L, -2, "hi");
    lua_pushlightuserdata(L, (void *)tf);
    lua_pushcclosure(L, l_tune_testfn_call, 1);
    lua_setfield(L, -2, "f");
    return 1;
}

static int l_tune_study_run(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    int random = lua_toboolean(L, 2);
    lua_Integer seed = luaL_checkinteger(L, 3), budget = luaL_checkinteger(L, 4);
    luaL_argcheck(L, budget >= 1 && budget <= 10000, 4, "budget must be 1..10000");
    double r;
    if (pl_tune_study_run(name, random, (uint64_t)seed, (int)budget, &r, NULL)) return pl_lua_error(L);
    lua_pushnumber(L, r);
    return 1;
}

static const luaL_Reg l_tune_methods[] = {
    { "ask", l_tune_ask }, { "tell", l_tune_tell }, { "best", l_tune_best }, { "count", l_tune_count },
    { "obs", l_tune_obs }, { "pending", l_tune_pending }, { "clear_pending", l_tune_clear_pending },
    { "save", l_tune_save }, { "load", l_tune_load }, { "close", l_tune_release }, { NULL, NULL }
};

static const luaL_Reg l_tune_funcs[] = {
    { "_optimizer", l_tune_new }, { "testfn", l_tune_testfn }, { "study_run", l_tune_study_run }, { NULL, NULL }
};

int luaopen_peft_tune(lua_State *L)
{
    pl_lua_new_class(L, TUNE_MT, l_tune_methods, l_tune_release, l_tune_tostring);
    lua_pop(L, 1);
    luaL_newlib(L, l_tune_funcs);
    return 1;
}
