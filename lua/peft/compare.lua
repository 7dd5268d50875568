-- peft.compare — run fine-tuning methods on the same model, data, seed and budget; record
-- time, memory, quality; recommend one under memory/time limits; write compare.json and
-- compare.html. Owner: train (issue 13).
--
--   local res = peft.compare.run {
--     model = "models/SmolLM2-135M-Instruct.Q4_1.gguf",   -- a path: every method loads it fresh
--     dataset = "train.jsonl", valid = "valid.jsonl",       -- (or valid_fraction)
--     output = "build/compare",                             -- <output>/<method>/ runs, compare.json, compare.html
--     steps = 200 | seconds = 600,                          -- budget per method (same for all)
--     methods = { "lora", "rslora", "dora", "ia3", "qlora_nf4", "qlora_q8_0", "full" },   -- default
--       -- or variants: { name = "lora_r16_all", method = "lora", lora_rank = 16, targets = "all" },
--       --             { name = "lora_bf16", method = "lora", precision = "bf16" }
--     batch_size = 4, max_seq_len = 256, seed = 42, eval_every = 25, eval_batches = 8,
--     train = { ... },                                      -- more peft.train.run keys for every method
--     metric = function(model, info) return score end,      -- optional task metric (higher is better),
--     metric_name = "exact match",                          --   info = {name, trainer, output, record}
--     recommend = { { memory_budget = 2^30 }, { time_budget = 300 } },   -- shown in compare.html
--     quiet = false,
--   }
--   res.records[i] = { name, status = "ok" | "failed", reason, config, steps, wall_s, tokens,
--     tokens_per_s, peak_tracked, peak_rss, trained_params, adapter_bytes, val = {{step, elapsed_s,
--     val_loss, ppl}...}, val_loss, ppl, metric, predicted = {total, resident}, loss }
--   compare.json holds {version, machine, config, records}; a second run with the same output
--   skips every method already recorded (finished or failed) and runs the rest.
--
--   peft.compare.recommend(results | records, { memory_budget = bytes, time_budget = seconds,
--       metric = "val_loss" | "ppl" | "metric", predict = { seq_len =, batch_size =, preset =,
--       model = } }) -> method name | nil, runners_up = {names}, reasons = {lines}, detail
--     uses the measured peak RSS and wall time; with predict, the memory of each method is the
--     memory model's resident estimate for that configuration (one not run: a longer sequence,
--     a larger model) and the reasons say so.
--   peft.compare.html(results, path [, recommendations])   the report (run() writes it)
--   peft.compare.merge({dir, ...}, output [, recommend, title])  several comparisons as one
local M = {}

-- The methods by name: the peft.train.run keys each one sets.
M.METHODS = {
  lora = { method = "lora" },
  rslora = { method = "lora", rslora = true },
  dora = { method = "dora" },
  ia3 = { method = "ia3" },
  qlora_nf4 = { method = "qlora", quant = "nf4" },
  qlora_q8_0 = { method = "qlora", quant = "q8_0" },
  full = { method = "full" },
}
M.DEFAULT = { "lora", "rslora", "dora", "ia3", "qlora_nf4", "qlora_q8_0", "full" }
-- Learning rates used when the caller gives none (per method kind; recorded in compare.json).
M.DEFAULT_LR = { lora = 5e-4, dora = 5e-4, ia3 = 5e-3, qlora = 5e-4, full = 5e-5 }

local RUN_KEYS = { name = true, method = true, memory_limit = true }

local function shq(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function json_str(s)
  return '"' .. tostring(s):gsub('[%c"\\]', function(c)
    if c == '"' then return '\\"' elseif c == "\\" then return "\\\\" end
    return string.format("\\u%04x", c:byte())
  end) .. '"'
end

-- Lua value -> JSON (tables with [1] as arrays; keys sorted; NaN/inf as null).
local function to_json(v, ind)
  ind = ind or ""
  local t = type(v)
  if t == "nil" then return "null"
  elseif t == "boolean" then return tostring(v)
  elseif t == "number" then
    if v ~= v or v == math.huge or v == -math.huge then return "null" end
    if math.type(v) == "integer" then return tostring(v) end
    return string.format("%.10g", v)
  elseif t == "string" then return json_str(v)
  elseif t == "table" then
    local n2 = ind .. " "
    if #v > 0 or next(v) == nil then
      local parts = {}
      for i, e in ipairs(v) do parts[i] = to_json(e, n2) end
      if #parts == 0 then return "[]" end
      local flat = true
      for _, e in ipairs(v) do if type(e) == "table" then flat = false end end
      if flat then return "[" .. table.concat(parts, ", ") .. "]" end
      return "[\n" .. n2 .. table.concat(parts, ",\n" .. n2) .. "\n" .. ind .. "]"
    end
    local keys = {}
    for k, e in pairs(v) do if type(e) ~= "function" and type(e) ~= "userdata" then keys[#keys + 1] = tostring(k) end end
    table.sort(keys)
    local parts = {}
    for i, k in ipairs(keys) do parts[i] = json_str(k) .. ": " .. to_json(v[k], n2) end
    return "{\n" .. n2 .. table.concat(parts, ",\n" .. n2) .. "\n" .. ind .. "}"
  end
  return "null"
end
M.to_json = to_json

local function read_file(p) return (peft.fs.read(p)) end   -- nil when it cannot be read

local function write_atomic(path, s) assert(peft.fs.write(path, s)) end   -- fileio's atomic writer

local function dir_bytes(d)
  local p = io.popen("du -sb " .. shq(d) .. " 2>/dev/null")
  local s = p and p:read("a") or ""
  if p then p:close() end
  return math.tointeger(tonumber(s:match("^(%d+)")))
end

local function machine()
  local m = { peftlua = peft._VERSION, lua = _VERSION }
  local ok, hw = pcall(peft.hw.report)
  if ok then m.hardware = hw end
  local p = io.popen("uname -srm 2>/dev/null")
  if p then m.os = (p:read("a") or ""):gsub("%s+$", ""); p:close() end
  m.date = os.date("!%Y-%m-%d %H:%M UTC")
  return m
end
M.machine = machine   -- also peft.tune.train's report

-- The method spec of an entry of opts.methods.
local function spec_of(e)
  if type(e) == "string" then
    local base = M.METHODS[e]
    if not base then error("peft.compare: unknown method '" .. e .. "' (lora rslora dora ia3 qlora_nf4 qlora_q8_0 full, or a table {name =, method =, ...})", 3) end
    local s = { name = e }
    for k, v in pairs(base) do s[k] = v end
    return s
  elseif type(e) == "table" then
    if not e.name then error("peft.compare: a method table needs a name", 3) end
    local s = {}
    local base = M.METHODS[e.method or ""] or {}
    for k, v in pairs(base) do s[k] = v end
    for k, v in pairs(e) do s[k] = v end
    if not s.method then error("peft.compare: method '" .. e.name .. "' needs method = lora|dora|ia3|qlora|full", 3) end
    return s
  end
  error("peft.compare: methods must be names or tables", 3)
end

-- The memory model's prediction for a method spec on a loaded model.
local function predict(model, sp, cfg)
  local mmeth = sp.method == "full" and "full" or (sp.method == "qlora" and "qlora" or "lora")
  local adapter = (sp.method == "dora" or sp.method == "ia3") and sp.method or sp.adapter
  local targets = sp.targets
  if targets == "all" then targets = { "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj" } end
  if type(targets) == "string" then targets = { targets } end
  local ok, e = pcall(peft.memory.estimate, {
    model = model, method = mmeth, quant = sp.quant, adapter = adapter,
    batch_size = cfg.batch_size, seq_len = cfg.max_seq_len, grad_accum = cfg.grad_accum,
    checkpointing = sp.checkpointing or cfg.checkpointing, precision = sp.precision or cfg.precision,
    lora_rank = sp.lora_rank or cfg.lora_rank, targets = targets, lora_dropout = sp.lora_dropout or cfg.lora_dropout,
    optimizer = sp.optimizer or cfg.optimizer, feedforward = sp.feedforward, compute = sp.compute or cfg.compute,
  })
  if not ok then return { error = tostring(e) } end
  return { total = e.total, resident = e.resident, trained_params = e.trained_params }
end

local function run_one(opts, sp, say)
  local name = sp.name
  local out = opts.output .. "/" .. name:gsub("[^%w_%-%.]", "_")
  os.execute("rm -rf " .. shq(out))
  local base = opts.train or {}
  local cfg = { dataset = opts.dataset, valid = opts.valid, valid_fraction = opts.valid_fraction,
                output = out, seed = opts.seed or 42, batch_size = opts.batch_size or 4,
                max_seq_len = opts.max_seq_len or 256, eval_every = opts.eval_every or 25,
                eval_batches = opts.eval_batches or 8, quiet = true, progress = false, name = name,
                format = opts.format }
  for k, v in pairs(base) do cfg[k] = v end
  for k, v in pairs(sp) do if not RUN_KEYS[k] then cfg[k] = v end end
  cfg.method = sp.method
  -- IA3 keeps its own targets (PEFT's k_proj, v_proj, down_proj) unless its spec names some:
  -- the common train.targets are the low-rank methods'
  if sp.method == "ia3" and sp.targets == nil then cfg.targets = nil end
  local kind = sp.method
  cfg.learning_rate = sp.learning_rate or base.learning_rate or M.DEFAULT_LR[kind]
  if opts.steps then cfg.max_iters = opts.steps else cfg.max_iters = opts.max_steps or 100000 end
  local rec = { name = name, status = "failed", config = {} }
  for k, v in pairs(cfg) do if type(v) ~= "function" then rec.config[k] = v end end
  -- what other objects of the process hold (a caller's models, garbage not yet collected) is
  -- not the method's: collect first, then subtract what is still live from the peaks
  collectgarbage(); collectgarbage()
  local baseline = peft.memory.stats().total.current or 0
  rec.baseline_tracked = baseline
  local model = peft.model.load(opts.model)
  rec.predicted = predict(model, cfg, cfg)   -- the merged configuration the run uses
  cfg.model = model
  local t0 = peft.train.now()
  cfg.on_step = function(info)
    if info.loss ~= info.loss or info.loss == math.huge then
      error(string.format("diverged: the loss is %s at step %d", tostring(info.loss), info.step), 0)
    end
    if opts.seconds and peft.train.now() - t0 >= opts.seconds then return false end
  end
  peft.memory.reset_peak()
  local old_budget = peft.memory.budget()
  if sp.memory_limit then peft.memory.budget(sp.memory_limit) end
  local ok, r = pcall(peft.train.run, cfg)
  if sp.memory_limit then peft.memory.budget(old_budget) end
  rec.wall_s = peft.train.now() - t0
  local st = peft.memory.stats()
  rec.peak_tracked = st.total.peak - baseline
  if not ok then
    local msg = tostring(r)
    rec.reason = (msg:find("memory") or msg:find("nomem") or msg:find("out of memory")) and ("out of memory: " .. msg)
      or msg
    say("%-12s failed: %s", name, rec.reason)
    model:close()
    collectgarbage()
    return rec
  end
  rec.status = "ok"
  rec.steps, rec.tokens, rec.loss = r.steps, r.tokens, r.loss
  rec.tokens_per_s = r.tokens / math.max(r.elapsed, 1e-9)
  rec.train_s = r.elapsed
  rec.trained_params = r.params
  rec.stopped = r.stopped
  rec.report = r.report
  -- tracked peak of the method (since its reset), without the dataset's bytes (category data,
  -- which the memory model leaves out as peft's test_memmodel does); mapped file bytes apart
  local doc = peft.memory.read_json(r.memory)
  if doc and doc.peak then
    rec.peak_tracked = (doc.peak.total or 0) - (doc.peak.data or 0) - baseline
    rec.mapped = doc.peak.mapped
  end
  local steps, evals = peft.run_report.read_metrics(r.metrics)
  local el_at, rss = {}, 0
  for _, s in ipairs(steps) do
    el_at[s.step] = s.elapsed_s
    rss = math.max(rss, s.rss or 0)
    rec.peak_step_tracked = math.max(rec.peak_step_tracked or 0, (s.mem_peak or 0) - baseline)
  end
  rec.peak_rss = rss > 0 and rss or nil
  rec.val = {}
  for _, e in ipairs(evals) do
    rec.val[#rec.val + 1] = { step = e.step, elapsed_s = el_at[e.step] or 0, val_loss = e.val_loss,
                              ppl = e.val_loss and math.exp(e.val_loss) or nil }
  end
  rec.val_loss = r.val_loss
  rec.ppl = r.val_loss and math.exp(r.val_loss) or nil
  rec.adapter_bytes = r.method ~= "full" and dir_bytes(out .. "/adapter") or nil
  if opts.metric then
    local okm, v = pcall(opts.metric, model, { name = name, trainer = r.trainer, output = out, record = rec })
    if okm then rec.metric = v else rec.metric_error = tostring(v) end
  end
  r.trainer:close()
  model:close()
  collectgarbage()
  say("%-12s %4d steps %7.1f s %7.0f tok/s  peak %7.1f MiB (predicted %s)  val %s%s", name, rec.steps, rec.wall_s,
    rec.tokens_per_s, rec.peak_tracked / 2^20, rec.predicted.total and string.format("%.1f", rec.predicted.total / 2^20) or "?",
    rec.val_loss and string.format("%.4f", rec.val_loss) or "-",
    rec.metric and string.format("  %s %.4g", opts.metric_name or "metric", rec.metric) or "")
  return rec
end

function M.load(path)
  local s = read_file(path)
  if not s then return nil end
  local ok, doc = pcall(peft.memory.decode_json, s)
  if not ok or type(doc) ~= "table" then return nil, path .. ": not readable JSON (" .. tostring(doc) .. ")" end
  return doc
end

function M.save(res, path)
  local doc = { version = 1, machine = res.machine, config = res.config, records = res.records,
                recommendations = res.recommendations }
  write_atomic(path, to_json(doc) .. "\n")
end

function M.run(opts)
  assert(type(opts) == "table", "peft.compare.run: expects an options table")
  for _, k in ipairs { "model", "dataset", "output" } do
    if not opts[k] then error("peft.compare.run: '" .. k .. "' is required", 2) end
  end
  if type(opts.model) ~= "string" then error("peft.compare.run: model must be a path (each method loads it fresh)", 2) end
  if not opts.steps and not opts.seconds then error("peft.compare.run: give a budget: steps = N or seconds = S per method", 2) end
  local say = opts.quiet and function() end or function(...) print(string.format(...)) end
  os.execute("mkdir -p " .. shq(opts.output))
  local path = opts.output .. "/compare.json"
  local res = M.load(path) or {}
  res.records = res.records or {}
  res.machine = machine()
  res.config = { model = opts.model, dataset = opts.dataset, valid = opts.valid, steps = opts.steps,
                 seconds = opts.seconds, batch_size = opts.batch_size or 4, max_seq_len = opts.max_seq_len or 256,
                 seed = opts.seed or 42, eval_every = opts.eval_every or 25, eval_batches = opts.eval_batches or 8,
                 metric_name = opts.metric_name, train = opts.train }
  local done = {}
  for _, r in ipairs(res.records) do done[r.name] = r end
  local order = {}
  for _, e in ipairs(opts.methods or M.DEFAULT) do
    local sp = spec_of(e)
    order[#order + 1] = sp.name
    if done[sp.name] then
      say("%-12s already in %s (%s): skipped", sp.name, path, done[sp.name].status)
      done[sp.name].skipped = true
    else
      local rec = run_one(opts, sp, say)
      res.records[#res.records + 1] = rec
      done[sp.name] = rec
      M.save(res, path)   -- after every method: an interrupted comparison resumes here
    end
  end
  res.order = order
  res.recommendations = {}
  for _, b in ipairs(opts.recommend or {}) do
    local best, ups, why = M.recommend(res, b)
    res.recommendations[#res.recommendations + 1] = { budget = b, method = best, runners_up = ups, reasons = why }
  end
  M.save(res, path)
  res.html = M.html(res, opts.output .. "/compare.html", res.recommendations, opts.title)
  res.json = path
  return res
end

-- Combine the compare.json of several comparisons (e.g. run side by side with different
-- methods) into output: records by method name (the first directory holding a name wins),
-- recommendations for each budget of `recommend`, compare.json and compare.html written.
function M.merge(dirs, output, recommend, title)
  os.execute("mkdir -p " .. shq(output))
  local res = { records = {} }
  local seen = {}
  for _, d in ipairs(dirs) do
    local doc, err = M.load(d .. "/compare.json")
    if not doc then error("peft.compare.merge: " .. tostring(err or (d .. "/compare.json: missing")), 2) end
    res.machine = res.machine or doc.machine
    res.config = res.config or doc.config
    for _, r in ipairs(doc.records or {}) do
      if not seen[r.name] then
        seen[r.name] = true
        r.from = d
        res.records[#res.records + 1] = r
      end
    end
  end
  res.recommendations = {}
  for _, b in ipairs(recommend or {}) do
    local best, ups, why = M.recommend(res, b)
    res.recommendations[#res.recommendations + 1] = { budget = b, method = best, runners_up = ups, reasons = why }
  end
  M.save(res, output .. "/compare.json")
  res.json = output .. "/compare.json"
  res.html = M.html(res, output .. "/compare.html", res.recommendations, title)
  return res
end

-- ---------------------------------------------------------------- recommendation

local function fmt_bytes(b)
  if not b then return "?" end
  if b >= 2^30 then return string.format("%.2f GiB", b / 2^30) end
  return string.format("%.1f MiB", b / 2^20)
end
M.format_bytes = fmt_bytes

local METRICS = {
  val_loss = { key = "val_loss", higher = false, label = "validation loss" },
  ppl = { key = "ppl", higher = false, label = "validation perplexity" },
  metric = { key = "metric", higher = true, label = "task metric" },
}

function M.recommend(results, o)
  o = o or {}
  local recs = results.records or results
  local mdef = METRICS[o.metric or "val_loss"]
  if not mdef then error("peft.compare.recommend: metric must be val_loss, ppl or metric", 2) end
  local label = o.metric_label or mdef.label
  local reasons, cands = {}, {}
  local pmodel
  if o.predict then
    pmodel = o.predict.model
    if type(pmodel) == "string" then pmodel = peft.model.load(pmodel) end
  end
  for _, r in ipairs(recs) do
    if r.status ~= "ok" then
      reasons[#reasons + 1] = string.format("%s is out: it failed (%s)", r.name, tostring(r.reason))
    elseif r[mdef.key] == nil then
      reasons[#reasons + 1] = string.format("%s is out: no %s was recorded", r.name, label)
    else
      -- measured resident need: the tracked peak plus the file bytes used in place (as the
      -- memory model's resident figure counts them); RSS is process-wide and is not used
      local mapped = r.mapped or (r.predicted and r.predicted.resident and r.predicted.total
        and (r.predicted.resident - r.predicted.total)) or 0
      local c = { rec = r, q = r[mdef.key], mem = r.peak_tracked and (r.peak_tracked + mapped), time = r.wall_s,
                  mem_src = "measured" }
      if o.predict then
        local cfg = r.config or {}
        local sp = { method = cfg.method, quant = cfg.quant, adapter = cfg.adapter, targets = cfg.targets,
                     lora_rank = cfg.lora_rank, precision = cfg.precision, checkpointing = cfg.checkpointing,
                     feedforward = cfg.feedforward, optimizer = cfg.optimizer }
        local shape = {}
        for k, v in pairs(o.predict) do if k ~= "model" then shape[k] = v end end
        local est
        local okp, e = pcall(function()
          local t = { model = pmodel, method = sp.method == "full" and "full" or (sp.method == "qlora" and "qlora" or "lora"),
            quant = sp.quant, adapter = (sp.method == "dora" or sp.method == "ia3") and sp.method or nil,
            batch_size = shape.batch_size or cfg.batch_size, seq_len = shape.seq_len or cfg.max_seq_len,
            lora_rank = sp.lora_rank, precision = sp.precision, checkpointing = sp.checkpointing, optimizer = sp.optimizer,
            targets = type(sp.targets) == "table" and sp.targets or nil }
          for k, v in pairs(shape) do if k ~= "batch_size" and k ~= "seq_len" then t[k] = v end end
          return peft.memory.estimate(t)
        end)
        if okp then est = e end
        if est then
          c.mem, c.mem_src = est.resident, "predicted by the memory model"
        else
          c.mem, c.mem_src = nil, "not predictable (" .. tostring(e) .. ")"
        end
      end
      cands[#cands + 1] = c
    end
  end
  local function better(a, b)
    if a.q ~= b.q then if mdef.higher then return a.q > b.q else return a.q < b.q end end
    return (a.mem or math.huge) < (b.mem or math.huge)
  end
  table.sort(cands, better)
  local fits = {}
  for _, c in ipairs(cands) do
    local why = {}
    if o.memory_budget and (not c.mem or c.mem > o.memory_budget) then
      why[#why + 1] = string.format("needs %s (%s) > %s memory budget", fmt_bytes(c.mem), c.mem_src, fmt_bytes(o.memory_budget))
    end
    if o.time_budget and c.time > o.time_budget then
      why[#why + 1] = string.format("took %.0f s > %.0f s time budget", c.time, o.time_budget)
    end
    c.why = why
    if #why == 0 then fits[#fits + 1] = c end
  end
  local function rel(a, b)   -- how much better a is than b, in percent of b
    if b == 0 then return 0 end
    return 100 * (mdef.higher and (a - b) or (b - a)) / math.abs(b)
  end
  local best = fits[1]
  if not best then
    reasons[#reasons + 1] = "no method fits the budget"
    for _, c in ipairs(cands) do reasons[#reasons + 1] = string.format("%s %s", c.rec.name, table.concat(c.why, " and ")) end
    if pmodel and type(o.predict.model) == "string" then pmodel:close() end
    return nil, {}, reasons, cands
  end
  local out = {}
  out[1] = string.format("%s: the best %s (%.4g) among the methods within the budget%s; peak memory %s (%s), %.0f s",
    best.rec.name, label, best.q,
    (o.memory_budget or o.time_budget) and string.format(" (%s%s%s)",
      o.memory_budget and ("memory " .. fmt_bytes(o.memory_budget)) or "",
      (o.memory_budget and o.time_budget) and ", " or "", o.time_budget and string.format("time %.0f s", o.time_budget) or "") or "",
    fmt_bytes(best.mem), best.mem_src, best.time)
  for _, c in ipairs(cands) do
    if c ~= best and #c.why > 0 and better(c, best) then
      out[#out + 1] = string.format("%s is %.1f%% better in %s but %s", c.rec.name, rel(c.q, best.q), label, table.concat(c.why, " and "))
    end
  end
  local ups = {}
  for i = 2, math.min(3, #fits) do
    local c = fits[i]
    ups[#ups + 1] = c.rec.name
    out[#out + 1] = string.format("runner-up %s: %.1f%% worse in %s, %s, %.0f s", c.rec.name, -rel(c.q, best.q), label, fmt_bytes(c.mem), c.time)
  end
  for _, r in ipairs(reasons) do out[#out + 1] = r end
  if pmodel and type(o.predict.model) == "string" then pmodel:close() end
  return best.rec.name, ups, out, cands
end

-- ---------------------------------------------------------------- report

local function pareto_names(xs, ys)   -- minimise both: the names on the front
  local front = {}
  for i = 1, #xs do
    local dominated = false
    for j = 1, #xs do
      if j ~= i and xs[j] <= xs[i] and ys[j] <= ys[i] and (xs[j] < xs[i] or ys[j] < ys[i]) then dominated = true; break end
    end
    front[i] = not dominated
  end
  return front
end
M.pareto_front = pareto_names

function M.html(res, path, recommendations, title)
  local R = peft.report
  local recs = res.records
  local sections = {}
  if recommendations and #recommendations > 0 then
    local lines = {}
    for _, rc in ipairs(recommendations) do
      local b = rc.budget or {}
      local bud = {}
      if b.memory_budget then bud[#bud + 1] = "memory " .. fmt_bytes(b.memory_budget) end
      if b.time_budget then bud[#bud + 1] = string.format("time %.0f s", b.time_budget) end
      if b.predict then
        local p = {}
        for k, v in pairs(b.predict) do if k ~= "model" then p[#p + 1] = k .. " " .. tostring(v) end end
        table.sort(p)
        bud[#bud + 1] = "predicted for " .. table.concat(p, ", ")
      end
      lines[#lines + 1] = string.format("Budget %s (%s): use %s%s", #bud > 0 and table.concat(bud, ", ") or "none",
        (b.metric or "val_loss"), tostring(rc.method or "nothing fits"),
        (rc.runners_up and #rc.runners_up > 0) and (" (runners-up: " .. table.concat(rc.runners_up, ", ") .. ")") or "")
      for _, r in ipairs(rc.reasons or {}) do lines[#lines + 1] = "    " .. r end
    end
    sections[#sections + 1] = { title = "Recommendation", list = lines }
  end
  local rows = {}
  for _, r in ipairs(recs) do
    local p = r.predicted or {}
    rows[#rows + 1] = { r.name, r.status == "ok" and "ok" or ("failed: " .. tostring(r.reason)), r.steps or "",
      r.wall_s and string.format("%.1f", r.wall_s) or "", r.tokens_per_s and string.format("%.0f", r.tokens_per_s) or "",
      r.peak_tracked and string.format("%.1f", r.peak_tracked / 2^20) or "",
      p.total and string.format("%.1f", p.total / 2^20) or "",
      r.peak_rss and string.format("%.1f", r.peak_rss / 2^20) or "",
      p.resident and string.format("%.1f", p.resident / 2^20) or "",
      r.trained_params or "", r.adapter_bytes and string.format("%.1f", r.adapter_bytes / 1024) or "",
      r.val_loss and string.format("%.4f", r.val_loss) or "", r.ppl and string.format("%.3f", r.ppl) or "",
      r.metric and string.format("%.4g", r.metric) or "" }
  end
  sections[#sections + 1] = { title = "Results", table = { columns = { "method", "status", "steps", "wall s", "tokens/s",
    "peak tracked MiB", "predicted MiB", "peak RSS MiB", "predicted resident MiB", "trained params",
    "adapter KiB", "val loss", "val ppl", (res.config and res.config.metric_name) or "task metric" }, rows = rows } }
  local ok = {}
  for _, r in ipairs(recs) do if r.status == "ok" then ok[#ok + 1] = r end end
  local charts, caps = {}, {}
  local s_step, s_time = {}, {}
  for _, r in ipairs(ok) do
    local x, t, y = {}, {}, {}
    for i, v in ipairs(r.val or {}) do x[i], t[i], y[i] = v.step, v.elapsed_s, v.val_loss end
    if #x > 0 then
      s_step[#s_step + 1] = { name = r.name, x = x, y = y, smooth = false }
      s_time[#s_time + 1] = { name = r.name, x = t, y = y, smooth = false }
    end
  end
  if #s_step > 0 then
    charts[#charts + 1] = R.line { title = "Validation loss against step", xlabel = "step", ylabel = "validation loss", width = 560, height = 380, series = s_step }
    caps[#caps + 1] = "every method, same data order and seed"
    charts[#charts + 1] = R.line { title = "Validation loss against wall time", xlabel = "seconds", ylabel = "validation loss", width = 560, height = 380, series = s_time }
    caps[#caps + 1] = "seconds since the method's run started"
  end
  local mx, tx, qy, names = {}, {}, {}, {}
  for _, r in ipairs(ok) do
    if r.val_loss then
      mx[#mx + 1] = (r.peak_tracked + (r.mapped or 0)) / 2^20
      tx[#tx + 1] = r.wall_s
      qy[#qy + 1] = r.val_loss
      names[#names + 1] = r.name
    end
  end
  if #mx > 0 then
    local fm, ft = pareto_names(mx, qy), pareto_names(tx, qy)
    local function lab(front)
      local l = {}
      for i, n in ipairs(names) do l[i] = front[i] and (n .. " *") or n end
      return l
    end
    charts[#charts + 1] = R.scatter { title = "Peak memory against validation loss", xlabel = "peak memory: tracked + mapped (MiB)", ylabel = "validation loss",
      pareto = true, pareto_x = "low", pareto_y = "low", width = 560, height = 380,
      series = { { name = "methods", x = mx, y = qy, labels = lab(fm) } } }
    caps[#caps + 1] = "circled and starred: the Pareto front (less memory, lower loss)"
    charts[#charts + 1] = R.scatter { title = "Time against validation loss", xlabel = "wall time (s)", ylabel = "validation loss",
      pareto = true, pareto_x = "low", pareto_y = "low", width = 560, height = 380,
      series = { { name = "methods", x = tx, y = qy, labels = lab(ft) } } }
    caps[#caps + 1] = "circled and starred: the Pareto front (less time, lower loss)"
  end
  if #ok > 0 then
    local cats, tps, mem, pred = {}, {}, {}, {}
    for i, r in ipairs(ok) do
      cats[i] = r.name
      tps[i] = r.tokens_per_s or 0
      mem[i] = (r.peak_tracked or 0) / 2^20
      pred[i] = (r.predicted and r.predicted.total or 0) / 2^20
    end
    charts[#charts + 1] = R.bar { title = "Throughput", categories = cats, ylabel = "tokens/s", width = 560, height = 380,
      series = { { name = "tokens/s", values = tps } } }
    caps[#caps + 1] = "training tokens per second"
    charts[#charts + 1] = R.bar { title = "Peak tracked memory", categories = cats, ylabel = "MiB", width = 560, height = 380,
      series = { { name = "measured", values = mem }, { name = "memory model", values = pred } } }
    caps[#caps + 1] = "measured peak of the counting allocator beside the memory model's prediction"
  end
  if #charts > 0 then sections[#sections + 1] = { title = "Charts", charts = charts, caption = caps } end
  local cfg = {}
  for k, v in pairs(res.config or {}) do if type(v) ~= "table" then cfg[k] = v end end
  sections[#sections + 1] = { title = "Comparison setup", config = cfg }
  local m = res.machine or {}
  sections[#sections + 1] = { title = "Machine and versions", text = string.format("%s · %s · %s · %s\n\n%s",
    tostring(m.peftlua), tostring(m.lua), tostring(m.os), tostring(m.date), tostring(m.hardware or "")) }
  local rep = R.html { title = title or "Method comparison", subtitle = tostring(res.config and res.config.model or ""),
    sections = sections }
  local okw, err = rep:save(path)
  if not okw then error("peft.compare.html: " .. tostring(err), 2) end
  return path
end

return M
