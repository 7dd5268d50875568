-- tests/bench/rank_sweep_table.lua — the markdown table of rank sweeps (tests/bench/rank_sweep.lua
-- output files) for docs/tune.md:  build/peftlua tests/bench/rank_sweep_table.lua FILE.json ...
-- Each rank's loss is its best over the learning rates the sweep tried (--walk / --lrs); the
-- suggestion is recomputed from the profile the sweep stored, with the rule as it is now
-- (peft.tune.suggest_rank), and the sweep's own stored suggestion is shown beside it.
local C = require "peft.compare"
local RANKS = { 2, 4, 8, 16, 32, 64 }
print("| model / data | steps | suggested (raw) | rank 2 | 4 | 8 | 16 | 32 | 64 | best | suggested vs best | smallest within 2% | holds | stored suggestion |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
local models = {}
for _, path in ipairs(arg) do
  local d = assert(C.load(path), path)
  local by, best = {}, nil
  for _, r in ipairs(d.runs or {}) do
    if not by[r.rank] or r.val_loss < by[r.rank].val_loss then by[r.rank] = r end
  end
  for _, r in pairs(by) do if not best or r.val_loss < best.val_loss then best = r end end
  local mp = d.config.model
  models[mp] = models[mp] or peft.model.load(mp)
  local s = peft.tune.suggest_rank(models[mp], d.suggestion.profile, { steps = d.config.steps, batch_size = d.config.batch_size,
    targets = d.config.targets })
  local cells = {}
  for _, rk in ipairs(RANKS) do
    local r = by[rk]
    local lr = r and r.lr and string.format(" (%.2g)", r.lr) or ""
    cells[#cells + 1] = r and string.format(rk == s.rank and "**%.4f**%s" or "%.4f%s", r.val_loss, lr) or "not run"
  end
  local smallest
  for _, rk in ipairs(RANKS) do
    local r = by[rk]
    if r and not smallest and (r.val_loss - best.val_loss) / best.val_loss <= 0.02 then smallest = rk end
  end
  local complete = true
  for _, rk in ipairs(RANKS) do if not by[rk] then complete = false end end
  local sug = by[s.rank]
  local rel = sug and 100 * (sug.val_loss - best.val_loss) / best.val_loss
  local verdict = not complete and "incomplete"
    or (rel <= 2 and s.rank == smallest) and "yes (the smallest)"
    or (rel <= 2 and s.rank <= best.rank) and "within 2%, not the smallest"
    or "no"
  print(string.format("| %s / %s | %d | %d (%.2f) | %s | %s | %s | %s | %s | %d |", mp:match("([^/]+)%.gguf$"), d.config.data,
    d.config.steps, s.rank, s.raw, table.concat(cells, " | "), best and ("rank " .. best.rank) or "-",
    rel and string.format("%+.2f%%", rel) or "-", smallest and tostring(smallest) or "-", verdict, d.suggestion.rank))
end
