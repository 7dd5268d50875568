-- lua/peft/dist.lua — peft.dist: what a rank of an MPI job does in Lua. Owner: dist.
-- Extends the C module (src/lua/l_dist.c, passed as `...`): whether a training run is
-- data-parallel, each rank's share of the data, and parallel tuning trials.
--
--   peft.dist.enabled(flag)         -> true when a run should be distributed (flag, else > 1 rank)
--   peft.dist.shard(it, ga)         -> iterator over this rank's micro-batches of every step
--   peft.dist.minimize(fn, space, opts)   parallel peft.tune.minimize (see below)
local M = ...

-- distributed = true | false | nil (nil: detected — more than one rank in the job)
function M.enabled(flag)
  if flag ~= nil and type(flag) ~= "boolean" then error("distributed must be true or false", 3) end
  if flag == nil then return M.size() > 1 end
  return flag
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

-- A file that swallows writes (ranks other than 0 keep no metrics).
function M.null_file()
  return { write = function(self) return self end, close = function() return true end,
           setvbuf = function() return true end, flush = function() return true end }
end

return M
