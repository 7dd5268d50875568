-- tests/lua/test_tune.lua — peft.tune from Lua: spaces, ask/tell, constraints, batches,
-- failures, history JSON resume, minimize, Pareto front, the recipe. Owner: tune.
local T = require "testlib"
local tune = peft.tune

local SPACE = {
  lr = { "real", 1e-5, 1e-2, log = true },
  rank = { "int", 4, 64, pow2 = true },
  method = { "cat", { "lora", "dora", { "q_proj", "v_proj" } } },
}

local function obj(p)
  local m = type(p.method) == "table" and "qv" or p.method
  return (math.log(p.lr, 10) + 3) ^ 2 + 0.3 * (math.log(p.rank, 2) - 4) ^ 2 + (m == "dora" and 0 or 0.5)
end

local function valid(p)
  T.ok(p.lr >= 1e-5 and p.lr <= 1e-2, "lr in range")
  T.eq(math.type(p.rank), "integer", "rank is an integer")
  T.ok(p.rank == 4 or p.rank == 8 or p.rank == 16 or p.rank == 32 or p.rank == 64, "rank a power of two")
  T.ok(p.method == "lora" or p.method == "dora" or (type(p.method) == "table" and p.method[1] == "q_proj"), "method a choice")
end

return {
  ask_tell_best = function()
    local opt = tune.bayes { space = SPACE, seed = 3 }
    for _ = 1, 25 do
      local p = opt:ask()
      valid(p)
      opt:tell(p, obj(p))
    end
    local best, v = opt:best()
    T.ok(v < 0.35, "found the dora / lr 1e-3 / rank 16 basin, got " .. v)
    T.eq(best.method, "dora")
    T.eq(#opt:history(), 25)
    T.eq(opt:pending(), 0)
  end,

  deterministic_per_seed = function()
    local function run(seed)
      local opt = tune.bayes { space = SPACE, seed = seed }
      local out = {}
      for i = 1, 10 do
        local p = opt:ask()
        opt:tell(p, obj(p))
        out[i] = string.format("%.17g/%d/%s", p.lr, p.rank, tostring(p.method))
      end
      return table.concat(out, " ")
    end
    T.eq(run(5), run(5))
    T.ok(run(5) ~= run(6), "different seeds differ")
  end,

  constraint_and_batch = function()
    local calls = 0
    local opt = tune.bayes { space = { x = { "real", 0, 1 }, y = { "real", 0, 1 } }, seed = 2,
      constraint = function(p) calls = calls + 1; return p.x + p.y <= 1 end }
    for _ = 1, 4 do
      local batch = opt:ask(3)
      T.eq(#batch, 3)
      T.eq(opt:pending(), 3)
      for _, p in ipairs(batch) do
        T.ok(p.x + p.y <= 1 + 1e-12, "constraint holds")
        opt:tell(p, (p.x - 0.9) ^ 2 + (p.y - 0.9) ^ 2)
      end
      T.ok(batch[1].x ~= batch[2].x and batch[2].x ~= batch[3].x, "batch points differ")
    end
    opt:ask(2)
    T.eq(opt:pending(), 2)
    opt:clear_pending()
    T.eq(opt:pending(), 0)
    T.ok(calls > 12, "constraint consulted")
    local _, v = opt:best()
    T.ok(v < 0.36, "constrained optimum 0.32 approached, got " .. v)
  end,

  constraint_error_propagates = function()
    local opt = tune.bayes { space = { x = { "real", 0, 1 } }, constraint = function() error("boom in constraint") end }
    T.raises(function() opt:ask() end, "boom in constraint")
    -- the optimiser is still usable afterwards
    opt:tell({ x = 0.5 }, 1)
    T.eq(opt:count(), 1)
  end,

  failures_and_robustness = function()
    for _, mode in ipairs { "penalty", "model" } do
      local opt = tune.bayes { space = { x = { "real", 0, 1 }, fixed = { "real", 2, 2 }, one = { "cat", { "only" } } }, seed = 4, n_init = 3,
                               failures = mode }
      for i = 1, 14 do
        local p = opt:ask()
        T.eq(p.fixed, 2); T.eq(p.one, "only")
        local v = p.x > 0.7 and (i % 3 == 0 and 0 / 0 or (i % 3 == 1 and math.huge or nil)) or (p.x - 0.65) ^ 2
        opt:tell(p, v)
      end
      local best, v = opt:best()
      T.ok(best.x <= 0.7 and v < 0.01, "best avoids the failing region")
      local nfail = 0
      for _, h in ipairs(opt:history()) do if h.failed then nfail = nfail + 1; T.eq(h.value, nil) end end
      T.ok(nfail >= 1, "failures recorded")
    end
    T.raises(function() tune.bayes { space = { x = { "real", 0, 1 } }, failures = "ignore" } end, "'penalty' or 'model'")
    -- duplicates, a constant objective, a single point
    local o2 = tune.bayes { space = { x = { "real", 0, 1 } }, n_init = 1 }
    for _ = 1, 4 do o2:tell({ x = 0.25 }, 3) end
    for _ = 1, 5 do
      local p = o2:ask()
      T.ok(p.x >= 0 and p.x <= 1 and p.x ~= 0.25, "a new point")
      o2:tell(p, 3)
    end
  end,

  bad_input_raises = function()
    T.raises(function() tune.bayes { space = {} } end, "non%-empty")
    T.raises(function() tune.bayes { space = { x = { "real", 1, 0 } } } end, "'x'")
    T.raises(function() tune.bayes { space = { x = { "blob", 0, 1 } } } end, "unknown type 'blob'")
    T.raises(function() tune.bayes { space = { x = { "real", 0, 1, step = 2 } } } end, "unknown key 'step'")
    T.raises(function() tune.bayes { space = { c = { "cat", { "a", "a" } } } } end, "duplicate choice 'a'")
    T.raises(function() tune.bayes { space = { x = { "real", 0, 1 } }, sed = 1 } end, "unknown option 'sed'")
    T.raises(function() tune.bayes { space = { x = { "real", 0, 1 } }, acq = "pi" } end, "unknown acquisition 'pi'")
    local opt = tune.bayes { space = SPACE }
    T.raises(function() opt:tell({ lr = 1e-3, rank = 8 }, 1) end, "'method' missing")
    T.raises(function() opt:tell({ lr = 1e-3, rank = 8, method = "lora", extra = 1 }, 1) end, "unknown parameter 'extra'")
    T.raises(function() opt:tell({ lr = 1e-3, rank = 8, method = "ia3" }, 1) end, "'ia3' is not one of its choices")
    T.raises(function() opt:tell({ lr = 1e-3, rank = 12, method = "lora" }, 1) end, "power of two")
    T.raises(function() opt:tell({ lr = 1, rank = 8, method = "lora" }, 1) end, "outside")
    T.raises(function() opt:tell({ lr = 1e-3, rank = 8, method = "lora" }, "bad") end, "number or nil")
    T.raises(function() opt:ask(0) end, "positive integer")
    opt:close()
    T.raises(function() opt:ask() end, "closed")
  end,

  history_resume = function()
    local path = T.tmp .. "/test_tune_history.json"
    os.remove(path)
    local calls = 0
    local function f(p) calls = calls + 1; return obj(p), { time = calls } end
    local _, _, o1 = tune.minimize(f, SPACE, { budget = 8, seed = 1, history = path })
    T.eq(calls, 8)
    T.ok(T.exists(path), "history written")
    -- resume to 14 trials: only 6 new evaluations, the first 8 come from the file
    local best, v, o2 = tune.minimize(f, SPACE, { budget = 14, seed = 1, history = path })
    T.eq(calls, 14)
    T.eq(o2:count(), 14)
    local h1, h2 = o1:history(), o2:history()
    for i = 1, 8 do
      T.near(h2[i].value, h1[i].value, 1e-12 * math.abs(h1[i].value), "trial " .. i)
      T.eq(h2[i].params.rank, h1[i].params.rank)
      T.eq(h2[i].metrics.time, i)
    end
    T.ok(v <= h1[1].value and best ~= nil, "best over all trials")
    -- loading into a different space is refused with the file named
    local o3 = tune.bayes { space = { lr = { "real", 0, 1 } } }
    T.raises(function() o3:load(path) end, "test_tune_history.json")
    local ok, err = o3:load(T.tmp .. "/no_such_history.json")
    T.eq(ok, nil); T.ok(err:find("cannot open"), err)
    local fh = io.open(path, "w"); fh:write("{not json"); fh:close()
    T.raises(function() tune.minimize(f, SPACE, { budget = 2, history = path }) end, "test_tune_history.json")
    os.remove(path)
  end,

  minimize_branin = function()
    local br = tune.testfn("branin")
    local best, v = tune.minimize(function(p) return br.f { p.x1, p.x2 } end,
      { x1 = { "real", br.lo[1], br.hi[1] }, x2 = { "real", br.lo[2], br.hi[2] } }, { budget = 30, seed = 1 })
    T.ok(v - br.fmin < 0.05, "Branin regret after 30: " .. (v - br.fmin))
    T.ok(best.x1 >= -5 and best.x1 <= 10)
    -- batches and errors caught as failures
    local n = 0
    local _, v2, opt = tune.minimize(function(p)
      n = n + 1
      if n % 4 == 0 then error("simulated crash") end
      return br.f { p.x1, p.x2 }
    end, { x1 = { "real", -5, 10 }, x2 = { "real", 0, 15 } }, { budget = 16, batch = 4, seed = 2, catch = true })
    T.eq(opt:count(), 16)
    local nf = 0
    for _, h in ipairs(opt:history()) do if h.failed then nf = nf + 1 end end
    T.eq(nf, 4)
    T.ok(v2 < 10, "batched search finite")
    T.raises(function() tune.minimize(function() error("stop") end, { x = { "real", 0, 1 } }, { budget = 2 }) end, "stop")
  end,

  study_beats_random = function()
    -- a few seeds through the Lua path (the C test runs the full 20-seed study)
    for _, fn in ipairs { "branin", "hartmann3" } do
      local bo, rs = 0, 0
      for s = 1, 3 do
        bo = bo + tune.study_run(fn, false, s, 30)
        rs = rs + tune.study_run(fn, true, s, 30)
      end
      T.ok(bo * 10 < rs, fn .. ": BO regret " .. bo / 3 .. " vs random " .. rs / 3)
    end
  end,

  pareto_front = function()
    local trials = {
      { name = "a", value = 1.0, metrics = { time = 10, memory = 5 } },
      { name = "b", value = 0.8, metrics = { time = 20, memory = 5 } },
      { name = "c", value = 1.2, metrics = { time = 12, memory = 6 } },   -- dominated by a
      { name = "d", value = 0.8, metrics = { time = 20, memory = 7 } },   -- dominated by b
      { name = "e", value = 2.0, metrics = { time = 5, memory = 9 } },
      { name = "f", metrics = { time = 1, memory = 1 } },                 -- failed: no value
      { name = "g", value = 1.0, metrics = { time = 10, memory = 5 } },   -- ties a: kept
    }
    local front = tune.pareto(trials, { value = "min", time = "min", memory = "min" })
    local names = {}
    for i, t in ipairs(front) do names[i] = t.name end
    T.eq(table.concat(names, ","), "a,b,e,g")
    -- quality maximised: top-level keys work too
    local q = tune.pareto({ { quality = 0.9, time = 3 }, { quality = 0.8, time = 4 }, { quality = 0.95, time = 9 } },
      { quality = "max", time = "min" })
    T.eq(#q, 2); T.eq(q[1].quality, 0.9); T.eq(q[2].quality, 0.95)
    T.raises(function() tune.pareto(trials, { value = "up" }) end, "\"min\" or \"max\"")
  end,

  testfn_values = function()
    local h6 = tune.testfn("hartmann6")
    T.near(h6.f { 0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573 }, h6.fmin, 1e-5)
    T.eq(h6.d, 6)
    T.raises(function() tune.testfn("rosen") end, "unknown test function")
    T.raises(function() h6.f { 1, 2 } end, "takes 6 coordinates")
  end,

  -- recipes/tune.lua in smoke mode (stories260K): progress lines, the best configuration, the
  -- baseline, the report; the numbers it prints are the ones tune.json holds
  recipe_runs = function()
    local rc, out = T.sh(string.format("cd '%s' && PEFT_THREADS=1 '%s' recipes/tune.lua --smoke --baseline", T.root, T.host))
    T.eq(rc, 0, out)
    T.ok(out:find("rank from the data: %d+"), out)
    T.ok(out:find("trial 1 of 6  %[rung 1/3: 2 steps%]  learning_rate="), out)
    T.ok(out:find("ETA %d+:%d%d"), out)
    local v = tonumber(out:match("best: trial %d+, .-validation loss ([%d.]+) after 8 steps"))
    T.ok(v, out)
    local doc = peft.memory.decode_json(assert(io.open(T.root .. "/build/tmp/tune_smoke/tune.json")):read("a"))
    T.near(doc.summary.best.value, v, 1e-4)
    T.near(tonumber(out:match("quickstart defaults .-validation loss ([%d.]+)")), doc.baseline.val_loss, 1e-4)
    T.ok(out:find("multi%-fidelity: %d+ training steps instead of 48"), out)
    T.ok(T.exists(T.root .. "/build/tmp/tune_smoke/tune.html"))
  end,
}
