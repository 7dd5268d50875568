-- peft.data — the Lua layer over the C module (src/lua/l_data.c): scoring of tool calls and
-- a printable dataset report. Owner: data.
local M = ...

local function trim(s) return (s:gsub("^%s+", ""):gsub("%s+$", "")) end

-- Exact match of a produced tool call against the reference, after JSON canonicalisation
-- (object keys sorted, whitespace removed, numbers printed one way): key order and spacing do
-- not matter, anything else does. predicted_text may carry surrounding whitespace; anything
-- else around the JSON (prose, a second call) makes it a miss.
-- Returns true/false and, on a miss, why.
function M.toolcall_exact_match(predicted_text, reference_json)
  assert(type(predicted_text) == "string", "toolcall_exact_match: predicted_text must be a string")
  assert(type(reference_json) == "string", "toolcall_exact_match: reference_json must be a string")
  local ref, rerr = M.json_canonical(reference_json)
  if not ref then error("toolcall_exact_match: the reference is not valid JSON: " .. rerr, 2) end
  local pred_text = trim(predicted_text)
  if pred_text == "" then return false, "empty prediction" end
  local pred, perr = M.json_canonical(pred_text)
  if not pred then return false, "prediction is not valid JSON: " .. perr end
  if pred ~= ref then return false, "different call: " .. pred end
  return true
end

-- Mean exact match over lists of predictions and references.
function M.toolcall_accuracy(predictions, references)
  assert(#predictions == #references, "toolcall_accuracy: lists of different lengths")
  if #references == 0 then return 0 end
  local hits = 0
  for i = 1, #references do
    if M.toolcall_exact_match(predictions[i], references[i]) then hits = hits + 1 end
  end
  return hits / #references
end

-- Prompts and references for evaluating generation on a chat file: every record's messages
-- up to (not including) its last assistant turn, and that turn's content as the reference.
-- Returns a list of {messages = {...}, reference = "...", line = n}; limit keeps the first n.
function M.eval_pairs(path, limit)
  local recs, info = M.read(path, { format = "chat" })
  if not recs then error(info, 2) end
  if #info.issues > 0 then error(info.issues[1], 2) end
  local out = {}
  for _, r in ipairs(recs) do
    if limit and #out >= limit then break end
    local msgs = {}
    for i = 1, #r.messages - 1 do msgs[i] = r.messages[i] end
    out[#out + 1] = { messages = msgs, reference = r.messages[#r.messages].content, line = r.line }
  end
  return out
end

-- A report table (ds:report() or peft.data.validate()) as readable lines.
function M.format_report(r)
  local out = {}
  local function add(...) out[#out + 1] = string.format(...) end
  add("%s: %s, %d records, %d examples%s", r.path, r.format, r.records or 0, r.examples or r.valid_records or 0,
      (r.skipped or 0) > 0 and string.format(", %d skipped", r.skipped) or "")
  if r.lengths then
    local l = r.lengths
    add("  tokens %d (%d trained on); length min %d, mean %.1f, median %d, p95 %d, max %d",
        r.tokens, r.target_tokens, l.min, l.mean, l.median, l.p95, l.max)
    local hist = {}
    for _, b in ipairs(l.histogram) do
      if b.count > 0 then
        hist[#hist + 1] = string.format("%s: %d", b.hi == math.huge and (b.lo .. "+") or (b.lo == b.hi and tostring(b.lo) or (b.lo .. "-" .. b.hi)), b.count)
      end
    end
    add("  lengths %s", table.concat(hist, ", "))
    if (r.truncated or 0) > 0 then add("  truncated to %d tokens: %d examples (%d tokens cut)", r.max_seq_len, r.truncated, r.truncated_tokens) end
    if (r.no_target or 0) > 0 then add("  left without a trained token after truncation (excluded): %d", r.no_target) end
  end
  if (r.duplicates or 0) > 0 then
    local pairs_ = {}
    for i, p in ipairs(r.duplicate_lines or {}) do
      if i > 5 then break end
      pairs_[#pairs_ + 1] = string.format("%d = %d", p[1], p[2])
    end
    add("  exact duplicates: %d (lines %s%s)", r.duplicates, table.concat(pairs_, ", "), r.duplicates > 5 and ", ..." or "")
  end
  if (r.overlap or 0) > 0 then add("  also in the other split: %d", r.overlap) end
  for i, msg in ipairs(r.issues or {}) do
    if i > 20 then add("  ... %d more", #r.issues - 20) break end
    add("  %s", msg)
  end
  if r.error then add("  %s", r.error) end
  return table.concat(out, "\n")
end

-- The complexity profile of a dataset for a model (what peft.tune.suggest_rank reads):
--   peft.data.profile(model, "train.jsonl" | a peft.Dataset, { max_seq_len =, format =,
--     chat_template =, train_on_prompt =, skip_bad =, valid_fraction =, seed =,
--     loss_examples = 32 (examples the base model is scored on; 0 skips the loss) })
-- -> { examples, target_tokens, tokens, target_lengths = {min, mean, median, p95, max},
--      target_vocab (distinct target token ids), target_ttr (distinct / total over the first
--      2000 target tokens: comparable across datasets), target_entropy_bits (unigram entropy
--      of the target tokens), base_loss (the base model's mean loss in nats per target token,
--      over the first loss_examples examples: what the model does not know yet), loss_examples,
--      loss_tokens, max_seq_len, dataset }
-- The base loss is the un-adapted model's (a rank-1 LoRA trainer whose B is still zero gives
-- exactly the base output); the trainer is closed before returning.
function M.profile(model, dataset, opts)
  opts = opts or {}
  if type(model) ~= "userdata" then error("peft.data.profile: model must be a loaded peft.Model", 2) end
  local mc = model:config()
  local max_seq = opts.max_seq_len or math.min(512, mc.context_length or mc.seq_len or 512)
  local ds, own = dataset, false
  if type(dataset) == "string" then
    ds = M.load(dataset, { tokenizer = model, max_seq_len = max_seq, format = opts.format,
      chat_template = opts.chat_template, train_on_prompt = opts.train_on_prompt, skip_bad = opts.skip_bad,
      valid_fraction = opts.valid_fraction, seed = opts.seed or 42 })
    own = true
  end
  local n = ds:count()
  if n == 0 then error("peft.data.profile: the dataset has no examples", 2) end
  local lens, seen, counts, distinct, total, window_distinct = {}, {}, {}, 0, 0, nil
  local tokens = 0
  for i = 1, n do
    local e = ds:example(i)
    tokens = tokens + e.len
    lens[i] = e.n_target
    local ids, mask = e.ids, e.mask
    for t = 1, e.len do
      if mask[t] ~= 0 then
        local id = ids[t]
        total = total + 1
        local c = counts[id]
        if not c then distinct = distinct + 1; counts[id] = 1 else counts[id] = c + 1 end
        if total == 2000 then window_distinct = distinct end
        seen[id] = true
      end
    end
  end
  local H = 0
  for _, c in pairs(counts) do local p = c / total; H = H - p * math.log(p, 2) end
  local sorted = {}
  for i, v in ipairs(lens) do sorted[i] = v end
  table.sort(sorted)
  local sum = 0
  for _, v in ipairs(sorted) do sum = sum + v end
  local function q(f) return sorted[math.max(1, math.min(n, math.floor(f * (n - 1) + 1.5)))] end
  local prof = { examples = n, target_tokens = total, tokens = tokens,
    target_lengths = { min = sorted[1], mean = sum / n, median = q(0.5), p95 = q(0.95), max = sorted[n] },
    target_vocab = distinct, target_ttr = (window_distinct or distinct) / math.min(total, 2000),
    target_entropy_bits = H, max_seq_len = max_seq, dataset = type(dataset) == "string" and dataset or ds:path() }
  local want = opts.loss_examples or 32
  if want > 0 and total > 0 then
    local bs = math.min(4, want)
    local tr, msg = peft.train.try_trainer(model, { method = "lora", lora_rank = 1, batch_size = bs, seq_len = max_seq,
                                                    targets = { "q_proj" }, seed = opts.seed or 42 })
    if not tr then
      if own then ds:close() end
      if tostring(msg):find("already has adapters", 1, true) then
        msg = msg .. " (an earlier run's result.trainer is still open: result.trainer:close() releases it)"
      end
      error("peft.data.profile: " .. tostring(msg), 2)
    end
    local it = ds:batches { batch_size = bs, shuffle = false, epochs = 1 }
    local s, c, ex = 0, 0, 0
    for b in it do
      local ls, lc = tr:eval(b.ids, b.targets)
      s, c, ex = s + ls, c + lc, ex + b.batch
      if ex >= want then break end
    end
    it:close()
    tr:close()
    if c > 0 then prof.base_loss, prof.loss_tokens, prof.loss_examples = s / c, c, ex end
  end
  if own then ds:close() end
  return prof
end

-- DVC-compatible dataset version of a file or directory (lua/peft/dvc.lua; owner: track):
-- writes PATH.dvc, caches the data under .dvc/cache, adds a .gitignore line.
function M.version(path, opts) return require("peft.dvc").add(path, opts) end

return M
