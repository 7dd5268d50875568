-- recipes/tune_demo.lua — Bayesian optimisation of a toy "training run" with peft.tune.minimize.
--
--   peftlua recipes/tune_demo.lua [budget] [resume]
-- The objective stands in for a fine-tuning run: a validation loss that depends on the
-- learning rate (log scale), the LoRA rank (powers of two) and the method, fails (as an
-- out-of-memory would) for large ranks with DoRA, and reports time and memory as metrics.
-- Every trial is saved to build/tmp/tune_demo.json; with "resume" a larger budget continues
-- that search. The Pareto front of loss, time and memory closes the report. Runs in a second.
local budget = tonumber(arg and arg[1]) or 20
local here = debug.getinfo(1, "S").source:sub(2):match("^(.*)/recipes/") or "."
os.execute("mkdir -p '" .. here .. "/build/tmp'")
local history = here .. "/build/tmp/tune_demo.json"
if (arg and arg[2]) ~= "resume" then os.remove(history) end

local space = {
  lr     = { "real", 1e-5, 1e-2, log = true },
  rank   = { "int", 4, 64, pow2 = true },
  method = { "cat", { "lora", "dora" } },
}

local function fake_run(p)
  if p.method == "dora" and p.rank >= 64 then return nil end          -- out of memory
  local x = math.log(p.lr, 10) + 3.3                                   -- best lr ≈ 5e-4
  local loss = 1.2 + 0.4 * x * x + 0.05 * (math.log(p.rank, 2) - 4) ^ 2 - (p.method == "dora" and 0.03 or 0)
  local time = 10 + p.rank * (p.method == "dora" and 0.6 or 0.4)       -- seconds
  local memory = 300 + p.rank * (p.method == "dora" and 12 or 8)       -- MB
  return loss, { time = time, memory = memory }
end

local best, loss, opt = peft.tune.minimize(fake_run, space, { budget = budget, seed = 7, history = history })
print(string.format("best of %d trials: loss %.4f with lr %.2e, rank %d, %s", opt:count(), loss, best.lr, best.rank, best.method))

local failed = 0
for _, h in ipairs(opt:history()) do if h.failed then failed = failed + 1 end end
print(string.format("failed trials (out of memory): %d", failed))

print("Pareto front over (loss, time, memory):")
for _, h in ipairs(opt:pareto { value = "min", time = "min", memory = "min" }) do
  print(string.format("  loss %.4f  time %5.1f s  memory %4d MB   lr %.2e rank %2d %s", h.value, h.metrics.time,
    math.floor(h.metrics.memory), h.params.lr, h.params.rank, h.params.method))
end
print("history saved to " .. history)
