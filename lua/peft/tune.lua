-- lua/peft/tune.lua — peft.tune: Bayesian optimisation of hyperparameters. Owner: tune.
-- Extends the C module (src/lua/l_tune.c, passed as `...`) with named parameters, categorical
-- values, the minimize loop, history files and the Pareto front.
--
--   local opt = peft.tune.bayes {
--     space = {
--       lr     = {"real", 1e-5, 1e-2, log = true},         -- or {type="real", min=, max=, log=}
--       rank   = {"int", 4, 64, pow2 = true},              -- 4, 8, 16, 32, 64
--       method = {"cat", {"lora", "dora"}},                -- any strings/numbers/booleans/lists
--     },
--     seed = 1, constraint = function(p) return p.rank <= 32 or p.method == "lora" end,
--   }
--   local p = opt:ask()            -- {lr = 3.1e-4, rank = 16, method = "dora"}
--   opt:tell(p, loss)              -- nil / NaN / inf loss = failed trial (e.g. out of memory)
--   opt:tell(p, loss, {time = 12.5, memory = 3.1e9})   -- metrics kept for pareto()
--   local best, value = opt:best()
--   opt:save("search.json")  ...  opt2:load("search.json")   -- resume
--   local best, value, opt = peft.tune.minimize(fn, space, {budget = 30, history = "h.json"})
--   local front = peft.tune.pareto(opt:history(), {value = "min", time = "min", memory = "min"})
--
-- A space is a table of name = entry (searched in sorted name order) or a list of entries
-- with name = .... Options: seed, n_init (initial Latin-hypercube points; default
-- max(5, 2·dims)), acq ("ei" | "ucb"), kernel ("matern52" | "rbf"), xi, kappa, candidates,
-- restarts, constraint, failures ("penalty": failed trials count as the worst value seen;
-- "model": also a GP on success/failure weights proposals by the probability of success).
local C = ...
local M = C

local TYPES = { real = "real", float = "real", int = "int", integer = "int", cat = "cat", categorical = "cat", choice = "cat" }
local ENTRY_KEYS = { type = true, name = true, min = true, max = true, lo = true, hi = true, log = true, pow2 = true,
                     values = true, choices = true }

local function label_of(v, name)
  local t = type(v)
  if t == "string" then return v end
  if t == "number" or t == "boolean" then return tostring(v) end
  if t == "table" then
    local parts = {}
    for i, x in ipairs(v) do
      local tx = type(x)
      if tx ~= "string" and tx ~= "number" and tx ~= "boolean" then
        error(string.format("tune: parameter '%s': list values may hold only strings, numbers and booleans", name), 4)
      end
      parts[i] = tostring(x)
    end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  error(string.format("tune: parameter '%s': a choice must be a string, number, boolean or list, not %s", name, t), 4)
end

local function normalize_entry(name, e)
  if type(e) ~= "table" then error(string.format("tune: space entry '%s' must be a table", name), 3) end
  for k in pairs(e) do
    if not (ENTRY_KEYS[k] or k == 1 or k == 2 or k == 3) then
      error(string.format("tune: space entry '%s': unknown key '%s'", name, tostring(k)), 3)
    end
  end
  local ty = TYPES[e.type or e[1] or "real"]
  if not ty then error(string.format("tune: parameter '%s': unknown type '%s' (real, int or cat)", name, tostring(e.type or e[1])), 3) end
  if ty == "cat" then
    local vals = e.values or e.choices or e[2]
    if type(vals) ~= "table" or #vals == 0 then
      error(string.format("tune: parameter '%s': a categorical needs a non-empty list of values", name), 3)
    end
    local labels, seen = {}, {}
    for i, v in ipairs(vals) do
      local l = label_of(v, name)
      if seen[l] then error(string.format("tune: parameter '%s': duplicate choice '%s'", name, l), 3) end
      seen[l] = true
      labels[i] = l
    end
    return { name = name, type = "cat", choices = labels }, { values = vals, index = seen, labels = labels }
  end
  local lo, hi = e.lo or e.min or e[2], e.hi or e.max or e[3]
  if type(lo) ~= "number" or type(hi) ~= "number" then
    error(string.format("tune: parameter '%s': %s needs numeric bounds (min, max)", name, ty), 3)
  end
  return { name = name, type = ty, lo = lo, hi = hi, log = e.log and true or false, pow2 = e.pow2 and true or false }, nil
end

local function normalize_space(space)
  if type(space) ~= "table" or next(space) == nil then error("tune: space must be a non-empty table", 3) end
  local pairs_ = {}
  if #space > 0 then
    for k in pairs(space) do
      if math.type(k) ~= "integer" then error("tune: space mixes a list of entries with named entries", 3) end
    end
    for i, e in ipairs(space) do
      if type(e) ~= "table" or type(e.name) ~= "string" then error(string.format("tune: space entry %d needs a name", i), 3) end
      pairs_[i] = { e.name, e }
    end
  else
    local names = {}
    for k in pairs(space) do
      if type(k) ~= "string" then error("tune: space keys must be parameter names", 3) end
      names[#names + 1] = k
    end
    table.sort(names)
    for i, n in ipairs(names) do pairs_[i] = { n, space[n] } end
  end
  local spec, cats, seen = {}, {}, {}
  for i, ne in ipairs(pairs_) do
    if seen[ne[1]] then error(string.format("tune: parameter '%s' defined twice", ne[1]), 3) end
    seen[ne[1]] = true
    spec[i], cats[i] = normalize_entry(ne[1], ne[2])
  end
  return spec, cats
end

local Bayes = {}
Bayes.__index = Bayes

-- values array from the C layer -> named parameters
function Bayes:_decode(arr)
  local p = {}
  for i, s in ipairs(self._spec) do
    local c = self._cats[i]
    p[s.name] = c and c.values[arr[i] + 1] or arr[i]
  end
  return p
end

-- named parameters -> values array (raises on a missing/unknown name or an unknown choice)
function Bayes:_encode(params, level)
  level = (level or 1) + 1
  if type(params) ~= "table" then error("tune: parameters must be a table of name = value", level) end
  for k in pairs(params) do
    if not self._index[k] then error(string.format("tune: unknown parameter '%s'", tostring(k)), level) end
  end
  local arr = {}
  for i, s in ipairs(self._spec) do
    local v = params[s.name]
    if v == nil then error(string.format("tune: parameter '%s' missing", s.name), level) end
    local c = self._cats[i]
    if c then
      local l = label_of(v, s.name)
      local k
      for j, lab in ipairs(c.labels) do if lab == l then k = j end end
      if not k then error(string.format("tune: parameter '%s': '%s' is not one of its choices", s.name, l), level) end
      arr[i] = k - 1
    else
      if type(v) ~= "number" then error(string.format("tune: parameter '%s' must be a number", s.name), level) end
      arr[i] = v
    end
  end
  return arr
end

local BAYES_KEYS = { space = true, seed = true, n_init = true, acq = true, kernel = true, xi = true, kappa = true,
                     candidates = true, restarts = true, constraint = true, failures = true }

function M.bayes(opts)
  if type(opts) ~= "table" then error("tune.bayes: expects an options table", 2) end
  for k in pairs(opts) do
    if not BAYES_KEYS[k] then error(string.format("tune.bayes: unknown option '%s'", tostring(k)), 2) end
  end
  local spec, cats = normalize_space(opts.space)
  local self = setmetatable({ _spec = spec, _cats = cats, _index = {} }, Bayes)
  for i, s in ipairs(spec) do self._index[s.name] = i end
  local feasible
  if opts.constraint ~= nil then
    if type(opts.constraint) ~= "function" then error("tune.bayes: constraint must be a function(params) -> boolean", 2) end
    local user = opts.constraint
    feasible = function(arr) return user(self:_decode(arr)) end
  end
  self._c = C._optimizer(spec, { seed = opts.seed, n_init = opts.n_init, acq = opts.acq, kernel = opts.kernel,
                                 xi = opts.xi, kappa = opts.kappa, candidates = opts.candidates,
                                 restarts = opts.restarts, failures = opts.failures, feasible = feasible })
  return self
end

-- ask() -> params;  ask(n) -> list of n params (a batch to run at once)
function Bayes:ask(n)
  if n == nil then return self:_decode(self._c:ask()) end
  if math.type(n) ~= "integer" or n < 1 then error("tune: ask(n) needs a positive integer", 2) end
  local out = {}
  for i, arr in ipairs(self._c:ask(n)) do out[i] = self:_decode(arr) end
  return out
end

-- tell(params, value [, metrics]); value nil or non-finite = failed trial
function Bayes:tell(params, value, metrics)
  if value ~= nil and type(value) ~= "number" then error("tune: value must be a number or nil (failed trial)", 2) end
  if metrics ~= nil and type(metrics) ~= "table" then error("tune: metrics must be a table of name = number", 2) end
  self._c:tell(self:_encode(params, 2), value, metrics)
end

function Bayes:best()
  local arr, y = self._c:best()
  if not arr then return nil end
  return self:_decode(arr), y
end

function Bayes:count() return self._c:count() end
function Bayes:pending() return self._c:pending() end
-- forget asked-but-not-told points (they otherwise stay in the model at their predicted mean)
function Bayes:clear_pending() self._c:clear_pending() end

-- every trial in order: {params =, value = (nil if failed), failed =, metrics = {...}}
function Bayes:history()
  local h = {}
  for i = 1, self._c:count() do
    local arr, y, metrics = self._c:obs(i)
    h[i] = { params = self:_decode(arr), value = y, failed = y == nil, metrics = metrics }
  end
  return h
end

function Bayes:save(path) return self._c:save(path) end
function Bayes:load(path) return self._c:load(path) end
function Bayes:close() self._c:close() end
Bayes.__close = Bayes.close
function Bayes:pareto(objectives) return M.pareto(self:history(), objectives) end
Bayes.__tostring = function(self) return "peft.tune.Bayes: " .. tostring(self._c) end

local MIN_KEYS = { budget = true, batch = true, history = true, catch = true, verbose = true,
                  parallel = true, trial_timeout = true, master_trials = true, queue = true }
for k in pairs(BAYES_KEYS) do MIN_KEYS[k] = true end

-- minimize(fn, space, opts) -> best params, best value, the optimiser.
-- fn(params) returns a number (or nil / NaN / inf for a failed trial), optionally followed by
-- a metrics table. opts: budget (total trials, default 30), batch (ask that many at a time),
-- history (a JSON file: loaded if it exists, so an interrupted search resumes; rewritten after
-- every trial), catch (an error raised by fn counts as a failed trial instead of stopping),
-- verbose, and any bayes{} option. Under mpirun with several ranks the trials run on every
-- rank at once (peft.dist.minimize; parallel = false keeps one process's loop on each rank):
-- trial_timeout (seconds of silence before a worker's trials are marked failed),
-- master_trials (rank 0 runs trials too, default true), queue (proposals a worker holds).
function M.minimize(fn, space, opts)
  if type(fn) ~= "function" then error("tune.minimize: expects a function", 2) end
  opts = opts or {}
  for k in pairs(opts) do
    if not MIN_KEYS[k] then error(string.format("tune.minimize: unknown option '%s'", tostring(k)), 2) end
  end
  -- several MPI ranks: trials run in parallel, rank 0 keeps the GP (lua/peft/dist.lua)
  if peft.dist.size() > 1 and opts.parallel ~= false then return peft.dist.minimize(fn, space, opts, BAYES_KEYS) end
  local bo = {}
  for k in pairs(BAYES_KEYS) do bo[k] = opts[k] end
  bo.space = space
  local opt = M.bayes(bo)
  local budget = opts.budget or 30
  local batch = opts.batch or 1
  if math.type(budget) ~= "integer" or budget < 1 then error("tune.minimize: budget must be a positive integer", 2) end
  if math.type(batch) ~= "integer" or batch < 1 then error("tune.minimize: batch must be a positive integer", 2) end
  if opts.history then
    local f = io.open(opts.history, "rb")
    if f then
      f:close()
      local ok, err = opt:load(opts.history)
      if not ok then error("tune.minimize: " .. tostring(err), 2) end
    end
  end
  while opt:count() < budget do
    local q = math.min(batch, budget - opt:count())
    local ps = q == 1 and { opt:ask() } or opt:ask(q)
    for _, p in ipairs(ps) do
      local ok, v, metrics
      if opts.catch then
        local res = table.pack(pcall(fn, p))
        ok, v, metrics = res[1], res[2], res[3]
        if not ok then
          if opts.verbose then print("tune: trial failed: " .. tostring(v)) end
          v, metrics = nil, nil
        end
      else
        v, metrics = fn(p)
      end
      if v ~= nil and type(v) ~= "number" then error("tune.minimize: the objective returned a " .. type(v) .. ", not a number", 2) end
      if type(metrics) ~= "table" then metrics = nil end
      opt:tell(p, v, metrics)
      if opts.verbose then
        local parts = {}
        for _, s in ipairs(opt._spec) do parts[#parts + 1] = s.name .. "=" .. tostring(p[s.name]) end
        print(string.format("tune: trial %d  %s  -> %s", opt:count(), table.concat(parts, " "), tostring(v)))
      end
      if opts.history then
        local ok2, err = opt:save(opts.history)
        if not ok2 then error("tune.minimize: " .. tostring(err), 2) end
      end
    end
  end
  local best, value = opt:best()
  return best, value, opt
end

-- The Pareto front of trials over several objectives. objectives: {name = "min" | "max", ...}
-- where a name is looked up in the trial, then in trial.metrics (so history() entries work:
-- "value" is the objective, "time"/"memory" the metrics told with it). Trials lacking a
-- finite value for any objective are left out. Returns the non-dominated trials in input
-- order (a trial dominates another when it is no worse in every objective and better in one).
function M.pareto(trials, objectives)
  if type(trials) ~= "table" then error("tune.pareto: expects a list of trials", 2) end
  if type(objectives) ~= "table" or next(objectives) == nil then
    error("tune.pareto: objectives must be a table of name = \"min\" | \"max\"", 2)
  end
  local keys, sign = {}, {}
  for k, dir in pairs(objectives) do
    if dir ~= "min" and dir ~= "max" then
      error(string.format("tune.pareto: objective '%s' must be \"min\" or \"max\"", tostring(k)), 2)
    end
    keys[#keys + 1] = k
  end
  table.sort(keys)
  for i, k in ipairs(keys) do sign[i] = objectives[k] == "max" and -1 or 1 end
  local pts, idx = {}, {}
  for i, t in ipairs(trials) do
    local row, ok = {}, true
    for j, k in ipairs(keys) do
      local v = t[k]
      if v == nil and type(t.metrics) == "table" then v = t.metrics[k] end
      if type(v) ~= "number" or v ~= v or v == math.huge or v == -math.huge then ok = false break end
      row[j] = sign[j] * v
    end
    if ok then pts[#pts + 1] = row; idx[#idx + 1] = i end
  end
  local front = {}
  for a = 1, #pts do
    local dominated = false
    for b = 1, #pts do
      if b ~= a then
        local noworse, better = true, false
        for j = 1, #keys do
          if pts[b][j] > pts[a][j] then noworse = false break end
          if pts[b][j] < pts[a][j] then better = true end
        end
        if noworse and better then dominated = true break end
      end
    end
    if not dominated then front[#front + 1] = trials[idx[a]] end
  end
  return front
end

-- Rank from the data and Bayesian search over real training runs (issue 14):
-- peft.tune.suggest_rank(model, data [, opts]) in lua/peft/tune_rank.lua,
-- peft.tune.train{...} in lua/peft/tune_train.lua (both documented in docs/tune.md).
function M.suggest_rank(model, data, opts) return require("peft.tune_rank").suggest(model, data, opts) end
function M.train(opts) return require("peft.tune_train").run(opts) end

return M
