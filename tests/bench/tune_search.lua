-- tests/bench/tune_search.lua — peft.tune.train's Bayesian search against random search with
-- the same number of trials, on stories260K + the WikiSQL sample, over several seeds.
--
--   PEFT_THREADS=1 build/peftlua tests/bench/tune_search.lua [seeds=10] [trials=12] [steps=30] [out.json]
--
-- Every trial is a real peft.train.run of `steps` steps (one rung: no multi-fidelity, so the
-- two searches differ only in how they propose); the figure is each search's best validation
-- loss, and the summary is the median over seeds (seed s for both). Prints a table and, with
-- out.json, writes the numbers there. A benchmark: it prints, it never fails.
local seeds = tonumber(arg and arg[1]) or 10
local trials = tonumber(arg and arg[2]) or 12
local steps = tonumber(arg and arg[3]) or 30
local out = arg and arg[4]
local here = debug.getinfo(1, "S").source:sub(2):match("^(.*)/tests/bench/") or "."
local shared = os.getenv("PEFT_SHARED") or (here .. "/tests/fixtures/shared")
local tmp = here .. "/build/tmp/tune_search"

local M = {}
M.space = { learning_rate = { 1e-4, 1e-1, log = true }, lora_rank = { 2, 4, 8, 16, 32, 64 },
            lora_alpha_ratio = { 0.5, 4 } }

function M.search(kind, seed, n, st, dir)
  os.execute("rm -rf '" .. dir .. "'")
  local res = peft.tune.train {
    model = shared .. "/models/stories260K/stories260K.gguf",
    dataset = shared .. "/data/wikisql/train.jsonl", valid = shared .. "/data/wikisql/valid.jsonl",
    output = dir, space = M.space, trials = n, budget = { steps = st }, min_steps = st,
    batch_size = 4, max_seq_len = 64, eval_batches = 4, seed = seed, search = kind, n_init = 4, quiet = true,
    train = { warmup = 0 },
  }
  return res.best and res.best.value or math.huge, res
end

local function median(t)
  local s = {}
  for i, v in ipairs(t) do s[i] = v end
  table.sort(s)
  local n = #s
  if n % 2 == 1 then return s[(n + 1) // 2] end
  return (s[n // 2] + s[n // 2 + 1]) / 2
end
M.median = median

function M.study(nseeds, n, st, say)
  local b, r = {}, {}
  for s = 1, nseeds do
    b[s] = M.search("bayes", s, n, st, tmp .. "/bayes-" .. s)
    r[s] = M.search("random", s, n, st, tmp .. "/random-" .. s)
    if say then say(s, b[s], r[s]) end
  end
  return median(b), median(r), b, r
end

if ... == "tune_search" then return M end   -- required by a test: the functions only

print(string.format("stories260K + WikiSQL: %d seeds, %d trials of %d steps each, batch 4 x 64 tokens, threads %s",
  seeds, trials, steps, tostring(os.getenv("PEFT_THREADS") or peft.hw.threads())))
print("seed   bayes best   random best")
local t0 = peft.train.now()
local mb, mr, b, r = M.study(seeds, trials, steps, function(s, x, y) print(string.format("%4d   %.4f       %.4f", s, x, y)) end)
local wins = 0
for i = 1, seeds do if b[i] < r[i] then wins = wins + 1 end end
print(string.format("median best validation loss: bayes %.4f, random %.4f (bayes lower on %d of %d seeds); %.0f s",
  mb, mr, wins, seeds, peft.train.now() - t0))
if out then
  local C = require "peft.compare"
  local f = assert(io.open(out, "w"))
  f:write(C.to_json { seeds = seeds, trials = trials, steps = steps, bayes = b, random = r, median_bayes = mb,
    median_random = mr, bayes_wins = wins, space = M.space, machine = C.machine() }, "\n")
  f:close()
end
