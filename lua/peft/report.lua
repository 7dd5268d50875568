-- peft.report (Lua layer) — self-contained HTML reports around the C chart renderer.
-- Owner: report (issue 6). The C module (src/lua/l_report.c) draws the charts and provides
-- escape/base64; this file assembles the page, which is policy rather than arithmetic.
--
--   local rep = peft.report.html{
--     title = "LoRA sweep", subtitle = "run 2024-05-01",
--     sections = {
--       { title = "Setup", text = "Free text.\n\nA second paragraph." },
--       { title = "Config", config = { lr = 1e-4, rank = 8 } },
--       { title = "Results", table = { columns = { "method", "loss" }, rows = { { "lora", 1.23 } } } },
--       { title = "Loss", chart = img, caption = "train vs validation" },   -- or charts = { a, b }
--       { title = "Notes", list = { "one", "two" } },
--     } }
--   rep:save("report.html")          -- true | nil, message
--   local s = rep:render()           -- the page as a string
--
--   local img = peft.report.memory_chart(timeline | "output/memory.json" | decoded document,
--                                        { top = 3, title =, width =, height =, x = "mark" | "t" })
--     the profiler's timeline (peft.memory.timeline()) as a line chart in MiB: per-step peak of
--     the tracked bytes, the tracked bytes at each mark, the process RSS, and the `top`
--     categories with the largest peaks (owner: memprof)
--
-- The page is one file: charts are inlined as PNG data URIs, the style sheet is inline, there
-- is no JavaScript, and a Content-Security-Policy forbids any external fetch or script. Every
-- user-provided string (titles, text, table cells, keys, captions) goes through escape().
local C = ...
local M = C
-- peft.report.write_file(path, bytes): the one atomic writer, peft.fs.write (fileio: temporary
-- file, fsync, rename, directory fsync)
M.write_file = require("peft.fs").write
local escape = C.escape

local CSS = [[
body{font-family:"DejaVu Sans",system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;
margin:0;background:#fff;color:#222;line-height:1.45}
main{max-width:1000px;margin:0 auto;padding:24px 28px 48px}
h1{font-size:1.7em;margin:0 0 .2em}
.subtitle{color:#555;margin:0 0 1.2em}
h2{font-size:1.25em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin:1.6em 0 .6em}
table{border-collapse:collapse;margin:.4em 0 1em;font-size:.92em}
th,td{border:1px solid #d5d5d5;padding:4px 10px;text-align:left;vertical-align:top}
th{background:#f3f3f3}
td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:.6em 0 1.4em;display:inline-block;vertical-align:top}
figure img{max-width:100%;height:auto;border:1px solid #e3e3e3;display:block}
figcaption{color:#555;font-size:.9em;margin-top:.3em}
footer{color:#888;font-size:.8em;margin-top:3em}
]]

local function fmt_number(v)
  if v ~= v then return "NaN" end
  if v == math.huge then return "inf" end
  if v == -math.huge then return "-inf" end
  if math.type(v) == "integer" then return tostring(v) end
  if v == math.floor(v) and math.abs(v) < 1e15 then return string.format("%d", v) end
  return string.format("%.4g", v)
end

-- A cell: numbers are formatted (and right-aligned), everything else escaped as text.
local function cell(v, tag)
  tag = tag or "td"
  if type(v) == "number" then
    return string.format('<%s class="num">%s</%s>', tag, escape(fmt_number(v)), tag)
  elseif v == nil then
    return string.format("<%s></%s>", tag, tag)
  end
  return string.format("<%s>%s</%s>", tag, escape(tostring(v)), tag)
end
M.format_number = fmt_number

local function is_image(v)
  return type(v) == "userdata" and getmetatable(v) and getmetatable(v).__name == "peft.Image"
end

local function img_tag(img, alt)
  if not is_image(img) then
    error("report.html: a chart must be a peft.Image (from peft.report.line/bar/scatter/hist), got " .. type(img), 4)
  end
  local w, h = img:size()
  return string.format('<img src="data:image/png;base64,%s" width="%d" height="%d" alt="%s">',
    C.base64(img:png()), w, h, escape(alt or "chart"))
end

local function paragraphs(text)
  local out = {}
  text = tostring(text):gsub("\r\n", "\n")
  for para in (text .. "\n\n"):gmatch("(.-)\n%s*\n") do
    if para:find("%S") then
      out[#out + 1] = "<p>" .. escape(para):gsub("\n", "<br>\n") .. "</p>"
    end
  end
  return table.concat(out, "\n")
end

local function config_table(cfg)
  if type(cfg) ~= "table" then error("report.html: 'config' must be a table of key = value", 4) end
  local keys = {}
  for k in pairs(cfg) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  local rows = { "<table class=\"config\">" }
  for _, k in ipairs(keys) do
    local v = cfg[k]
    if type(v) == "table" then
      local parts = {}
      for i, e in ipairs(v) do parts[i] = type(e) == "number" and fmt_number(e) or tostring(e) end
      v = table.concat(parts, ", ")
    end
    rows[#rows + 1] = "<tr>" .. cell(k, "th") .. cell(v) .. "</tr>"
  end
  rows[#rows + 1] = "</table>"
  return table.concat(rows, "\n")
end

local function data_table(t)
  if type(t) ~= "table" or type(t.rows) ~= "table" then
    error("report.html: 'table' must be { columns = {...}, rows = {...} }", 4)
  end
  for i, r in ipairs(t.rows) do
    if type(r) ~= "table" then error(string.format("report.html: table row %d is not a table", i), 4) end
  end
  local cols = t.columns
  if cols == nil then
    -- rows keyed by name: columns are the union of keys, in first-seen order (sorted per row)
    cols = {}
    local seen = {}
    for _, r in ipairs(t.rows) do
      local ks = {}
      for k in pairs(r) do if type(k) == "string" and not seen[k] then ks[#ks + 1] = k end end
      table.sort(ks)
      for _, k in ipairs(ks) do seen[k] = true; cols[#cols + 1] = k end
    end
  end
  local out = { "<table>", "<tr>" }
  for _, c in ipairs(cols) do out[#out + 1] = cell(c, "th") end
  out[#out + 1] = "</tr>"
  for _, r in ipairs(t.rows) do
    out[#out + 1] = "<tr>"
    for j, c in ipairs(cols) do
      local v = r[j]
      if v == nil then v = r[c] end
      out[#out + 1] = cell(v)
    end
    out[#out + 1] = "</tr>"
  end
  out[#out + 1] = "</table>"
  return table.concat(out)
end

local SECTION_KEYS = { title = true, text = true, config = true, table = true, tables = true,
  chart = true, charts = true, caption = true, list = true }

local function render_section(s, i)
  if type(s) ~= "table" then error(string.format("report.html: section %d is not a table", i), 3) end
  for k in pairs(s) do
    if not SECTION_KEYS[k] then error(string.format("report.html: section %d: unknown key '%s'", i, tostring(k)), 3) end
  end
  local out = { "<section>" }
  if s.title then out[#out + 1] = "<h2>" .. escape(tostring(s.title)) .. "</h2>" end
  if s.text then out[#out + 1] = paragraphs(s.text) end
  if s.config then out[#out + 1] = config_table(s.config) end
  if s.table then out[#out + 1] = data_table(s.table) end
  if s.tables then for _, t in ipairs(s.tables) do out[#out + 1] = data_table(t) end end
  if s.list then
    out[#out + 1] = "<ul>"
    for _, e in ipairs(s.list) do out[#out + 1] = "<li>" .. escape(tostring(e)) .. "</li>" end
    out[#out + 1] = "</ul>"
  end
  local charts = s.charts or (s.chart and { s.chart }) or {}
  for j, img in ipairs(charts) do
    local cap = type(s.caption) == "table" and s.caption[j] or (j == 1 and s.caption) or nil
    local alt = cap or s.title or "chart"
    out[#out + 1] = "<figure>" .. img_tag(img, tostring(alt)) ..
      (cap and ("<figcaption>" .. escape(tostring(cap)) .. "</figcaption>") or "") .. "</figure>"
  end
  out[#out + 1] = "</section>"
  return table.concat(out, "\n")
end

local Report = {}
Report.__index = Report
Report.__name = "peft.Report"

function Report:add(section)
  self.sections[#self.sections + 1] = section
  return self
end

function Report:render()
  local out = {
    "<!DOCTYPE html>",
    '<html lang="en">',
    "<head>",
    '<meta charset="utf-8">',
    -- no scripts, no external fetches: everything the page shows is inside it
    [[<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">]],
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    "<title>" .. escape(self.title) .. "</title>",
    "<style>" .. CSS .. "</style>",
    "</head>",
    "<body><main>",
    "<h1>" .. escape(self.title) .. "</h1>",
  }
  if self.subtitle then out[#out + 1] = '<p class="subtitle">' .. escape(tostring(self.subtitle)) .. "</p>" end
  for i, s in ipairs(self.sections) do out[#out + 1] = render_section(s, i) end
  out[#out + 1] = "<footer>" .. escape(self.footer) .. "</footer>"
  out[#out + 1] = "</main></body>"
  out[#out + 1] = "</html>"
  return table.concat(out, "\n") .. "\n"
end

function Report:save(path)
  return C.write_file(path, self:render())   -- atomic: temporary file, fsync, rename
end

local MEM_CHART_OPTS = { top = true, title = true, width = true, height = true, x = true, xlabel = true }

function M.memory_chart(src, opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("report.memory_chart: options must be a table", 2) end
  for k in pairs(opts) do
    if not MEM_CHART_OPTS[k] then error("report.memory_chart: unknown option '" .. tostring(k) .. "'", 2) end
  end
  local tl = src
  if type(src) == "string" then
    local doc, err = peft.memory.read_json(src)
    if not doc then error("report.memory_chart: " .. err, 2) end
    tl = doc.timeline
  elseif type(src) == "table" and src.timeline then
    tl = src.timeline
  end
  if type(tl) ~= "table" or #tl == 0 then
    error("report.memory_chart: expected a non-empty timeline (peft.memory.timeline(), memory.json or its path)", 2)
  end
  local xkey = opts.x or "mark"
  if xkey ~= "mark" and xkey ~= "t" then error("report.memory_chart: x must be \"mark\" or \"t\"", 2) end
  local MiB = 2^20
  local x, peak, cur, rss = {}, {}, {}, {}
  local catmax = {}
  for i, e in ipairs(tl) do
    if type(e) ~= "table" or type(e.peak) ~= "table" or type(e.current) ~= "table" then
      error(string.format("report.memory_chart: timeline entry %d is not a profiler entry", i), 2)
    end
    x[i] = xkey == "t" and (e.t or 0) or (e.last or i)
    peak[i] = (e.peak.total or 0) / MiB
    cur[i] = (e.current.total or 0) / MiB
    rss[i] = (e.rss and e.rss >= 0) and e.rss / MiB or 0
    for k, v in pairs(e.peak) do
      if k ~= "total" and k ~= "mapped" then catmax[k] = math.max(catmax[k] or 0, v) end
    end
  end
  local cats = {}
  for k, v in pairs(catmax) do if v > 0 then cats[#cats + 1] = k end end
  table.sort(cats, function(a, b) if catmax[a] ~= catmax[b] then return catmax[a] > catmax[b] end return a < b end)
  local series = {
    { name = "tracked peak", x = x, y = peak, smooth = false },
    { name = "tracked at mark", x = x, y = cur, smooth = false, dashed = true },
    { name = "RSS", x = x, y = rss, smooth = false },
  }
  for i = 1, math.min(opts.top or 3, #cats) do
    local y = {}
    for j, e in ipairs(tl) do y[j] = (e.peak[cats[i]] or 0) / MiB end
    series[#series + 1] = { name = cats[i] .. " peak", x = x, y = y, smooth = false, dashed = true }
  end
  return M.line {
    title = opts.title or "Memory per step", xlabel = opts.xlabel or (xkey == "t" and "seconds" or "step"),
    ylabel = "MiB", width = opts.width or 640, height = opts.height or 400, series = series,
  }
end

function M.html(spec)
  if type(spec) ~= "table" then error("report.html: expected a table { title =, sections = }", 2) end
  for k in pairs(spec) do
    if k ~= "title" and k ~= "subtitle" and k ~= "sections" and k ~= "footer" then
      error("report.html: unknown option '" .. tostring(k) .. "'", 2)
    end
  end
  if spec.sections ~= nil and type(spec.sections) ~= "table" then
    error("report.html: 'sections' must be a list of tables", 2)
  end
  local sections = {}
  for i, s in ipairs(spec.sections or {}) do sections[i] = s end
  return setmetatable({
    title = tostring(spec.title or "Report"),
    subtitle = spec.subtitle,
    sections = sections,
    footer = tostring(spec.footer or ("generated by " .. ((peft and peft._VERSION) or "peftlua") .. " on " .. os.date("!%Y-%m-%d %H:%M UTC"))),
  }, Report)
end

return M
