-- lua/peft/tune_train.lua — peft.tune.train: Bayesian search over real fine-tuning runs.
-- Owner: tune (issue 14). Documented in docs/tune.md ("Tuning a fine-tune").
--
--   local res = peft.tune.train {
--     model = "models/SmolLM2-135M-Instruct.Q4_1.gguf",      -- a path (each run loads it)
--     dataset = "train.jsonl", valid = "valid.jsonl",           -- (or valid_fraction)
--     output = "runs/tune",                                     -- trial-NNN/ runs, tune.json, tune.html
--     space = {
--       learning_rate = {1e-5, 1e-2, log = true},               -- two numbers: a range (integers: int)
--       lora_rank = {2, 4, 8, 16, 32, 64},                      -- doubling integers: powers of two
--       lora_alpha_ratio = {0.5, 4},                            -- lora_alpha = ratio x rank
--       lora_dropout = {0, 0.2},
--       targets = {{"q_proj", "v_proj"}, {"q_proj", "k_proj", "v_proj", "o_proj"}, "all"},   -- choices
--       method = {"lora", "dora"},
--     },                                                        -- or peft.tune.bayes entries {"real", lo, hi, log=}
--     trials = 16, budget = { steps = 80, seconds = 3600 },     -- steps: the full run; seconds: no
--                                                               --   new trial starts after that
--     min_steps = 20, eta = 2,                                  -- rungs 20, 40, 80 (ASHA); min_steps =
--                                                               --   steps: every trial runs to the end
--     objective = "val_loss" | function(info) return number end, -- info = {params, step, val_loss,
--                                                               --   curve, output, trainer, model}
--     memory_budget = "2G",                                     -- configurations that cannot fit are
--                                                               --   never proposed; batch from autosize
--     batch_size = 4,                                           -- the effective batch kept (accumulation)
--     max_seq_len = 256, eval_batches = 8, seed = 1, search = "bayes" | "random",
--     train = { ... },                                          -- more peft.train.run keys for every trial
--     n_init =, failures =, ...                                 -- peft.tune.bayes options
--     before_trial = function(trial) end,                       -- called before each run of a trial
--     on_progress = function(event) end, quiet = false,
--   }
--   res.best = {id, params, value, steps, output}, res.trials = {...}, res.json, res.html,
--   res.steps_run, res.steps_all_to_end, res.wall_s, res.wall_all_to_end_s (estimated)
--
-- Multi-fidelity: asynchronous successive halving (ASHA, Li et al. 2020) run one trial at a
-- time. Rungs at min_steps x eta^k (the last one the full budget). Whenever a trial that
-- finished rung k is in the top 1/eta of the trials that finished rung k and was not promoted,
-- it continues to rung k+1 (from its checkpoint: the same run, stopped and resumed); otherwise
-- a new configuration is asked for. Every run is planned for the full budget (its learning-rate
-- schedule is the full run's) and stopped at its rung, so a promoted trial is exactly the run
-- it would have been. The GP learns each trial's value at the first rung (one fidelity for all
-- trials). A failed trial (out of memory, diverged, an engine error) is told as a failure
-- (nil): the GP moves away from it. The search ends with the best trial of the highest rung
-- reached continued to the full budget.
-- History: output/tune.json is rewritten after every run; started again with the same output
-- (and options), the search replays its proposals from the file (the optimiser asked again in
-- the same order gives the same points, checked) and goes on where it stopped.
local M = {}
local C = require "peft.compare"   -- to_json, load, machine: one JSON writer for both reports

local ALL = { "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj" }
local FORMAT = "peftlua-tune-train"

local KEYS = { model = true, dataset = true, valid = true, valid_fraction = true, output = true, space = true,
  trials = true, budget = true, min_steps = true, eta = true, objective = true, memory_budget = true,
  batch_size = true, max_seq_len = true, eval_batches = true, seed = true, search = true, train = true,
  before_trial = true, on_progress = true, quiet = true, format = true, title = true,
  n_init = true, acq = true, kernel = true, xi = true, kappa = true, candidates = true, restarts = true,
  failures = true }

local function shq(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function is_pow2_seq(t)
  if #t < 3 then return false end
  for i, v in ipairs(t) do
    if math.type(v) ~= "integer" or v < 1 then return false end
    if i > 1 and v ~= 2 * t[i - 1] then return false end
  end
  return true
end

-- A space entry of tune.train (shorthand) -> a peft.tune.bayes entry.
local function bayes_entry(name, e)
  if type(e) ~= "table" then
    error(string.format("peft.tune.train: space.%s must be a table (a range {lo, hi} or a list of choices)", name), 4)
  end
  local t1 = e[1]
  if type(t1) == "string" and (t1 == "real" or t1 == "int" or t1 == "cat" or t1 == "float" or t1 == "integer"
      or t1 == "categorical" or t1 == "choice") and (type(e[2]) == "number" or type(e[2]) == "table") then
    return e
  end
  if e.type then return e end
  if #e == 2 and type(e[1]) == "number" and type(e[2]) == "number" and e[1] < e[2] then
    local int = math.type(e[1]) == "integer" and math.type(e[2]) == "integer"
    return { int and "int" or "real", e[1], e[2], log = e.log, pow2 = e.pow2 }
  end
  if #e == 0 then error(string.format("peft.tune.train: space.%s is empty", name), 4) end
  for _, v in ipairs(e) do
    if type(v) == "number" then goto ok end
  end
  do return { "cat", e } end
  ::ok::
  if is_pow2_seq(e) then return { "int", e[1], e[#e], pow2 = true } end
  return { "cat", e }
end

-- Trial parameters -> the peft.train.run keys they set.
local function run_keys(params, base)
  local cfg = {}
  for k, v in pairs(params) do
    if k ~= "lora_alpha_ratio" then cfg[k] = v end
  end
  if cfg.targets == "all" then cfg.targets = ALL end
  if type(cfg.targets) == "string" then cfg.targets = { cfg.targets } end
  local rank = cfg.lora_rank or base.lora_rank or 8
  if params.lora_alpha_ratio then cfg.lora_alpha = params.lora_alpha_ratio * rank end
  return cfg
end

local function label(v)
  if type(v) == "table" then
    local p = {}
    for i, x in ipairs(v) do p[i] = tostring(x) end
    return "{" .. table.concat(p, ",") .. "}"
  end
  if type(v) == "number" and math.type(v) == "float" then return string.format("%.3g", v) end
  return tostring(v)
end

local function params_text(names, p)
  local parts = {}
  for _, n in ipairs(names) do parts[#parts + 1] = n .. "=" .. label(p[n]) end
  return table.concat(parts, " ")
end

local function same_params(names, a, b)
  for _, n in ipairs(names) do
    local x, y = a[n], b[n]
    if type(x) == "number" and type(y) == "number" then
      if math.abs(x - y) > 1e-9 * math.max(1, math.abs(x)) then return false end
    elseif label(x) ~= label(y) then return false end
  end
  return true
end

local fmt_time = peft.train._fmt_time   -- "m:ss" / "h:mm:ss", "--:--" when unknown

local function gcd(a, b) while b ~= 0 do a, b = b, a % b end return a end

-- Random search over the same space (for comparison): uniform in each coordinate (log scale
-- where log, on the exponent where pow2), one choice uniformly, rejection by the constraint.
local function random_sampler(spec, seed, constraint)
  local rng = peft.data.rng(seed)
  local function one(s)
    local u = rng:random()
    if s.type == "cat" then return s.values[math.min(#s.values, 1 + math.floor(u * #s.values))] end
    local lo, hi = s.lo, s.hi
    if s.pow2 then
      local a, b = math.floor(math.log(lo, 2) + 0.5), math.floor(math.log(hi, 2) + 0.5)
      return math.tointeger(2 ^ (a + math.min(b - a, math.floor(u * (b - a + 1)))))
    end
    local x = s.log and math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo))) or lo + u * (hi - lo)
    if s.type == "int" then return math.max(lo, math.min(hi, math.floor(x + 0.5))) end
    return x
  end
  return function()
    for _ = 1, 100000 do
      local p = {}
      for _, s in ipairs(spec) do p[s.name] = one(s) end
      if not constraint or constraint(p) then return p end
    end
    error("peft.tune.train: no configuration of the space passes the memory check", 0)
  end
end

function M.run(o)
  if type(o) ~= "table" then error("peft.tune.train: expects an options table", 3) end
  for k in pairs(o) do
    if not KEYS[k] then error(string.format("peft.tune.train: unknown option '%s'", tostring(k)), 3) end
  end
  for _, k in ipairs { "model", "dataset", "output", "space" } do
    if o[k] == nil then error("peft.tune.train: '" .. k .. "' is required", 3) end
  end
  if type(o.model) ~= "string" then error("peft.tune.train: model must be a path (each trial loads it)", 3) end
  if not o.valid and not o.valid_fraction then error("peft.tune.train: give valid = file or valid_fraction = f (the objective is a validation loss)", 3) end
  local budget = o.budget or {}
  local full = budget.steps
  if math.type(full) ~= "integer" or full < 1 then error("peft.tune.train: budget.steps (the full run's optimizer steps) must be a positive integer", 3) end
  local trials = o.trials or 16
  local eta = o.eta or 2
  local r0 = o.min_steps or math.max(1, full // (eta * eta))
  if math.type(r0) ~= "integer" or r0 < 1 or r0 > full then error("peft.tune.train: min_steps must be an integer in [1, budget.steps]", 3) end
  if type(eta) ~= "number" or eta < 1.5 then error("peft.tune.train: eta must be at least 1.5", 3) end
  local rungs = {}
  do
    local r = r0
    while r < full do rungs[#rungs + 1] = math.floor(r + 0.5); r = r * eta end
    rungs[#rungs + 1] = full
  end
  local eval_every = rungs[1]
  for _, r in ipairs(rungs) do eval_every = gcd(eval_every, r) end
  local search = o.search or "bayes"
  if search ~= "bayes" and search ~= "random" then error('peft.tune.train: search must be "bayes" or "random"', 3) end
  local objective = o.objective or "val_loss"
  if objective ~= "val_loss" and type(objective) ~= "function" then error('peft.tune.train: objective must be "val_loss" or a function(info)', 3) end
  local base = o.train or {}
  local batch = o.batch_size or base.batch_size or 4
  local seq = o.max_seq_len or base.max_seq_len or 256
  local seed = o.seed or 1
  local quiet = o.quiet
  local function say(...) if not quiet then print(string.format(...)) end end
  local budget_bytes = o.memory_budget and require("peft.train_options").parse_size(o.memory_budget) or nil
  local train_names = {}
  for _, op in ipairs(peft.train.options()) do train_names[op.name] = true end

  -- the space, in peft.tune.bayes terms
  local bspace, names = {}, {}
  for k, e in pairs(o.space) do
    if type(k) ~= "string" then error("peft.tune.train: space keys must be peft.train.run option names", 3) end
    if k ~= "lora_alpha_ratio" and not train_names[k] then
      error(string.format("peft.tune.train: space.%s is not a peft.train.run option (nor lora_alpha_ratio)", k), 3)
    end
    bspace[k] = bayes_entry(k, e)
    names[#names + 1] = k
  end
  table.sort(names)

  -- the memory model: a configuration whose smallest batch cannot fit is never started
  local model = peft.model.load(o.model)
  local fits, rejected = {}, 0
  local function fit_of(p)
    local cfg = run_keys(p, base)
    local method = cfg.method or base.method or "lora"
    local targets = cfg.targets or base.targets
    if targets == "all" then targets = ALL end
    local key = table.concat({ method, tostring(cfg.lora_rank or base.lora_rank or 8), label(targets),
      tostring(cfg.quant or base.quant), tostring(cfg.precision or base.precision), tostring(cfg.checkpointing or base.checkpointing),
      tostring((cfg.lora_dropout or base.lora_dropout or 0) > 0) }, "|")
    local f = fits[key]
    if f == nil then
      local ok, res = pcall(peft.memory.autosize, {
        model = model, method = method == "full" and "full" or (method == "qlora" and "qlora" or "lora"),
        quant = method == "qlora" and (cfg.quant or base.quant or "nf4") or nil,
        adapter = (method == "dora" or method == "ia3") and method or (cfg.adapter or base.adapter),
        lora_rank = cfg.lora_rank or base.lora_rank, targets = type(targets) == "table" and targets or nil,
        lora_dropout = cfg.lora_dropout or base.lora_dropout, optimizer = cfg.optimizer or base.optimizer,
        precision = cfg.precision or base.precision, checkpointing = cfg.checkpointing or base.checkpointing,
        effective_batch = batch, max_seq_len = seq, seq_len = seq, budget = budget_bytes,
      })
      f = ok and res or false
      fits[key] = f
    end
    return f or nil
  end
  local function constraint(p)
    if fit_of(p) then return true end
    rejected = rejected + 1
    return false
  end

  local bo, sampler, spec
  if search == "bayes" then
    bo = peft.tune.bayes { space = bspace, seed = seed, constraint = constraint, n_init = o.n_init, acq = o.acq,
      kernel = o.kernel, xi = o.xi, kappa = o.kappa, candidates = o.candidates, restarts = o.restarts, failures = o.failures }
  else
    spec = {}
    for _, n in ipairs(names) do
      local e = bspace[n]
      local ty = e.type or e[1]
      if ty == "cat" or ty == "categorical" or ty == "choice" then spec[#spec + 1] = { name = n, type = "cat", values = e.values or e.choices or e[2] }
      else spec[#spec + 1] = { name = n, type = (ty == "int" or ty == "integer") and "int" or "real",
        lo = e.lo or e.min or e[2], hi = e.hi or e.max or e[3], log = e.log, pow2 = e.pow2 } end
    end
    sampler = random_sampler(spec, seed, constraint)
  end
  local function ask() if bo then return bo:ask() end return sampler() end
  local function tell(p, v) if bo then bo:tell(p, v) end end

  os.execute("mkdir -p " .. shq(o.output))
  local path = o.output .. "/tune.json"
  local config = { model = o.model, dataset = o.dataset, valid = o.valid, valid_fraction = o.valid_fraction,
    trials = trials, steps = full, seconds = budget.seconds, rungs = rungs, eta = eta, seed = seed, search = search,
    batch_size = batch, max_seq_len = seq, eval_batches = o.eval_batches or 8, eval_every = eval_every,
    memory_budget = budget_bytes, objective = type(objective) == "function" and "function" or objective,
    space = {}, train = {} }
  for _, n in ipairs(names) do config.space[n] = o.space[n] end
  for k, v in pairs(base) do if type(v) ~= "function" then config.train[k] = v end end
  local doc = { format = FORMAT, version = 1, config = config, trials = {} }
  local old = C.load(path)
  if old then
    if old.format ~= FORMAT then error("peft.tune.train: " .. path .. " is not a tune.train history (format " .. tostring(old.format) .. ")", 3) end
    local a, b = C.to_json(old.config.space), C.to_json(config.space)
    if a ~= b or old.config.seed ~= seed or old.config.search ~= search or C.to_json(old.config.rungs) ~= C.to_json(rungs) then
      error("peft.tune.train: " .. path .. " holds a search with another space, seed, search or rungs; use another output to start a new one", 3)
    end
    doc.trials = old.trials or {}
    doc.resumed = (old.resumed or 0) + 1
  end
  local function save()
    doc.config.rejected_by_memory = rejected
    local tmp = path .. ".tmp"
    local f = assert(io.open(tmp, "wb")); assert(f:write(C.to_json(doc) .. "\n")); assert(f:close())
    assert(os.rename(tmp, path))
  end

  local t_search = peft.train.now()
  local steps_done, wall_done = 0, 0
  for _, t in ipairs(doc.trials) do steps_done = steps_done + (t.steps_run or 0); wall_done = wall_done + (t.wall_s or 0) end
  local planned = 0   -- steps ASHA plans for `trials` trials (for the ETA)
  do
    local prev, n = 0, trials
    for _, r in ipairs(rungs) do planned = planned + math.ceil(n) * (r - prev); prev = r; n = n / eta end
  end

  -- one run of a trial, from where it stands to step `to`
  local function run_to(t, to, rung)
    t.status = "running"
    t.target_step = to
    save()
    local cfg = { dataset = o.dataset, valid = o.valid, valid_fraction = o.valid_fraction, format = o.format,
      seed = 42, max_seq_len = seq, eval_every = eval_every, eval_batches = o.eval_batches or 8,
      quiet = true, progress = false, report = false }
    for k, v in pairs(base) do cfg[k] = v end
    for k, v in pairs(run_keys(t.params, base)) do cfg[k] = v end
    cfg.batch_size, cfg.grad_accum = t.fit.batch_size, t.fit.grad_accum
    cfg.memory_budget = budget_bytes or cfg.memory_budget
    cfg.max_iters = full
    cfg.output = t.output
    cfg.model = o.model
    if peft.train.has_checkpoint(t.output .. "/checkpoint") and (t.steps or 0) > 0 then cfg.resume = true
    else cfg.overwrite = true; t.curve = {} end
    local t0 = peft.train.now()
    local function eta_s()
      local el = wall_done + (peft.train.now() - t0)
      local done = steps_done + math.max(0, (t.live_step or 0) - (t.steps or 0))
      if done <= 0 then return nil end
      -- ASHA may promote more than 1/eta of a rung: never less than this run's own remainder
      return el / done * math.max(planned - done, to - (t.live_step or t.steps or 0), 0)
    end
    cfg.on_eval = function(e)
      if e.step > (t.steps or 0) or e.step == 0 then
        local c = t.curve
        if not (c[#c] and c[#c].step == e.step) then c[#c + 1] = { step = e.step, val_loss = e.val_loss } end
      end
      local vals = {}
      for i = math.max(1, #t.curve - 7), #t.curve do vals[#vals + 1] = string.format("%.4f", t.curve[i].val_loss) end
      say("trial %d of %d  [rung %d/%d: %d steps]  %s  step %d/%d  val %s  ETA %s", t.id, trials, rung, #rungs, to,
        params_text(names, t.params), e.step, to, table.concat(vals, " "), fmt_time(eta_s()))
      if o.on_progress then o.on_progress { trial = t, step = e.step, val_loss = e.val_loss, rung = rung, target = to, eta = eta_s() } end
    end
    cfg.on_step = function(info)
      t.live_step = info.step
      if info.loss ~= info.loss or info.loss == math.huge or info.loss == -math.huge then
        error(string.format("diverged: the loss is %s at step %d", tostring(info.loss), info.step), 0)
      end
      if info.step >= to then return false end
    end
    local old_limit = peft.memory.budget()
    if o.before_trial then o.before_trial { id = t.id, params = t.params, rung = rung, target = to, output = t.output } end
    peft.memory.reset_peak()
    local ok, r = pcall(peft.train.run, cfg)
    peft.memory.budget(old_limit)
    local wall = peft.train.now() - t0
    t.wall_s = (t.wall_s or 0) + wall
    wall_done = wall_done + wall
    t.live_step = nil
    local value
    if ok then
      local ran = r.steps - (t.steps or 0)
      t.steps_run = (t.steps_run or 0) + ran
      t.loop_s = (t.loop_s or 0) + (r.elapsed - (r.resumed_from and t.prior_elapsed or 0))
      t.prior_elapsed = r.elapsed
      steps_done = steps_done + ran
      t.steps = r.steps
      t.params_count = r.params
      local v = r.val_loss
      if type(objective) == "function" then
        local okf, fv = pcall(objective, { params = t.params, step = r.steps, val_loss = r.val_loss, curve = t.curve,
                                           output = t.output, trainer = r.trainer, model = o.model })
        v = okf and fv or nil
        if not okf then t.reason = "objective: " .. tostring(fv) end
      end
      r.trainer:close()
      collectgarbage()
      if type(v) == "number" and v == v and v > -math.huge and v < math.huge then
        -- the value as tune.json keeps it (10 digits): a resumed search tells the GP the same number
        v = tonumber(string.format("%.10g", v))
        value = v
        t.rungs = t.rungs or {}
        t.rungs[#t.rungs + 1] = { step = r.steps, value = v }
        t.status = "ok"
      else
        t.status, t.reason = "failed", t.reason or "no finite objective value"
      end
    else
      collectgarbage()
      local msg = tostring(r)
      t.status = "failed"
      t.reason = (msg:find("allocation failed", 1, true) or msg:find("nomem", 1, true) or msg:find("out of memory", 1, true))
        and ("out of memory: " .. msg) or msg
    end
    t.target_step = nil
    save()
    return value
  end

  local function new_trial(id, p)
    local f = fit_of(p)
    local t = { id = id, params = p, status = "pending", output = string.format("%s/trial-%03d", o.output, id), curve = {},
      fit = { batch_size = f.batch_size, grad_accum = f.grad_accum, seq_len = f.seq_len, predicted_total = f.total,
              predicted_resident = f.resident } }
    return t
  end

  local function first_value(t) return t.rungs and t.rungs[1] and t.rungs[1].value or nil end

  -- replay the history: the same asks in the same order give the same points
  local by_id = {}
  for i, t in ipairs(doc.trials) do
    local p = ask()
    if not same_params(names, p, t.params) then
      error(string.format("peft.tune.train: %s: trial %d was %s but the optimiser now proposes %s (the file was written by another version or options)",
        path, i, params_text(names, t.params), params_text(names, p)), 3)
    end
    t.params = p
    by_id[t.id] = t
    if t.status == "failed" and not t.rungs then tell(p, nil)
    elseif first_value(t) then tell(p, first_value(t))
    else
      -- killed during its first rung: run it again now (before anything else is asked)
      say("trial %d of %d: resumed (it was stopped during its first run)", t.id, trials)
      local v = run_to(t, rungs[1], 1)
      tell(p, v)
    end
  end
  if #doc.trials > 0 then say("tune: %d trials read back from %s", #doc.trials, path) end

  local function best_so_far()
    local b
    for _, t in ipairs(doc.trials) do
      local v = first_value(t)
      if v and (not b or v < b) then b = v end
    end
    return b
  end

  -- ASHA: promote when a trial is in the top 1/eta of its rung, else start a new one
  local function promotable()
    for k = #rungs - 1, 1, -1 do
      local done = {}
      for _, t in ipairs(doc.trials) do
        if t.rungs and t.rungs[k] and t.status ~= "failed" then done[#done + 1] = t end
      end
      local n_top = math.floor(#done / eta)
      if n_top > 0 then
        table.sort(done, function(a, b)
          if a.rungs[k].value ~= b.rungs[k].value then return a.rungs[k].value < b.rungs[k].value end
          return a.id < b.id
        end)
        for i = 1, n_top do
          local t = done[i]
          if not t.rungs[k + 1] then return t, k + 1 end
        end
      end
    end
  end

  local function out_of_time()
    return budget.seconds and (peft.train.now() - t_search) >= budget.seconds
  end

  -- a trial killed in the middle of a later rung goes on first
  for _, t in ipairs(doc.trials) do
    if t.status == "running" and t.target_step then
      local k = #t.rungs + 1
      say("trial %d of %d: resumed at rung %d", t.id, trials, k)
      run_to(t, rungs[k], k)
    end
  end

  while true do
    local t, k = promotable()
    if t then
      say("trial %d of %d: promoted to rung %d (%d steps)", t.id, trials, k, rungs[k])
      run_to(t, rungs[k], k)
    elseif #doc.trials < trials and not out_of_time() then
      local p = ask()
      local tr = new_trial(#doc.trials + 1, p)
      doc.trials[#doc.trials + 1] = tr
      say("trial %d of %d: %s  (batch %d x accumulation %d, predicted peak %s)", tr.id, trials, params_text(names, p),
        tr.fit.batch_size, tr.fit.grad_accum, peft.memory.format(tr.fit.predicted_total))
      local v = run_to(tr, rungs[1], 1)
      tell(p, v)
      local b = best_so_far()
      say("trial %d of %d: %s  (best so far %s)", tr.id, trials,
        v and string.format("val %.4f at step %d", v, rungs[1]) or ("failed: " .. tostring(tr.reason)),
        b and string.format("%.4f", b) or "-")
    else
      break
    end
  end

  -- the best trial of the highest rung reached, continued to the full budget
  local best
  for _, t in ipairs(doc.trials) do
    if t.rungs and #t.rungs > 0 and t.status ~= "failed" then
      local k = #t.rungs
      if not best or k > #best.rungs or (k == #best.rungs and t.rungs[k].value < best.rungs[k].value) then best = t end
    end
  end
  if best and best.steps < full then
    say("best trial %d (%s) continued to the full budget of %d steps", best.id, params_text(names, best.params), full)
    while #best.rungs < #rungs and best.status ~= "failed" do
      local k = #best.rungs + 1
      run_to(best, rungs[k], k)
    end
  end
  model:close()

  local res = { trials = doc.trials, rejected_by_memory = rejected, rungs = rungs, config = config }
  if best and best.status ~= "failed" then
    res.best = { id = best.id, params = best.params, value = best.rungs[#best.rungs].value, steps = best.steps,
                 output = best.output, curve = best.curve }
  end
  local wall_all, steps_all = 0, 0
  res.steps_run, res.wall_s = 0, 0
  for _, t in ipairs(doc.trials) do
    res.steps_run = res.steps_run + (t.steps_run or 0)
    res.wall_s = res.wall_s + (t.wall_s or 0)
    steps_all = steps_all + full
    -- to the end: what it took plus the steps it did not run at its training loop's measured
    -- seconds per step (loading and the first evaluation are paid once either way)
    if t.steps_run and t.steps_run > 0 and t.loop_s then
      wall_all = wall_all + t.wall_s + math.max(0, full - t.steps_run) * t.loop_s / t.steps_run
    else wall_all = wall_all + (t.wall_s or 0) end
  end
  res.steps_all_to_end, res.wall_all_to_end_s = steps_all, wall_all
  doc.summary = { best = res.best, steps_run = res.steps_run, steps_all_to_end = steps_all, wall_s = res.wall_s,
    wall_all_to_end_s = wall_all, rejected_by_memory = rejected }
  doc.machine = C.machine and C.machine() or nil
  save()
  res.json = path
  res.html = M.html(doc, o.output .. "/tune.html", names, o.title)
  if res.best then
    say("tune: best trial %d  %s  %s %.4f at step %d; %d steps run (all %d trials to the end: %d), %.0f s (to the end: about %.0f s)",
      res.best.id, params_text(names, res.best.params), type(objective) == "function" and "objective" or "val", res.best.value,
      res.best.steps, res.steps_run, #doc.trials, steps_all, res.wall_s, wall_all)
  else
    say("tune: no trial succeeded")
  end
  return res
end

-- ---------------------------------------------------------------- report

function M.html(doc, path, names, title)
  local R = peft.report
  local cfg = doc.config
  names = names or (function()
    local n = {}
    for k in pairs(cfg.space or {}) do n[#n + 1] = k end
    table.sort(n)
    return n
  end)()
  local sections = {}
  local s = doc.summary or {}
  local lines = {}
  if s.best then
    lines[#lines + 1] = string.format("Best: trial %d, %s, validation loss %.4f at step %d", s.best.id,
      params_text(names, s.best.params), s.best.value, s.best.steps)
  end
  if doc.baseline then
    local bl = doc.baseline
    lines[#lines + 1] = string.format("Baseline (learning rate %g, rank %d, %s), %d steps: validation loss %.4f; the best is %.1f%% lower",
      bl.learning_rate, bl.lora_rank, label(bl.targets), bl.steps, bl.val_loss, bl.gain_pct)
  end
  lines[#lines + 1] = string.format("%d trials, rungs %s steps (eta %g), search %s, seed %d", #doc.trials,
    table.concat(cfg.rungs, "/"), cfg.eta, cfg.search, cfg.seed)
  if s.steps_run then
    lines[#lines + 1] = string.format("Training steps run: %d (every trial to the end: %d, %.0f%% saved)", s.steps_run,
      s.steps_all_to_end, 100 * (1 - s.steps_run / math.max(1, s.steps_all_to_end)))
    lines[#lines + 1] = string.format("Time in trials: %.0f s (every trial to the end, its remaining steps at its measured seconds per training step: about %.0f s)",
      s.wall_s, s.wall_all_to_end_s)
  end
  lines[#lines + 1] = string.format("Configurations the memory model rejected before starting: %d (proposals, counted with repeats)",
    s.rejected_by_memory or 0)
  sections[#sections + 1] = { title = "Summary", list = lines }
  -- trials table
  local cols = { "trial", "status" }
  for _, n in ipairs(names) do cols[#cols + 1] = n end
  for _, c in ipairs { "batch x accum", "predicted MiB" } do cols[#cols + 1] = c end
  for _, r in ipairs(cfg.rungs) do cols[#cols + 1] = "val @" .. r end
  cols[#cols + 1] = "wall s"
  local rows = {}
  for _, t in ipairs(doc.trials) do
    local row = { t.id, t.status == "failed" and ("failed: " .. tostring(t.reason)) or t.status }
    for _, n in ipairs(names) do row[#row + 1] = label(t.params[n]) end
    row[#row + 1] = t.fit and string.format("%d x %d", t.fit.batch_size, t.fit.grad_accum) or ""
    row[#row + 1] = t.fit and t.fit.predicted_total and string.format("%.1f", t.fit.predicted_total / 2^20) or ""
    for k = 1, #cfg.rungs do
      local v = t.rungs and t.rungs[k]
      row[#row + 1] = v and string.format("%.4f", v.value) or ""
    end
    row[#row + 1] = t.wall_s and string.format("%.1f", t.wall_s) or ""
    rows[#rows + 1] = row
  end
  sections[#sections + 1] = { title = "Trials", table = { columns = cols, rows = rows } }
  local charts, caps = {}, {}
  -- best so far (the first-rung value: the fidelity every trial reached)
  local bx, by, b = {}, {}, nil
  for i, t in ipairs(doc.trials) do
    local v = t.rungs and t.rungs[1] and t.rungs[1].value
    if v and (not b or v < b) then b = v end
    if b then bx[#bx + 1] = i; by[#by + 1] = b end
  end
  if #bx > 0 then
    charts[#charts + 1] = R.line { title = "Best so far", xlabel = "trial", ylabel = "validation loss at " .. cfg.rungs[1] .. " steps",
      width = 560, height = 380, series = { { name = "best so far", x = bx, y = by, smooth = false } } }
    caps[#caps + 1] = "lowest first-rung validation loss among the trials so far"
  end
  -- all learning curves
  local series = {}
  for _, t in ipairs(doc.trials) do
    local x, y = {}, {}
    for _, c in ipairs(t.curve or {}) do if c.val_loss then x[#x + 1], y[#y + 1] = c.step, c.val_loss end end
    if #x > 0 then series[#series + 1] = { name = "trial " .. t.id, x = x, y = y, smooth = false } end
  end
  if #series > 0 then
    charts[#charts + 1] = R.line { title = "Learning curves of all trials", xlabel = "step", ylabel = "validation loss",
      width = 560, height = 380, series = series }
    caps[#caps + 1] = "validation loss of every trial; stopped trials end at their rung"
  end
  -- validation loss against each hyperparameter
  for _, n in ipairs(names) do
    local e = cfg.space[n]
    local x, y, labels, cats = {}, {}, {}, nil
    local numeric = true
    for _, t in ipairs(doc.trials) do
      if type(t.params[n]) ~= "number" then numeric = false end
    end
    if not numeric then
      cats = {}
      for _, t in ipairs(doc.trials) do
        local l = label(t.params[n])
        if not cats[l] then cats[#cats + 1] = l; cats[l] = #cats end
      end
    end
    for _, t in ipairs(doc.trials) do
      local v = t.rungs and t.rungs[1] and t.rungs[1].value
      if v then
        x[#x + 1] = numeric and t.params[n] or cats[label(t.params[n])]
        y[#y + 1] = v
        labels[#labels + 1] = numeric and tostring(t.id) or (label(t.params[n]) .. " (" .. t.id .. ")")
      end
    end
    if #x > 0 then
      local xlog = numeric and type(e) == "table" and (e.log or e.pow2 or is_pow2_seq(e)) or false
      charts[#charts + 1] = R.scatter { title = "Validation loss against " .. n, xlabel = n .. (cats and " (choice)" or ""),
        ylabel = "validation loss at " .. cfg.rungs[1] .. " steps", xlog = xlog and true or false, width = 560, height = 380,
        series = { { name = "trials", x = x, y = y, labels = labels } } }
      caps[#caps + 1] = n .. ": each trial's first-rung validation loss (labels: trial number)"
    end
  end
  if #charts > 0 then sections[#sections + 1] = { title = "Charts", charts = charts, caption = caps } end
  local c2 = {}
  for k, v in pairs(cfg) do if type(v) ~= "table" then c2[k] = v end end
  c2.rungs = table.concat(cfg.rungs, "/")
  sections[#sections + 1] = { title = "Search setup", config = c2 }
  local m = doc.machine or {}
  sections[#sections + 1] = { title = "Machine and versions", text = string.format("%s · %s · %s · %s\n\n%s",
    tostring(m.peftlua), tostring(m.lua), tostring(m.os), tostring(m.date), tostring(m.hardware or "")) }
  local rep = R.html { title = title or "Hyperparameter search", subtitle = tostring(cfg.model), sections = sections }
  local ok, err = rep:save(path)
  if not ok then error("peft.tune.train: " .. tostring(err), 2) end
  return path
end

return M
