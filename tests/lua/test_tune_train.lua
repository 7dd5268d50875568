-- tests/lua/test_tune_train.lua — issue 14 on stories260K (seconds): the rank suggested from
-- the data (and recorded by peft.train.run when lora_rank is unset), peft.tune.train's memory
-- check (infeasible configurations never started), an injected out-of-memory trial recorded as
-- failed while the search goes on, a killed search resumed from its history to the same
-- proposals, ASHA's promotions, and the search against random search (direction).
-- Owner: tune.
local T = require "testlib"
local GGUF = T.shared .. "/models/stories260K/stories260K.gguf"
local TRAIN = T.shared .. "/data/wikisql/train.jsonl"
local VALID = T.shared .. "/data/wikisql/valid.jsonl"
local ALL = { "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj" }

local function read_json(p)
  local f = assert(io.open(p, "rb"))
  local s = f:read("a"); f:close()
  return peft.memory.decode_json(s)
end

local function opts(out, extra)
  local o = { model = GGUF, dataset = TRAIN, valid = VALID, output = out,
    space = { learning_rate = { 1e-4, 3e-2, log = true }, lora_rank = { 2, 4, 8, 16, 32, 64 },
              targets = { { "q_proj", "v_proj" }, "all" } },
    trials = 6, budget = { steps = 8 }, min_steps = 2, eta = 2, batch_size = 4, max_seq_len = 32,
    eval_batches = 2, seed = 3, n_init = 3, quiet = true }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

local function params_key(p)
  return string.format("%.6g|%d|%s", p.learning_rate, p.lora_rank,
    type(p.targets) == "table" and table.concat(p.targets, ",") or tostring(p.targets))
end

return {
  -- the profile's numbers against a direct count, and the rule's arithmetic from its parts
  suggest_rank_from_profile = function()
    local m <close> = peft.model.load(GGUF)
    local p = peft.data.profile(m, TRAIN, { max_seq_len = 64, loss_examples = 8 })
    T.eq(p.examples, 1000)
    local ds = peft.data.load(TRAIN, { tokenizer = m, max_seq_len = 64 })
    local tt = 0
    for i = 1, ds:count() do tt = tt + ds:example(i).n_target end
    T.eq(p.target_tokens, tt, "target tokens")
    T.ok(p.base_loss > 3 and p.base_loss < 8, "base loss " .. tostring(p.base_loss))   -- ~5.3: wikisql is new to it
    T.ok(p.target_vocab > 50 and p.target_vocab <= 512, "vocabulary " .. p.target_vocab)
    local s = peft.tune.suggest_rank(m, p, { targets = { "q_proj", "v_proj" } })
    local p1 = peft.memory.estimate { model = m, method = "lora", lora_rank = 2, targets = { "q_proj", "v_proj" }, batch_size = 1, seq_len = 8 }.trained_params
             - peft.memory.estimate { model = m, method = "lora", lora_rank = 1, targets = { "q_proj", "v_proj" }, batch_size = 1, seq_len = 8 }.trained_params
    T.eq(s.params_per_rank, p1)
    local d = m:config().dim
    T.near(s.raw, p.target_tokens * p.base_loss / math.log(2) / (27 * d), 1e-9)
    T.eq(s.max_rank, d // 4, "capped at a quarter of the width")
    T.eq(s.rank, d // 4, "the whole sample is far more than a tiny model's small ranks hold")
    T.near(s.alpha, 16 * math.sqrt(s.rank / 8), 1e-9)
    -- a run that sees little of it: a small rank
    local small = peft.tune.suggest_rank(m, p, { steps = 2, batch_size = 1 })
    local want = 2
    while want < small.raw and want < d // 4 do want = want * 2 end
    T.eq(small.rank, want)
    T.ok(small.rank < d // 4, "2 examples need less than the whole set: " .. small.rank)
    T.ok(#small.reasons >= 5)
    T.ok(small.reasons[2]:find("trains on about", 1, true), small.reasons[2])
  end,

  -- lora_rank unset: peft.train.run takes the suggestion and records it (run.json, result)
  train_run_records_suggested_rank = function()
    local out = T.tmp .. "/tune_rank_run"
    os.execute("rm -rf '" .. out .. "'")
    local r = peft.train.run { model = GGUF, dataset = TRAIN, valid = VALID, output = out, max_iters = 3,
      batch_size = 2, max_seq_len = 32, quiet = true, report = false }
    local m <close> = peft.model.load(GGUF)
    local s = peft.tune.suggest_rank(m, TRAIN, { max_seq_len = 32, steps = 3, batch_size = 2 })
    T.eq(r.rank_choice.value, s.rank)
    T.eq(r.trainer:config().lora_rank, s.rank)
    T.near(r.trainer:config().lora_alpha, s.alpha, 1e-4)
    r.trainer:close()
    local doc = read_json(out .. "/run.json")
    T.eq(doc.choices.lora_rank.value, s.rank)
    T.ok(doc.choices.lora_rank.reason:find("suggested from the data", 1, true))
    T.eq(#doc.choices.lora_rank.reasons, #s.reasons)
    T.eq(doc.choices.lora_rank.reasons[#s.reasons], s.reasons[#s.reasons])
    -- given: recorded as given, no profile
    os.execute("rm -rf '" .. out .. "'")
    local r2 = peft.train.run { model = GGUF, dataset = TRAIN, output = out, max_iters = 1, batch_size = 2,
      max_seq_len = 32, quiet = true, report = false, lora_rank = 4 }
    r2.trainer:close()
    T.eq(r2.rank_choice, nil)
    T.eq(read_json(out .. "/run.json").choices.lora_rank.reason, "given")
  end,

  -- a memory budget between the smallest and the largest configuration: the search runs only
  -- what the memory model says fits, each at the batch autosize gives
  infeasible_never_started = function()
    local m <close> = peft.model.load(GGUF)
    local function one_row(rank, targets)
      return peft.memory.estimate { model = m, method = "lora", lora_rank = rank, targets = targets, batch_size = 1, seq_len = 32 }.total
    end
    local lo, hi = one_row(2, { "q_proj", "v_proj" }), one_row(64, ALL)
    local budget = math.floor(lo + 0.3 * (hi - lo))
    local out = T.tmp .. "/tune_mem"
    os.execute("rm -rf '" .. out .. "'")
    local res = peft.tune.train(opts(out, { memory_budget = budget, trials = 6, min_steps = 8 }))
    T.ok(res.rejected_by_memory > 0, "the optimiser proposed infeasible points that were refused")
    T.eq(#res.trials, 6)
    for _, t in ipairs(res.trials) do
      local tg = t.params.targets == "all" and ALL or t.params.targets
      local fit = peft.memory.autosize { model = m, method = "lora", lora_rank = t.params.lora_rank, targets = tg,
        effective_batch = 4, max_seq_len = 32, seq_len = 32, budget = budget }
      T.ok(fit, "trial " .. t.id .. " fits the budget")
      T.ok(one_row(t.params.lora_rank, tg) <= budget)
      T.eq(t.fit.batch_size, fit.batch_size)
      T.eq(t.fit.grad_accum, fit.grad_accum)
      T.eq(t.fit.batch_size * t.fit.grad_accum, 4)
      T.ok(t.fit.predicted_total <= budget)
      T.eq(t.status, "ok")
    end
    -- and the refused ones exist: rank 64 on every projection does not fit
    T.eq(peft.memory.autosize { model = m, method = "lora", lora_rank = 64, targets = ALL, effective_batch = 4,
      max_seq_len = 32, seq_len = 32, budget = budget }, nil)
    -- the run directories are the trials': nothing else was started
    local rc, ls = T.sh("ls '" .. out .. "' | grep -c '^trial-'")
    T.eq(tonumber(ls), 6)
  end,

  -- trial 2 runs out of memory (the allocator's budget cut for its run): failed, told to the
  -- GP as a failure, the search goes on and the report lists it
  injected_oom_is_a_failed_trial = function()
    local out = T.tmp .. "/tune_oom"
    os.execute("rm -rf '" .. out .. "'")
    local res = peft.tune.train(opts(out, { min_steps = 8, before_trial = function(t)
      if t.id == 2 then peft.memory.budget(peft.memory.stats().total.current + 4096) end
    end }))
    T.eq(peft.memory.budget(), 0, "the allocator's budget is restored after the trial")
    T.eq(#res.trials, 6)
    T.eq(res.trials[2].status, "failed")
    T.ok(res.trials[2].reason:find("out of memory", 1, true), res.trials[2].reason)
    local ok = 0
    for i = 3, 6 do if res.trials[i].status == "ok" then ok = ok + 1 end end
    T.eq(ok, 4, "the trials after the failure ran")
    local doc = read_json(out .. "/tune.json")
    T.eq(doc.trials[2].status, "failed")
    T.ok(res.best and res.best.id ~= 2)
    local f = assert(io.open(out .. "/tune.html")); local html = f:read("a"); f:close()
    T.ok(html:find("failed: out of memory", 1, true))
  end,

  -- killed (the process exits in the middle of trial 4) and started again: the same proposals,
  -- the same values, as the search that was never interrupted
  killed_search_resumes = function()
    local script = T.tmp .. "/tune_kill.lua"
    local f = assert(io.open(script, "w"))
    f:write(string.format([[
local out, kill = arg[1], arg[2] == "kill"
local res = peft.tune.train { model = %q, dataset = %q, valid = %q, output = out,
  space = { learning_rate = { 1e-4, 3e-2, log = true }, lora_rank = { 2, 4, 8, 16, 32, 64 }, targets = { { "q_proj", "v_proj" }, "all" } },
  trials = 6, budget = { steps = 8 }, min_steps = 2, eta = 2, batch_size = 4, max_seq_len = 32, eval_batches = 2, seed = 5,
  n_init = 3, quiet = true,
  before_trial = function(t) if kill and t.id == 4 and t.rung == 1 then os.exit(9) end end }
for _, t in ipairs(res.trials) do
  print(string.format("trial %%d %%.6g %%d %%s %%s", t.id, t.params.learning_rate, t.params.lora_rank,
    type(t.params.targets) == "table" and table.concat(t.params.targets, ",") or t.params.targets,
    t.rungs and t.rungs[1] and string.format("%%.8f", t.rungs[1].value) or "-"))
end
print("best", res.best.id)
]], GGUF, TRAIN, VALID))
    f:close()
    local a, b = T.tmp .. "/tune_kill_a", T.tmp .. "/tune_kill_b"
    os.execute("rm -rf '" .. a .. "' '" .. b .. "'")
    local env = "PEFT_THREADS=1 "
    local rc1, whole = T.sh(env .. T.host .. " " .. script .. " " .. a)
    T.eq(rc1, 0, whole)
    local rc2, killed = T.sh(env .. T.host .. " " .. script .. " " .. b .. " kill")
    T.eq(rc2, 9, killed)
    local doc = read_json(b .. "/tune.json")
    T.eq(#doc.trials, 4, "three trials done and the fourth started when it was killed")
    T.eq(doc.trials[4].status, "running")
    local rc3, resumed = T.sh(env .. T.host .. " " .. script .. " " .. b)
    T.eq(rc3, 0, resumed)
    T.eq(resumed, whole, "the resumed search equals the uninterrupted one")
    T.ok(select(2, whole:gsub("\ntrial", "")) >= 5)
  end,

  -- ASHA: every promotion is earned (top 1/eta of its rung at the time) and the best trial ends
  -- at the full budget; multi-fidelity ran fewer steps than every trial to the end
  asha_promotions = function()
    local out = T.tmp .. "/tune_asha"
    os.execute("rm -rf '" .. out .. "'")
    local res = peft.tune.train(opts(out, { trials = 8 }))
    T.eq(table.concat(res.rungs, ","), "2,4,8")
    T.eq(res.best.steps, 8)
    T.ok(res.steps_run < res.steps_all_to_end, string.format("%d < %d", res.steps_run, res.steps_all_to_end))
    local reached = { 0, 0, 0 }
    for _, t in ipairs(res.trials) do
      T.ok(t.rungs and #t.rungs >= 1)
      reached[#t.rungs] = reached[#t.rungs] + 1
      T.eq(t.steps, res.rungs[#t.rungs])
      -- the value at each rung is the validation loss of the curve at that step
      for k, rv in ipairs(t.rungs) do
        local found
        for _, c in ipairs(t.curve) do if c.step == rv.step then found = c.val_loss end end
        T.near(rv.value, found, 1e-8)
      end
    end
    T.ok(reached[1] > 0 and reached[3] >= 1, table.concat(reached, ","))
    -- the best trial's full-budget value is the minimum over trials that reached the top
    for _, t in ipairs(res.trials) do
      if #t.rungs == 3 and t.id ~= res.best.id then T.ok(t.rungs[3].value >= res.best.value) end
    end
    local f = assert(io.open(out .. "/tune.html")); local html = f:read("a"); f:close()
    T.ok(select(2, html:gsub("<img", "")) >= 5, "best so far, learning curves, one chart per hyperparameter")
  end,

  -- the Bayesian search against random search with the same trials, seeds 1-3 of the 10-seed study
  -- (tests/bench/tune_search.lua, numbers in docs/tune.md): the median best validation loss is lower
  bayes_beats_random = function()
    local B = assert(loadfile(T.root .. "/tests/bench/tune_search.lua"))("tune_search")
    local mb, mr = B.study(3, 12, 30)
    T.ok(mb < mr, string.format("median best: bayes %.4f, random %.4f", mb, mr))
  end,
}
