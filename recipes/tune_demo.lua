-- recipes/tune_demo.lua — Bayesian optimisation of real (tiny) fine-tuning runs with
-- peft.tune.minimize.
--
--   peftlua recipes/tune_demo.lua [budget] [resume]
-- Each trial trains stories260K for a few steps on the WikiSQL sample with peft.train.run —
-- learning rate (log scale), LoRA rank (powers of two) and method (LoRA or DoRA) chosen by the
-- optimiser — and returns the validation loss it measured, with the run's wall time and tracked
-- peak memory as metrics. A run that fails (an engine error, a NaN loss) is a failed trial.
-- Every trial is saved to build/tmp/tune_demo.json; with "resume" a larger budget continues
-- that search. The Pareto front of loss, time and memory closes the report.
local budget = tonumber(arg and arg[1]) or 20
local here = debug.getinfo(1, "S").source:sub(2):match("^(.*)/recipes/") or "."
local shared = os.getenv("PEFT_SHARED") or (here .. "/tests/fixtures/shared")   -- shipped with the project
os.execute("mkdir -p '" .. here .. "/build/tmp'")
local history = here .. "/build/tmp/tune_demo.json"
if (arg and arg[2]) ~= "resume" then os.remove(history) end

local space = {
  lr     = { "real", 1e-4, 3e-2, log = true },
  rank   = { "int", 2, 16, pow2 = true },
  method = { "cat", { "lora", "dora" } },
}

local trial = 0
local function train_run(p)
  trial = trial + 1
  local out = here .. "/build/tmp/tune_demo_runs/" .. trial
  os.execute("rm -rf '" .. out .. "'")
  peft.memory.reset_peak()
  local ok, r = pcall(peft.train.run, {
    model = shared .. "/models/stories260K/stories260K.gguf",
    dataset = shared .. "/data/wikisql/train.jsonl", valid = shared .. "/data/wikisql/valid.jsonl",
    output = out, method = p.method, learning_rate = p.lr, lora_rank = p.rank, lora_alpha = 2 * p.rank,
    targets = { "q_proj", "v_proj" }, max_iters = 5, batch_size = 4, max_seq_len = 64,
    eval_every = 5, eval_batches = 2, seed = 42, quiet = true, report = false,
  })
  if not ok or not r.val_loss or r.val_loss ~= r.val_loss then return nil end
  local s = peft.memory.stats()
  r.trainer:close()
  return r.val_loss, { time = r.elapsed, memory = (s.total.peak - s.data.peak) / 2^20 }
end

local best, loss, opt = peft.tune.minimize(train_run, space, { budget = budget, seed = 7, history = history })
print(string.format("best of %d trials: validation loss %.4f with lr %.2e, rank %d, %s", opt:count(), loss,
  best.lr, best.rank, best.method))

local failed = 0
for _, h in ipairs(opt:history()) do if h.failed then failed = failed + 1 end end
print(string.format("failed trials: %d", failed))

print("Pareto front over (loss, time, memory):")
for _, h in ipairs(opt:pareto { value = "min", time = "min", memory = "min" }) do
  print(string.format("  loss %.4f  time %5.2f s  memory %6.2f MiB   lr %.2e rank %2d %s", h.value, h.metrics.time,
    h.metrics.memory, h.params.lr, h.params.rank, h.params.method))
end
print("history saved to " .. history)
