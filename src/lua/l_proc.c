/* l_proc.c — peft.proc: child processes for servers that must outlive their work (owner: ui).
 * `peftlua ui` runs each training in its own process, so a crash or an out-of-memory kill
 * of the training cannot take the server down; this is the little it needs from POSIX.
 *
 *   local pid = peft.proc.spawn(argv [, {stdout = path, stderr = path (default: stdout's file),
 *                                         cwd = dir, env = {NAME = value, ...}}])
 *       fork + exec of argv[1] (a path; argv[1] == "" or nil: this peftlua executable) with
 *       argv[2..]; the child gets its own process group, /dev/null as stdin, the files named
 *       for stdout/stderr (appended to, created 0600), and no other descriptor of ours (the
 *       server's sockets stay with the server); env entries replace or add to ours. Raises when fork fails; an exec that fails
 *       makes the child exit 127.
 *   peft.proc.wait(pid [, block]) -> nil (still running) | {code = n} | {signal = n, name = "SIGKILL"}
 *   peft.proc.kill(pid, "TERM" | "KILL" | "INT" | "STOP" | "CONT" | 0) -> true | nil, message
 *       (0: is it alive)
 *   peft.proc.self() -> the path of this executable;  peft.proc.pid() -> our pid
 *   peft.proc.sleep(seconds)
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <lua.h>
#include <lauxlib.h>

#include "pl_lua.h"

extern char **environ;

static const char *l_proc_exe(char *buf, size_t n)
{
    ssize_t k = readlink("/proc/self/exe", buf, n - 1);
    if (k <= 0) return NULL;
    buf[k] = 0;
    return buf;
}

static int l_proc_spawn(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    int argc = (int)luaL_len(L, 1);
    if (argc < 1 || argc > 256) return luaL_error(L, "peft.proc.spawn: argv must hold 1..256 strings");
    static const char *const keys[] = { "stdout", "stderr", "cwd", "env", NULL };
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        pl_lua_check_options(L, 2, keys, "peft.proc.spawn");
    }
    /* everything the child needs is prepared before fork: after it, only exec-safe calls */
    const char **argv = lua_newuserdatauv(L, sizeof(char *) * (size_t)(argc + 1), 0);
    char exe[PATH_MAX];
    /* the strings stay on the stack (alive) until the call returns */
    if (!lua_checkstack(L, argc + 8)) return luaL_error(L, "peft.proc.spawn: too many arguments");
    for (int i = 1; i <= argc; i++) {
        lua_geti(L, 1, i);
        if (lua_type(L, -1) != LUA_TSTRING) return luaL_error(L, "peft.proc.spawn: argv[%d] is not a string", i);
        argv[i - 1] = lua_tostring(L, -1);
    }
    argv[argc] = NULL;
    const char *path = argv[0];
    if (!path[0]) {
        if (!l_proc_exe(exe, sizeof exe)) return luaL_error(L, "peft.proc.spawn: cannot find this executable");
        path = exe;
    }
    const char *out = NULL, *err = NULL, *cwd = NULL;
    int nenv = 0;
    const char **envp = NULL;
    if (lua_istable(L, 2)) {
        lua_getfield(L, 2, "stdout"); out = lua_tostring(L, -1); lua_pop(L, 1);
        lua_getfield(L, 2, "stderr"); err = lua_tostring(L, -1); lua_pop(L, 1);
        lua_getfield(L, 2, "cwd"); cwd = lua_tostring(L, -1); lua_pop(L, 1);
        if (lua_getfield(L, 2, "env") == LUA_TTABLE) {
            int base = 0;
            while (environ[base]) base++;
            int extra = 0;
            lua_pushnil(L);
            while (lua_next(L, -2)) { extra++; lua_pop(L, 1); }
            if (extra > 64) return luaL_error(L, "peft.proc.spawn: at most 64 env entries");
            int envt = lua_gettop(L);
            if (!lua_checkstack(L, extra + 8)) return luaL_error(L, "peft.proc.spawn: stack");
            envp = lua_newuserdatauv(L, sizeof(char *) * (size_t)(base + extra + 1), 0);
            for (int i = 0; i < base; i++) {   /* ours, less the names the table sets */
                const char *eq = strchr(environ[i], '=');
                if (eq) {
                    lua_pushlstring(L, environ[i], (size_t)(eq - environ[i]));
                    int set = lua_rawget(L, envt) != LUA_TNIL;
                    lua_pop(L, 1);
                    if (set) continue;
                }
                envp[nenv++] = environ[i];
            }
            lua_pushnil(L);
            while (lua_next(L, envt)) {
                lua_pushfstring(L, "%s=%s", lua_tostring(L, -2), lua_tostring(L, -1));
                lua_replace(L, -2);          /* value -> "k=v"; key below it */
                lua_insert(L, -2);           /* "k=v" stays under the key */
                envp[nenv++] = lua_tostring(L, -2);
            }
            envp[nenv] = NULL;
        }
    }
    int ofd = -1, efd = -1;
    if (out) {
        ofd = open(out, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (ofd < 0) return luaL_error(L, "peft.proc.spawn: cannot open %s: %s", out, strerror(errno));
    }
    if (err) {
        efd = open(err, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (efd < 0) { if (ofd >= 0) close(ofd); return luaL_error(L, "peft.proc.spawn: cannot open %s: %s", err, strerror(errno)); }
    }
    long maxfd = sysconf(_SC_OPEN_MAX);
    if (maxfd < 0 || maxfd > 65536) maxfd = 65536;
    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        int nul = open("/dev/null", O_RDWR);
        if (nul >= 0) dup2(nul, 0);
        if (ofd >= 0) dup2(ofd, 1);
        else if (nul >= 0) dup2(nul, 1);
        if (efd >= 0) dup2(efd, 2);
        else if (ofd >= 0) dup2(ofd, 2);
        for (long fd = 3; fd < maxfd; fd++) close((int)fd);
        if (cwd && chdir(cwd) != 0) _exit(127);
        if (envp) execve(path, (char *const *)argv, (char *const *)envp);
        else execv(path, (char *const *)argv);
        _exit(127);
    }
    int fork_errno = errno;
    if (ofd >= 0) close(ofd);
    if (efd >= 0) close(efd);
    if (pid < 0) return luaL_error(L, "peft.proc.spawn: fork failed: %s", strerror(fork_errno));
    lua_pushinteger(L, pid);
    return 1;
}

static const char *l_proc_signame(int s)
{
    switch (s) {
    case SIGKILL: return "SIGKILL";
    case SIGTERM: return "SIGTERM";
    case SIGINT: return "SIGINT";
    case SIGSEGV: return "SIGSEGV";
    case SIGABRT: return "SIGABRT";
    case SIGBUS: return "SIGBUS";
    case SIGFPE: return "SIGFPE";
    case SIGILL: return "SIGILL";
    case SIGHUP: return "SIGHUP";
    case SIGPIPE: return "SIGPIPE";
    default: return "signal";
    }
}

static int l_proc_wait(lua_State *L)
{
    pid_t pid = (pid_t)luaL_checkinteger(L, 1);
    int block = lua_toboolean(L, 2);
    int st;
    pid_t r;
    do r = waitpid(pid, &st, block ? 0 : WNOHANG); while (r < 0 && errno == EINTR);
    if (r == 0) return 0;
    if (r < 0) return luaL_error(L, "peft.proc.wait(%d): %s", (int)pid, strerror(errno));
    lua_newtable(L);
    if (WIFEXITED(st)) {
        lua_pushinteger(L, WEXITSTATUS(st)); lua_setfield(L, -2, "code");
    } else if (WIFSIGNALED(st)) {
        lua_pushinteger(L, WTERMSIG(st)); lua_setfield(L, -2, "signal");
        lua_pushstring(L, l_proc_signame(WTERMSIG(st))); lua_setfield(L, -2, "name");
    }
    return 1;
}

static int l_proc_kill(lua_State *L)
{
    pid_t pid = (pid_t)luaL_checkinteger(L, 1);
    if (pid <= 1) return luaL_error(L, "peft.proc.kill: pid must be > 1");
    int sig;
    if (lua_type(L, 2) == LUA_TNUMBER && lua_tointeger(L, 2) == 0) sig = 0;
    else {
        const char *n = luaL_checkstring(L, 2);
        if (!strcmp(n, "TERM")) sig = SIGTERM;
        else if (!strcmp(n, "KILL")) sig = SIGKILL;
        else if (!strcmp(n, "INT")) sig = SIGINT;
        else if (!strcmp(n, "STOP")) sig = SIGSTOP;
        else if (!strcmp(n, "CONT")) sig = SIGCONT;
        else return luaL_error(L, "peft.proc.kill: unknown signal '%s' (TERM, KILL, INT, STOP, CONT or 0)", n);
    }
    if (kill(pid, sig) != 0) {
        lua_pushnil(L);
        lua_pushstring(L, strerror(errno));
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int l_proc_self(lua_State *L)
{
    char exe[PATH_MAX];
    if (!l_proc_exe(exe, sizeof exe)) return luaL_error(L, "peft.proc.self: cannot read /proc/self/exe");
    lua_pushstring(L, exe);
    return 1;
}

static int l_proc_pid(lua_State *L)
{
    lua_pushinteger(L, getpid());
    return 1;
}

static int l_proc_sleep(lua_State *L)
{
    double s = luaL_checknumber(L, 1);
    if (!(s > 0)) return 0;
    struct timespec ts = { (time_t)s, (long)((s - (double)(time_t)s) * 1e9) };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
    return 0;
}

int luaopen_peft_proc(lua_State *L)
{
    static const luaL_Reg fns[] = {
        { "spawn", l_proc_spawn }, { "wait", l_proc_wait }, { "kill", l_proc_kill },
        { "self", l_proc_self }, { "pid", l_proc_pid }, { "sleep", l_proc_sleep }, { NULL, NULL }
    };
    luaL_newlib(L, fns);
    return 1;
}
