-- tests/lua/test_memory.lua — peft.memory: the allocator's numbers and the profiler (timeline,
-- JSON, summary, the trainer's per-step marks, the chart). Owner: memory / memprof.
local T = require "testlib"
local mem = peft.memory
local MODEL = T.shared .. "/models/stories260K/stories260K.gguf"
local DATA = T.shared .. "/data/wikisql/"

-- Run f with the Lua GC stopped, so that no tensor is collected (and its bytes freed) at a
-- moment the test does not choose.
local function no_gc(f)
  collectgarbage(); collectgarbage("stop")
  local ok, err = pcall(f)
  collectgarbage("restart")
  if not ok then error(err, 0) end
end

local function new(n) return peft.tensor.new({ n }) end   -- n f32 = 4n bytes of workspace

return {
  categories = function()
    local cats = mem.categories()
    for _, want in ipairs { "weights", "adapters", "gradients", "optimizer", "activations", "workspace" } do
      local found = false
      for _, c in ipairs(cats) do if c == want then found = true end end
      T.ok(found, "missing category " .. want)
    end
  end,
  unknown_category_raises = function()
    T.raises(function() mem.current("nope") end, "unknown memory category 'nope'")
  end,
  stats_consistent = function()
    local s = mem.stats()
    local sum = 0
    for _, c in ipairs(mem.categories()) do
      T.ok(s[c].peak >= s[c].current, c .. " peak below current")
      if c ~= "mapped" then sum = sum + s[c].current end
    end
    T.eq(s.total.current, sum, "total is the sum of categories")
    T.ok(s.rss > 0, "rss measured")
  end,

  -- Two windows with known allocations: each mark gives the exact current bytes at the mark and
  -- the exact peak inside the window, also for blocks freed before the mark.
  marks_exact_peaks = function()
    no_gc(function()
      mem.clear_timeline()
      mem.mark("warm")                       -- the timeline's own buffer exists from here on
      local base = mem.mark("base")
      local a = new(1000)                    -- 4000 B, kept
      local h
      do
        local b <close> = new(3000)          -- 12000 B, freed before the mark
        h = mem.current("data") - base.current.data   -- headers of a and b (both alive)
      end
      h = h / 2                              -- one tensor's headers (storage + tensor)
      T.ok(h > 0 and math.type(h) == "float" and h == math.floor(h), "header bytes " .. h)
      local s1 = mem.mark("step 1")
      T.eq(s1.label, "step 1")
      T.eq(s1.current.workspace, base.current.workspace + 4000, "workspace at mark 1")
      T.eq(s1.peak.workspace, base.current.workspace + 16000, "workspace peak in window 1")
      T.eq(s1.current.data, base.current.data + h, "data at mark 1")
      T.eq(s1.peak.data, base.current.data + 2 * h, "data peak in window 1")
      T.eq(s1.current.total, base.current.total + 4000 + h, "total at mark 1")
      T.eq(s1.peak.total, base.current.total + 16000 + 2 * h, "total peak in window 1")
      do
        local c <close> = new(2000)          -- 8000 B on top of a
      end
      a:close()
      local s2 = mem.mark("step 2")
      T.eq(s2.current.workspace, base.current.workspace, "workspace back at mark 2")
      T.eq(s2.peak.workspace, base.current.workspace + 12000, "workspace peak in window 2")
      T.eq(s2.peak.total, base.current.total + 12000 + 2 * h, "total peak in window 2")
      local s3 = mem.mark("step 3")         -- nothing happened: the peak is the current value
      T.eq(s3.peak.total, s3.current.total)
      T.eq(s3.peak.workspace, base.current.workspace)
      -- the long-term peak still holds window 1's
      T.ok(mem.peak("workspace") >= base.current.workspace + 16000, "long-term peak kept")
      -- a reset_peak inside a window resets the long-term peak, not the window's
      do local d <close> = new(5000) end     -- 20000 B
      mem.reset_peak()
      T.eq(mem.peak("workspace"), mem.current("workspace"), "reset_peak: peak = current")
      local s4 = mem.mark("step 4")
      T.eq(s4.peak.workspace, base.current.workspace + 20000, "window peak survives reset_peak")
      T.eq(mem.peak("workspace"), mem.current("workspace"), "mark after reset keeps the reset")
      -- the timeline holds the same entries the marks returned
      local tl = mem.timeline()
      T.eq(#tl, 6)
      T.eq(tl[4].label, "step 2")
      T.eq(tl[4].peak.total, s2.peak.total)
      T.eq(tl[6].first, 6); T.eq(tl[6].last, 6)
      T.ok(tl[6].t >= tl[1].t, "time grows")
      T.ok(s4.rss > 0 and s4.rss_peak >= s4.rss, "rss and its peak")
      T.eq(select(3, mem.timeline_cap()), 6, "marks taken")
    end)
  end,

  -- Past its cap the timeline halves by merging neighbours: bounded, ordered, covering every
  -- mark, and a spike inside one window survives every merge.
  timeline_bounded = function()
    no_gc(function()
      T.raises(function() mem.timeline_cap(7) end, "even")
      T.raises(function() mem.timeline_cap(0) end, "even")
      mem.timeline_cap(8)
      local base = mem.mark("base")          -- mark 1
      for i = 2, 100 do
        if i == 37 then local t <close> = new(25000) end   -- 100000 B inside window 37
        mem.mark("step " .. i)
        T.ok(#mem.timeline() <= 8, "bounded at mark " .. i)
      end
      local tl = mem.timeline()
      local cap, stride, marks = mem.timeline_cap()
      T.eq(cap, 8); T.eq(stride, 16); T.eq(marks, 100)
      T.eq(#tl, 7, "4 entries of 16 marks, 2 of 16, one of 4")
      T.eq(tl[1].first, 1)
      T.eq(tl[#tl].last, 100)
      T.eq(tl[#tl].label, "step 100")
      for i = 2, #tl do T.eq(tl[i].first, tl[i - 1].last + 1, "entries contiguous") end
      for _, e in ipairs(tl) do
        local spike = e.peak.workspace >= base.current.workspace + 100000
        T.eq(spike, e.first <= 37 and e.last >= 37, string.format("spike only in [%d, %d]", e.first, e.last))
      end
      mem.timeline_cap(1024)
      T.eq(#mem.timeline(), 0, "setting the cap clears")
    end)
  end,

  -- Under a budget too tight for the timeline a mark still returns its entry (and says why it
  -- was not kept) instead of raising: profiling must not stop a training run.
  mark_under_tight_budget = function()
    mem.timeline_cap(16)                  -- frees the buffer; the next mark allocates it
    local old = mem.budget()
    local e, why
    no_gc(function()                      -- a collection would free bytes under the budget
      mem.budget(mem.current() + 1000)    -- the buffer needs 16 entries (3712 bytes)
      e, why = mem.mark("tight")
      mem.budget(old)
    end)
    T.eq(e.label, "tight")
    T.ok(why and why:find("mark 'tight' not kept", 1, true), tostring(why))
    T.eq(#mem.timeline(), 0)
    local e2, why2 = mem.mark("roomy")
    T.eq(why2, nil); T.eq(e2.first, 1)
    T.eq(#mem.timeline(), 1)
    mem.timeline_cap(1024)
  end,

  json_valid = function()
    mem.clear_timeline()
    for i = 1, 3 do local t <close> = new(100 * i); mem.mark("s" .. i) end
    local s = mem.json()
    T.ok(not s:lower():find("nan", 1, true) and not s:lower():find("inf", 1, true), "no NaN/inf")
    T.ok(peft.data.json_canonical(s), "a second parser accepts it")
    local d = assert(mem.decode_json(s))
    T.eq(d.version, 1)
    T.eq(#d.categories, #mem.categories())
    local sum = 0
    for _, c in ipairs(d.categories) do
      T.ok(d.peak[c] >= d.current[c], c)
      if c ~= "mapped" then sum = sum + d.current[c] end
    end
    T.eq(d.current.total, sum, "total = sum of categories")
    T.ok(d.rss > 0 and d.rss_peak >= d.rss, "rss")
    T.eq(d.budget, mem.budget())
    -- the hardware report's budget (85% of MemAvailable moves between two reads, hence 5% here
    -- and the exact value through PEFT_MEMORY_BUDGET)
    local hwb = peft.hw.info().memory_budget
    T.ok(math.abs(d.default_budget - hwb) <= 0.05 * hwb, string.format("default_budget %d vs %d", d.default_budget, hwb))
    local rc, out = T.sh("PEFT_MEMORY_BUDGET=1G " .. T.host .. " -e 'print(peft.memory.decode_json(peft.memory.json()).default_budget)'")
    T.eq(rc, 0, out); T.eq(out, "1073741824\n")
    T.eq(d.marks, 3)
    local tl = mem.timeline()
    T.eq(#d.timeline, 3)
    for i, e in ipairs(d.timeline) do
      T.eq(e.label, tl[i].label)
      for _, c in ipairs(d.categories) do
        T.eq(e.peak[c], tl[i].peak[c]); T.eq(e.current[c], tl[i].current[c])
      end
      T.eq(e.peak.total, tl[i].peak.total)
      T.near(e.t, tl[i].t, 1e-9)
    end
    -- the file form, and errors
    local path = T.tmp .. "/memory_test.json"
    T.eq(mem.save_json(path, true), true)
    local f = assert(io.open(path)); local text = f:read("a"); f:close()
    T.eq(mem.decode_json(text).marks, 3)
    local ok, err = mem.save_json(T.tmp .. "/no/such/dir/m.json")
    T.eq(ok, nil); T.ok(err:find("no/such/dir", 1, true), err)
    local bad, why = mem.decode_json('{"a": NaN}')
    T.eq(bad, nil); T.ok(why:find("invalid JSON", 1, true), why)
    T.eq(mem.read_json(T.tmp .. "/absent.json"), nil)
  end,

  summary_shows_rss_next_to_tracked = function()
    mem.clear_timeline(); mem.mark("x")
    local s, st
    no_gc(function() s = mem.summary(); st = mem.stats() end)
    T.ok(s:find("\n  tracked ", 1, true) and s:find("\n  RSS ", 1, true), s)
    T.ok(s:find(mem.format(st.total.current), 1, true), "tracked total shown: " .. s)
    T.ok(s:find("1 marks in 1 entries", 1, true), s)
  end,

  -- SIGTERM at step 2: the checkpoint and the memory profile of the two steps are written.
  train_run_interrupted_writes_profile = function()
    local out = T.tmp .. "/memprof_interrupted"
    os.execute("rm -rf '" .. out .. "'")
    local f = assert(io.open("/proc/self/stat")); local pid = f:read("n"); f:close()
    local err = T.raises(function()
      peft.train.run { model = MODEL, dataset = DATA .. "train.jsonl", output = out,
        max_iters = 5, batch_size = 2, max_seq_len = 32, lora_rank = 4, progress = false, quiet = true,
        save_adapter = false,
        on_step = function(i) if i.step == 2 then os.execute("kill -TERM " .. pid) end end }
    end, "interrupted at step 2")
    local d = assert(mem.read_json(out .. "/memory.json"), err)
    T.eq(#d.timeline, 2)
    T.eq(d.timeline[2].label, "step 2")
    collectgarbage()
  end,

  train_run_marks_steps = function()
    local out = T.tmp .. "/memprof_run"
    os.execute("rm -rf '" .. out .. "'")
    local r = peft.train.run { model = MODEL, dataset = DATA .. "train.jsonl", output = out,
      max_iters = 3, batch_size = 2, max_seq_len = 32, lora_rank = 4, targets = { "q_proj", "v_proj" },
      progress = false, quiet = true, save_adapter = false }
    r.trainer:close()
    local tl = mem.timeline()
    T.eq(#tl, 3, "one entry per step")
    for i, e in ipairs(tl) do
      T.eq(e.label, "step " .. i)
      T.ok(e.peak.adapters > 0 and e.peak.activations > 0, "the step's adapters and activations")
      T.ok(e.peak.total >= e.current.total, "peak >= current")
    end
    T.eq(r.memory, out .. "/memory.json")
    local d = assert(mem.read_json(r.memory))
    T.eq(#d.timeline, 3)
    T.eq(d.timeline[3].label, "step 3")
    -- the metrics lines carry each step's peak, the same numbers as the timeline
    local n = 0
    for line in io.lines(out .. "/metrics.jsonl") do
      local m = assert(mem.decode_json(line))
      if m.loss then
        n = n + 1
        T.eq(m.mem_peak, tl[m.step].peak.total, "mem_peak of step " .. m.step)
        T.eq(m.mem_peak_by.adapters, tl[m.step].peak.adapters)
        T.eq(m.mem_peak_by.mapped, nil, "mapped left out")
        T.ok(m.rss_peak >= m.rss, "rss_peak")
      end
    end
    T.eq(n, 3)
    -- the chart from the file: its size, and ink of the data series in the plot area
    local R = peft.report
    local img <close> = R.memory_chart(r.memory, { width = 480, height = 300 })
    local w, h = img:size()
    T.eq(w, 480); T.eq(h, 300)
    local L = img:layout()
    local pal = {}
    for i = 1, 6 do pal[i] = R.palette()[i] end
    local raster <close> = R.decode(img:png())
    local ink = raster:count_near(pal, 40, L.plot.x0 + 1, L.plot.y0 + 1, L.plot.x1 - 1, L.plot.y1 - 1)
    T.ok(ink >= 100, "ink in the plot: " .. ink)
    local nleg = 0
    for _, b in ipairs(L.boxes) do if b.kind == "legend" then nleg = nleg + 1 end end
    T.eq(nleg, 6, "tracked peak, tracked at mark, RSS and the 3 largest categories")
    T.raises(function() R.memory_chart({}) end, "expected a non")
    T.raises(function() R.memory_chart(tl, { colour = 1 }) end, "unknown option 'colour'")
    T.raises(function() R.memory_chart(T.tmp .. "/absent.json") end, "cannot open")
    r = nil
    collectgarbage()   -- the model loaded by run: later tests measure live bytes
  end,
}
