/* l_tensor.c — peft.tensor: tensors for Lua, and the shared peft.Tensor userdata (pl_lua.h).
 *
 * A peft.Tensor userdata holds one reference to a struct pl_tensor; __gc and __close share one
 * release function, so `local t <close> = ...` frees deterministically. Indices and dimensions
 * are 1-based in Lua, as Lua tables are. Arithmetic returns new f32 tensors.
 *
 *   T.new({2,3} [, dtype])   zeros          T.from(table [, {shape=, dtype=}])
 *   T.full(shape, v), T.ones(shape), T.arange(n), T.randn(shape, seed)
 *   t:shape() t:dtype() t:numel() t:dim() t:get(i,...) t:set(v, i,...) t:totable() t:flat()
 *   t:reshape{...} t:narrow(d, start, len) t:select(d, i) t:transpose(a, b) t:clone() t:to(dtype)
 *   + - * / unary -, t:matmul(u), t:sum([d]) mean max min argmax, t:softmax(d), t:exp() ...
 *   T.save(path, {name = t, ...}) / T.load(path) → {name = t}   (safetensors)
 */
#include <math.h>
#include <string.h>
#include "pl_lua.h"
#include "peftlua/safetensors.h"

struct l_tensor_ud { struct pl_tensor *t; };

/* ---- the shared userdata ---- */

void pl_lua_push_tensor(lua_State *L, struct pl_tensor *t)
{
    struct l_tensor_ud *ud = lua_newuserdatauv(L, sizeof *ud, 0);
    ud->t = NULL; /* closed state first, then the resource */
    luaL_setmetatable(L, PL_TENSOR_MT);
    ud->t = t;
}

struct pl_tensor *pl_lua_test_tensor(lua_State *L, int idx)
{
    struct l_tensor_ud *ud = luaL_testudata(L, idx, PL_TENSOR_MT);
    return ud ? ud->t : NULL;
}

struct pl_tensor *pl_lua_check_tensor(lua_State *L, int idx)
{
    struct l_tensor_ud *ud = luaL_checkudata(L, idx, PL_TENSOR_MT);
    if (!ud->t) luaL_argerror(L, idx, "tensor is closed");
    return ud->t;
}

static int l_tensor_release(lua_State *L)
{
    struct l_tensor_ud *ud = luaL_checkudata(L, 1, PL_TENSOR_MT);
    pl_tensor_release(ud->t);
    ud->t = NULL;
    return 0;
}

/* push a new tensor or raise the engine error */
static int l_tensor_push_or_error(lua_State *L, struct pl_tensor *t)
{
    if (!t) return pl_lua_error(L);
    pl_lua_push_tensor(L, t);
    return 1;
}

static enum pl_dtype l_tensor_opt_dtype(lua_State *L, int idx, enum pl_dtype dflt)
{
    if (lua_isnoneornil(L, idx)) return dflt;
    const char *name = luaL_checkstring(L, idx);
    int d = pl_dtype_from_name(name);
    if (d < 0) luaL_argerror(L, idx, lua_pushfstring(L, "unknown dtype '%s'", name));
    return (enum pl_dtype)d;
}

static int l_tensor_check_shape(lua_State *L, int idx, int64_t *shape)
{
    luaL_checktype(L, idx, LUA_TTABLE);
    int n = (int)lua_rawlen(L, idx);
    if (n > PL_MAX_DIMS) luaL_argerror(L, idx, "too many dimensions");
    for (int i = 0; i < n; i++) {
        lua_rawgeti(L, idx, i + 1);
        int isint = 0;
        lua_Integer v = lua_tointegerx(L, -1, &isint);
        if (!isint || v < -1) luaL_argerror(L, idx, "shape entries must be non-negative integers");
        shape[i] = v;
        lua_pop(L, 1);
    }
    return n;
}

/* ---- constructors ---- */

static int l_tensor_new(lua_State *L)
{
    int64_t shape[PL_MAX_DIMS];
    int nd = l_tensor_check_shape(L, 1, shape);
    return l_tensor_push_or_error(L, pl_tensor_new(l_tensor_opt_dtype(L, 2, PL_F32), nd, shape, PL_MEM_WORKSPACE));
}

static int l_tensor_full(lua_State *L)
{
    int64_t shape[PL_MAX_DIMS];
    int nd = l_tensor_check_shape(L, 1, shape);
    double v = luaL_checknumber(L, 2);
    struct pl_tensor *t = pl_tensor_new(l_tensor_opt_dtype(L, 3, PL_F32), nd, shape, PL_MEM_WORKSPACE);
    if (t && pl_tensor_fill(t, v) != PL_OK) { pl_tensor_release(t); t = NULL; }
    return l_tensor_push_or_error(L, t);
}

static int l_tensor_ones(lua_State *L)
{
    lua_settop(L, 2);
    lua_pushnumber(L, 1);
    lua_insert(L, 2);
    return l_tensor_full(L);
}

static int l_tensor_arange(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 1);
    luaL_argcheck(L, n >= 0, 1, "length must be >= 0");
    int64_t shape[1] = { n };
    struct pl_tensor *t = pl_tensor_new(PL_F32, 1, shape, PL_MEM_WORKSPACE);
    if (!t) return pl_lua_error(L);
    float *p = pl_tensor_data(t);
    for (lua_Integer i = 0; i < n; i++) p[i] = (float)i;
    return l_tensor_push_or_error(L, t);
}

/* splitmix64 + Box-Muller: a reproducible normal sample from a seed */
static uint64_t l_tensor_splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int l_tensor_randn(lua_State *L)
{
    int64_t shape[PL_MAX_DIMS];
    int nd = l_tensor_check_shape(L, 1, shape);
    uint64_t seed = (uint64_t)luaL_optinteger(L, 2, 0);
    struct pl_tensor *t = pl_tensor_new(PL_F32, nd, shape, PL_MEM_WORKSPACE);
    if (!t) return pl_lua_error(L);
    float *p = pl_tensor_data(t);
    int64_t n = pl_tensor_numel(t);
    for (int64_t i = 0; i < n; i += 2) {
        double u1 = ((l_tensor_splitmix(&seed) >> 11) + 1.0) * 0x1.0p-53, u2 = (l_tensor_splitmix(&seed) >> 11) * 0x1.0p-53;
        double r = sqrt(-2.0 * log(u1));
        p[i] = (float)(r * cos(2 * M_PI * u2));
        if (i + 1 < n) p[i + 1] = (float)(r * sin(2 * M_PI * u2));
    }
    return l_tensor_push_or_error(L, t);
}

/* infer the shape of a nested table: {{1,2},{3,4}} → {2,2} */
static int l_tensor_infer_shape(lua_State *L, int idx, int64_t *shape)
{
    int nd = 0;
    lua_pushvalue(L, idx);
    while (lua_type(L, -1) == LUA_TTABLE) {
        if (nd == PL_MAX_DIMS) luaL_error(L, "tensor.from: nested deeper than %d", PL_MAX_DIMS);
        shape[nd++] = (int64_t)lua_rawlen(L, -1);
        if (shape[nd - 1] == 0) break;
        lua_rawgeti(L, -1, 1);
        lua_remove(L, -2);
    }
    lua_pop(L, 1);
    return nd;
}

static void l_tensor_fill_from(lua_State *L, int idx, const int64_t *shape, int nd, int depth, float *out, int64_t *pos)
{
    if ((int64_t)lua_rawlen(L, idx) != shape[depth]) luaL_error(L, "tensor.from: ragged table at depth %d (expected %d entries)", depth + 1, (int)shape[depth]);
    for (int64_t i = 1; i <= shape[depth]; i++) {
        lua_rawgeti(L, idx, i);
        if (depth + 1 < nd) {
            if (!lua_istable(L, -1)) luaL_error(L, "tensor.from: expected a table at depth %d", depth + 2);
            l_tensor_fill_from(L, lua_gettop(L), shape, nd, depth + 1, out, pos);
        } else {
            int isnum = 0;
            lua_Number v = lua_tonumberx(L, -1, &isnum);
            if (!isnum) luaL_error(L, "tensor.from: element %d is not a number", (int)(*pos + 1));
            out[(*pos)++] = (float)v;
        }
        lua_pop(L, 1);
    }
}

static int l_tensor_from(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 2); /* the options slot stays at 2 whatever is pushed later */
    static const char *const opts[] = { "shape", "dtype", NULL };
    pl_lua_check_options(L, 2, opts, "tensor.from");
    int64_t shape[PL_MAX_DIMS], given[PL_MAX_DIMS];
    int nd = l_tensor_infer_shape(L, 1, shape);
    int64_t n = 1;
    for (int i = 0; i < nd; i++) n *= shape[i];
    int64_t pos = 0;
    /* a userdata-owned buffer: a Lua error while filling leaks nothing */
    float *buf = lua_newuserdatauv(L, sizeof(float) * (size_t)(n ? n : 1), 0);
    if (nd > 0) l_tensor_fill_from(L, 1, shape, nd, 0, buf, &pos);
    enum pl_dtype dt = PL_F32;
    if (!lua_isnoneornil(L, 2)) {
        lua_getfield(L, 2, "dtype");
        dt = l_tensor_opt_dtype(L, -1, PL_F32);
        lua_pop(L, 1);
        if (lua_getfield(L, 2, "shape") == LUA_TTABLE) {
            int gd = l_tensor_check_shape(L, lua_gettop(L), given);
            int64_t m = 1;
            for (int i = 0; i < gd; i++) m *= given[i];
            if (m != n) return luaL_error(L, "tensor.from: %d values cannot take the given shape (%d elements)", (int)n, (int)m);
            memcpy(shape, given, sizeof given);
            nd = gd;
        }
        lua_pop(L, 1);
    }
    struct pl_tensor *t = pl_tensor_new(dt, nd, shape, PL_MEM_WORKSPACE);
    if (!t) return pl_lua_error(L);
    if (pl_tensor_write_f32(t, buf) != PL_OK) { pl_tensor_release(t); return pl_lua_error(L); }
    return l_tensor_push_or_error(L, t);
}

/* ---- inspection ---- */

static int l_tensor_shape(lua_State *L)
{
    struct pl_tensor *t = pl_lua_check_tensor(L, 1);
    lua_createtable(L, t->ndim, 0);
    for (int i = 0; i < t->ndim; i++) { lua_pushinteger(L, t->shape[i]); lua_rawseti(L, -2, i + 1); }
    return 1;
}

static int l_tensor_size(lua_State *L)
{
    struct pl_tensor *t = pl_lua_check_tensor(L, 1);
    lua_Integer d = luaL_checkinteger(L, 2);
    luaL_argcheck(L, d >= 1 && d <= t->ndim, 2, "dimension out of range");
    lua_pushinteger(L, t->shape[d - 1]);
    return 1;
}

static int l_tensor_dtype(lua_State *L) { lua_pushstring(L, pl_dtype_info(pl_lua_check_tensor(L, 1)->dtype)->name); return 1; }
static int l_tensor_numel(lua_State *L) { lua_pushinteger(L, pl_tensor_numel(pl_lua_check_tensor(L, 1))); return 1; }
static int l_tensor_dim(lua_State *L) { lua_pushinteger(L, pl_lua_check_tensor(L, 1)->ndim); return 1; }
static int l_tensor_nbytes(lua_State *L) { lua_pushinteger(L, (lua_Integer)pl_tensor_nbytes(pl_lua_check_tensor(L, 1))); return 1; }
static int l_tensor_is_contiguous(lua_State *L) { lua_pushboolean(L, pl_tensor_is_contiguous(pl_lua_check_tensor(L, 1))); return 1; }

static void l_tensor_check_index(lua_State *L, struct pl_tensor *t, int first, int64_t *idx)
{
    int n = lua_gettop(L) - first + 1;
    if (n != t->ndim) luaL_error(L, "expected %d indices, got %d", t->ndim, n);
    for (int i = 0; i < t->ndim; i++) {
        lua_Integer v = luaL_checkinteger(L, first + i);
        if (v < 1 || v > t->shape[i]) luaL_error(L, "index %d out of range 1..%d in dimension %d", (int)v, (int)t->shape[i], i + 1);
        idx[i] = v - 1;
    }
}

static int l_tensor_get(lua_State *L)
{
    struct pl_tensor *t = pl_lua_check_tensor(L, 1);
    int64_t idx[PL_MAX_DIMS];
    l_tensor_check_index(L, t, 2, idx);
    lua_pushnumber(L, pl_tensor_get(t, idx));
    return 1;
}

static int l_tensor_set(lua_State *L)
{
    struct pl_tensor *t = pl_lua_check_tensor(L, 1);
    double v = luaL_checknumber(L, 2);
    int64_t idx[PL_MAX_DIMS];
    l_tensor_check_index(L, t, 3, idx);
    if (pl_tensor_set(t, idx, v) != PL_OK) return pl_lua_error(L);
    lua_settop(L, 1);
    return 1;
}

/* read every element as f32 into a userdata-owned buffer (freed by the GC on error) */
static float *l_tensor_read_all(lua_State *L, struct pl_tensor *t)
{
    int64_t n = pl_tensor_numel(t);
    float *buf = lua_newuserdatauv(L, sizeof(float) * (size_t)(n ? n : 1), 0);
    if (pl_tensor_read_f32(t, buf) != PL_OK) pl_lua_error(L);
    return buf;
}

static int l_tensor_flat(lua_State *L)
{
    struct pl_tensor *t = pl_lua_check_tensor(L, 1);
    float *buf = l_tensor_read_all(L, t);
    int64_t n = pl_tensor_numel(t);
    lua_createtable(L, (int)n, 0);
    for (int64_t i = 0; i < n; i++) { lua_pushnumber(L, buf[i]); lua_rawseti(L, -2, i + 1); }
    return 1;
}

static void l_tensor_nest(lua_State *L, const struct pl_tensor *t, const float *buf, int depth, int64_t *pos)
{
    lua_createtable(L, (int)t->shape[depth], 0);
    for (int64_t i = 0; i < t->shape[depth]; i++) {
        if (depth + 1 < t->ndim) l_tensor_nest(L, t, buf, depth + 1, pos);
        else lua_pushnumber(L, buf[(*pos)++]);
        lua_rawseti(L, -2, i + 1);
    }
}

static int l_tensor_totable(lua_State *L)
{
    struct pl_tensor *t = pl_lua_check_tensor(L, 1);
    float *buf = l_tensor_read_all(L, t);
    if (t->ndim == 0) { lua_pushnumber(L, buf[0]); return 1; }
    int64_t pos = 0;
    l_tensor_nest(L, t, buf, 0, &pos);
    return 1;
}

static int l_tensor_item(lua_State *L)
{
    struct pl_tensor *t = pl_lua_check_tensor(L, 1);
    if (pl_tensor_numel(t) != 1) return luaL_error(L, "item: tensor has %d elements, not 1", (int)pl_tensor_numel(t));
    float *buf = l_tensor_read_all(L, t);
    lua_pushnumber(L, buf[0]);
    return 1;
}

static int l_tensor_tostring(lua_State *L)
{
    struct l_tensor_ud *ud = luaL_checkudata(L, 1, PL_TENSOR_MT);
    if (!ud->t) { lua_pushliteral(L, "peft.Tensor (closed)"); return 1; }
    char buf[160];
    float v[16];
    int64_t n = pl_tensor_numel(ud->t);
    int show = n > 0 && n <= 16 && pl_tensor_read_f32(ud->t, v) == PL_OK;
    pl_tensor_describe(ud->t, buf, sizeof buf);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, "peft.Tensor ");
    luaL_addstring(&b, buf);
    if (show) {
        luaL_addstring(&b, " {");
        for (int64_t i = 0; i < n; i++) {
            char num[32];
            snprintf(num, sizeof num, "%s%.6g", i ? ", " : "", v[i]);
            luaL_addstring(&b, num);
        }
        luaL_addstring(&b, "}");
    }
    luaL_pushresult(&b);
    return 1;
}

/* ---- views and copies ---- */

static int l_tensor_reshape(lua_State *L)
{
    struct pl_tensor *t = pl_lua_check_tensor(L, 1);
    int64_t shape[PL_MAX_DIMS];
    int nd = l_tensor_check_shape(L, 2, shape);
    return l_tensor_push_or_error(L, pl_tensor_reshape(t, nd, shape));
}

static int l_tensor_narrow(lua_State *L)
{
    struct pl_tensor *t = pl_lua_check_tensor(L, 1);
    lua_Integer d = luaL_checkinteger(L, 2), s = luaL_checkinteger(L, 3), n = luaL_checkinteger(L, 4);
    return l_tensor_push_or_error(L, pl_tensor_narrow(t, (int)d - 1, s - 1, n));
}

static int l_tensor_select(lua_State *L)
{
    struct pl_tensor *t = pl_lua_check_tensor(L, 1);
    lua_Integer d = luaL_checkinteger(L, 2), i = luaL_checkinteger(L, 3);
    return l_tensor_push_or_error(L, pl_tensor_select(t, (int)d - 1, i - 1));
}

static int l_tensor_transpose(lua_State *L)
{
    struct pl_tensor *t = pl_lua_check_tensor(L, 1);
    lua_Integer a = luaL_optinteger(L, 2, t->ndim - 1), b = luaL_optinteger(L, 3, t->ndim);
    return l_tensor_push_or_error(L, pl_tensor_transpose(t, (int)a - 1, (int)b - 1));
}

static int l_tensor_clone(lua_State *L)
{
    return l_tensor_push_or_error(L, pl_tensor_clone(pl_lua_check_tensor(L, 1), PL_MEM_WORKSPACE));
}

static int l_tensor_to(lua_State *L)
{
    struct pl_tensor *t = pl_lua_check_tensor(L, 1);
    return l_tensor_push_or_error(L, pl_tensor_convert(t, l_tensor_opt_dtype(L, 2, PL_F32), PL_MEM_WORKSPACE));
}

static int l_tensor_fill(lua_State *L)
{
    struct pl_tensor *t = pl_lua_check_tensor(L, 1);
    if (pl_tensor_fill(t, luaL_checknumber(L, 2)) != PL_OK) return pl_lua_error(L);
    lua_settop(L, 1);
    return 1;
}

static int l_tensor_copy(lua_State *L)
{
    struct pl_tensor *t = pl_lua_check_tensor(L, 1);
    if (pl_tensor_copy(t, pl_lua_check_tensor(L, 2)) != PL_OK) return pl_lua_error(L);
    lua_settop(L, 1);
    return 1;
}

/* ---- arithmetic ---- */

static int l_tensor_arith(lua_State *L, enum pl_binop op)
{
    struct pl_tensor *a = pl_lua_test_tensor(L, 1), *b = pl_lua_test_tensor(L, 2);
    if (a && b) return l_tensor_push_or_error(L, pl_tensor_binop(op, a, b));
    if (a) return l_tensor_push_or_error(L, pl_tensor_binop_scalar(op, a, luaL_checknumber(L, 2), 0));
    if (b) return l_tensor_push_or_error(L, pl_tensor_binop_scalar(op, b, luaL_checknumber(L, 1), 1));
    return luaL_error(L, "arithmetic on values that are not tensors");
}
static int l_tensor_add(lua_State *L) { return l_tensor_arith(L, PL_OP_ADD); }
static int l_tensor_sub(lua_State *L) { return l_tensor_arith(L, PL_OP_SUB); }
static int l_tensor_mul(lua_State *L) { return l_tensor_arith(L, PL_OP_MUL); }
static int l_tensor_div(lua_State *L) { return l_tensor_arith(L, PL_OP_DIV); }
static int l_tensor_pow(lua_State *L) { return l_tensor_arith(L, PL_OP_POW); }
static int l_tensor_maximum(lua_State *L) { return l_tensor_arith(L, PL_OP_MAX); }
static int l_tensor_minimum(lua_State *L) { return l_tensor_arith(L, PL_OP_MIN); }

#define L_UNOP(fn, op) static int fn(lua_State *L) { return l_tensor_push_or_error(L, pl_tensor_unop(op, pl_lua_check_tensor(L, 1))); }
L_UNOP(l_tensor_unm, PL_OP_NEG)
L_UNOP(l_tensor_exp, PL_OP_EXP)
L_UNOP(l_tensor_log, PL_OP_LOG)
L_UNOP(l_tensor_sqrt, PL_OP_SQRT)
L_UNOP(l_tensor_abs, PL_OP_ABS)
L_UNOP(l_tensor_tanh, PL_OP_TANH)
L_UNOP(l_tensor_sigmoid, PL_OP_SIGMOID)
L_UNOP(l_tensor_relu, PL_OP_RELU)
L_UNOP(l_tensor_silu, PL_OP_SILU)

/* t:sum() → number; t:sum(d [, keepdim]) → tensor */
static int l_tensor_reduce(lua_State *L, enum pl_reduce op)
{
    struct pl_tensor *t = pl_lua_check_tensor(L, 1);
    if (lua_isnoneornil(L, 2)) {
        struct pl_tensor *r = pl_tensor_reduce(op, t, -1, 0);
        if (!r) return pl_lua_error(L);
        double v = ((float *)pl_tensor_data(r))[0];
        pl_tensor_release(r);
        if (op == PL_RED_ARGMAX) lua_pushinteger(L, (lua_Integer)v + 1);
        else lua_pushnumber(L, v);
        return 1;
    }
    lua_Integer d = luaL_checkinteger(L, 2);
    luaL_argcheck(L, d >= 1 && d <= t->ndim, 2, "dimension out of range");
    return l_tensor_push_or_error(L, pl_tensor_reduce(op, t, (int)d - 1, lua_toboolean(L, 3)));
}
static int l_tensor_sum(lua_State *L) { return l_tensor_reduce(L, PL_RED_SUM); }
static int l_tensor_mean(lua_State *L) { return l_tensor_reduce(L, PL_RED_MEAN); }
static int l_tensor_max(lua_State *L) { return l_tensor_reduce(L, PL_RED_MAX); }
static int l_tensor_min(lua_State *L) { return l_tensor_reduce(L, PL_RED_MIN); }
static int l_tensor_argmax(lua_State *L) { return l_tensor_reduce(L, PL_RED_ARGMAX); }

static int l_tensor_softmax(lua_State *L)
{
    struct pl_tensor *t = pl_lua_check_tensor(L, 1);
    lua_Integer d = luaL_optinteger(L, 2, t->ndim);
    luaL_argcheck(L, d >= 1 && d <= t->ndim, 2, "dimension out of range");
    return l_tensor_push_or_error(L, pl_tensor_softmax(t, (int)d - 1));
}

static int l_tensor_matmul(lua_State *L)
{
    return l_tensor_push_or_error(L, pl_tensor_matmul(pl_lua_check_tensor(L, 1), pl_lua_check_tensor(L, 2)));
}

static int l_tensor_max_abs_diff(lua_State *L)
{
    struct pl_tensor *a = pl_lua_check_tensor(L, 1), *b = pl_lua_check_tensor(L, 2);
    if (pl_tensor_numel(a) != pl_tensor_numel(b)) return luaL_error(L, "max_abs_diff: %d vs %d elements", (int)pl_tensor_numel(a), (int)pl_tensor_numel(b));
    lua_pushnumber(L, pl_tensor_max_abs_diff(a, b));
    return 1;
}

static int l_tensor_eq(lua_State *L)
{
    struct pl_tensor *a = pl_lua_test_tensor(L, 1), *b = pl_lua_test_tensor(L, 2);
    lua_pushboolean(L, a && b && pl_tensor_same_shape(a, b) && pl_tensor_max_abs_diff(a, b) == 0.0);
    return 1;
}

static int l_tensor_len(lua_State *L)
{
    struct pl_tensor *t = pl_lua_check_tensor(L, 1);
    lua_pushinteger(L, t->ndim ? t->shape[0] : 1);
    return 1;
}

static int l_tensor_dtypes(lua_State *L)
{
    lua_newtable(L);
    for (int d = 0; d < PL_DTYPE_COUNT; d++) { lua_pushstring(L, pl_dtype_info(d)->name); lua_rawseti(L, -2, d + 1); }
    return 1;
}

/* ---- save/load as safetensors ---- */

static int l_tensor_save(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    struct pl_tensor *single = pl_lua_test_tensor(L, 2);
    if (!single) luaL_checktype(L, 2, LUA_TTABLE);
    /* check every entry before acquiring the writer, so argument errors leak nothing */
    if (!single) {
        lua_pushnil(L);
        while (lua_next(L, 2)) {
            if (lua_type(L, -2) != LUA_TSTRING) return luaL_error(L, "tensor.save: keys must be tensor names (strings)");
            if (!pl_lua_test_tensor(L, -1)) return luaL_error(L, "tensor.save: '%s' is not a tensor", lua_tostring(L, -2));
            pl_lua_check_tensor(L, -1);
            lua_pop(L, 1);
        }
    }
    struct pl_safetensors_writer *w = pl_safetensors_writer_new();
    if (!w) return pl_lua_error(L);
    enum pl_status st = PL_OK;
    if (single) st = pl_safetensors_add_tensor(w, "tensor", single);
    else {
        lua_pushnil(L);
        while (st == PL_OK && lua_next(L, 2)) {
            struct pl_tensor *t = pl_lua_test_tensor(L, -1);
            struct pl_tensor *c = pl_tensor_is_contiguous(t) ? pl_tensor_retain(t) : pl_tensor_clone(t, PL_MEM_WORKSPACE);
            st = c ? pl_safetensors_add_tensor(w, lua_tostring(L, -2), c) : PL_ERR_NOMEM;
            pl_tensor_release(c);
            lua_pop(L, 1);
        }
        if (st != PL_OK) lua_pop(L, 1);
    }
    if (st == PL_OK) st = pl_safetensors_writer_write(w, path);
    pl_safetensors_writer_free(w);
    if (st != PL_OK) return pl_lua_error(L);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_tensor_load(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    struct pl_safetensors *st = NULL;
    if (pl_safetensors_open(path, &st) != PL_OK) {
        lua_pushnil(L);
        lua_pushstring(L, pl_last_error());
        return 2;
    }
    int n = (int)pl_safetensors_count(st);
    lua_createtable(L, 0, n);
    for (int i = 0; i < n; i++) {
        struct pl_tensor *t = pl_safetensors_tensor_at(st, i);
        if (!t) { pl_safetensors_close(st); return pl_lua_error(L); }
        struct pl_tensor *c = pl_tensor_clone(t, PL_MEM_WORKSPACE); /* own the bytes, drop the mapping */
        pl_tensor_release(t);
        if (!c) { pl_safetensors_close(st); return pl_lua_error(L); }
        pl_lua_push_tensor(L, c);
        lua_setfield(L, -2, pl_safetensors_info(st, i)->name);
    }
    pl_safetensors_close(st);
    return 1;
}

int luaopen_peft_tensor(lua_State *L)
{
    static const luaL_Reg methods[] = {
        { "shape", l_tensor_shape }, { "size", l_tensor_size }, { "dtype", l_tensor_dtype },
        { "numel", l_tensor_numel }, { "dim", l_tensor_dim }, { "nbytes", l_tensor_nbytes },
        { "is_contiguous", l_tensor_is_contiguous },
        { "get", l_tensor_get }, { "set", l_tensor_set }, { "flat", l_tensor_flat },
        { "totable", l_tensor_totable }, { "item", l_tensor_item },
        { "reshape", l_tensor_reshape }, { "narrow", l_tensor_narrow }, { "select", l_tensor_select },
        { "transpose", l_tensor_transpose }, { "t", l_tensor_transpose }, { "clone", l_tensor_clone },
        { "to", l_tensor_to }, { "fill", l_tensor_fill }, { "copy", l_tensor_copy },
        { "add", l_tensor_add }, { "sub", l_tensor_sub }, { "mul", l_tensor_mul }, { "div", l_tensor_div },
        { "pow", l_tensor_pow }, { "maximum", l_tensor_maximum }, { "minimum", l_tensor_minimum },
        { "neg", l_tensor_unm }, { "exp", l_tensor_exp }, { "log", l_tensor_log }, { "sqrt", l_tensor_sqrt },
        { "abs", l_tensor_abs }, { "tanh", l_tensor_tanh }, { "sigmoid", l_tensor_sigmoid },
        { "relu", l_tensor_relu }, { "silu", l_tensor_silu },
        { "sum", l_tensor_sum }, { "mean", l_tensor_mean }, { "max", l_tensor_max }, { "min", l_tensor_min },
        { "argmax", l_tensor_argmax }, { "softmax", l_tensor_softmax }, { "matmul", l_tensor_matmul },
        { "close", l_tensor_release },
        { NULL, NULL }
    };
    static const luaL_Reg meta[] = {
        { "__gc", l_tensor_release }, { "__close", l_tensor_release }, { "__tostring", l_tensor_tostring },
        { "__add", l_tensor_add }, { "__sub", l_tensor_sub }, { "__mul", l_tensor_mul },
        { "__div", l_tensor_div }, { "__pow", l_tensor_pow }, { "__unm", l_tensor_unm },
        { "__eq", l_tensor_eq }, { "__len", l_tensor_len },
        { NULL, NULL }
    };
    static const luaL_Reg fns[] = {
        { "new", l_tensor_new }, { "zeros", l_tensor_new }, { "full", l_tensor_full }, { "ones", l_tensor_ones },
        { "arange", l_tensor_arange }, { "randn", l_tensor_randn }, { "from", l_tensor_from },
        { "matmul", l_tensor_matmul }, { "max_abs_diff", l_tensor_max_abs_diff }, { "dtypes", l_tensor_dtypes },
        { "save", l_tensor_save }, { "load", l_tensor_load },
        { NULL, NULL }
    };
    luaL_newmetatable(L, PL_TENSOR_MT);
    luaL_setfuncs(L, meta, 0);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    luaL_newlib(L, fns);
    return 1;
}
