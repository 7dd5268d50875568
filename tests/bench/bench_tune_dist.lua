-- tests/bench/bench_tune_dist.lua — parallel tuning figures (make bench; never fails on time).
-- The same search (10 trials: LoRA learning rate and rank, each trial 40 steps of stories260K
-- on wikisql, objective = validation loss over 4 batches) run by one rank (1 thread, then 2
-- threads, first seed only) and by mpirun -np 2 (1 thread each): wall time and best validation
-- loss for four search seeds, then the means. Usage: build/peftlua tests/bench/bench_tune_dist.lua [budget]
local here = debug.getinfo(1, "S").source:sub(2):match("^(.*)/tests/bench/") or "."
local SH = os.getenv("PEFT_SHARED") or (here .. "/../shared")
local MODEL = SH .. "/models/stories260K/stories260K.gguf"
local DATA = SH .. "/data/wikisql/"

if arg[1] == "child" then
  local budget, seed, tmp = tonumber(arg[2]), tonumber(arg[3]), arg[4]
  local t0 = peft.train.now()
  local trial = 0
  local best, value, opt = peft.tune.minimize(function(p)
    trial = trial + 1
    local out = string.format("%s/r%d_t%d", tmp, peft.dist.rank(), trial)
    local r = peft.train.run {
      model = MODEL, dataset = DATA .. "train.jsonl", valid = DATA .. "valid.jsonl", output = out,
      max_iters = 40, batch_size = 4, max_seq_len = 64, learning_rate = p.lr, lora_rank = p.rank,
      lora_alpha = 2 * p.rank, targets = { "q_proj", "v_proj", "up_proj" }, eval_every = 40, eval_batches = 4,
      seed = 7, quiet = true, progress = false, save_adapter = false,
    }
    r.trainer:close()
    return r.val_loss
  end, { lr = { "real", 1e-4, 3e-2, log = true }, rank = { "int", 2, 16, pow2 = true } },
  { budget = budget, seed = seed, catch = true })
  local wall = peft.train.now() - t0
  local cpu = peft.dist.sum({ os.clock() })[1]   -- CPU seconds of every rank together
  if opt then
    io.write(string.format("RESULT ranks=%d trials=%d best=%.6f wall=%.2f cpu=%.2f lr=%.4g rank=%d\n", peft.dist.size(),
      opt:count(), value, wall, cpu, best.lr, best.rank))
  end
  return
end

local budget = tonumber(arg[1]) or 10
local host = os.getenv("PEFT_HOST") or (here .. "/build/peftlua")
-- Each process in its own session where setsid exists: Linux's autogroup scheduling shares the
-- CPU among sessions, so ranks started in one session would split one share between them (on a
-- busy machine) where ranks on separate cores each get their own.
local SESSION = os.execute("command -v setsid >/dev/null 2>&1") and "setsid -w " or ""
local me = here .. "/tests/bench/bench_tune_dist.lua"
local tmp = here .. "/build/tmp/bench_tune_dist"
print("bench_tune_dist: " .. peft.hw.summary() .. (SESSION ~= "" and " | each process in its own session" or ""))
local la = io.open("/proc/loadavg")
if la then print("load average before: " .. la:read("l")); la:close() end
print(string.format("stories260K LoRA search, %d trials of 40 steps (lr, rank); objective: validation loss", budget))
local mpi = peft.dist.compiled() and os.execute("command -v mpirun >/dev/null 2>&1")
local configs = {
  { "1 rank x 1 thread", "OMP_NUM_THREADS=1" },
  { "1 rank x 2 threads", "OMP_NUM_THREADS=2" },
}
if mpi then
  configs[#configs + 1] = { "2 ranks x 1 thread", "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 mpirun --oversubscribe -np 2" }
else
  print("  2 ranks: not run (" .. (peft.dist.compiled() and "mpirun not found" or "built without MPI") .. ")")
end
-- one rank x 2 threads for the first seed only (stories260K is too small for threads to help)
local seeds = { 1, 2, 3, 4 }
local sum = {}
for si, seed in ipairs(seeds) do
  for ci, c in ipairs(configs) do
    if ci ~= 2 or si == 1 then
      os.execute("rm -rf '" .. tmp .. "' && mkdir -p '" .. tmp .. "'")
      local t0 = peft.train.now()
      local p = io.popen(string.format("%s %snice -n 19 %s %s child %d %d %s 2>&1", c[2], SESSION, host, me, budget, seed, tmp))
      local txt = p:read("a")
      p:close()
      local wall = peft.train.now() - t0
      local line = txt:match("RESULT ([^\n]+)")
      if line then
        local r = {}
        for k, v in line:gmatch("([%w_]+)=(%S+)") do r[k] = tonumber(v) end
        print(string.format("  seed %d  %-20s %2d trials  %6.1f s (search %.1f s, CPU %.1f s)  best val loss %.4f (lr %.3g, rank %d)",
          seed, c[1], r.trials, wall, r.wall, r.cpu, r.best, r.lr, r.rank))
        local a = sum[ci] or { n = 0, wall = 0, best = 0, lo = math.huge, hi = -math.huge }
        a.n, a.wall, a.best = a.n + 1, a.wall + wall, a.best + r.best
        a.lo, a.hi = math.min(a.lo, r.best), math.max(a.hi, r.best)
        sum[ci] = a
      else
        print(string.format("  seed %d  %-20s failed: %s", seed, c[1], txt:sub(1, 400)))
      end
    end
  end
end
for ci, c in ipairs(configs) do
  local a = sum[ci]
  if a then
    print(string.format("  %-20s over %d seed(s): mean wall %.1f s, best val loss mean %.4f (min %.4f, max %.4f)",
      c[1], a.n, a.wall / a.n, a.best / a.n, a.lo, a.hi))
  end
end
la = io.open("/proc/loadavg")
if la then print("load average after: " .. la:read("l")); la:close() end
