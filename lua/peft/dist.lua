-- lua/peft/dist.lua — peft.dist: what a rank of an MPI job does in Lua. Owner: dist.
-- Extends the C module (src/lua/l_dist.c, passed as `...`): whether a training run is
-- data-parallel, each rank's share of the data, and parallel tuning trials.
--
--   peft.dist.enabled(flag)         -> true when a run should be distributed (flag, else > 1 rank)
--   peft.dist.shard(it, ga)         -> iterator over this rank's micro-batches of every step
--   peft.dist.minimize(fn, space, opts)   parallel peft.tune.minimize (see below)
local M = ...

-- distributed = true | false | nil (nil: detected — more than one rank in the job)
-- Inside a parallel tuning trial every rank runs its own trial: training there is one process.
local in_trial = false
function M.enabled(flag)
  if flag ~= nil and type(flag) ~= "boolean" then error("distributed must be true or false", 3) end
  if in_trial then
    if flag then error("distributed = true inside a parallel tuning trial (each rank runs its own trial)", 3) end
    return false
  end
  if flag == nil then return M.size() > 1 end
  return flag
end

-- fn(...) with training kept to this process; errors pass through
local function solo(fn, ...)
  in_trial = true
  local res = table.pack(pcall(fn, ...))
  in_trial = false
  if not res[1] then error(res[2], 0) end
  return table.unpack(res, 2, res.n)
end

-- A batch iterator's share for this rank. A step is size·ga consecutive micro-batches of the
-- underlying iterator (the global batch, in the order one process with grad_accum = size·ga
-- would see it); rank r takes micro-batches r·ga+1 .. r·ga+ga of each step and skips the
-- others, so every rank's position is the same at step boundaries (state/restore are the
-- underlying iterator's there). Each returned batch carries step_tokens: the tokens of every
-- micro-batch consumed with it (the global count over a step).
function M.shard(it, ga, rank, size)
  rank, size = rank or M.rank(), size or M.size()
  local k = 0   -- this rank's micro-batches returned in the current step
  local W = {}
  local function take()
    local b = it:next()
    if not b then error("peft.dist.shard: the data ended inside a step", 2) end
    return b, b.batch * b.seq
  end
  function W:next()
    local tokens = 0
    if k == 0 then
      for _ = 1, rank * ga do local _, n = take(); tokens = tokens + n end
    end
    local b, n = take()
    tokens = tokens + n
    k = k + 1
    if k == ga then
      for _ = 1, (size - 1 - rank) * ga do local _, m = take(); tokens = tokens + m end
      k = 0
    end
    b.step_tokens = tokens
    return b
  end
  function W:state() return it:state() end
  function W:restore(s) k = 0; return it:restore(s) end
  function W:batches_per_epoch() return it:batches_per_epoch() end
  function W:close() if it.close then it:close() end end
  return W
end

-- The run record of ranks other than 0 (peft.track's on rank 0): nothing kept.
function M.null_record()
  local noop = function() end
  return { fit = noop, resolved = noop, save = noop, finish = noop, metrics = function(_, f) return f end }
end

-- A file that swallows writes (ranks other than 0 keep no metrics).
function M.null_file()
  return { write = function(self) return self end, close = function() return true end,
           setvbuf = function() return true end, flush = function() return true end }
end

-- ---- parallel tuning ----
-- Messages are Lua literals of plain values (numbers, strings, booleans, tables of them),
-- read back with load() in an empty environment.
local function ser(v)
  local t = type(v)
  if t == "number" then
    if math.type(v) == "integer" then return string.format("%d", v) end
    if v ~= v then return "0/0" elseif v == math.huge then return "1/0" elseif v == -math.huge then return "-1/0" end
    return string.format("%.17g", v)
  elseif t == "string" then return string.format("%q", v)
  elseif t == "boolean" or t == "nil" then return tostring(v)
  elseif t == "table" then
    local parts = {}
    for k, x in pairs(v) do parts[#parts + 1] = "[" .. ser(k) .. "]=" .. ser(x) end
    table.sort(parts)
    return "{" .. table.concat(parts, ",") .. "}"
  end
  error("peft.dist: cannot send a " .. t, 3)
end
local function deser(s)
  local f = assert(load("return " .. s, "=message", "t", {}))
  return f()
end
M._ser, M._deser = ser, deser

local TAG_TRIAL, TAG_RESULT, TAG_STOP = 1, 2, 3

-- Worker ranks: run the trials rank 0 sends until it says stop; return its best.
local function worker(fn)
  while true do
    local msg, _, tag = M.recv(0, nil, nil)
    local m = deser(msg)
    if tag == TAG_STOP then return m.best, m.value end
    local t0 = peft.train.now()
    local res = table.pack(pcall(solo, fn, m.params))
    local r = { id = m.id, ok = res[1], time = peft.train.now() - t0 }
    if res[1] then
      local v = res[2]
      if v ~= nil and type(v) ~= "number" then r.ok, r.err = false, "the objective returned a " .. type(v) .. ", not a number"
      else r.value = v; r.metrics = type(res[3]) == "table" and res[3] or nil end
    else
      r.err = tostring(res[2])
    end
    M.send(0, TAG_RESULT, ser(r))
  end
end

-- peft.tune.minimize over the job's ranks (called by it when there are several). Rank 0 keeps
-- the Gaussian process: it asks for a proposal whenever a rank is free (the points asked and
-- not yet told are pending in the GP, kriging believer, so simultaneous trials spread out),
-- sends it, runs trials itself in between (opts.master_trials, default true) and tells every
-- result as it arrives; each worker holds up to opts.queue proposals (default 2 while rank 0
-- also runs trials, so a worker finishing during rank 0's trial starts its next at once).
-- A worker silent for opts.trial_timeout seconds while it holds trials is lost: those trials
-- are told as failed and the search goes on with the others (a late answer is ignored).
-- Returns best, value, opt on rank 0 and best, value, nil elsewhere.
function M.minimize(fn, space, opts, bayes_keys)
  local rank, size = M.rank(), M.size()
  if rank ~= 0 then return worker(fn) end
  local bo = {}
  for k in pairs(bayes_keys) do bo[k] = opts[k] end
  bo.space = space
  local opt = peft.tune.bayes(bo)
  local budget = opts.budget or 30
  if math.type(budget) ~= "integer" or budget < 1 then error("tune.minimize: budget must be a positive integer", 3) end
  if opts.trial_timeout ~= nil and not (type(opts.trial_timeout) == "number" and opts.trial_timeout > 0) then
    error("tune.minimize: trial_timeout must be a positive number of seconds", 3)
  end
  if opts.queue ~= nil and (math.type(opts.queue) ~= "integer" or opts.queue < 1) then
    error("tune.minimize: queue must be a positive integer", 3)
  end
  if opts.history then
    local f = io.open(opts.history, "rb")
    if f then
      f:close()
      local ok, err = opt:load(opts.history)
      if not ok then error("tune.minimize: " .. tostring(err), 3) end
    end
  end
  local timeout = opts.trial_timeout
  local own = opts.master_trials ~= false
  local depth = opts.queue or (own and 2 or 1)
  local issued = opt:count()
  local inflight, next_id = {}, 0     -- id -> {w =, p =}
  local held, heard, lost = {}, {}, {}
  for w = 1, size - 1 do held[w], heard[w] = 0, peft.train.now() end
  local function describe(p)
    local parts = {}
    for _, s in ipairs(opt._spec) do parts[#parts + 1] = s.name .. "=" .. tostring(p[s.name]) end
    return table.concat(parts, " ")
  end
  local function tell(p, v, metrics, who)
    opt:tell(p, v, metrics)
    if opts.verbose then print(string.format("tune: trial %d (rank %d)  %s  -> %s", opt:count(), who, describe(p), tostring(v))) end
    if opts.history then
      local ok2, err = opt:save(opts.history)
      if not ok2 then error("tune.minimize: " .. tostring(err), 0) end
    end
  end
  local function result(msg, from)
    local r = deser(msg)
    heard[from] = peft.train.now()
    local job = inflight[r.id]
    if not job or lost[from] then return end   -- a lost worker's late answer
    inflight[r.id] = nil
    held[from] = held[from] - 1
    if not r.ok then
      if not opts.catch then error(string.format("tune.minimize: trial on rank %d failed: %s", from, r.err), 0) end
      if opts.verbose then print(string.format("tune: trial failed on rank %d: %s", from, r.err)) end
      tell(job.p, nil, nil, from)
    else
      tell(job.p, r.value, r.metrics, from)
    end
  end
  local function check_lost()
    if not timeout then return end
    local now = peft.train.now()
    for w = 1, size - 1 do
      if not lost[w] and held[w] > 0 and now - heard[w] > timeout then
        lost[w] = true
        io.stderr:write(string.format("tune: rank %d silent for %.0f s with %d trial(s): marked failed, search goes on without it\n",
          w, now - heard[w], held[w]))
        local ids = {}
        for id, job in pairs(inflight) do if job.w == w then ids[#ids + 1] = id end end
        table.sort(ids)
        for _, id in ipairs(ids) do
          local job = inflight[id]
          inflight[id] = nil
          tell(job.p, nil, { lost_rank = w }, w)
        end
        held[w] = 0
      end
    end
  end
  local function alive() local n = 0; for w = 1, size - 1 do if not lost[w] then n = n + 1 end end; return n end
  while opt:count() < budget do
    -- hand out proposals to free workers
    for w = 1, size - 1 do
      while not lost[w] and held[w] < depth and issued < budget do
        local p = opt:ask()
        next_id = next_id + 1
        inflight[next_id] = { w = w, p = p }
        if held[w] == 0 then heard[w] = peft.train.now() end   -- its clock starts now
        held[w] = held[w] + 1
        issued = issued + 1
        M.send(w, TAG_TRIAL, ser { id = next_id, params = p })
      end
    end
    -- results that have arrived
    while true do
      local msg, from = M.recv(nil, TAG_RESULT, 0)
      if not msg then break end
      result(msg, from)
    end
    check_lost()
    if opt:count() >= budget then break end
    if (own or alive() == 0) and issued < budget then
      -- a trial here
      local p = opt:ask()
      issued = issued + 1
      local v, metrics
      if opts.catch then
        local res = table.pack(pcall(solo, fn, p))
        if res[1] then v, metrics = res[2], res[3]
        elseif opts.verbose then print("tune: trial failed: " .. tostring(res[2])) end
      else
        v, metrics = solo(fn, p)
      end
      if v ~= nil and type(v) ~= "number" then error("tune.minimize: the objective returned a " .. type(v) .. ", not a number", 0) end
      tell(p, v, type(metrics) == "table" and metrics or nil, 0)
    elseif next(inflight) then
      local msg, from = M.recv(nil, TAG_RESULT, timeout and math.min(timeout, 1) or 1)
      if msg then result(msg, from) end
      check_lost()
    end
  end
  local best, value = opt:best()
  -- a lost worker is told too: if it was only slow it ends with the others
  for w = 1, size - 1 do M.send(w, TAG_STOP, ser { best = best, value = value }) end
  return best, value, opt
end

return M
