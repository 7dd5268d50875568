-- peft.proc (src/lua/l_proc.c: the UI's worker processes), peft.http.decode, and the UI's
-- Lua-source serializer (config.lua / state.lua round trip).
local T = require "testlib"
local proc = peft.proc

local function read(path) local f = io.open(path, "rb"); if not f then return nil end local s = f:read("a"); f:close(); return s end

return {
  ["spawn: argv, output file, exit code, env"] = function()
    local out = T.tmp .. "/proc_out.txt"
    os.remove(out)
    local pid = proc.spawn({ "/bin/sh", "-c", 'echo "$1 $UI_TEST_VAR $HOME"; echo err >&2; exit 7', "sh", "a b" },
                           { stdout = out, env = { UI_TEST_VAR = "set", HOME = "/replaced" } })
    T.ok(pid > 1)
    local w = proc.wait(pid, true)
    T.eq(w.code, 7)
    T.eq(w.signal, nil)
    T.eq(read(out), "a b set /replaced\nerr\n")
  end,
  ["spawn: no descriptor of ours is inherited; cwd"] = function()
    local keep = assert(io.open(T.tmp .. "/proc_keep.txt", "w"))   -- an open descriptor here
    local out = T.tmp .. "/proc_fds.txt"
    os.remove(out)
    local pid = proc.spawn({ "/bin/sh", "-c", "pwd; ls /proc/self/fd | sort -n | tr '\\n' ' '" }, { stdout = out, cwd = "/" })
    T.eq(proc.wait(pid, true).code, 0)
    keep:close()
    local text = read(out)
    T.eq(text:match("^(.-)\n"), "/")
    -- 0, 1, 2 and the one ls opens to list the directory
    local n = 0
    for _ in text:match("\n(.*)$"):gmatch("%d+") do n = n + 1 end
    T.ok(n <= 4, "the child has only stdin/out/err (and ls's own): " .. text)
  end,
  ["wait: running, then killed by a signal; kill 0 tells alive"] = function()
    local pid = proc.spawn({ "/bin/sleep", "30" })
    T.eq(proc.wait(pid), nil)
    T.eq(proc.kill(pid, 0), true)
    T.eq(proc.kill(pid, "KILL"), true)
    local w = proc.wait(pid, true)
    T.eq(w.signal, 9)
    T.eq(w.name, "SIGKILL")
    T.eq(proc.kill(pid, 0), nil)
    T.raises(function() proc.kill(pid, "HUP") end, "unknown signal")
    T.raises(function() proc.kill(1, "KILL") end, "pid must be > 1")
  end,
  ["spawn: an executable that is not there exits 127; empty argv[1] is peftlua"] = function()
    local pid = proc.spawn({ "/nonexistent/binary" })
    T.eq(proc.wait(pid, true).code, 127)
    local out = T.tmp .. "/proc_self.txt"
    os.remove(out)
    pid = proc.spawn({ "", "-e", "io.write(peft.proc.self() == arg[0] and 'same' or peft.proc.self())" }, { stdout = out })
    T.eq(proc.wait(pid, true).code, 0)
    T.ok(read(out) ~= "", "the child ran peftlua")
    T.ok(proc.self():match("peftlua$"), proc.self())
    T.raises(function() proc.spawn({}) end, "argv must hold")
    T.raises(function() proc.spawn({ "/bin/true", 3 }) end, "argv%[2%] is not a string")
  end,
  ["http.decode"] = function()
    local v = peft.http.decode('{"a":[1,2.5,"x"],"b":{"c":true},"d":null}')
    T.eq(v.a[1], 1); T.eq(v.a[2], 2.5); T.eq(v.a[3], "x"); T.eq(v.b.c, true); T.eq(v.d, nil)
    local none, msg = peft.http.decode('{"a":', "line.json")
    T.eq(none, nil)
    T.ok(msg:find("line.json", 1, true), msg)
  end,
  ["ui: Lua-source serializer round trip, loaded without globals"] = function()
    local ui = peft.ui
    local v = { s = "a\"b\n\0c]]", n = 1.5, i = 3, b = false, t = { 1, 2, { x = "y" } }, ["odd key"] = 1 }
    local path = T.tmp .. "/ui_ser.lua"
    local f = assert(io.open(path, "w")); f:write("return " .. ui.serialize(v)); f:close()
    local w = ui.load_lua(path)
    T.eq(w.s, v.s); T.eq(w.n, 1.5); T.eq(w.i, 3); T.eq(w.b, false); T.eq(w.t[3].x, "y"); T.eq(w["odd key"], 1)
    f = assert(io.open(path, "w")); f:write("return os.exit(3)"); f:close()
    T.eq(ui.load_lua(path), nil)   -- no globals: the file cannot call anything
  end,
}
