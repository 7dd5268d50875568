-- tests/lua/test_hostile.lua — issue 12 from Lua: the output-directory lock of peft.train.run,
-- and reports / memory.json written through the one atomic writer.
local T = require "testlib"
local train = peft.train
local MODEL = T.shared .. "/models/stories260K/stories260K.gguf"
local DATA = T.shared .. "/data/wikisql/"

local function exists(p) local f = io.open(p, "rb"); if f then f:close() end; return f ~= nil end

return {
  second_run_on_one_output_is_refused = function()
    local out = T.tmp .. "/hostile_locked"
    os.execute("rm -rf '" .. out .. "'")
    local lock = train.lock(out)          -- as a first run holding the output would
    T.ok(exists(out .. "/peftlua.lock"), "lock file")
    T.raises(function() train.lock(out) end, "output directory is in use by another run %(pid %d+")
    T.raises(function()
      train.run { model = MODEL, dataset = DATA .. "valid.jsonl", output = out, max_iters = 1,
                  batch_size = 1, max_seq_len = 32, quiet = true }
    end, "hostile_locked: output directory is in use by another run")
    lock:release()
    T.ok(not exists(out .. "/peftlua.lock"), "released")
    -- a run takes the lock and gives it back when it ends (also when it fails)
    local r = train.run { model = MODEL, dataset = DATA .. "valid.jsonl", output = out, max_iters = 1,
                          batch_size = 1, max_seq_len = 32, quiet = true }
    T.eq(r.steps, 1)
    r.trainer:close()
    T.ok(not exists(out .. "/peftlua.lock"), "released after the run")
    do local l <close> = train.lock(out) end   -- to-be-closed: released at the end of the block
    T.ok(not exists(out .. "/peftlua.lock"), "released by <close>")
  end,

  stale_lock_is_taken_over = function()
    local out = T.tmp .. "/hostile_stale"
    os.execute("rm -rf '" .. out .. "' && mkdir -p '" .. out .. "'")
    -- the pid of a process that has exited
    local p = io.popen("sh -c 'echo $$'"); local dead = p:read("n"); p:close()
    local f = assert(io.open(out .. "/peftlua.lock", "w")); f:write(dead, "\n"); f:close()
    local lock = train.lock(out)
    local g = assert(io.open(out .. "/peftlua.lock")); local pid = g:read("n"); g:close()
    T.ok(pid ~= dead, "the lock now holds this process's pid")
    lock:release()
  end,

  reports_are_written_atomically = function()
    local R = peft.report
    local dir = T.tmp .. "/hostile_report"
    os.execute("rm -rf '" .. dir .. "' && mkdir -p '" .. dir .. "'")
    T.eq(R.write_file(dir .. "/a.txt", "hello\n"), true)
    local f = assert(io.open(dir .. "/a.txt", "rb")); T.eq(f:read("a"), "hello\n"); f:close()
    local ok, msg = R.write_file(dir .. "/missing/b.txt", "x")
    T.eq(ok, nil)
    T.ok(msg:find("missing/b.txt", 1, true), msg)
    T.eq(peft.memory.save_json(dir .. "/memory.json"), true)
    local p = io.popen("ls -a '" .. dir .. "'"); local names = p:read("a"); p:close()
    T.ok(not names:find("%.tmp"), "no temporary left: " .. names)
  end,
}
