-- recipes/tune.lua — tune a LoRA fine-tune on your data in one command: the rank suggested
-- from the data, then a Bayesian search (peft.tune.train: ASHA multi-fidelity, memory-checked,
-- resumable) over learning rate, rank, alpha and target modules; the best configuration ends
-- trained to the full budget, with a report.
--
--   peftlua recipes/tune.lua --data train.jsonl [--valid valid.jsonl | --valid-fraction 0.1]
--       [--model PATH] [--trials 16] [--steps 200] [--min-steps N] [--eta 2] [--seconds S]
--       [--memory 2G] [--batch 4] [--seq 256] [--eval-batches 8] [--seed 1] [--out DIR]
--       [--search bayes|random] [--baseline] [--smoke]
--
-- Prints each trial as it goes (trial k of n, its configuration, its learning curve so far, the
-- search's ETA) and ends with the best configuration; DIR/tune.html is the report (trials
-- table, best-so-far curve, validation loss against each hyperparameter, every learning
-- curve), DIR/tune.json the history: run the same command again after an interruption and the
-- search goes on where it stopped. --baseline also trains the quickstart's defaults
-- (learning rate 2e-4, rank 8, q_proj/v_proj) for the same steps and prints the difference.
-- Defaults: models/SmolLM2-135M-Instruct.Q4_1.gguf ($PEFT_MODEL), output runs/tune.
-- --smoke (PEFT_SMOKE=1): stories260K on the WikiSQL sample, 6 trials of up to 8 steps.
local here = debug.getinfo(1, "S").source:sub(2):match("^(.*)/recipes/") or "."
local opt = { smoke = os.getenv("PEFT_SMOKE") == "1" }
do
  local i = 1
  while arg and arg[i] do
    local a = arg[i]
    local function val() i = i + 1; return (assert(arg[i], a .. " needs a value")) end
    local function int() return assert(math.tointeger(tonumber(val())), a .. " needs an integer") end
    if a == "--smoke" then opt.smoke = true
    elseif a == "--baseline" then opt.baseline = true
    elseif a == "--model" then opt.model = val()
    elseif a == "--data" then opt.data = val()
    elseif a == "--valid" then opt.valid = val()
    elseif a == "--valid-fraction" then opt.valid_fraction = assert(tonumber(val()), "--valid-fraction needs a number")
    elseif a == "--trials" then opt.trials = int()
    elseif a == "--steps" then opt.steps = int()
    elseif a == "--min-steps" then opt.min_steps = int()
    elseif a == "--eta" then opt.eta = assert(tonumber(val()), "--eta needs a number")
    elseif a == "--seconds" then opt.seconds = int()
    elseif a == "--memory" then opt.memory = val()
    elseif a == "--batch" then opt.batch = int()
    elseif a == "--seq" then opt.seq = int()
    elseif a == "--eval-batches" then opt.eval_batches = int()
    elseif a == "--seed" then opt.seed = int()
    elseif a == "--out" then opt.out = val()
    elseif a == "--search" then opt.search = val()
    else error("tune.lua: unknown argument " .. a .. " (see the top of recipes/tune.lua)", 0) end
    i = i + 1
  end
end
local shared = os.getenv("PEFT_SHARED") or (here .. "/tests/fixtures/shared")   -- shipped with the project
if opt.smoke then
  opt.model = opt.model or (shared .. "/models/stories260K/stories260K.gguf")
  opt.data = opt.data or (shared .. "/data/wikisql/train.jsonl")
  opt.valid = opt.valid or (shared .. "/data/wikisql/valid.jsonl")
  opt.trials, opt.steps, opt.min_steps = opt.trials or 6, opt.steps or 8, opt.min_steps or 2
  opt.seq, opt.eval_batches = opt.seq or 32, opt.eval_batches or 2
  opt.out = opt.out or (here .. "/build/tmp/tune_smoke")
  os.execute("rm -rf '" .. opt.out .. "'")
end
if not opt.data then error("tune.lua: --data train.jsonl is required (or --smoke)", 0) end
if not opt.valid and not opt.valid_fraction then opt.valid_fraction = 0.1 end
local model = opt.model or os.getenv("PEFT_MODEL") or (here .. "/models/SmolLM2-135M-Instruct.Q4_1.gguf")
local out = opt.out or "runs/tune"
local steps = opt.steps or 200
local batch, seq = opt.batch or 4, opt.seq or 256

-- what the data says about the rank, before searching (printed for reference; the search
-- space's ranks cover it)
do
  local m <close> = peft.model.load(model)
  local s = peft.tune.suggest_rank(m, opt.data, { max_seq_len = seq, valid_fraction = opt.valid and nil or opt.valid_fraction,
    steps = steps, batch_size = batch })
  print(string.format("rank from the data: %d (alpha %.4g)", s.rank, s.alpha))
  for _, r in ipairs(s.reasons) do print("  " .. r) end
end

local res = peft.tune.train {
  model = model, dataset = opt.data, valid = opt.valid, valid_fraction = opt.valid and nil or opt.valid_fraction,
  output = out,
  space = {
    learning_rate = { 1e-5, 1e-2, log = true },
    lora_rank = { 2, 4, 8, 16, 32, 64 },
    lora_alpha_ratio = { 0.5, 4 },
    targets = { { "q_proj", "v_proj" }, { "q_proj", "k_proj", "v_proj", "o_proj" }, "all" },
  },
  trials = opt.trials or 16, budget = { steps = steps, seconds = opt.seconds },
  min_steps = opt.min_steps, eta = opt.eta or 2, memory_budget = opt.memory,
  batch_size = batch, max_seq_len = seq, eval_batches = opt.eval_batches or 8, seed = opt.seed or 1,
  search = opt.search,
}
if not res.best then error("tune.lua: every trial failed; see " .. res.json, 0) end
local b = res.best
print(string.format("best: trial %d, learning rate %.3g, rank %d, alpha %.3g, targets %s: validation loss %.4f after %d steps",
  b.id, b.params.learning_rate, b.params.lora_rank, b.params.lora_alpha_ratio * b.params.lora_rank,
  type(b.params.targets) == "table" and table.concat(b.params.targets, ",") or b.params.targets, b.value, b.steps))
print(string.format("multi-fidelity: %d training steps instead of %d (%.0f%% fewer); %.0f s in trials instead of about %.0f s",
  res.steps_run, res.steps_all_to_end, 100 * (1 - res.steps_run / res.steps_all_to_end), res.wall_s, res.wall_all_to_end_s))
print("adapter: " .. b.output .. "/adapter   report: " .. res.html .. "   history: " .. res.json)

if opt.baseline then
  -- the quickstart's defaults, same data order, seed, steps, batch and evaluation
  local dir = out .. "/baseline"
  local fit
  do
    local m <close> = peft.model.load(model)
    fit = assert(peft.memory.autosize { model = m, method = "lora", lora_rank = 8, targets = { "q_proj", "v_proj" },
      effective_batch = batch, max_seq_len = seq, seq_len = seq,
      budget = opt.memory and require("peft.train_options").parse_size(opt.memory) or nil })
  end
  local r = peft.train.run { model = model, dataset = opt.data, valid = opt.valid,
    valid_fraction = opt.valid and nil or opt.valid_fraction, output = dir, overwrite = true,
    max_iters = steps, batch_size = fit.batch_size, grad_accum = fit.grad_accum, max_seq_len = seq,
    learning_rate = 2e-4, lora_rank = 8, lora_alpha = 16, targets = { "q_proj", "v_proj" },
    eval_every = res.config.eval_every, eval_batches = opt.eval_batches or 8, seed = 42, quiet = true, report = false,
    memory_budget = opt.memory }
  r.trainer:close()
  local gain = 100 * (r.val_loss - b.value) / r.val_loss
  print(string.format("quickstart defaults (lr 2e-4, rank 8, q_proj/v_proj), %d steps: validation loss %.4f; tuned %.4f (%.1f%% lower)",
    steps, r.val_loss, b.value, gain))
  local C = require "peft.compare"
  local doc = C.load(res.json)
  doc.baseline = { learning_rate = 2e-4, lora_rank = 8, lora_alpha = 16, targets = { "q_proj", "v_proj" }, steps = r.steps,
    val_loss = r.val_loss, wall_s = r.elapsed, gain_pct = gain }
  local f = assert(io.open(res.json .. ".tmp", "w")); f:write(C.to_json(doc), "\n"); f:close()
  assert(os.rename(res.json .. ".tmp", res.json))
  require("peft.tune_train").html(doc, res.html)   -- the report with the baseline line
end
return res
