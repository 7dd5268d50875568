-- lua/peft/train.lua — peft.train.run: the fine-tuning loop as policy over the C trainer.
-- Owner: train. Extends the C module (src/lua/l_train.c), passed as `...`.
--
--   local result = peft.train.run {
--     model = "models/SmolLM2-135M-Instruct.Q4_1.gguf" | a peft.Model,
--     dataset = "train.jsonl", valid = "valid.jsonl" (or valid_fraction = 0.1),
--     output = "runs/x",                       -- checkpoint/, adapter/, metrics.jsonl, run.json, report.html
--     tracking = "mlruns",                     -- also an MLflow run (docs/tracking.md)
--     method = "lora" | "dora" | "ia3" | "qlora" | "full", max_iters = 200 | epochs = 2,
--     adapter = "dora" | "ia3"                 -- qlora (or lora): the adapter method on the base
--     feedforward = {"down_proj"}              -- ia3: targets whose input is scaled
--     name = "run name", report = false        -- output/report.html (peft.run_report) or none
--     quant = "nf4" | "q8_0"                   -- qlora: the frozen base re-stored on load
--     double_quant = true                      -- qlora nf4: double-quantised block scales
--                                              -- (peft.memory.quantize; a peft.Model given is
--                                              -- modified in place)
--     batch_size = 4, grad_accum = 1, learning_rate = 2e-4, lora_rank = 8, lora_alpha = 16,
--     lora_dropout = 0.05, targets = {"q_proj", "v_proj"}, warmup = 10, schedule = "cosine",
--     max_grad_norm = 1.0, eval_every = 50, save_every = 50, seed = 42, resume = true,
--     precision = "fp32" | "bf16" | "fp16"     -- 16-bit frozen weights and saved activations
--                                              -- (train.h "Mixed precision"); fp16 adds
--     loss_scale = 65536, growth_interval = 2000 -- dynamic loss scaling (metrics: loss_scale,
--                                              -- skipped_steps)
--     compute = "auto" | "f32" | "bf16"        -- bf16 products, f32 sums (include/peftlua/gemm16.h);
--                                               auto (default): bf16 where the CPU has AVX512_BF16
--     on_step = function(info) end, on_eval = function(info) end,
--     on_phase = function(phase) end,          -- "evaluating", "training", "saving" as they begin
--     distributed = true                       -- under mpirun/srun (default when > 1 rank):
--                                              -- docs/distributed.md
--   }
-- Memory: each optimizer step is a peft.memory.mark("step N") (the timeline is cleared when the
-- loop starts); its metrics line carries the step's tracked peak ("mem_peak", "mem_peak_by")
-- and output/memory.json (peft.memory.json()) is written at the end (result.memory), also
-- when interrupted.
-- Unknown keys are rejected by name. The same seed and thread count give the same bits;
-- `resume = true` continues from output/checkpoint exactly (the loss trajectory of an
-- interrupted-and-resumed run equals the uninterrupted one). Ctrl-C or SIGTERM writes a
-- checkpoint, then the run stops with an error saying where it was saved.
-- Memory: when a step fails to allocate (the engine's "nomem" status, not the message), the
-- partial step is rewound (data position restored), the trainer re-plans at half the rows
-- per forward — a micro-batch then runs as chunks, same data order, same effective batch,
-- the same gradient up to f32 summation order — and the step is retried. One line is logged
-- ("memory: allocation failed (...): micro-batch 4 -> 2 rows (x2 chunks), step 17 retried"),
-- one {"event":"shrink"} line goes to metrics.jsonl, and result.shrinks lists each change.
-- A trainer whose first plan does not fit is made again with half the rows the same way.
-- The checkpoint's data blob records the planned rows, so a resumed run re-plans the same way.
-- Only one row per forward not fitting stops the run, with what it needs.
local M = ...

-- The options (names, types, defaults, ranges, help) are declared once, in the engine
-- (src/train/options.c, handed over as M._options); lua/peft/train_options.lua builds the check
-- and help from it: peft.train.options() lists them, help(peft.train.run) prints them. It is
-- required on first use (it reads this module, which is still loading here).
local OPTIONS = setmetatable({}, { __index = function(t, k)
  local o = require "peft.train_options"
  setmetatable(t, { __index = o })
  return o[k]
end })

local function fail(msg) error("peft.train.run: " .. msg, 3) end

local function check_config(cfg)   -- errors point at the line that called peft.train.run
  local msg = OPTIONS.check(cfg)
  if msg then error("peft.train.run: " .. msg, 3) end
end

-- The option descriptors (a copy): {name, type, default, min, max, choices, help, ...}.
function M.options()
  local t = {}
  for i, o in ipairs(OPTIONS.list) do
    local c = {}
    for k, v in pairs(o) do c[k] = v end
    t[i] = c
  end
  return t
end
function M.check_options(cfg) return OPTIONS.check(cfg) end

local function sh_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- The entries of a directory (sorted), or nil when it is absent or empty.
function M.output_entries(dir)
  local p = io.popen("ls -A " .. sh_quote(dir) .. " 2>/dev/null")
  local t = {}
  for l in p:lines() do t[#t + 1] = l end
  p:close()
  table.sort(t)
  return t[1] and t or nil
end

-- The elapsed time and tokens of the last step line of a metrics file (a resumed run's totals
-- continue from them).
function M.metrics_totals(path)
  local r = { elapsed = 0, tokens = 0 }
  local f = io.open(path, "r")
  if not f then return r end
  for line in f:lines() do
    local e, t = line:match('"elapsed_s":([%d.eE+-]+)'), line:match('"tokens":(%d+)')
    if e then r.elapsed = tonumber(e) or r.elapsed end
    if t then r.tokens = math.tointeger(tonumber(t)) or r.tokens end
  end
  f:close()
  return r
end

-- base_model_name_or_path for adapter_config.json: the Hugging Face id the model file records
-- (GGUF general.source.huggingface.repository / general.base_model.0.repo_url), else the
-- model's absolute path (PEFT resolves either; a GGUF's display name it cannot).
function M.base_model_id(model)
  local c = model:card()
  if c.source then return c.source end
  local p = c.path
  if p:sub(1, 1) ~= "/" then
    local h = io.popen("pwd")
    local cwd = h and h:read("l")
    if h then h:close() end
    if cwd then p = cwd .. "/" .. p:gsub("^%./", "") end
  end
  return p
end

-- data position + run bookkeeping (+ rows planned per forward), as the checkpoint's user blob
local function encode_blob(st, best, evals_since, rows, ranks)
  local b = (best and best < math.huge) and string.format("%.17g", best) or "none"
  return string.format("v2 %d %d %d %d %d %d %s %d %d", st.epoch, st.index, st.rng[1], st.rng[2],
    st.rng[3], st.rng[4], b, evals_since or 0, rows) .. (ranks > 1 and string.format(" ranks=%d", ranks) or "")
end

-- v1 blobs (before re-planning existed) have no rows: the trainer keeps its plan
local function decode_blob(s)
  local v, e, i, r1, r2, r3, r4, best, since, rest = s:match(
    "^v([12]) (%-?%d+) (%-?%d+) (%-?%d+) (%-?%d+) (%-?%d+) (%-?%d+) (%S+) (%d+)(.*)$")
  local rows = v == "2" and math.tointeger(tonumber(rest:match("^ (%d+)$") or rest:match("^ (%d+) ranks=%d+$"))) or nil
  if not e or (v == "2" and not rows) then
    error("peft.train.run: checkpoint data position is unreadable", 0)
  end
  return { epoch = math.tointeger(e), index = math.tointeger(i),
           rng = { math.tointeger(r1), math.tointeger(r2), math.tointeger(r3), math.tointeger(r4) } },
         tonumber(best) or math.huge, math.tointeger(since), rows, math.tointeger(tonumber(rest:match(" ranks=(%d+)$"))) or 1
end

local function json_str(s)
  return '"' .. tostring(s):gsub('[%c"\\]', function(c)
    if c == '"' then return '\\"' elseif c == "\\" then return "\\\\" end
    return string.format("\\u%04x", c:byte())
  end) .. '"'
end

local function num(v)
  if v ~= v or v == math.huge or v == -math.huge then return "null" end
  return string.format("%.17g", v)
end

local function fmt_time(s)
  if not s or s ~= s or s == math.huge then return "--:--" end
  s = math.floor(s + 0.5)
  if s >= 3600 then return string.format("%d:%02d:%02d", s // 3600, s % 3600 // 60, s % 60) end
  return string.format("%d:%02d", s // 60, s % 60)
end
M._fmt_time = fmt_time   -- ETA text, shared with peft.tune.train's progress lines

-- keep only metrics lines of steps <= step (a resumed run rewrites what followed)
local function trim_metrics(path, step)
  local f = io.open(path, "r")
  if not f then return end
  local keep = {}
  for line in f:lines() do
    local s = tonumber(line:match('"step":(%d+)'))
    if s and s <= step then keep[#keep + 1] = line end
  end
  f:close()
  f = assert(io.open(path, "w"))
  for _, l in ipairs(keep) do f:write(l, "\n") end
  f:close()
end

local function run(cfg, rec)
  -- data parallel (docs/distributed.md): rank 0 alone prints and writes
  local dist = peft.dist.enabled(cfg.distributed)
  local rank, ranks = dist and peft.dist.rank() or 0, dist and peft.dist.size() or 1
  local writer = rank == 0
  local quiet = cfg.quiet or not writer
  local function say(...) if not quiet then print(string.format(...)) end end
  local budget = cfg.memory_budget and OPTIONS.parse_size(cfg.memory_budget)
  local model = cfg.model
  if type(model) == "string" then model = peft.model.load(model) end
  local method = cfg.method or "lora"
  if cfg.adapter ~= nil and method ~= "lora" and method ~= "qlora" then fail('adapter is for method = "lora" or "qlora"') end
  if method == "qlora" then
    local q = peft.memory.quantize(model, cfg.quant or "nf4", cfg.double_quant and { double_quant = true } or nil)
    say("qlora: %d projections re-stored as %s (%.1f -> %.1f MiB), %d kept", q.converted,
        q.dtype, q.bytes_before / 2^20, q.bytes_after / 2^20, q.kept)
    method = cfg.adapter or "lora"
  elseif method == "lora" and cfg.adapter then
    method = cfg.adapter
  elseif cfg.quant ~= nil or cfg.double_quant ~= nil then
    fail('quant is for method = "qlora"')
  end
  -- the memory model's method and adapter for the trainer's method
  local mm_method, mm_adapter = method == "full" and "full" or "lora", (method == "dora" or method == "ia3") and method or nil
  local mc = model:config()
  local max_seq = cfg.max_seq_len or math.min(512, mc.context_length or mc.seq_len or 512)
  local bs, ga = cfg.batch_size or 4, cfg.grad_accum or 1
  -- no lora_rank given: the rank (and alpha) suggested from the data, reasons in run.json
  local lora_rank, lora_alpha = cfg.lora_rank, cfg.lora_alpha
  if lora_rank == nil and rec.resumed_rank then   -- resuming: the rank the checkpoint was made with
    lora_rank, lora_alpha = rec.resumed_rank.value, lora_alpha or rec.resumed_rank.alpha
    rec.rank_choice = rec.resumed_rank
  elseif lora_rank == nil and method ~= "ia3" and method ~= "full" then
    local s = require("peft.tune_rank").for_run(model, cfg, max_seq, bs * ga * ranks)
    lora_rank, lora_alpha = s.rank, lora_alpha or s.alpha
    rec.rank_choice = { value = s.rank, alpha = lora_alpha, reason = "suggested from the data (peft.tune.suggest_rank)",
                        reasons = s.reasons, profile = s.profile }
    rec.rank_suggestion = s
    say("lora_rank %d, lora_alpha %g suggested from the data: %s", s.rank, lora_alpha, s.reasons[#s.reasons - 1])
  end
  -- Memory: size what was left nil (batch through accumulation, then sequence length) to the
  -- budget, and refuse up front, with what it needs and what would fit, a run that cannot fit.
  do
    local fit, why = peft.memory.autosize {
      model = model, method = mm_method, adapter = mm_adapter, feedforward = cfg.feedforward,
      batch_size = cfg.batch_size, seq_len = cfg.max_seq_len,
      effective_batch = bs * ga, max_seq_len = max_seq, budget = budget,
      checkpointing = cfg.checkpointing, lora_rank = lora_rank,
      targets = type(cfg.targets) == "table" and cfg.targets or nil, lora_dropout = cfg.lora_dropout,
      optimizer = cfg.optimizer, precision = cfg.precision,
    }
    if not fit then fail(why) end
    rec:fit(fit, cfg)
    if fit.batch_size ~= bs or fit.seq_len ~= max_seq or (not cfg.batch_size and fit.grad_accum ~= ga) then
      say("memory: batch %d x %d tokens, accumulation %d fits the %s budget (predicted peak %s)",
          fit.batch_size, fit.seq_len, fit.grad_accum, peft.memory.format(fit.budget), peft.memory.format(fit.total))
    end
    if not cfg.batch_size then bs, ga = fit.batch_size, fit.grad_accum end
    max_seq = fit.seq_len
  end
  local seed = cfg.seed or 42
  local train_ds, valid_ds = peft.data.load(cfg.dataset, {
    tokenizer = model, max_seq_len = max_seq, valid = cfg.valid, valid_fraction = cfg.valid_fraction,
    seed = seed, format = cfg.format, train_on_prompt = cfg.train_on_prompt, skip_bad = cfg.skip_bad,
    chat_template = cfg.chat_template,
  })
  local rr = cfg.report ~= false and writer and peft.run_report.begin(model, cfg, train_ds, valid_ds) or nil
  local it = train_ds:batches { batch_size = bs, shuffle = true, seed = seed, epochs = 0,
                                packing = cfg.packing, seq_len = cfg.packing and max_seq or nil }
  local per_epoch = it:batches_per_epoch()
  local steps_per_epoch = math.max(1, (per_epoch + ga * ranks - 1) // (ga * ranks))
  if dist then it = peft.dist.shard(it, ga, rank, ranks) end
  local total = cfg.max_iters or math.max(1, math.ceil((cfg.epochs or 1) * steps_per_epoch))
  -- The trainer, planned for bs rows per forward; a plan that fails to allocate is made again
  -- with half the rows (the micro-batch then runs as chunks), as a failed step would be.
  local tr, created_shrinks, rows = nil, {}, bs
  while true do
    local t, msg, status = M.try_trainer(model, {
      method = method, optimizer = cfg.optimizer, batch_size = bs, seq_len = max_seq,
      grad_accum = ga, learning_rate = cfg.learning_rate or (cfg.method == "full" and 2e-5 or 2e-4),
      weight_decay = cfg.weight_decay, schedule = cfg.schedule, warmup = cfg.warmup,
      total_steps = total, min_lr_ratio = cfg.min_lr_ratio, max_grad_norm = cfg.max_grad_norm,
      seed = seed, lora_rank = lora_rank, lora_alpha = lora_alpha,
      lora_dropout = cfg.lora_dropout, targets = cfg.targets, layers = cfg.layers, rslora = cfg.rslora,
      momentum = cfg.momentum, checkpointing = cfg.checkpointing, precision = cfg.precision,
      compute = cfg.compute,
      loss_scale = cfg.loss_scale, growth_interval = cfg.growth_interval, planned_rows = rows,
      feedforward = cfg.feedforward, distributed = dist or nil,
    })
    if t then tr = t; break end
    if status ~= "nomem" then
      if tostring(msg):find("already has adapters", 1, true) then
        msg = msg .. " (an earlier run's result.trainer is still open: result.trainer:close() releases it)"
      end
      error("peft.train.run: " .. msg, 0)
    end
    if rows == 1 then
      error(string.format("peft.train.run: memory: allocation failed (%s) planning one row of %d tokens per forward; " ..
        "it needs more memory, a shorter max_seq_len%s%s", msg, max_seq,
        cfg.checkpointing and "" or ", checkpointing = true", method == "full" and "" or ' or method = "qlora"'), 0)
    end
    local to = rows // 2
    local line = string.format("memory: allocation failed (%s): micro-batch %d -> %d rows (x%d chunks), trainer planned again",
      msg, rows, to, (bs + to - 1) // to)
    say("%s", line)
    created_shrinks[#created_shrinks + 1] = { step = 0, from = rows, to = to, chunks = (bs + to - 1) // to,
                                              error = msg, log = line }
    rows = to
  end
  local out = cfg.output
  os.execute("mkdir -p " .. sh_quote(out))
  -- a second run on this output is refused (pid in output/peftlua.lock); the writer (rank 0 of
  -- a distributed run) holds it. A resume waits up to 30 s for a crashed run's last process
  -- (an MPI rank the job's end is still killing) to let go.
  local lock <close> = writer and M.lock(out, cfg.resume and 30 or 0) or nil
  local ckpt = out .. "/checkpoint"
  local metrics_path = out .. "/metrics.jsonl"
  local best, evals_since = math.huge, 0
  local prior = { elapsed = 0, tokens = 0 }   -- what the run had done before a resume
  if cfg.resume and M.has_checkpoint(ckpt) then
    local pos, rows, cranks
    pos, best, evals_since, rows, cranks = decode_blob(tr:load(ckpt))
    if cranks ~= ranks then   -- the global batch is ranks x batch x accumulation
      error(string.format("peft.train.run: %s was written by a run over %d rank(s); resume it over %d (mpirun -np %d) to continue its trajectory",
        ckpt, cranks, cranks, cranks), 0)
    end
    it:restore(pos)
    if writer then trim_metrics(metrics_path, tr:stats().step) end
    prior = M.metrics_totals(metrics_path)
    if rows and rows < tr:stats().planned_rows then
      -- the run had shrunk before this checkpoint: re-plan the same way (same bits)
      tr:replan(rows)
      say("memory: resumed with %d rows per forward (micro-batch %d as %d chunks), as checkpointed",
          rows, bs, (bs + rows - 1) // rows)
    end
    say("resumed from %s at step %d", ckpt, tr:stats().step)
  elseif not cfg.resume and writer then
    os.remove(metrics_path)
  end
  rec:resolved(tr, { max_iters = total, max_seq_len = max_seq, eval_every = cfg.eval_every or 0,
                     save_every = cfg.save_every or 0, dataset = cfg.dataset, valid = cfg.valid, output = out })
  local metrics = rec:metrics(writer and assert(io.open(metrics_path, "a")) or peft.dist.null_file())   -- also to MLflow when tracked
  metrics:setvbuf("line")

  -- After an allocation failure (what: "step 17 retried"): re-plan at half the rows, log it,
  -- record it; or stop, saying what one row would need, when nothing smaller is left.
  local shrinks = {}
  local function record(sh)
    shrinks[#shrinks + 1] = sh
    metrics:write(string.format('{"step":%d,"event":"shrink","from_rows":%d,"to_rows":%d,"chunks":%d,"error":%s}\n',
      sh.step, sh.from, sh.to, sh.chunks, json_str(sh.error)))
  end
  for _, sh in ipairs(created_shrinks) do record(sh) end
  -- The engine's one shrink-and-retry policy (tr:recover: rewind; for "nomem", half the rows)
  -- after a step function returned nil, msg, status; raises when it cannot be retried.
  local function shrink_after(msg, status, step, what)
    local from, to = tr:recover(status, msg)
    if not from then
      if status ~= "nomem" then error(msg, 0) end
      local need = ""
      local okm, e = pcall(peft.memory.estimate, {
        model = model, method = mm_method, adapter = mm_adapter, feedforward = cfg.feedforward,
        batch_size = 1, seq_len = max_seq, checkpointing = cfg.checkpointing,
        lora_rank = lora_rank, targets = type(cfg.targets) == "table" and cfg.targets or nil,
        lora_dropout = cfg.lora_dropout, optimizer = cfg.optimizer, precision = cfg.precision,
        compute = cfg.compute })
      if okm then need = string.format(" (the memory model puts one row at %.1f MiB)", e.total / 2^20) end
      error(string.format("peft.train.run: memory: allocation failed (%s) with one row of %d tokens per forward%s; " ..
        "it needs more memory, a shorter max_seq_len%s%s", msg, max_seq, need,
        cfg.checkpointing and "" or ", checkpointing = true", method == "full" and "" or ' or method = "qlora"'), 0)
    end
    local chunks = (bs + to - 1) // to
    local line = string.format("memory: allocation failed (%s): micro-batch %d -> %d rows (x%d chunks), %s",
      msg, from, to, chunks, what)
    say("%s", line)
    record { step = step, from = from, to = to, chunks = chunks, error = msg, log = line }
  end

  local function phase(p) if cfg.on_phase then cfg.on_phase(p) end end
  local function evaluate()
    if not valid_ds then return nil end
    phase("evaluating")
    local function back(...) phase("training"); return ... end
    while true do
      local vit <close> = valid_ds:batches { batch_size = bs, shuffle = false, epochs = 1 }
      local sum, cnt, nb, failed, status = 0, 0, 0, nil, nil
      for b in vit do
        local s, c, st = tr:eval(b.ids, b.targets)
        if s == nil then failed, status = c, st; break end
        sum, cnt, nb = sum + s, cnt + c, nb + 1
        if cfg.eval_batches and cfg.eval_batches > 0 and nb >= cfg.eval_batches then break end
      end
      if not failed then return back(cnt > 0 and sum / cnt or nil) end
      shrink_after(failed, status, tr:stats().step, "evaluation retried")
    end
  end

  local progress = cfg.progress
  if progress == nil then progress = not quiet end
  local live = progress and M.isatty(2)
  local t_session = M.now()
  local t0, tokens, val = t_session - prior.elapsed, prior.tokens, nil
  local step0 = tr:stats().step
  local stop_reason

  local function save()
    phase("saving")
    if writer then tr:save(ckpt, encode_blob(it:state(), best, evals_since, tr:stats().planned_rows, ranks)) end
  end

  if step0 == 0 and cfg.eval_every and cfg.eval_every > 0 then
    val = evaluate()
    if val then
      metrics:write(string.format('{"step":0,"val_loss":%s}\n', num(val)))
      if cfg.on_eval then cfg.on_eval { step = 0, val_loss = val } end
    end
  end

  peft.memory.clear_timeline()
  M.catch_sigterm(true)
  local ok, err = pcall(function()
    -- One optimizer step; false when it failed to allocate and was rewound to be retried.
    local function attempt()
      local pos, tokens0 = it:state(), tokens
      local ok2, e2, status = pcall(function()
        repeat
          if M.interrupted() then error("interrupted (signal)", 0) end
          local b = it:next()
          tokens = tokens + (b.step_tokens or b.batch * b.seq)
          local loss, msg, stepped = tr:micro(b.ids, b.targets)
          if loss == nil then return msg, stepped end   -- out of memory / io: message, status
        until stepped
      end)
      if ok2 and e2 == nil then return true end
      -- a partly accumulated step is dropped; the checkpoint resumes at its first micro-batch
      tokens = tokens0
      if not ok2 then
        tr:rewind()
        it:restore(pos)
        error(e2, 0)
      end
      -- shrink first: the smaller plan frees memory that restoring the data position may need
      local step = tr:stats().step + 1
      local okr, er = pcall(shrink_after, e2, status, step, string.format("step %d retried", step))
      it:restore(pos)
      if not okr then error(er, 0) end
      return false
    end
    while tr:stats().step < total do
      if attempt() then
        local s = tr:stats()
        local el = M.now() - t0
        local tps = tokens / math.max(el, 1e-9)
        local done = s.step - step0
        local eta = done > 0 and (M.now() - t_session) / done * (total - s.step) or nil
        local mem = peft.memory.stats()
        local scaler = s.precision == "fp16"
          and string.format(',"loss_scale":%s,"skipped_steps":%d', num(s.loss_scale), s.skipped_steps) or ""
        local memstep = peft.memory.mark("step " .. s.step)
        metrics:write(string.format(
          '{"step":%d,"loss":%s,"lr":%s,"grad_norm":%s,"tokens":%d,"tokens_per_s":%s,"elapsed_s":%s,"rss":%d%s,%s}\n',
          s.step, num(s.loss), num(s.lr), num(s.grad_norm), s.tokens, num(tps), num(el), mem.rss, scaler,
          peft.memory.metrics_fields(memstep)))
        local info = { step = s.step, total = total, loss = s.loss, lr = s.lr, grad_norm = s.grad_norm,
                       tokens_per_s = tps, elapsed = el, eta = eta, val_loss = val,
                       loss_scale = s.loss_scale, skipped_steps = s.skipped_steps }
        if cfg.eval_every and cfg.eval_every > 0 and (s.step % cfg.eval_every == 0 or s.step == total) then
          val = evaluate()
          info.val_loss = val
          if val then
            metrics:write(string.format('{"step":%d,"val_loss":%s}\n', s.step, num(val)))
            if cfg.on_eval then cfg.on_eval { step = s.step, val_loss = val, loss = s.loss } end
            if val < best then
              best, evals_since = val, 0
              if writer and tr:stats().method ~= "full" and cfg.early_stopping then tr:save_adapter(out .. "/best") end
            else
              evals_since = evals_since + 1
            end
          end
        end
        if progress then
          local line = string.format("step %d/%d  loss %.4f  val %s  %.0f tok/s  ETA %s  mem %.0f MiB",
            s.step, total, s.loss, val and string.format("%.4f", val) or "-", tps, fmt_time(eta),
            mem.rss / 1048576)
          if live then io.stderr:write("\r", line, "\27[K") elseif s.step % 10 == 0 or s.step == total then
            io.stderr:write(line, "\n")
          end
        end
        if cfg.save_every and cfg.save_every > 0 and s.step % cfg.save_every == 0 then save(); phase("training") end
        if cfg.on_step and cfg.on_step(info) == false then stop_reason = "on_step"; break end
        if cfg.early_stopping and evals_since >= cfg.early_stopping then stop_reason = "early_stopping"; break end
      end
    end
  end)
  M.catch_sigterm(false)
  if live then io.stderr:write("\n") end
  if not ok then
    local msg = tostring(err)
    if msg:find("interrupt") then
      save()
      metrics:close()
      if writer then peft.memory.save_json(out .. "/memory.json") end   -- the steps taken so far
      M.clear_interrupt()
      local at = tr:stats().step
      tr:close()
      error(string.format("peft.train.run: interrupted at step %d; checkpoint saved in %s (resume = true continues)",
        at, ckpt), 0)
    end
    metrics:close()
    tr:close()
    error(err, 0)
  end
  save()
  metrics:close()
  if writer then assert(peft.memory.save_json(out .. "/memory.json")) end
  local s = tr:stats()
  if writer and cfg.save_adapter ~= false and s.method ~= "full" then tr:save_adapter(out .. "/adapter", M.base_model_id(model)) end
  local result = { steps = s.step, total = total, loss = s.loss, val_loss = val, best_val_loss = best < math.huge and best or nil,
                   tokens = s.tokens, elapsed = M.now() - t0, stopped = stop_reason, output = out,
                   method = s.method, params = s.params, metrics = metrics_path,
                   precision = s.precision, loss_scale = s.loss_scale, skipped_steps = s.skipped_steps,
                   shrinks = shrinks, planned_rows = s.planned_rows, batch_size = bs, grad_accum = ga,
                   ranks = ranks, rank = rank, rank_choice = rec.rank_choice }
  result.memory = out .. "/memory.json"
  result.trainer = tr   -- still open: merge, save_adapter, eval; closed by the caller or the GC
  result.resumed_from = step0 > 0 and step0 or nil
  if rr then result.report = peft.run_report.finish(rr, result) end
  say("trained %d steps%s (%s, %d parameters) in %.1f s; loss %.4f%s", s.step,
    step0 > 0 and string.format(" (%d after resuming at step %d)", s.step - step0, step0) or "", s.method, s.params,
    result.elapsed, s.loss, val and string.format(", validation %.4f", val) or "")
  return result
end

-- The run record (lua/peft/track.lua): output/run.json from the start (status running) to the
-- end (finished / failed / killed, with the error), and the MLflow run when tracking is asked for.
-- A non-empty output folder is refused unless resume (continue) or overwrite (what a run
-- writes there is removed first); checked before the run record writes into it.
-- A folder holding only a run.json (a run that stopped before writing anything else, e.g.
-- refused for memory) is reused: there is nothing to lose.
local function prepare_output(cfg)   -- errors point at the line that called peft.train.run
  local entries = M.output_entries(cfg.output)
  -- a lock file: a live holder refuses this run by name and pid (M.lock raises); a stale one
  -- (its process gone) is no content of the output
  for i = #(entries or {}), 1, -1 do
    if entries[i] == "peftlua.lock" then
      table.remove(entries, i)
      if not cfg.resume then M.lock(cfg.output, 0):release() end   -- resume waits for it in run()
    end
  end
  if entries and #entries == 0 then entries = nil end
  if entries and #entries == 1 and entries[1] == "run.json" then entries = nil end
  if entries and not cfg.resume then
    if not cfg.overwrite then
      error(string.format("peft.train.run: output '%s' is not empty (%s); set resume = true to continue that run or overwrite = true to replace it",
        cfg.output, table.concat(entries, ", ", 1, math.min(#entries, 6)) .. (#entries > 6 and ", ..." or "")), 3)
    end
    for _, e in ipairs { "checkpoint", "adapter", "best", "metrics.jsonl", "memory.json", "run.json", "report.html" } do
      os.execute("rm -rf " .. sh_quote(cfg.output .. "/" .. e))
    end
  end
end

function M.run(cfg)
  check_config(cfg)
  -- several ranks: rank 0 alone keeps the record (run.json, MLflow) and prepares the output
  local follower = peft.dist.enabled(cfg.distributed) and peft.dist.rank() ~= 0
  if not follower then prepare_output(cfg) end
  -- resume without lora_rank: the suggestion recorded by the run being continued (its
  -- run.json), not a new one (the budget, and so the suggestion, may have changed)
  local resumed_rank
  if cfg.resume and cfg.lora_rank == nil and M.has_checkpoint(cfg.output .. "/checkpoint") then
    local f = io.open(cfg.output .. "/run.json", "rb")
    local okj, prev = false, nil
    if f then okj, prev = pcall(peft.memory.decode_json, f:read("a")); f:close() end
    local c = okj and type(prev) == "table" and prev.choices and prev.choices.lora_rank
    local res = okj and type(prev) == "table" and prev.resolved
    if type(c) == "table" and math.type(c.value) == "integer" then
      resumed_rank = { value = c.value, alpha = c.alpha or (res and res.lora_alpha), reason = "resumed: " .. tostring(c.reason),
                       reasons = c.reasons }
    end
  end
  local rec = follower and peft.dist.null_record() or peft.track.start(cfg)
  rec.resumed_rank = resumed_rank
  local ok, res = pcall(run, cfg, rec)
  rec:finish(ok, res)
  if not ok then error(res, 0) end
  return res
end

return M
