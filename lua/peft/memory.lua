-- lua/peft/memory.lua — the memory model on top of peft.memory (src/lua/l_memory.c).
-- Owner: memory. Runs with the C module table of peft.memory as `...` and adds:
--   peft.memory.estimate{...}  predicted peak bytes by category before a run starts
--   peft.memory.autosize{...}  the largest batch (effective batch kept by accumulation) and
--                              sequence length fitting a budget; nil, message when none does
--   peft.memory.quantize(model, "nf4"|"q8_0"|"bf16"|"f16" [, targets])  the QLoRA base
--   peft.memory.format(bytes)  "1.25 GiB" / "312.0 MiB"
--   peft.memory.report(est)    a few lines naming each category
-- The options are documented in src/lua/l_memmodel.c (module peft.memmodel).
local M = ...
local mm = require "peft.memmodel"

M.estimate = mm.estimate
M.autosize = mm.autosize
M.quantize = mm.quantize

function M.format(b)
  assert(type(b) == "number", "peft.memory.format: bytes must be a number")
  if b >= 2^30 then return string.format("%.2f GiB", b / 2^30) end
  if b >= 2^20 then return string.format("%.1f MiB", b / 2^20) end
  return string.format("%.1f KiB", b / 2^10)
end

local order = { "weights", "adapters", "gradients", "optimizer", "activations", "workspace", "mapped" }

function M.report(est)
  assert(type(est) == "table" and est.total, "peft.memory.report: takes an estimate table")
  local lines = { string.format("batch %d x %d tokens (accumulation %d)%s", est.batch_size,
                                est.seq_len, est.grad_accum,
                                est.checkpointing > 0 and (", checkpoint every " .. est.checkpointing .. " layer(s)") or "") }
  for _, k in ipairs(order) do
    if (est[k] or 0) > 0 then lines[#lines + 1] = string.format("  %-12s %12s", k, M.format(est[k])) end
  end
  lines[#lines + 1] = string.format("  %-12s %12s", "peak", M.format(est.total))
  lines[#lines + 1] = string.format("  %-12s %12s", "resident", M.format(est.resident))
  return table.concat(lines, "\n")
end

return M
