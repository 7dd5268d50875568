-- tests/bench/rank_sweep.lua — the rank rule (peft.tune.suggest_rank) against a sweep of LoRA
-- ranks 2..64 trained for the same steps on one dataset.
--
--   PEFT_THREADS=1 build/peftlua tests/bench/rank_sweep.lua --data wikisql|alpaca|chat|text|alpaca_pc|chat_pc
--       [--model PATH] [--steps 40] [--batch 4] [--seq 128] [--lr 5e-4] [--ranks 2,4,8,16,32,64]
--       [--eval-batches 8] [--alpha sqrt|2r] [--chat-template false] [--out FILE.json]
--       [--lrs 5e-4,1.5e-3,4.5e-3 [--extend 2] | --walk 3] [--seed 42]
--
-- Every rank: peft.train.run with lora_alpha = 16 sqrt(rank / 8) (--alpha sqrt, the default: the
-- suggestion's alpha, the update size of the default rank-8 alpha-16 adapter at every rank) or
-- 2 x rank (--alpha 2r), targets q_proj/v_proj, the same seed,
-- data order and steps; the validation loss at the end. The suggestion is made first, from the
-- data and the same budget (steps x batch), before any sweep run. Resumable: ranks already in
-- FILE.json are skipped. --lrs: every rank at each learning rate of the grid, and at its best one
-- (a fair capacity sweep: under Adam the step size of W grows with rank and alpha, so one shared
-- learning rate favours the larger ranks); when a rank's best is at an end of the grid, the grid
-- goes on one factor further on that side, up to --extend times. --walk F: a line search per
-- rank on the learning-rate lattice --lr x F^k, starting at the previous rank's best (the first
-- rank at --lr): the start and both neighbours, then on in the better direction while the loss
-- falls (at least 3 runs per rank; the best has a worse run on each side). Prints the table (and writes FILE.json after every rank). A benchmark:
-- it prints, it never fails.
local here = debug.getinfo(1, "S").source:sub(2):match("^(.*)/tests/bench/") or "."
local shared = os.getenv("PEFT_SHARED") or (here .. "/tests/fixtures/shared")
local o = { model = os.getenv("PEFT_MODEL") or (here .. "/models/SmolLM2-135M-Instruct.Q4_1.gguf"), steps = 40, batch = 4,
            seq = 128, lr = 5e-4, ranks = "2,4,8,16,32,64", eval_batches = 8, alpha = "sqrt", chat_template = "",
            lrs = "", extend = 2, walk = 0, seed = 42 }
do
  local i = 1
  while arg and arg[i] do
    local a = arg[i]
    local v = assert(arg[i + 1], a .. " needs a value")
    local k = a:gsub("^%-%-", ""):gsub("%-", "_")
    if o[k] == nil and k ~= "data" and k ~= "out" then error("rank_sweep.lua: unknown argument " .. a) end
    o[k] = (k ~= "lrs" and tonumber(v)) or v
    i = i + 2
  end
end
local DATA = {
  wikisql = { dataset = shared .. "/data/wikisql/train.jsonl", valid = shared .. "/data/wikisql/valid.jsonl" },
  alpaca = { dataset = shared .. "/data/alpaca-demo/alpaca_en_demo.json", valid_fraction = 0.1 },
  chat = { dataset = shared .. "/data/chat-demo/dummy_conversation.messages.jsonl", valid_fraction = 0.1 },
  text = { dataset = shared .. "/data/text/tinystories_sample.txt" },   -- stories260K's own domain (as JSON lines below)
}
-- for a model without a chat template (stories260K): the alpaca and chat records as prompt /
-- completion lines, rendered [BOS] prompt completion [EOS] (chat_template = false): the same
-- text, the same targets (the answer; the last assistant turn of a chat)
local C = require "peft.compare"
local jstr = C.to_json                     -- a string as a JSON string
local function as_completion(name, path, format)
  local recs = assert(peft.data.read(path, { format = format }))
  local out = here .. "/build/tmp/rank_sweep_" .. name .. ".jsonl"
  os.execute("mkdir -p '" .. here .. "/build/tmp'")
  local f = assert(io.open(out, "w"))
  for _, r in ipairs(recs) do
    local p, c
    if r.messages then
      local parts = {}
      for i = 1, #r.messages - 1 do parts[#parts + 1] = r.messages[i].role .. ": " .. r.messages[i].content end
      p, c = table.concat(parts, "\n") .. "\nassistant:", " " .. r.messages[#r.messages].content
    else
      p, c = r.instruction .. ((r.input or "") ~= "" and ("\n" .. r.input) or "") .. "\n", r.output
    end
    f:write('{"prompt":', jstr(p), ',"completion":', jstr(c), '}\n')
  end
  f:close()
  return out
end
if o.data == "text" then   -- one {"text": line} record per line of the plain-text sample
  local out = here .. "/build/tmp/rank_sweep_text.jsonl"
  os.execute("mkdir -p '" .. here .. "/build/tmp'")
  local f = assert(io.open(out, "w"))
  for line in io.lines(DATA.text.dataset) do if line:match("%S") then f:write('{"text":', jstr(line), '}\n') end end
  f:close()
  DATA.text = { dataset = out, valid_fraction = 0.2 }
elseif o.data == "alpaca_pc" then
  DATA.alpaca_pc = { dataset = as_completion("alpaca", DATA.alpaca.dataset, "alpaca"), valid_fraction = 0.1 }
elseif o.data == "chat_pc" then
  DATA.chat_pc = { dataset = as_completion("chat", DATA.chat.dataset, "chat"), valid_fraction = 0.1 }
end
local d = assert(DATA[o.data], "--data wikisql|alpaca|chat|text|alpaca_pc|chat_pc")
local out = o.out or (here .. "/build/tmp/rank_sweep_" .. o.data .. ".json")
local doc = C.load(out) or { runs = {} }
doc.config = { model = o.model, data = o.data, dataset = d.dataset, valid = d.valid, valid_fraction = d.valid_fraction,
  steps = o.steps, batch_size = o.batch, max_seq_len = o.seq,
  learning_rate = o.walk > 1 and string.format("best per rank on %g x %g^k", o.lr, o.walk) or (o.lrs ~= "" and ("best of " .. o.lrs) or o.lr),
  eval_batches = o.eval_batches,
  targets = { "q_proj", "v_proj" }, alpha = o.alpha == "2r" and "2 x rank" or "16 sqrt(rank / 8)", seed = o.seed,
  chat_template = o.chat_template == "false" and false or nil }
local chat_template = o.chat_template == "false" and false or nil   -- false: [BOS] prompt completion [EOS]
local function alpha_of(r) return o.alpha == "2r" and 2 * r or 16 * math.sqrt(r / 8) end
local function save()
  local f = assert(io.open(out .. ".tmp", "w")); f:write(C.to_json(doc), "\n"); f:close()
  assert(os.rename(out .. ".tmp", out))
end
local threads = os.getenv("PEFT_THREADS") or tostring(peft.hw.threads())
print(string.format("rank sweep: %s on %s, %d steps of batch %d x %d tokens, lr %g, threads %s", o.model:match("[^/]+$"),
  o.data, o.steps, o.batch, o.seq, o.lr, threads))
if not doc.suggestion then
  local m = peft.model.load(o.model)
  local t0 = peft.train.now()
  local s = peft.tune.suggest_rank(m, d.dataset, { max_seq_len = o.seq, valid_fraction = d.valid_fraction, chat_template = chat_template, format = d.format,
    steps = o.steps, batch_size = o.batch, targets = { "q_proj", "v_proj" } })
  doc.suggestion = { rank = s.rank, alpha = s.alpha, reasons = s.reasons, raw = s.raw, bits = s.bits,
    params_per_rank = s.params_per_rank, profile = s.profile, seconds = peft.train.now() - t0 }
  m:close()
  save()
end
print("suggested rank " .. doc.suggestion.rank .. ":")
for _, r in ipairs(doc.suggestion.reasons) do print("  " .. r) end
local LRS = {}
for v in tostring(o.lrs):gmatch("[^,]+") do LRS[#LRS + 1] = assert(tonumber(v), "--lrs: numbers separated by commas") end
if #LRS == 0 then LRS = { o.lr } end
table.sort(LRS)
local all = {}                             -- rank .. "@" .. lr -> run
for _, r in ipairs(doc.runs) do all[r.rank .. "@" .. string.format("%.3g", r.lr or doc.config.learning_rate)] = r end
local function one(rank, lr)
  local key = rank .. "@" .. string.format("%.3g", lr)
  if all[key] then return all[key] end
  local dir = here .. "/build/tmp/rank_sweep/" .. o.data .. "-r" .. rank .. "-lr" .. string.format("%.3g", lr) .. "-s" .. o.seed
  os.execute("rm -rf '" .. dir .. "'")
  local t0 = peft.train.now()
  local r = peft.train.run { model = o.model, dataset = d.dataset, valid = d.valid, valid_fraction = d.valid_fraction,
    output = dir, max_iters = o.steps, batch_size = o.batch, max_seq_len = o.seq, learning_rate = lr,
    lora_rank = rank, lora_alpha = alpha_of(rank), targets = { "q_proj", "v_proj" }, eval_every = o.steps, chat_template = chat_template, format = d.format,
    eval_batches = o.eval_batches, seed = o.seed, quiet = true, report = false }
  local v = r.val_loss
  if v ~= v then v = math.huge end         -- a diverged run: the worst loss
  local rec = { rank = rank, lr = lr, alpha = alpha_of(rank), val_loss = v, params = r.params, loss = r.loss, wall_s = peft.train.now() - t0 }
  r.trainer:close()
  collectgarbage()
  doc.runs[#doc.runs + 1] = rec
  all[key] = rec
  table.sort(doc.runs, function(a, b) return a.rank < b.rank or (a.rank == b.rank and (a.lr or 0) < (b.lr or 0)) end)
  save()
  print(string.format("rank %2d lr %-8.3g: %8d parameters, validation loss %.4f (%.0f s)", rank, lr, rec.params, rec.val_loss, rec.wall_s))
  return rec
end
local done = {}                            -- rank -> its best run over the learning rates
local prev_k                               -- --walk: the previous rank's best lattice point
for rs in tostring(o.ranks):gmatch("%d+") do
  local rank = math.tointeger(tonumber(rs))
  local best
  if o.walk > 1 then
    local k0 = prev_k or 0
    local function at(k) return one(rank, o.lr * o.walk ^ k), k end
    local b, bk = at(k0)
    local lo, hi = at(k0 - 1), at(k0 + 1)
    local dir
    if lo.val_loss < b.val_loss and lo.val_loss <= hi.val_loss then b, bk, dir = lo, k0 - 1, -1
    elseif hi.val_loss < b.val_loss then b, bk, dir = hi, k0 + 1, 1 end
    while dir do
      local n = at(bk + dir)
      if n.val_loss < b.val_loss then b, bk = n, bk + dir else break end
    end
    prev_k, done[rank] = bk, b
    goto next_rank
  end
  local grid = { table.unpack(LRS) }
  for _, lr in ipairs(grid) do
    local rec = one(rank, lr)
    if not best or rec.val_loss < best.val_loss then best = rec end
  end
  if #grid > 1 then                        -- the best at an end of the grid: go one factor further
    local ext = 0
    while ext < o.extend do
      local lo, hi = grid[1], grid[#grid]
      local nxt
      if best.lr == hi then nxt = hi * grid[#grid] / grid[#grid - 1]; grid[#grid + 1] = nxt
      elseif best.lr == lo then nxt = lo * grid[1] / grid[2]; table.insert(grid, 1, nxt)
      else break end
      local rec = one(rank, nxt)
      if rec.val_loss < best.val_loss then best = rec end
      ext = ext + 1
    end
  end
  done[rank] = best
  ::next_rank::
end
local best_runs = {}
for _, r in pairs(done) do best_runs[#best_runs + 1] = r end
table.sort(best_runs, function(a, b) return a.rank < b.rank end)
doc.best_per_rank = best_runs
-- the verdict
local best
for _, r in ipairs(best_runs) do if not best or r.val_loss < best.val_loss then best = r end end
local sug = done[doc.suggestion.rank]
print(string.format("%-6s %10s %10s %8s %8s", "rank", "params", "val loss", "lr", "vs best"))
local smallest
for _, r in ipairs(best_runs) do
  local rel = 100 * (r.val_loss - best.val_loss) / best.val_loss
  if rel <= 2 and (not smallest or r.rank < smallest.rank) then smallest = r end
  print(string.format("%-6d %10d %10.4f %8.3g %+7.2f%%%s", r.rank, r.params, r.val_loss, r.lr or o.lr, rel,
    r.rank == doc.suggestion.rank and "  <- suggested" or (r == best and "  <- best" or "")))
end
if sug then
  doc.verdict = { suggested = sug.rank, suggested_val = sug.val_loss, best_rank = best.rank, best_val = best.val_loss,
    within_pct = 100 * (sug.val_loss - best.val_loss) / best.val_loss, smallest_within_2pct = smallest and smallest.rank,
    holds = (sug.val_loss - best.val_loss) / best.val_loss <= 0.02 and sug.params <= best.params }
  save()
  print(string.format("suggested rank %d: %.2f%% above the best (rank %d); smallest rank within 2%%: %d; %s",
    sug.rank, doc.verdict.within_pct, best.rank, smallest and smallest.rank or -1,
    doc.verdict.holds and "within 2% at no more parameters than the best" or "NOT within 2% at no more parameters"))
end
