-- tests/lua/test_report_browser.lua — the example report in a real browser (owner: report).
-- Renders examples/report.lua to HTML, opens it in headless Chromium (Debian package
-- `chromium`, installed by scripts/deps.sh), takes a screenshot and checks it: the page is
-- drawn (title text near the top), the charts are there (pixels in the chart palette's colours,
-- in several separate bands down the page, covering a chart-sized area), and a control page
-- without charts has none of those pixels. Without Chromium the test fails; PEFT_ALLOW_SKIP=1
-- turns that into a SKIP line for local runs.
-- PEFT_CHROMIUM names the browser binary when it is not chromium/chromium-browser on PATH.
local T = require "testlib"
local R = peft.report

local function find_chromium()
  local env = os.getenv("PEFT_CHROMIUM")
  if env and env ~= "" then return env end
  for _, name in ipairs { "chromium", "chromium-browser", "google-chrome", "google-chrome-stable" } do
    local rc, out = T.sh("command -v " .. name)
    if rc == 0 and out:match("%S") then return out:match("^%s*(.-)%s*$") end
  end
  for _, p in ipairs { "/Applications/Chromium.app/Contents/MacOS/Chromium",
                       "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome" } do
    if T.exists(p) then return p end
  end
  return nil
end

local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local W, H = 1100, 3600   -- tall enough for the whole example page

-- Screenshot html_path into png_path; returns the decoded raster.
local function screenshot(chrome, html_path, png_path)
  os.remove(png_path)
  local profile = T.tmp .. "/chromium-profile"
  -- --no-sandbox: CI containers run as root, where Chromium's sandbox refuses to start; the page is
  -- our own file and its Content-Security-Policy forbids scripts and fetches anyway.
  local has_timeout = T.sh("command -v timeout") == 0   -- coreutils; absent on stock macOS
  local cmd = table.concat({
    has_timeout and "timeout 120" or "", q(chrome), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
    "--disable-dev-shm-usage", "--no-first-run", "--force-device-scale-factor=1",
    "--user-data-dir=" .. q(profile), "--window-size=" .. W .. "," .. H,
    "--screenshot=" .. q(png_path), q("file://" .. html_path) }, " ")
  local rc, out = T.sh(cmd)
  if not T.exists(png_path) then
    error(string.format("chromium wrote no screenshot (exit %s):\n%s", tostring(rc), out:sub(-2000)))
  end
  return assert(R.load(png_path))
end

local tests = {}

tests.example_report_in_chromium = function()
  local chrome = find_chromium()
  if not chrome then
    if os.getenv("PEFT_ALLOW_SKIP") == "1" then
      print("SKIP  test_report_browser.lua: chromium not found (PEFT_ALLOW_SKIP=1)")
      return
    end
    error("chromium not found: install the Debian package 'chromium' (scripts/deps.sh does), " ..
          "set PEFT_CHROMIUM, or PEFT_ALLOW_SKIP=1 to skip locally")
  end
  -- the example report, written by the example script itself
  local html = T.tmp .. "/browser-report.html"
  local saved = arg
  arg = { [0] = "examples/report.lua", html }
  local ok, err = pcall(dofile, T.root .. "/examples/report.lua")
  arg = saved
  T.ok(ok, tostring(err))

  local shot = screenshot(chrome, html, T.tmp .. "/browser-report.png")
  local w, h = shot:size()
  T.eq(w, W, "screenshot width"); T.eq(h, H, "screenshot height")

  -- the title is drawn: dark text pixels in the top band
  local title = shot:count_near({ 0x222222 }, 40, 0, 0, W, 80)
  T.ok(title > 300, "title text in the top 80 rows: " .. title .. " dark pixels")

  -- the charts: series colours appear only inside chart images
  local pal = {}
  for i = 1, 6 do pal[i] = R.palette()[i] end
  local total, bbox = shot:count_near(pal, 30)
  T.ok(total > 20000, "chart-coloured pixels in the screenshot: " .. total)
  T.ok(bbox[4] < H - 20, "the whole page (down to the last chart) fits the screenshot")
  T.ok(bbox[3] - bbox[1] > 350 and bbox[4] - bbox[2] > 1500,
       string.format("charts spread over the page: bbox (%d,%d)-(%d,%d)", bbox[1], bbox[2], bbox[3], bbox[4]))
  -- five charts stacked down the page: count separate bands of rows that hold chart colours
  local bands, inband, band_rows = 0, false, {}
  for y = 0, H - 1, 10 do
    local n = shot:count_near(pal, 30, 0, y, W, y + 10)
    local has = n > 20
    if has and not inband then bands = bands + 1; band_rows[#band_rows + 1] = y end
    -- a gap of >= 60 rows without chart colour separates two charts
    if has then inband = 60 elseif inband then inband = inband - 10; if inband <= 0 then inband = false end end
  end
  print(string.format("      chromium screenshot %dx%d: %d title pixels, %d chart-coloured pixels in (%d,%d)-(%d,%d), %d chart bands at rows %s",
    w, h, title, total, bbox[1], bbox[2], bbox[3], bbox[4], bands, table.concat(band_rows, ",")))
  T.ok(bands >= 4, "separate chart regions down the page: " .. bands .. " (starting at rows " .. table.concat(band_rows, ", ") .. ")")

  -- control: the same kind of page without charts has no chart-coloured pixels at all
  local control = T.tmp .. "/browser-control.html"
  assert(R.html{ title = "Control <script>x</script>", sections = {
    { title = "Only text", text = "No charts here." },
    { title = "Table", table = { columns = { "a", "b" }, rows = { { 1, 2 } } } } } }:save(control))
  local cshot = screenshot(chrome, control, T.tmp .. "/browser-control.png")
  T.eq((cshot:count_near(pal, 30)), 0, "a page without charts shows no chart colours")
  T.ok(cshot:count_near({ 0x222222 }, 40, 0, 0, W, 80) > 300, "control title drawn")
end

return tests
