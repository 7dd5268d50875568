-- tests/bench/rank_sweep_table.lua — the markdown table of rank sweeps (tests/bench/rank_sweep.lua
-- output files) for docs/tune.md:  build/peftlua tests/bench/rank_sweep_table.lua FILE.json ...
local C = require "peft.compare"
print("| model / data | suggested (raw) | rank 2 | 4 | 8 | 16 | 32 | 64 | best | suggested vs best | smallest within 2% | holds |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for _, path in ipairs(arg) do
  local d = assert(C.load(path), path)
  local by, best = {}, nil
  for _, r in ipairs(d.runs or {}) do
    by[r.rank] = r
    if not best or r.val_loss < best.val_loss then best = r end
  end
  local cells = {}
  for _, rk in ipairs { 2, 4, 8, 16, 32, 64 } do
    local r = by[rk]
    cells[#cells + 1] = r and string.format(rk == d.suggestion.rank and "**%.4f**" or "%.4f", r.val_loss) or "not run"
  end
  local sug = by[d.suggestion.rank]
  local smallest
  for _, rk in ipairs { 2, 4, 8, 16, 32, 64 } do
    local r = by[rk]
    if r and not smallest and (r.val_loss - best.val_loss) / best.val_loss <= 0.02 then smallest = rk end
  end
  local complete = #(d.runs or {}) == 6
  local rel = sug and best and 100 * (sug.val_loss - best.val_loss) / best.val_loss
  print(string.format("| %s / %s | %d (%.2f) | %s | %s | %s | %s | %s |", d.config.model:match("([^/]+)%.gguf$"), d.config.data,
    d.suggestion.rank, d.suggestion.raw, table.concat(cells, " | "), best and ("rank " .. best.rank) or "-",
    rel and string.format("%+.2f%%", rel) or "-", smallest and tostring(smallest) or "-",
    not complete and "incomplete" or ((rel <= 2 and sug.params <= best.params) and "yes" or "no")))
end
