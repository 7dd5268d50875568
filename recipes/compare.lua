-- recipes/compare.lua — compare fine-tuning methods on one model and dataset, same data order,
-- seed and step (or time) budget per method, and recommend one for two budgets.
--
--   peftlua recipes/compare.lua [--model PATH] [--data TRAIN.jsonl] [--valid VALID.jsonl]
--       [--steps N | --seconds S] [--methods lora,dora,...] [--batch N] [--seq N]
--       [--eval-n N] [--out DIR] [--memory-budget MiB] [--time-budget S] [--smoke]
--       [--merge DIR1,DIR2,...]   (combine comparisons run side by side into --out, no training)
--
-- Defaults: models/SmolLM2-135M-Instruct.Q4_1.gguf, the WikiSQL sample (tests/fixtures/shared/data/wikisql, or $PEFT_SHARED),
-- 200 steps of batch 4 per method, every method of peft.compare.DEFAULT, output build/compare
-- (compare.json, compare.html, one run directory with report.html per method). Running it
-- again with the same --out skips the methods compare.json already has (resume).
-- Task metric: exact match of the generated SQL on the first --eval-n validation questions
-- (greedy, the text after "A:" up to the end of the line).
-- Recommendations: lowest validation loss within a memory budget (1 GiB); best SQL exact
-- match within 4 GiB (and --time-budget when given); and lowest validation loss within 6 GiB
-- for 4x the sequence length, whose memory only the memory model can tell (not run).
-- --smoke (PEFT_SMOKE=1): stories260K, 6 steps, every method plus a full fine-tuning run with
-- a 4 MiB allocation budget (a recorded out-of-memory failure).
local here = debug.getinfo(1, "S").source:sub(2):match("^(.*)/recipes/") or "."
local opt = { smoke = os.getenv("PEFT_SMOKE") == "1" }
do
  local i = 1
  while arg and arg[i] do
    local a = arg[i]
    local function val() i = i + 1; return assert(arg[i], a .. " needs a value") end
    local function int() return assert(math.tointeger(tonumber(val())), a .. " needs an integer") end
    if a == "--smoke" then opt.smoke = true
    elseif a == "--model" then opt.model = val()
    elseif a == "--data" then opt.data = val()
    elseif a == "--valid" then opt.valid = val()
    elseif a == "--steps" then opt.steps = int()
    elseif a == "--seconds" then opt.seconds = int()
    elseif a == "--methods" then opt.methods = val()
    elseif a == "--batch" then opt.batch = int()
    elseif a == "--seq" then opt.seq = int()
    elseif a == "--eval-n" then opt.eval_n = int()
    elseif a == "--out" then opt.out = val()
    elseif a == "--memory-budget" then opt.mem_budget = int() * 2^20
    elseif a == "--time-budget" then opt.time_budget = int()
    elseif a == "--merge" then opt.merge = val()
    else error("compare.lua: unknown argument " .. a) end
    i = i + 1
  end
end
local shared = os.getenv("PEFT_SHARED") or (here .. "/tests/fixtures/shared")   -- shipped with the project
local model = opt.model or (opt.smoke and (shared .. "/models/stories260K/stories260K.gguf")
  or os.getenv("PEFT_MODEL") or (here .. "/models/SmolLM2-135M-Instruct.Q4_1.gguf"))
local train = opt.data or (shared .. "/data/wikisql/train.jsonl")
local valid = opt.valid or (shared .. "/data/wikisql/valid.jsonl")
local out = opt.out or (here .. (opt.smoke and "/build/tmp/compare_smoke" or "/build/compare"))

-- WikiSQL exact match: prompt = the text up to "A:", reference = the SQL after it.
local cases = {}
do
  local recs = peft.data.read(valid, { format = "text" })
  for _, r in ipairs(recs) do
    local p, ref = tostring(r.text):match("^(.*\nA:)%s*(.-)%s*$")
    if p then cases[#cases + 1] = { prompt = p, ref = ref } end
  end
end
local eval_n = math.min(#cases, opt.eval_n or (opt.smoke and 2 or 20))
local function sql_exact_match(m)
  local hits = 0
  for i = 1, eval_n do
    local text = m:generate(cases[i].prompt, { max_tokens = 40, greedy = true, stop = { "\n" } })
    if text:match("^%s*(.-)%s*$") == cases[i].ref then hits = hits + 1 end
  end
  return eval_n > 0 and hits / eval_n or nil
end

local methods
if opt.methods then
  methods = {}
  for name in opt.methods:gmatch("[^,]+") do methods[#methods + 1] = name end
else
  methods = {}
  for i, n in ipairs(peft.compare.DEFAULT) do methods[i] = n end
  if opt.smoke then methods[#methods + 1] = { name = "full_4MiB", method = "full", memory_limit = 4 * 2^20 } end
end
local mem_budget = opt.mem_budget or (opt.smoke and 12 * 2^20 or 2^30)
local time_budget = opt.time_budget or (opt.smoke and 60 or nil)
local recommend = {
  -- a small machine: lowest validation loss within 1 GiB (--memory-budget MiB changes it)
  { memory_budget = mem_budget, metric = "val_loss" },
  -- a larger one: best SQL exact match within 4 GiB (and --time-budget seconds when given)
  { time_budget = time_budget, metric = eval_n > 0 and "metric" or "val_loss",
    memory_budget = (not opt.smoke) and 4 * 2^30 or nil },
  -- a configuration not run: the same methods at 4x the sequence length within 6 GiB, memory
  -- from the memory model
  { memory_budget = opt.smoke and 70 * 2^20 or 6 * 2^30, metric = "val_loss",
    predict = { model = model, seq_len = 4 * (opt.seq or (opt.smoke and 64 or 160)) } },
}
local title = "Method comparison: " .. (model:match("[^/]+$") or model)
local res
if opt.merge then
  local dirs = {}
  for d in opt.merge:gmatch("[^,]+") do dirs[#dirs + 1] = d end
  res = peft.compare.merge(dirs, out, recommend, title)
else
res = peft.compare.run {
  model = model, dataset = train, valid = valid, output = out,
  steps = opt.seconds and nil or (opt.steps or (opt.smoke and 6 or 200)), seconds = opt.seconds,
  methods = methods, batch_size = opt.batch or 4, max_seq_len = opt.seq or (opt.smoke and 64 or 160),
  eval_every = opt.smoke and 3 or 25, eval_batches = opt.smoke and 2 or 8, seed = 42,
  train = { warmup = opt.smoke and 1 or 10, schedule = "cosine", lora_rank = 8, lora_alpha = 16,
            targets = { "q_proj", "k_proj", "v_proj", "o_proj" }, max_grad_norm = 1.0, save_every = 0 },
  metric = eval_n > 0 and sql_exact_match or nil, metric_name = "SQL exact match",
  recommend = recommend, title = title,
}
end
print(string.format("\n%-12s %-8s %6s %8s %9s %11s %11s %11s %9s %8s", "method", "status", "steps", "wall s",
  "tok/s", "peak MiB", "pred MiB", "RSS MiB", "val loss", "metric"))
for _, r in ipairs(res.records) do
  print(string.format("%-12s %-8s %6s %8s %9s %11s %11s %11s %9s %8s", r.name, r.status, tostring(r.steps or "-"),
    r.wall_s and string.format("%.1f", r.wall_s) or "-", r.tokens_per_s and string.format("%.0f", r.tokens_per_s) or "-",
    r.peak_tracked and string.format("%.1f", r.peak_tracked / 2^20) or "-",
    r.predicted and r.predicted.total and string.format("%.1f", r.predicted.total / 2^20) or "-",
    r.peak_rss and string.format("%.1f", r.peak_rss / 2^20) or "-",
    r.val_loss and string.format("%.4f", r.val_loss) or "-", r.metric and string.format("%.3f", r.metric) or "-"))
  if r.status ~= "ok" then print("             " .. tostring(r.reason)) end
end
for _, rc in ipairs(res.recommendations) do
  print("\nrecommendation: " .. tostring(rc.method))
  for _, l in ipairs(rc.reasons) do print("  " .. l) end
end
print(string.format("\n%s\n%s", res.json, res.html))
return res
