-- lua/peft/tune_rank.lua — peft.tune.suggest_rank: a LoRA rank (and alpha) from the data.
-- Owner: tune (issue 14). The rule and where its constants come from: docs/tune.md
-- ("Rank from the data").
--
--   local s = peft.tune.suggest_rank(model, "train.jsonl" | profile, {
--     targets = {"q_proj", "v_proj"},     -- the projections the adapter goes on (or "all")
--     steps = 200, batch_size = 4,        -- the run's budget: what it will train on (optional)
--     max_seq_len = 256, format =, ...    -- passed to peft.data.profile when data is a path
--     bits_per_width = 27, min_rank = 2, max_rank = 64,
--   })
--   s.rank, s.alpha, s.reasons = {"...", ...}, s.profile, s.bits, s.capacity_per_rank, s.raw
--
-- The rule: the information the targets hold beyond what the base model already predicts is
-- at most (target tokens the run sees) x (base model's loss in nats per token) / ln 2 bits.
-- Each unit of LoRA rank takes up about 27 bits per unit of the model's width (hidden size d)
-- of it within the run: a constant fitted on five rank sweeps with the learning rate tuned per
-- rank (stories260K on four datasets, SmolLM2-135M on WikiSQL) and tested on two held out
-- (docs/tune.md). The rank is the smallest power of two that holds the information, kept within
-- [min_rank, min(max_rank, d / 4)]: past a quarter of the width the adapter is no longer low
-- rank, and no sweep gained from it. Alpha is 16 sqrt(rank / 8): rsLoRA's rank-stable scaling
-- (Kalajdzievski 2023) anchored at the default rank-8, alpha-16 adapter; with it the best
-- learning rate hardly moves with the rank (the sweeps), so the rank can change alone.
local M = {}

local ALL = { "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj" }

local function commas(n)
  local s = string.format("%d", math.floor(n + 0.5))
  local out = s:reverse():gsub("(%d%d%d)", "%1,"):reverse()
  return (out:gsub("^,", ""))
end

-- LoRA parameters per unit of rank on these targets, from the memory model.
function M.params_per_rank(model, targets)
  local function tp(r)
    return peft.memory.estimate { model = model, method = "lora", lora_rank = r, targets = targets,
                                  batch_size = 1, seq_len = 8 }.trained_params
  end
  return tp(2) - tp(1)
end

local KEYS = { targets = true, steps = true, batch_size = true, bits_per_width = true, min_rank = true,
               max_rank = true, max_seq_len = true, format = true, chat_template = true, train_on_prompt = true,
               skip_bad = true, valid_fraction = true, seed = true, loss_examples = true }

function M.suggest(model, data, opts)
  opts = opts or {}
  for k in pairs(opts) do
    if not KEYS[k] then error(string.format("peft.tune.suggest_rank: unknown option '%s'", tostring(k)), 3) end
  end
  if type(model) == "string" then model = peft.model.load(model) end
  local prof = data
  if type(data) ~= "table" then
    prof = peft.data.profile(model, data, { max_seq_len = opts.max_seq_len, format = opts.format,
      chat_template = opts.chat_template, train_on_prompt = opts.train_on_prompt, skip_bad = opts.skip_bad,
      valid_fraction = opts.valid_fraction, seed = opts.seed, loss_examples = opts.loss_examples })
  end
  if type(prof.target_tokens) ~= "number" then error("peft.tune.suggest_rank: data must be a dataset or a peft.data.profile table", 3) end
  local targets = opts.targets or { "q_proj", "v_proj" }
  if targets == "all" then targets = ALL end
  if type(targets) == "string" then targets = { targets } end
  local bpw = opts.bits_per_width or 27
  local d = model:config().dim
  local rmin = opts.min_rank or 2
  local rmax = math.max(rmin, math.min(opts.max_rank or 64, d // 4))
  local reasons = {}
  local function why(...) reasons[#reasons + 1] = string.format(...) end
  local L = prof.base_loss
  why("%s examples, %s target tokens (per example: mean %.1f, median %d, p95 %d); %s distinct target tokens, %.2f distinct per target token over the first 2000, unigram entropy %.2f bits",
    commas(prof.examples), commas(prof.target_tokens), prof.target_lengths.mean, prof.target_lengths.median,
    prof.target_lengths.p95, commas(prof.target_vocab), prof.target_ttr, prof.target_entropy_bits)
  local seen = prof.target_tokens
  if opts.steps and opts.batch_size then
    local per_run = opts.steps * opts.batch_size * prof.target_lengths.mean
    if per_run < seen then
      why("the run trains on about %s target tokens (%d steps x batch %d x %.1f per example), fewer than the dataset holds",
        commas(per_run), opts.steps, opts.batch_size, prof.target_lengths.mean)
      seen = per_run
    else
      why("the run sees every target token at least once (%d steps x batch %d); repeats add no new information",
        opts.steps, opts.batch_size)
    end
  end
  if not L then
    L = prof.target_entropy_bits * math.log(2)
    why("no base-model loss measured: the targets' unigram entropy (%.2f nats per token) stands in for it", L)
  else
    why("the base model's loss on the targets is %.3f nats per token (over %d examples): what it does not predict yet",
      L, prof.loss_examples or 0)
  end
  local bits = seen * L / math.log(2)
  local p1 = M.params_per_rank(model, targets)
  local cap = bpw * d
  local raw = bits / cap
  why("so the adapter has at most %s bits to learn; one unit of rank takes up about %s bits within a run on this model (%g bits x width %d, fitted on rank sweeps: docs/tune.md), so rank %.2f holds them",
    commas(bits), commas(cap), bpw, d, raw)
  local r = rmin
  while r < raw and r < rmax do r = r * 2 end
  r = math.max(rmin, math.min(rmax, r))
  if raw > rmax then
    why("more than rank %d would hold: capped at %d (%s)", rmax, rmax,
      rmax < (opts.max_rank or 64) and string.format("a quarter of the width %d", d) or "past it the adapter is no longer cheap")
  elseif raw <= rmin then
    why("rank %d, the smallest suggested, already holds it", rmin)
  else
    why("rounded up to a power of two: rank %d", r)
  end
  why("LoRA on %s: %s parameters per unit of rank, %s in all", table.concat(targets, ", "), commas(p1), commas(r * p1))
  local alpha = 16 * math.sqrt(r / 8)
  why("alpha %.4g = 16 sqrt(rank / 8): rsLoRA scaling anchored at the default rank-8, alpha-16 adapter", alpha)
  return { rank = r, alpha = alpha, reasons = reasons, profile = prof, bits = bits, params_per_rank = p1, raw = raw,
           targets = targets, bits_per_width = bpw, capacity_per_rank = cap, max_rank = rmax }
end

-- The suggestion peft.train.run makes when lora_rank is not given: the run's own data split,
-- sequence length, targets and budget (max_iters steps of `batch` examples, when given).
function M.for_run(model, cfg, max_seq, batch)
  return M.suggest(model, cfg.dataset, {
    targets = cfg.targets, steps = cfg.max_iters, batch_size = cfg.max_iters and batch or nil,
    max_seq_len = max_seq, format = cfg.format, chat_template = cfg.chat_template,
    train_on_prompt = cfg.train_on_prompt, skip_bad = cfg.skip_bad,
    valid_fraction = cfg.valid == nil and cfg.valid_fraction or nil, seed = cfg.seed,
  })
end

return M
