-- lua/peft/memory.lua — the memory model on top of peft.memory (src/lua/l_memory.c).
-- Owner: memory. Runs with the C module table of peft.memory as `...` and adds:
--   peft.memory.estimate{...}  predicted peak bytes by category before a run starts
--   peft.memory.autosize{...}  the largest batch (effective batch kept by accumulation) and
--                              sequence length fitting a budget; nil, message when none does
--   peft.memory.quantize(model, "nf4"|"q8_0"|"bf16"|"f16" [, targets])  the QLoRA base
--   peft.memory.format(bytes)  "1.25 GiB" / "312.0 MiB" / "1.0 KiB" / "12 bytes"
--   peft.memory.report(est)    a few lines naming each category
-- and, for the profiler (owner: memprof; the timeline itself is src/core/alloc.c):
--   peft.memory.summary()      the live numbers: each category's current and peak bytes, the
--                              tracked total next to the process's resident memory (RSS)
--   peft.memory.save_json(path [, pretty])  peft.memory.json() written to path; true | nil, msg
--   peft.memory.metrics_fields(entry)  a mark's entry as JSON members for a metrics line:
--                              "mem_peak":<tracked peak of the step>,"mem_peak_by":{<category>:
--                              bytes, ... (the non-zero ones but mapped)},"rss_peak":<bytes>
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
  if b >= 2^10 then return string.format("%.1f KiB", b / 2^10) end
  return string.format("%d bytes", math.floor(b))
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

function M.summary()
  local s = M.stats()
  local lines = { string.format("  %-12s %12s %12s", "", "current", "peak") }
  for _, k in ipairs(M.categories()) do
    local c = s[k]
    if c.current > 0 or c.peak > 0 then
      lines[#lines + 1] = string.format("  %-12s %12s %12s", k, M.format(c.current), M.format(c.peak))
    end
  end
  lines[#lines + 1] = string.format("  %-12s %12s %12s", "tracked", M.format(s.total.current), M.format(s.total.peak))
  local function rss(v) return v >= 0 and M.format(v) or "unknown" end
  lines[#lines + 1] = string.format("  %-12s %12s %12s", "RSS", rss(s.rss), rss(s.rss_peak))
  local b = M.budget()
  if b > 0 then lines[#lines + 1] = string.format("  %-12s %12s", "budget", M.format(b)) end
  local cap, stride, marks = M.timeline_cap()
  if marks > 0 then
    lines[#lines + 1] = string.format("  timeline     %d marks in %d entries (%d per entry, cap %d)",
                                      marks, #M.timeline(), stride, cap)
  end
  return table.concat(lines, "\n")
end

function M.metrics_fields(e)
  assert(type(e) == "table" and type(e.peak) == "table", "peft.memory.metrics_fields: takes a mark's entry")
  local by = {}
  for _, k in ipairs(M.categories()) do
    local v = e.peak[k]
    if k ~= "mapped" and v and v > 0 then by[#by + 1] = string.format('"%s":%d', k, v) end
  end
  return string.format('"mem_peak":%d,"mem_peak_by":{%s},"rss_peak":%d', e.peak.total, table.concat(by, ","), e.rss_peak)
end

function M.save_json(path, pretty)
  assert(type(path) == "string", "peft.memory.save_json: path must be a string")
  -- atomic (temporary file, fsync, rename): never half a file, a full disk names the path
  return require("peft.report").write_file(path, M.json(pretty) .. "\n")
end

return M
