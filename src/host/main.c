/* main.c — the peftlua host: a lua.c-style driver.
 *
 *   peftlua script.lua [args...]   run a recipe (arg table as in lua.c)
 *   peftlua -e CODE [...]          run CODE (may be repeated, combined with a script)
 *   peftlua [-i]                   interactive REPL (readline, history), every peft.* loaded
 *
 * Every chunk runs under lua_pcall with a traceback handler; an error prints the traceback and
 * the exit status is 1. Ctrl-C sets a hook that raises "interrupted" at the next safe point in
 * Lua and asks engine loops to unwind (pl_interrupt_request); a second Ctrl-C while no chunk is
 * running exits. The Lua files are found next to the binary (../share/peftlua/lua when
 * installed) or in the source tree the binary was built from, so no LUA_PATH is needed.
 * Before anything runs, the thread count is set from the hardware report (pl_set_threads;
 * owner of that part: memprof).
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#if defined(__APPLE__)
#include <mach-o/dyld.h>
#endif
#include <readline/readline.h>
#include <readline/history.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>
#include "peftlua/blas.h"
#include "peftlua/dist.h"
#include "peftlua/hw.h"
#include "peftlua/status.h"

#include "../lua/pl_lua.h"   /* pl_lua_register_modules: the peft modules (src/lua/pl_open.c) */

static lua_State *pl_globalL;
static const char *pl_progname = "peftlua";
static char pl_luadir[PATH_MAX + 64];

/* ---- interruption (as lua.c: the hook is set from the signal handler) ---- */
static void pl_lstop(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    lua_sethook(L, NULL, 0, 0);
    luaL_error(L, "interrupted!");
}

static void pl_laction(int sig)
{
    signal(sig, SIG_DFL); /* a second Ctrl-C while this one is pending kills the process */
    pl_interrupt_request();
    lua_sethook(pl_globalL, pl_lstop, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

/* PEFT_DEBUG=1: errors carry a Lua traceback; otherwise one line (the message). */
static int pl_debug(void)
{
    const char *d = getenv("PEFT_DEBUG");
    return d && *d && strcmp(d, "0") != 0;
}

static int pl_msghandler(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (msg == NULL) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) return 1;
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    if (pl_debug()) luaL_traceback(L, L, msg, 1);
    else lua_pushstring(L, msg);
    return 1;
}

/* The host's own functions for the Lua layer (package.loaded["peft.host"]): what --version
 * prints, and re-arming Ctrl-C after a caught interruption (peftlua chat: Ctrl-C stops the
 * answer, not the program). */
#ifndef PL_GIT_COMMIT
#define PL_GIT_COMMIT "unknown"
#endif
#ifndef PL_BUILD_FLAGS
#define PL_BUILD_FLAGS "unknown"
#endif
static void pl_laction(int sig);
static int pl_host_rearm(lua_State *L)
{
    (void)L;
    lua_sethook(pl_globalL, NULL, 0, 0);
    pl_interrupt_clear();
    signal(SIGINT, pl_laction);
    return 0;
}

static int pl_docall(lua_State *L, int narg, int nres)
{
    int base = lua_gettop(L) - narg;
    lua_pushcfunction(L, pl_msghandler);
    lua_insert(L, base);
    pl_globalL = L;
    pl_interrupt_clear();
    signal(SIGINT, pl_laction);
    int status = lua_pcall(L, narg, nres, base);
    signal(SIGINT, SIG_DFL);
    lua_remove(L, base);
    return status;
}

static int pl_debug(void);
static int pl_in_repl;   /* the REPL: an interruption is a notice on its own line, not an error */
static int pl_report(lua_State *L, int status)
{
    if (status != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        size_t ml = msg ? strlen(msg) : 0;
        int intr = (ml >= 12 && strcmp(msg + ml - 12, "interrupted!") == 0) ||
                   (ml >= 11 && strcmp(msg + ml - 11, "interrupted") == 0);
        if (pl_in_repl && intr && !pl_debug()) {
            /* Ctrl-C: the streamed text so far stays; the notice goes on its own line */
            fflush(stdout);
            fprintf(stderr, "\n%s: interrupted\n", pl_progname);
            fflush(stderr);
            lua_pop(L, 1);
            return status;
        }
        fprintf(stderr, "%s: %s\n", pl_progname, msg ? msg : "(error)");
        fflush(stderr);
        lua_pop(L, 1);
    }
    return status;
}

/* ---- locating the Lua layer ---- */
static int pl_isdir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static void pl_find_luadir(void)
{
    const char *env = getenv("PEFTLUA_LUA_DIR");
    if (env && *env) { snprintf(pl_luadir, sizeof pl_luadir, "%s", env); return; }
    char exe[PATH_MAX] = "";
#if defined(__APPLE__)
    uint32_t sz = sizeof exe;
    if (_NSGetExecutablePath(exe, &sz) != 0) exe[0] = 0;
#else
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[n > 0 ? n : 0] = 0;
#endif
    char *slash = strrchr(exe, '/');
    if (slash) {
        *slash = 0;
        char cand[PATH_MAX + 64];
        snprintf(cand, sizeof cand, "%s/../share/peftlua/lua", exe);
        char real[PATH_MAX];
        if (pl_isdir(cand) && realpath(cand, real)) { snprintf(pl_luadir, sizeof pl_luadir, "%s", real); return; }
    }
    if (pl_isdir(PL_LUA_DIR)) { snprintf(pl_luadir, sizeof pl_luadir, "%s", PL_LUA_DIR); return; }
    snprintf(pl_luadir, sizeof pl_luadir, "%s/lua", PL_SHARE_DIR);
}

static void pl_setup(lua_State *L)
{
    luaL_openlibs(L);
    pl_find_luadir();
    pl_lua_register_modules(L, pl_luadir);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_newtable(L);
    lua_pushliteral(L, PL_GIT_COMMIT);
    lua_setfield(L, -2, "commit");
    lua_pushliteral(L, PL_BUILD_FLAGS);
    lua_setfield(L, -2, "flags");
    lua_pushboolean(L, pl_debug());
    lua_setfield(L, -2, "debug");
    lua_pushcfunction(L, pl_host_rearm);
    lua_setfield(L, -2, "rearm_interrupt");
    lua_setfield(L, -2, "peft.host");
    lua_pop(L, 1);
}

/* A bad PEFT_MEMORY_BUDGET or PEFT_THREADS is refused by name (hw.c would fall back on the
 * default without a word). Returns 0 when both are absent or usable. */
static int pl_check_env(void)
{
    struct pl_hw hw;
    if (pl_hw_query(&hw) != PL_OK) return 0;
    const char *e = getenv("PEFT_MEMORY_BUDGET"), *src = NULL;
    if (e && *e) {
        pl_hw_default_budget_src(&hw, &src);
        if (!src || strcmp(src, "PEFT_MEMORY_BUDGET") != 0) {
            fprintf(stderr, "%s: PEFT_MEMORY_BUDGET='%s' is not a size (bytes, or a number with K, M, G or T: e.g. 512M, 8G)\n",
                    pl_progname, e);
            return 1;
        }
    }
    e = getenv("PEFT_THREADS");
    if (e && *e) {
        pl_hw_default_threads_src(&hw, &src);
        if (!src || strcmp(src, "PEFT_THREADS") != 0) {
            fprintf(stderr, "%s: PEFT_THREADS='%s' is not a thread count (an integer from 1 to 4096)\n", pl_progname, e);
            return 1;
        }
    }
    return 0;
}

/* ---- REPL (lua.c's logic: try "return <line>", else accumulate incomplete statements) ---- */
static int pl_incomplete(lua_State *L, int status)
{
    if (status == LUA_ERRSYNTAX) {
        size_t lmsg;
        const char *msg = lua_tolstring(L, -1, &lmsg);
        if (lmsg >= 5 && strcmp(msg + lmsg - 5, "<eof>") == 0) { lua_pop(L, 1); return 1; }
    }
    return 0;
}

static char *pl_readline(int tty, const char *prompt)
{
    if (tty) return readline(prompt);
    static char buf[1 << 16];
    fputs(prompt, stdout);
    fflush(stdout);
    if (!fgets(buf, sizeof buf, stdin)) return NULL;
    size_t n = strlen(buf);
    if (n && buf[n - 1] == '\n') buf[n - 1] = 0;
    return strdup(buf);
}

/* Tab completion: lua/peft/repl.lua's complete(word, line) lists the candidates (globals,
 * fields of tables such as peft.*, methods after ':'). */
static char **pl_matches;
static int pl_nmatches;

static char *pl_match_gen(const char *text, int state)
{
    (void)text;
    static int i;
    if (state == 0) i = 0;
    return i < pl_nmatches ? strdup(pl_matches[i++]) : NULL;
}

static char **pl_complete(const char *text, int start, int end)
{
    (void)end;
    lua_State *L = pl_globalL;
    rl_attempted_completion_over = 1;
    for (int i = 0; i < pl_nmatches; i++) free(pl_matches[i]);
    free(pl_matches);
    pl_matches = NULL;
    pl_nmatches = 0;
    int top = lua_gettop(L);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "peft.repl");
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) { lua_settop(L, top); return NULL; }
    lua_getfield(L, -1, "complete");
    lua_pushstring(L, text);
    lua_pushlstring(L, rl_line_buffer, (size_t)start);
    if (lua_pcall(L, 2, 1, 0) == LUA_OK && lua_istable(L, -1)) {
        int n = (int)lua_rawlen(L, -1);
        pl_matches = calloc((size_t)n + 1, sizeof *pl_matches);
        for (int i = 1; pl_matches && i <= n; i++) {
            lua_rawgeti(L, -1, i);
            const char *c = lua_tostring(L, -1);
            if (c) pl_matches[pl_nmatches++] = strdup(c);
            lua_pop(L, 1);
        }
    }
    lua_settop(L, top);
    if (pl_nmatches == 0) return NULL;
    rl_completion_append_character = 0;
    return rl_completion_matches(text, pl_match_gen);
}

/* Results of expressions go through peft.repl's printer (tables and peftlua objects shown
 * readably, depth-limited); print() when that module cannot load. */
static void pl_print_results(lua_State *L, int n)
{
    lua_getglobal(L, "require");
    lua_pushliteral(L, "peft.repl");
    if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_istable(L, -1)) {
        lua_getfield(L, -1, "print");
        lua_remove(L, -2);
    } else {
        lua_pop(L, 1);
        lua_getglobal(L, "print");
    }
    lua_insert(L, -(n + 1));
    if (lua_pcall(L, n, 0, 0) != LUA_OK) pl_report(L, LUA_ERRRUN);
}

static int pl_is_exit(const char *line)
{
    while (*line == ' ' || *line == '\t') line++;
    const char *w[] = { "exit", "quit", "exit()", "quit()" };
    for (size_t i = 0; i < sizeof w / sizeof w[0]; i++) {
        size_t n = strlen(w[i]);
        if (strncmp(line, w[i], n) == 0) {
            const char *p = line + n;
            while (*p == ' ' || *p == '\t' || *p == ';') p++;
            if (!*p) return 1;
        }
    }
    return 0;
}

static void pl_repl(lua_State *L)
{
    int tty = isatty(0);
    pl_globalL = L;
    pl_in_repl = 1;
    rl_attempted_completion_function = pl_complete;
    rl_basic_word_break_characters = " \t\n\"\\'`@$><=;|&{(,+-*/%^~#[";
    lua_getglobal(L, "require");   /* help() and the printer */
    lua_pushliteral(L, "peft.repl");
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) pl_report(L, LUA_ERRRUN);
    char histfile[PATH_MAX] = "";
    const char *home = getenv("HOME");
    if (tty && home) {
        snprintf(histfile, sizeof histfile, "%s/.peftlua_history", home);
        read_history(histfile);
    }
    if (tty) printf("peftlua — Lua %s.%s with peft.* loaded. help() for help, Tab completes, Ctrl-C interrupts, exit or Ctrl-D leaves.\n", LUA_VERSION_MAJOR, LUA_VERSION_MINOR);
    for (;;) {
        char *line = pl_readline(tty, "> ");
        if (!line) break;
        if (pl_is_exit(line)) { if (tty) add_history(line); free(line); break; }
        if (tty && *line) add_history(line);
        /* try as an expression first */
        lua_pushfstring(L, "return %s", line);
        int status = luaL_loadbuffer(L, lua_tostring(L, -1), lua_rawlen(L, -1), "=stdin");
        lua_remove(L, -2);
        if (status != LUA_OK) {
            lua_pop(L, 1);
            lua_pushstring(L, line);
            for (;;) {
                size_t len;
                const char *code = lua_tolstring(L, -1, &len);
                status = luaL_loadbuffer(L, code, len, "=stdin");
                if (!pl_incomplete(L, status)) break;
                char *more = pl_readline(tty, ">> ");
                if (!more) break;
                if (tty && *more) add_history(more);
                lua_pushliteral(L, "\n");
                lua_pushstring(L, more);
                lua_concat(L, 3);
                free(more);
            }
            lua_remove(L, -2);
        }
        free(line);
        if (status == LUA_OK) {
            int base = lua_gettop(L);
            status = pl_docall(L, 0, LUA_MULTRET);
            if (status == LUA_OK) {
                int n = lua_gettop(L) - base + 1;
                if (n > 0) pl_print_results(L, n);
                continue;
            }
        }
        pl_report(L, status);
    }
    if (tty) { putchar('\n'); if (*histfile) write_history(histfile); }
}

static void pl_usage(void)
{
    fprintf(stderr, "usage: %s [options] [script [args]] | %s <command> [args] (%s --help)\n", pl_progname,
            pl_progname, pl_progname);
}

/* --help / --version: lua/peft/cli.lua's usage() (stdout), lua/peft/cmd/version.lua. */
static int pl_run_lua_help(lua_State *L, const char *what)
{
    lua_getglobal(L, "require");
    lua_pushliteral(L, "peft.cli");
    int st = pl_docall(L, 1, 1);
    if (st == LUA_OK) {
        lua_getfield(L, -1, what);
        lua_remove(L, -2);
        st = pl_docall(L, 0, 0);
    }
    return pl_report(L, st);
}

/* A command name: lower-case letters, digits, '-' and '_', no path or extension. */
static int pl_is_command_word(const char *s)
{
    if (!*s) return 0;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_')) return 0;
    return 1;
}

static int pl_dochunk(lua_State *L, int status)
{
    if (status == LUA_OK) status = pl_docall(L, 0, 0);
    return pl_report(L, status);
}

static int pl_pmain(lua_State *L)
{
    int argc = (int)lua_tointeger(L, 1);
    char **argv = (char **)lua_touserdata(L, 2);
    int interactive = 0, ran = 0, script = 0;
    pl_setup(L);
    if (pl_check_env()) { lua_pushboolean(L, 0); return 1; }
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-e") == 0) {
            if (++i >= argc) { pl_usage(); lua_pushboolean(L, 0); return 1; }
        } else if (strcmp(argv[i], "-i") == 0) interactive = 1;
        else if (strcmp(argv[i], "-v") == 0 || strcmp(argv[i], "--version") == 0 ||
                 strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            int help = argv[i][1] == 'h' || argv[i][2] == 'h';
            lua_getglobal(L, "require");
            lua_pushliteral(L, "peft");
            if (pl_report(L, pl_docall(L, 1, 1)) != LUA_OK) { lua_pushboolean(L, 0); return 1; }
            lua_setglobal(L, "peft");
            lua_pushboolean(L, pl_run_lua_help(L, help ? "usage" : "version") == LUA_OK);
            return 1;
        }
        else if (strcmp(argv[i], "--") == 0) { if (i + 1 < argc) script = i + 1; break; }
        else if (argv[i][0] == '-' && argv[i][1]) { fprintf(stderr, "%s: unknown option '%s'\n", pl_progname, argv[i]); pl_usage(); lua_pushboolean(L, 0); return 1; }
        else { script = i; break; }
    }
    /* arg table: arg[0] = script, arg[1..] its arguments, negatives the interpreter's */
    lua_createtable(L, argc, 1);
    int base = script ? script : argc;
    for (int i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i - base);
    }
    lua_setglobal(L, "arg");
    /* peft global with every module */
    lua_getglobal(L, "require");
    lua_pushliteral(L, "peft");
    if (pl_report(L, pl_docall(L, 1, 1)) != LUA_OK) { lua_pushboolean(L, 0); return 1; }
    lua_setglobal(L, "peft");
    for (int i = 1; i < (script ? script : argc); i++) {
        if (strcmp(argv[i], "-e") == 0) {
            i++;
            if (pl_dochunk(L, luaL_loadbuffer(L, argv[i], strlen(argv[i]), "=(command line)")) != LUA_OK) { lua_pushboolean(L, 0); return 1; }
            ran = 1;
        }
    }
    if (script) {
        const char *fname = argv[script];
        if (strcmp(fname, "-") == 0) fname = NULL;
        /* `peftlua <command> ...`: a word that names no file runs lua/peft/cmd/<command>.lua
         * with the remaining arguments (arg[0] = "<command>"); a directory of that name (a
         * project's data/) is not a script either. */
        char cmdpath[2 * PATH_MAX];
        struct stat fst;
        if (fname && pl_is_command_word(fname) && (stat(fname, &fst) != 0 || S_ISDIR(fst.st_mode))) {
            snprintf(cmdpath, sizeof cmdpath, "%s/peft/cmd/%s.lua", pl_luadir, fname);
            if (access(cmdpath, R_OK) != 0) {
                fprintf(stderr, "%s: unknown command or missing file '%s' (peftlua --help lists the commands)\n", pl_progname, fname);
                lua_pushboolean(L, 0);
                return 1;
            }
            fname = cmdpath;
        }
        int status = luaL_loadfile(L, fname);
        if (status == LUA_OK) {
            int n = argc - script - 1;
            luaL_checkstack(L, n + 3, "too many arguments to script");
            for (int i = 0; i < n; i++) lua_pushstring(L, argv[script + 1 + i]);
            status = pl_docall(L, n, 0);
        }
        if (pl_report(L, status) != LUA_OK) { lua_pushboolean(L, 0); return 1; }
        ran = 1;
    }
    if (interactive || !ran) pl_repl(L);
    lua_pushboolean(L, 1);
    return 1;
}

/* Two runtime settings are read once, when their libraries load, so when the user has not
 * chosen them we set them and re-execute ourselves, once:
 * - OMP_WAIT_POLICY=passive with GOMP_SPINCOUNT=10000: OpenMP threads that spin long while
 *   waiting (libgomp's default: 300,000 spins) turn every small parallel region into a busy
 *   loop fighting whatever else runs on the machine (measured: a test suite 80x slower on a
 *   loaded 2-core box); threads that never spin (passive alone) fall asleep between the
 *   hundreds of small regions of each generated token (measured, SmolLM2 on 2 cores: 30
 *   tokens/s passive, 86 with 10,000 spins, 90 with the default). A short spin keeps both.
 * - OPENBLAS_CORETYPE, only where OpenBLAS chose a weaker kernel family than the CPU has
 *   (pl_blas_better_coretype: Debian 12's OpenBLAS runs SSE3 "Prescott" kernels on
 *   Sapphire Rapids, a quarter of the AVX-512 rate). The chosen type is reported by peft.hw. */
static void pl_set_runtime_env(char **argv)
{
    if (getenv("PEFTLUA_NO_REEXEC")) return;
    const char *core = getenv("OPENBLAS_CORETYPE") ? NULL : pl_blas_better_coretype();
    if (getenv("OMP_WAIT_POLICY") && !core) return;
    char exe[PATH_MAX] = "";
#if defined(__APPLE__)
    uint32_t sz = sizeof exe;
    if (_NSGetExecutablePath(exe, &sz) != 0) return;
#else
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return;
    exe[n] = 0;
#endif
    if (!getenv("OMP_WAIT_POLICY")) {
        setenv("OMP_WAIT_POLICY", "passive", 1);
        if (!getenv("GOMP_SPINCOUNT")) setenv("GOMP_SPINCOUNT", "10000", 1);
    }
    if (core) setenv("OPENBLAS_CORETYPE", core, 1);
    setenv("PEFTLUA_NO_REEXEC", "1", 1);
    execv(exe, argv);
    /* exec failed: carry on with the runtime's defaults */
}

/* The engine's thread count (one OpenMP team runs every kernel, BLAS pieces included; see
 * blas.h) comes from the hardware report: PEFT_THREADS, OMP_NUM_THREADS or
 * OPENBLAS_NUM_THREADS when set, else the physical cores — OpenMP alone would take every
 * logical CPU, hyper-threads included. peft.hw.threads(n) changes it later. */
static void pl_set_threads(void)
{
    struct pl_hw hw;
    if (pl_hw_query(&hw) == PL_OK) pl_blas_set_threads(pl_hw_default_threads(&hw));
}

int main(int argc, char **argv)
{
    pl_set_runtime_env(argv);
    /* under mpirun/srun: MPI first, so the thread count and budget see the ranks (dist.h) */
    if (pl_dist_init() != PL_OK) fprintf(stderr, "%s: %s; running as one process\n", argv[0], pl_last_error());
    else if (!pl_dist_compiled() && *pl_dist_launcher())
        fprintf(stderr, "%s: started by %s, but built without MPI: each process runs alone (rebuild with make MPI=1)\n",
                argv[0], pl_dist_launcher());
    pl_set_threads();
    if (argv[0] && argv[0][0]) {
        const char *b = strrchr(argv[0], '/');
        pl_progname = b ? b + 1 : argv[0];
    }
    lua_State *L = luaL_newstate();
    if (!L) { fprintf(stderr, "%s: cannot create Lua state\n", pl_progname); return 1; }
    lua_pushcfunction(L, pl_pmain);
    lua_pushinteger(L, argc);
    lua_pushlightuserdata(L, argv);
    int status = lua_pcall(L, 2, 1, 0);
    int ok = lua_toboolean(L, -1);
    pl_report(L, status);
    lua_close(L);
    /* a rank that failed ends the job: the others may be waiting for it in a reduction */
    pl_dist_finish(status == LUA_OK && ok);
    return (status == LUA_OK && ok) ? 0 : 1;
}
