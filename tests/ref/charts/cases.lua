-- tests/ref/charts/cases.lua — the fixed charts behind the golden PNGs in this directory.
-- Owner: report (issue 6). Used by tests/lua/test_report.lua (compare) and regen.lua (write).
-- Data come from closed-form expressions (no random numbers), so they are the same everywhere.
-- Returns a list of { name = "file stem", make = function(report) return image end }.
local function loss_data()
  local x, tr, va, vx = {}, {}, {}, {}
  for i = 1, 300 do
    x[i] = i
    tr[i] = 0.9 + 2.2 * math.exp(-i / 60) + 0.15 * math.sin(i * 0.9) * math.exp(-i / 400)
  end
  for i = 1, 10 do vx[i] = i * 30; va[i] = 1.05 + 2.1 * math.exp(-vx[i] / 70) end
  return x, tr, vx, va
end

return {
  { name = "line_loss", make = function(R)
      local x, tr, vx, va = loss_data()
      return R.line{ title = "Loss", xlabel = "step", ylabel = "cross-entropy", width = 480, height = 300, smooth = 0.8,
        series = { { name = "train", x = x, y = tr }, { name = "validation", x = vx, y = va, dashed = true, smooth = false } } }
    end },
  { name = "line_log_gap", make = function(R)
      local y = {}
      for i = 1, 200 do y[i] = 1e-4 * math.exp(-i / 30) + 1e-7 end
      y[90] = 0 / 0; y[91] = 0 / 0; y[120] = -1   -- a gap, and a non-positive value on a log axis
      return R.line{ title = "Learning rate (log)", xlabel = "step", ylabel = "lr", ylog = true, width = 480, height = 300,
        series = { { name = "lr", y = y, color = 3 } } }
    end },
  { name = "bar_methods", make = function(R)
      return R.bar{ title = "Cost per method", ylabel = "relative", width = 480, height = 300,
        categories = { "LoRA r=8", "LoRA r=16", "QLoRA", "DoRA", "IA3" },
        series = { { name = "time", values = { 1, 1.09, 1.41, 1.28, 0.8 } },
                   { name = "memory", values = { 1, 1.07, 0.66, 1.05, 0.92 } },
                   { name = "quality", values = { 0.71, 0.73, 0.70, 0.72, 0.66 } } } }
    end },
  { name = "scatter_pareto", make = function(R)
      return R.scatter{ title = "Quality against time", xlabel = "time (s)", ylabel = "accuracy", width = 480, height = 300,
        pareto = true, series = {
          { name = "LoRA", x = { 41.2, 44.9, 52.0 }, y = { 0.712, 0.731, 0.735 }, labels = { "r=8", "r=16", "r=32" } },
          { name = "other", x = { 58.3, 52.7, 33.1, 36.4 }, y = { 0.705, 0.728, 0.662, 0.641 }, labels = { "QLoRA", "DoRA", "IA3", "prefix" } } } }
    end },
  { name = "hist_lengths", make = function(R)
      local v = {}
      for i = 1, 3000 do v[i] = math.floor(20 + 180 * ((i * 0.618034) % 1) ^ 2) end
      return R.hist{ title = "Token lengths", xlabel = "tokens", ylabel = "examples", values = v, bins = 24, width = 480, height = 300 }
    end },
  { name = "line_small", make = function(R)
      local x, tr, vx, va = loss_data()
      return R.line{ title = "Small", width = 200, height = 120, series = { { name = "train", x = x, y = tr }, { name = "val", x = vx, y = va, dashed = true } } }
    end },
  { name = "line_bitmap_font", make = function(R)
      local x, tr, vx, va = loss_data()
      return R.line{ title = "Built-in bitmap font", xlabel = "step", ylabel = "loss", width = 400, height = 250, bitmap_font = true,
        series = { { name = "train", x = x, y = tr }, { name = "validation", x = vx, y = va, dashed = true } } }
    end },
}
