/* l_hw.c — peft.hw: the hardware report.
 *
 *   peft.hw.info()      → { cpu=, arch=, os=, simd=, simd_flags=, cores=, physical_cores=,
 *                           apple_silicon=, ram_total=, ram_available=, blas_core=, blas_threads=,
 *                           bf16_kernel= ("avx512_bf16": compute = "auto" is bf16; "none"),
 *                           blas_better_core= (only when OpenBLAS runs a weaker kernel family
 *                           than the CPU has: the OPENBLAS_CORETYPE that would be faster),
 *                           threads= (peftlua's default), threads_source= ("PEFT_THREADS",
 *                           "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS" or "physical cores"),
 *                           threads_in_use= (the engine's thread count now),
 *                           memory_budget= (default budget), budget_source=,
 *                           ranks= (MPI processes in the job, 1 without), rank=, local_ranks=
 *                           (of them on this machine: threads and budget are divided by it) }
 *   peft.hw.summary()   → one line for benchmark headers
 *   peft.hw.threads([n]) get/set the engine's thread count (the OpenMP team, BLAS included)
 *   peft.hw.report()    → a few lines: machine, and the defaults with where they came from
 *                         (lua/peft/hw.lua)
 * Owner: memprof (defaults).
 */
#include "pl_lua.h"
#include "peftlua/blas.h"
#include "peftlua/gemm16.h"
#include "peftlua/hw.h"

static void l_hw_query(lua_State *L, struct pl_hw *hw)
{
    if (pl_hw_query(hw) != PL_OK) pl_lua_error(L);
}

static int l_hw_info(lua_State *L)
{
    struct pl_hw hw;
    l_hw_query(L, &hw);
    lua_createtable(L, 0, 20);
    lua_pushstring(L, hw.cpu_model); lua_setfield(L, -2, "cpu");
    lua_pushstring(L, hw.arch); lua_setfield(L, -2, "arch");
    lua_pushstring(L, hw.os); lua_setfield(L, -2, "os");
    lua_pushstring(L, hw.simd); lua_setfield(L, -2, "simd");
    lua_pushstring(L, hw.simd_flags); lua_setfield(L, -2, "simd_flags");
    lua_pushinteger(L, hw.logical_cores); lua_setfield(L, -2, "cores");
    lua_pushinteger(L, hw.physical_cores); lua_setfield(L, -2, "physical_cores");
    lua_pushboolean(L, hw.apple_silicon); lua_setfield(L, -2, "apple_silicon");
    lua_pushinteger(L, hw.ram_total); lua_setfield(L, -2, "ram_total");
    lua_pushinteger(L, hw.ram_available); lua_setfield(L, -2, "ram_available");
    lua_pushstring(L, hw.blas_core); lua_setfield(L, -2, "blas_core");
    lua_pushstring(L, pl_gemm16_isa()); lua_setfield(L, -2, "bf16_kernel");
    if (hw.blas_better[0]) { lua_pushstring(L, hw.blas_better); lua_setfield(L, -2, "blas_better_core"); }
    lua_pushinteger(L, hw.blas_threads); lua_setfield(L, -2, "blas_threads");
    const char *tsrc, *bsrc;
    lua_pushinteger(L, pl_hw_default_threads_src(&hw, &tsrc)); lua_setfield(L, -2, "threads");
    lua_pushstring(L, tsrc); lua_setfield(L, -2, "threads_source");
    lua_pushinteger(L, pl_blas_threads()); lua_setfield(L, -2, "threads_in_use");
    lua_pushinteger(L, pl_hw_default_budget_src(&hw, &bsrc)); lua_setfield(L, -2, "memory_budget");
    lua_pushstring(L, bsrc); lua_setfield(L, -2, "budget_source");
    lua_pushinteger(L, hw.ranks); lua_setfield(L, -2, "ranks");
    lua_pushinteger(L, hw.rank); lua_setfield(L, -2, "rank");
    lua_pushinteger(L, hw.local_ranks); lua_setfield(L, -2, "local_ranks");
    return 1;
}

static int l_hw_summary(lua_State *L)
{
    struct pl_hw hw;
    char buf[512];
    l_hw_query(L, &hw);
    pl_hw_summary(&hw, pl_hw_default_threads(&hw), buf, sizeof buf);
    lua_pushstring(L, buf);
    return 1;
}

static int l_hw_threads(lua_State *L)
{
    if (!lua_isnoneornil(L, 1)) {
        lua_Integer n = luaL_checkinteger(L, 1);
        luaL_argcheck(L, n >= 1 && n <= 1024, 1, "thread count must be 1..1024");
        pl_blas_set_threads((int)n);
    }
    lua_pushinteger(L, pl_blas_threads());
    return 1;
}

int luaopen_peft_hw(lua_State *L)
{
    static const luaL_Reg fns[] = {
        { "info", l_hw_info }, { "summary", l_hw_summary }, { "threads", l_hw_threads }, { NULL, NULL }
    };
    luaL_newlib(L, fns);
    return 1;
}
