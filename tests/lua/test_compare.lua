-- tests/lua/test_compare.lua — peft.compare and recipes/compare.lua end to end on stories260K
-- (every default method, a forced out-of-memory failure recorded, a resumed comparison that
-- skips finished methods), peft.compare.recommend on constructed results with known answers
-- (and with the memory model for a configuration not run), and the comparison page plus a
-- run's report.html in headless Chromium (charts drawn, a <script> run name escaped).
-- Owner: train.
local T = require "testlib"
local R = peft.report
local GGUF = T.shared .. "/models/stories260K/stories260K.gguf"
local OUT = T.tmp .. "/compare_smoke"
local GiB = 2^30

local function run_recipe(out)
  local saved = arg
  arg = { [0] = "recipes/compare.lua", "--smoke", "--out", out }
  local ok, res = pcall(dofile, T.root .. "/recipes/compare.lua")
  arg = saved
  T.ok(ok, tostring(res))
  return res
end

local function find_chromium()
  local env = os.getenv("PEFT_CHROMIUM")
  if env and env ~= "" then return env end
  for _, name in ipairs { "chromium", "chromium-browser", "google-chrome" } do
    local rc, out = T.sh("command -v " .. name)
    if rc == 0 and out:match("%S") then return out:match("^%s*(.-)%s*$") end
  end
end
local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end
local W, H = 1100, 4200
local function screenshot(chrome, html, png)
  os.remove(png)
  local has_timeout = T.sh("command -v timeout") == 0
  local cmd = table.concat({ has_timeout and "timeout 120" or "", q(chrome), "--headless", "--no-sandbox",
    "--disable-gpu", "--hide-scrollbars", "--disable-dev-shm-usage", "--no-first-run",
    "--force-device-scale-factor=1", "--user-data-dir=" .. q(T.tmp .. "/chromium-profile-compare"),
    "--window-size=" .. W .. "," .. H, "--screenshot=" .. q(png), q("file://" .. html) }, " ")
  local rc, out = T.sh(cmd)
  if not T.exists(png) then error(string.format("chromium wrote no screenshot (exit %s):\n%s", tostring(rc), out:sub(-2000))) end
  return assert(R.load(png))
end
-- separate bands of rows holding chart colours (a gap of >= 60 rows separates two)
local function chart_bands(shot, pal)
  local bands, inband = 0, false
  for y = 0, H - 1, 10 do
    local has = shot:count_near(pal, 30, 0, y, W, y + 10) > 20
    if has and not inband then bands = bands + 1 end
    if has then inband = 60 elseif inband then inband = inband - 10; if inband <= 0 then inband = false end end
  end
  return bands
end

-- constructed records: A best and biggest, B middle, C smallest and fastest, D failed
local function constructed()
  local function rec(name, val, mem, time, metric)
    return { name = name, status = "ok", val_loss = val, ppl = math.exp(val), peak_tracked = mem, mapped = 0,
             wall_s = time, metric = metric, config = { method = "lora" } }
  end
  return { records = {
    rec("A", 1.00, 3.5 * GiB, 100, 0.50),
    rec("B", 1.10, 1.5 * GiB, 50, 0.55),
    rec("C", 1.20, 0.5 * GiB, 20, 0.40),
    { name = "D", status = "failed", reason = "out of memory: test" },
  } }
end

return {
  compare_smoke_every_method_oom_and_resume = function()
    os.execute("rm -rf '" .. OUT .. "'")
    local res = run_recipe(OUT)
    local by = {}
    for _, r in ipairs(res.records) do by[r.name] = r end
    for _, name in ipairs(peft.compare.DEFAULT) do
      local r = by[name]
      T.ok(r, "record for " .. name)
      T.eq(r.status, "ok", name .. ": " .. tostring(r.reason))
      T.eq(r.steps, 6, name .. " steps")
      T.ok(r.tokens_per_s > 0 and r.wall_s > 0 and r.trained_params > 0, name .. " time and size")
      T.ok(r.val_loss and r.val_loss > 0 and #r.val >= 2, name .. " validation curve")
      T.near(r.ppl, math.exp(r.val_loss), 1e-9 * r.ppl, name .. " perplexity")
      T.ok(T.exists(OUT .. "/" .. name .. "/report.html"), name .. " run report")
      -- the memory model's prediction beside the measurement (tracked bytes, dataset excluded)
      local rel = math.abs(r.predicted.total - r.peak_tracked) / r.peak_tracked
      print(string.format("      %-11s predicted %.2f MiB measured %.2f MiB (%+.1f%%), %d params, adapter %s B",
        name, r.predicted.total / 2^20, r.peak_tracked / 2^20, 100 * (r.predicted.total - r.peak_tracked) / r.peak_tracked,
        r.trained_params, tostring(r.adapter_bytes)))
      T.ok(rel < 0.25, name .. ": prediction within 25% of the measurement, got " .. rel)
      if name ~= "full" then T.ok(r.adapter_bytes and r.adapter_bytes > 0, name .. " adapter on disk") end
    end
    T.eq(by.ia3.trained_params < by.lora.trained_params, true, "IA3 trains fewer parameters than LoRA")
    T.eq(by.dora.trained_params > by.lora.trained_params, true, "DoRA adds the magnitudes")
    local oom = by.full_4MiB
    T.eq(oom.status, "failed")
    T.ok(oom.reason:find("out of memory"), "OOM reason: " .. tostring(oom.reason))
    T.ok(#res.recommendations == 3 and res.recommendations[1].reasons[1], "three recommendations with reasons")
    -- the third is for 4x the sequence (not run): memory from the memory model, 70 MiB budget
    local third = table.concat(res.recommendations[3].reasons, "\n")
    T.ok(third:find("predicted by the memory model", 1, true), third)
    -- full fine-tuning's 4x-sequence estimate is over 70 MiB: neither chosen nor a runner-up
    local m <close> = peft.model.load(GGUF)
    local ef = peft.memory.estimate { model = m, method = "full", batch_size = 4, seq_len = 256 }
    T.ok(ef.resident > 70 * 2^20, "full at 256 tokens is predicted over the budget")
    T.ok(res.recommendations[3].method and res.recommendations[3].method ~= "full", third)
    for _, n in ipairs(res.recommendations[3].runners_up) do T.ok(n ~= "full", third) end
    -- compare.json is what was recorded; a second run skips every finished method
    local doc = assert(peft.compare.load(OUT .. "/compare.json"))
    T.eq(#doc.records, #res.records)
    T.ok(doc.machine and doc.machine.peftlua, "machine and versions recorded")
    local wall = {}
    for _, r in ipairs(doc.records) do wall[r.name] = r.wall_s end
    -- drop dora's record: the resumed comparison runs dora only
    local kept = {}
    for _, r in ipairs(doc.records) do if r.name ~= "dora" then kept[#kept + 1] = r end end
    doc.records = kept
    peft.compare.save(doc, OUT .. "/compare.json")
    local res2 = run_recipe(OUT)
    local skipped, ran = 0, {}
    for _, r in ipairs(res2.records) do
      if r.skipped then skipped = skipped + 1; T.eq(r.wall_s, wall[r.name], r.name .. " kept as recorded")
      else ran[#ran + 1] = r.name end
    end
    T.eq(#ran, 1, "one method re-run: " .. table.concat(ran, ","))
    T.eq(ran[1], "dora")
    T.eq(skipped, #peft.compare.DEFAULT, "finished methods (and the failed one) skipped")
  end,

  recommend_known_answers = function()
    local res = constructed()
    local best, ups, why = peft.compare.recommend(res, {})
    T.eq(best, "A"); T.eq(ups[1], "B"); T.eq(ups[2], "C")
    best, ups, why = peft.compare.recommend(res, { memory_budget = 2 * GiB })
    T.eq(best, "B"); T.eq(ups[1], "C"); T.eq(#ups, 1)
    local text = table.concat(why, "\n")
    T.ok(text:find("A is 9.1%% better in validation loss but needs 3.50 GiB %(measured%) > 2.00 GiB memory budget"), text)
    T.ok(text:find("D is out: it failed %(out of memory: test%)"), text)
    best = peft.compare.recommend(res, { memory_budget = 2 * GiB, time_budget = 30 })
    T.eq(best, "C")
    best, ups, why = peft.compare.recommend(res, { memory_budget = 0.1 * GiB })
    T.eq(best, nil); T.eq(#ups, 0)
    T.ok(table.concat(why, "\n"):find("no method fits the budget"))
    best = peft.compare.recommend(res, { metric = "metric" })
    T.eq(best, "B", "task metric: higher is better")
    best = peft.compare.recommend(res, { metric = "metric", time_budget = 40 })
    T.eq(best, "C")
    T.raises(function() peft.compare.recommend(res, { metric = "bleu" }) end, "metric must be")
    -- a configuration not run: the memory model's resident estimate for a longer sequence
    local m <close> = peft.model.load(GGUF)
    local recs = { records = {
      { name = "full", status = "ok", val_loss = 1.0, peak_tracked = 1, wall_s = 1, config = { method = "full", batch_size = 4, max_seq_len = 64 } },
      { name = "lora", status = "ok", val_loss = 1.1, peak_tracked = 1, wall_s = 1, config = { method = "lora", batch_size = 4, max_seq_len = 64 } },
    } }
    local ef = peft.memory.estimate { model = m, method = "full", batch_size = 4, seq_len = 512 }
    local el = peft.memory.estimate { model = m, method = "lora", batch_size = 4, seq_len = 512 }
    T.ok(ef.resident > el.resident, "full needs more than LoRA")
    local mid = (ef.resident + el.resident) / 2
    best, ups, why = peft.compare.recommend(recs, { memory_budget = mid, predict = { model = m, seq_len = 512 } })
    T.eq(best, "lora")
    T.ok(table.concat(why, "\n"):find("full is 9.1%% better in validation loss but needs .- %(predicted by the memory model%)"), table.concat(why, "\n"))
    best = peft.compare.recommend(recs, { memory_budget = ef.resident + 1, predict = { model = m, seq_len = 512 } })
    T.eq(best, "full")
    -- the Pareto front helper
    local front = peft.compare.pareto_front({ 1, 2, 3, 2.5 }, { 3, 2, 1, 2.5 })
    T.eq(front[1], true); T.eq(front[2], true); T.eq(front[3], true); T.eq(front[4], false)
  end,

  run_report_has_samples_for_prompt_completion_data = function()
    local data = T.tmp .. "/rr_completion.jsonl"
    local f = assert(io.open(data, "w"))
    local words = { "cat", "dog", "sun", "tree", "boat", "bird" }
    for i = 1, 24 do
      local w = words[(i - 1) % #words + 1]
      f:write(string.format('{"prompt": "Once upon a time there was a %s", "completion": " who liked the %s."}\n', w, w))
    end
    f:close()
    local out = T.tmp .. "/rr_completion_run"
    os.execute("rm -rf '" .. out .. "'")
    local r = peft.train.run { model = GGUF, dataset = data, valid_fraction = 0.25, output = out, max_iters = 4,
      batch_size = 2, max_seq_len = 32, eval_every = 2, learning_rate = 1e-2, quiet = true, method = "ia3" }
    r.trainer:close()
    local html = io.open(r.report):read("a")
    T.ok(html:find("Sample generations (completion data, greedy)", 1, true), "samples section")
    T.ok(html:find("<th>before training</th>", 1, true) and html:find("<th>after training</th>", 1, true), "before/after columns")
    T.ok(html:find("Once upon a time there was a", 1, true), "the prompt shown")
    for _, k in ipairs { "<h2>Training", "<h2>Memory", "<h2>Configuration", "<h2>Dataset",
                         'alt="training loss per step and validation loss"', 'alt="learning rate per step"',
                         'alt="gradient norm per step"', 'alt="tokens per second', 'alt="tracked bytes and RSS' } do
      T.ok(html:find(k, 1, true), "report part: " .. k)
    end
    T.eq(select(2, html:gsub('<img src="data:image/png;base64,', "")), 5, "five charts inlined")
  end,

  reports_in_chromium = function()
    local chrome = find_chromium()
    if not chrome then
      if os.getenv("PEFT_ALLOW_SKIP") == "1" then print("SKIP  test_compare.lua: chromium not found"); return end
      error("chromium not found: install the Debian package 'chromium' (scripts/deps.sh does) or set PEFT_CHROMIUM")
    end
    if not T.exists(OUT .. "/compare.json") then run_recipe(OUT) end
    local pal = {}
    for i = 1, 6 do pal[i] = R.palette()[i] end
    -- compare.html: a table, the recommendation and eight charts
    local html = OUT .. "/compare.html"
    local page = io.open(html):read("a")
    T.ok(page:find("Recommendation", 1, true) and page:find("Pareto", 1, true), "sections present")
    local shot = screenshot(chrome, html, T.tmp .. "/compare.png")
    local total = shot:count_near(pal, 30)
    local bands = chart_bands(shot, pal)
    print(string.format("      compare.html: %d chart-coloured pixels in %d bands", total, bands))
    T.ok(total > 20000, "charts drawn: " .. total)
    T.ok(bands >= 4, "charts down the page: " .. bands)
    -- a run report with a hostile run name
    local out = T.tmp .. "/report_script_run"
    os.execute("rm -rf '" .. out .. "'")
    local name = "run <script>alert('x')</script> & co"
    local r = peft.train.run { model = GGUF, dataset = T.shared .. "/data/wikisql/train.jsonl",
      valid = T.shared .. "/data/wikisql/valid.jsonl", output = out, max_iters = 6, batch_size = 2,
      max_seq_len = 48, eval_every = 3, eval_batches = 2, quiet = true, name = name, method = "dora" }
    r.trainer:close()
    T.eq(r.report, out .. "/report.html")
    local rp = io.open(r.report):read("a")
    T.ok(not rp:find("<script", 1, true), "no script tag in the run report")
    T.ok(rp:find("run &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; co", 1, true)
      or rp:find("run &lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; co", 1, true)
      or rp:find("&lt;script&gt;", 1, true), "the name shown escaped")
    shot = screenshot(chrome, r.report, T.tmp .. "/run_report.png")
    total = shot:count_near(pal, 30)
    bands = chart_bands(shot, pal)
    print(string.format("      report.html: %d chart-coloured pixels in %d bands", total, bands))
    T.ok(total > 3000, "run report charts drawn: " .. total)
    T.ok(bands >= 3, "run report charts down the page: " .. bands)
  end,
}
