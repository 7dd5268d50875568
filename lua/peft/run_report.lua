-- peft.run_report — the HTML report every peft.train.run writes (output/report.html).
-- Owner: train (issue 13). Built from what the run itself recorded: metrics.jsonl (training
-- loss, learning rate, gradient norm, tokens/s per step; validation loss), memory.json (the
-- per-step memory chart), the configuration, the dataset's report (ds:report()), and for
-- chat, alpaca or prompt/completion data a few validation prompts answered by the model before the
-- first step and after the last (greedy). Charts are peft.report's (libgd PNGs inlined);
-- every string from the user (run name, configuration, data, generations) is escaped.
--
--   local st = peft.run_report.begin(model, cfg, train_ds, valid_ds)   -- before training
--   local path = peft.run_report.finish(st, result)                    -- after: report.html
--   peft.run_report.read_metrics(path) -> steps = {{step, loss, lr, grad_norm, tokens_per_s,
--                                         elapsed_s, mem_peak, rss}...}, evals = {{step, val_loss}...}
local M = {}
local report = peft.report

function M.read_metrics(path)
  local steps, evals = {}, {}
  local f = io.open(path, "r")
  if not f then return steps, evals end
  for line in f:lines() do
    local ok, rec = pcall(peft.memory.decode_json, line)
    if ok and type(rec) == "table" and rec.step then
      if rec.val_loss ~= nil and rec.loss == nil then
        evals[#evals + 1] = { step = rec.step, val_loss = rec.val_loss }
      elseif rec.loss ~= nil then
        steps[#steps + 1] = rec
      end
    end
  end
  f:close()
  return steps, evals
end

-- Up to n prompts of chat or prompt/completion data (validation file first).
local function sample_prompts(cfg, n)
  for k = 1, 2 do
    local path = k == 1 and cfg.valid or cfg.dataset
    if type(path) == "string" then
      local ok, recs, info = pcall(peft.data.read, path, cfg.format and { format = cfg.format } or nil)
      local f = info and info.format
      if ok and recs and (f == "chat" or f == "completion" or f == "alpaca") then
        local out = {}
        for _, r in ipairs(recs) do
          if #out >= n then break end
          if info.format == "chat" and type(r.messages) == "table" and #r.messages >= 2 then
            local msgs = {}
            for i = 1, #r.messages - 1 do msgs[i] = r.messages[i] end
            out[#out + 1] = { kind = "chat", messages = msgs, shown = msgs[#msgs].content,
                              reference = r.messages[#r.messages].content }
          elseif f == "completion" and r.prompt then
            out[#out + 1] = { kind = "prompt", prompt = r.prompt, shown = r.prompt, reference = r.completion }
          elseif f == "alpaca" and r.instruction then   -- rendered as one user turn (docs/data.md)
            local u = r.instruction .. ((r.input and r.input ~= "") and ("\n\n" .. r.input) or "")
            out[#out + 1] = { kind = "chat", messages = { { role = "user", content = u } }, shown = u, reference = r.output }
          end
        end
        return out, f
      end
    end
  end
  return nil
end

local function answer(model, s)
  local opts = { max_tokens = 48, greedy = true }
  local ok, text
  if s.kind == "chat" then ok, text = pcall(model.chat, model, s.messages, opts)
  else ok, text = pcall(model.generate, model, s.prompt, opts) end
  return ok and text or ("(generation failed: " .. tostring(text) .. ")")
end

function M.begin(model, cfg, train_ds, valid_ds)
  local st = { model = model, cfg = cfg, started = os.time() }
  local ok, r = pcall(function() return train_ds:report() end)
  st.train_stats = ok and r or nil
  if valid_ds then
    ok, r = pcall(function() return valid_ds:report() end)
    st.valid_stats = ok and r or nil
  end
  local samples, fmt = sample_prompts(cfg, 3)
  st.format = fmt
  if samples and #samples > 0 and model.generate then
    for _, s in ipairs(samples) do s.before = answer(model, s) end
    st.samples = samples
  end
  return st
end

local function config_of(cfg, result)
  local c = {}
  for k, v in pairs(cfg) do
    local t = type(v)
    if t == "string" or t == "number" or t == "boolean" then c[k] = v
    elseif t == "table" then
      local flat = true
      for _, e in pairs(v) do if type(e) == "table" or type(e) == "function" then flat = false end end
      if flat then c[k] = v end
    elseif t == "userdata" and k == "model" then
      local ok, card = pcall(function() return v:card() end)
      c.model = ok and card.path or "peft.Model"
    end
  end
  c["(method trained)"] = result.method
  c["(parameters trained)"] = result.params
  c["(batch x accumulation)"] = string.format("%d x %d", result.batch_size or 0, result.grad_accum or 1)
  c["(precision)"] = result.precision
  return c
end

local function stats_rows(name, r)
  if not r then return {} end
  local l = r.lengths or {}
  return { { name, r.format or "", r.records or 0, r.examples or 0, r.tokens or 0, r.target_tokens or 0,
             l.min or 0, l.mean or 0, l.max or 0, r.truncated or 0, r.duplicates or 0 } }
end

function M.finish(st, result)
  local out = result.output
  local cfg = st.cfg
  local steps, evals = M.read_metrics(result.metrics)
  local name = cfg.name or (out:match("([^/]+)/*$") or out)
  local sections = {}
  local x, loss, lr, gn, tps = {}, {}, {}, {}, {}
  for i, s in ipairs(steps) do
    x[i], loss[i], lr[i], gn[i], tps[i] = s.step, s.loss or 0 / 0, s.lr or 0 / 0, s.grad_norm or 0 / 0, s.tokens_per_s or 0 / 0
  end
  local vx, vy = {}, {}
  for i, e in ipairs(evals) do vx[i], vy[i] = e.step, e.val_loss end
  local summary = string.format("%d steps of %s (%d trained parameters) in %.1f s; final training loss %.4f%s.",
    result.steps or 0, result.method or "?", result.params or 0, result.elapsed or 0, result.loss or 0 / 0,
    result.val_loss and string.format(", validation loss %.4f (perplexity %.3f)", result.val_loss, math.exp(result.val_loss)) or "")
  sections[#sections + 1] = { title = "Summary", text = summary }
  local charts, caps = {}, {}
  if #x > 0 then
    local series = { { name = "train", x = x, y = loss } }
    if #vx > 0 then series[2] = { name = "validation", x = vx, y = vy, dashed = true, smooth = false } end
    charts[#charts + 1] = report.line { title = "Loss", xlabel = "step", ylabel = "cross-entropy", width = 560, height = 340, series = series }
    caps[#caps + 1] = "training loss per step and validation loss"
    charts[#charts + 1] = report.line { title = "Learning rate", xlabel = "step", ylabel = "lr", width = 560, height = 340,
      series = { { name = "lr", x = x, y = lr, smooth = false } } }
    caps[#caps + 1] = "learning rate per step"
    charts[#charts + 1] = report.line { title = "Gradient norm", xlabel = "step", ylabel = "L2 norm (before clipping)", width = 560, height = 340,
      series = { { name = "grad norm", x = x, y = gn } } }
    caps[#caps + 1] = "gradient norm per step"
    charts[#charts + 1] = report.line { title = "Throughput", xlabel = "step", ylabel = "tokens/s", width = 560, height = 340,
      series = { { name = "tokens/s", x = x, y = tps, smooth = false } } }
    caps[#caps + 1] = "tokens per second (cumulative mean)"
  end
  if #charts > 0 then sections[#sections + 1] = { title = "Training", charts = charts, caption = caps } end
  if result.memory then
    local ok, img = pcall(report.memory_chart, result.memory, { title = "Memory per step" })
    if ok then sections[#sections + 1] = { title = "Memory", chart = img, caption = "tracked bytes and RSS per step (memory.json)" } end
  end
  sections[#sections + 1] = { title = "Configuration", config = config_of(cfg, result) }
  local rows = {}
  for _, r in ipairs(stats_rows("train", st.train_stats)) do rows[#rows + 1] = r end
  for _, r in ipairs(stats_rows("validation", st.valid_stats)) do rows[#rows + 1] = r end
  if #rows > 0 then
    sections[#sections + 1] = { title = "Dataset", table = { columns = { "split", "format", "records", "examples",
      "tokens", "trained tokens", "min len", "mean len", "max len", "truncated", "duplicates" }, rows = rows } }
  end
  if st.samples then
    local srows = {}
    for _, s in ipairs(st.samples) do
      s.after = answer(st.model, s)
      srows[#srows + 1] = { s.shown, s.reference or "", s.before, s.after }
    end
    sections[#sections + 1] = { title = "Sample generations (" .. st.format .. " data, greedy)",
      table = { columns = { "prompt", "reference", "before training", "after training" }, rows = srows } }
  else
    sections[#sections + 1] = { title = "Sample generations",
      text = "Shown for chat, alpaca or prompt/completion data; this run's data is " .. tostring(st.train_stats and st.train_stats.format or "of another format") .. "." }
  end
  local rep = report.html { title = "Training run: " .. tostring(name),
    subtitle = string.format("%s · %s", tostring(cfg.dataset), os.date("!%Y-%m-%d %H:%M UTC", st.started)),
    sections = sections }
  local path = out .. "/report.html"
  local ok, err = rep:save(path)
  if not ok then return nil, err end
  return path
end

return M
