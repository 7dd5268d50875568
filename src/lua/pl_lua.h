/* pl_lua.h — helpers shared by the binding files (src/lua/l_*.c); not a Lua module itself.
 *
 * Tensors cross module boundaries (peft.model returns logits, peft.train takes parameters), so
 * the "peft.Tensor" userdata is created and checked only through these functions, which
 * l_tensor.c implements.
 */
#ifndef PEFTLUA_PL_LUA_H
#define PEFTLUA_PL_LUA_H

#include <lua.h>
#include <lauxlib.h>
#include "peftlua/tensor.h"

#define PL_TENSOR_MT "peft.Tensor"

/* Push t as a peft.Tensor; takes over the caller's reference (on failure t is released and a
 * Lua error raised). */
void pl_lua_push_tensor(lua_State *L, struct pl_tensor *t);
/* The tensor at idx (raises if not a live peft.Tensor). Borrowed reference. */
struct pl_tensor *pl_lua_check_tensor(lua_State *L, int idx);
struct pl_tensor *pl_lua_test_tensor(lua_State *L, int idx);   /* NULL if not a tensor */

/* Objects other modules take as arguments (peft.data takes a tokenizer or a model). Each is
 * implemented by the binding that owns the type; NULL when the value is not one (raises if the
 * object is closed). */
struct pl_tokenizer;
struct pl_model;
struct pl_tokenizer *pl_lua_test_tokenizer(lua_State *L, int idx);   /* l_tokenizer.c */
struct pl_model *pl_lua_test_model(lua_State *L, int idx);           /* l_model.c */

/* Register a userdata class: metatable `mt` with __index = a table of `methods`, __gc and
 * __close = `release` (one function for both, so `<close>` and the GC agree), __tostring if
 * given. Leaves the metatable on the stack for extra metamethods; the caller pops it. */
void pl_lua_new_class(lua_State *L, const char *mt, const luaL_Reg *methods,
                      lua_CFunction release, lua_CFunction tostring);

/* Push a parsed JSON value as Lua values (objects: tables by key, arrays: sequences, null:
 * nil; integral numbers as integers). Raises if nested too deeply for the Lua stack. */
struct pl_json;
void pl_lua_push_json(lua_State *L, const struct pl_json *j);

/* Raise the engine's last error as a Lua error (never as a format string). */
int pl_lua_error(lua_State *L);

/* Check that every key of the options table at idx is in allowed (NULL-terminated); raises
 * "<what>: unknown option 'key'" otherwise. A nil/none idx is accepted. */
void pl_lua_check_options(lua_State *L, int idx, const char *const allowed[], const char *what);

/* Option getters (table at idx may be nil): value or dflt; raise on wrong type. */
lua_Integer pl_lua_opt_int(lua_State *L, int idx, const char *key, lua_Integer dflt);
lua_Number  pl_lua_opt_num(lua_State *L, int idx, const char *key, lua_Number dflt);
int         pl_lua_opt_bool(lua_State *L, int idx, const char *key, int dflt);
const char *pl_lua_opt_str(lua_State *L, int idx, const char *key, const char *dflt);

/* The training option table (options.h) as a Lua table: list, range_text, check_number,
 * check_choice (pl_options.c; peft.train._options). */
void pl_lua_push_options(lua_State *L);

/* Register the peft modules in L (package.preload, package.path, PEFTLUA_LUA_DIR) with the
 * Lua layer in luadir (pl_open.c; the host and peft.so's luaopen_peft). */
void pl_lua_register_modules(lua_State *L, const char *luadir);

#endif
