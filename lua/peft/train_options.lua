-- lua/peft/train_options.lua — the options of peft.train.run, as the engine declares them.
-- Owner: train. The descriptors live in one C table (src/train/options.c, include/peftlua/options.h),
-- which peft.train._options hands over; ranges and choices are checked by the engine
-- (pl_option_check_number / pl_option_check_choice), so their messages are the engine's.
-- Every consumer reads this module: the check in peft.train.run (unknown keys with
-- "did you mean", types, ranges and choices, errors naming the user's key and value),
-- peft.train.options(), help(peft.train.run) in the REPL, `peftlua train --help`, the flags of
-- `peftlua train` (--key value) and docs/api.md (tests/lua/test_cli.lua checks the page against
-- this table, so neither can drift).
--
-- A descriptor: { name, type, default = value or nil, doc = "default as written in docs" (when
-- the default is computed), min =, max =, min_open = true (exclusive lower bound), max_open =,
-- choices = {...}, keys = {...} (tracking), required = true, group = "...", help = "..." }.
-- Types: "integer", "number", "boolean", "string", "path" (a readable file), "list" (a Lua list
-- of strings; on the command line one comma-separated string), "int_list",
-- "function", "model" (a path or a peft.Model), "bool_or_int" (false | true | k >= 1),
-- "size" (bytes: an integer, or a string such as "512M", "8G"), "tracking".
local M = {}

local C = require("peft.train")._options
local O = C.list
M.list = O
M.by_name = {}
for _, o in ipairs(O) do M.by_name[o.name] = o end

-- Levenshtein distance, for "did you mean".
local function distance(a, b)
  local prev = {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = { [0] = i }
    for j = 1, #b do
      local cost = a:sub(i, i) == b:sub(j, j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev = cur
  end
  return prev[#b]
end

-- The closest known name within a third of its length (at least 2 edits), or nil.
function M.suggest(key, names)
  local best, bd
  for _, n in ipairs(names) do
    local d = distance(key, n)
    if (not bd or d < bd) then best, bd = n, d end
  end
  if bd and bd <= math.max(2, #key // 3) then return best end
  -- a known name that contains the key or is contained in it ("rank" -> "lora_rank")
  for _, n in ipairs(names) do
    if #key >= 3 and (n:find(key, 1, true) or key:find(n, 1, true)) then return n end
  end
end

local function quote(v)
  if type(v) == "string" then return string.format("%q", v) end
  return tostring(v)
end
M.quote = quote

local function show(v)
  if type(v) == "string" then return string.format("%q", v) end
  if type(v) == "table" then
    local parts = {}
    for i, x in ipairs(v) do parts[i] = quote(x) end
    return "{" .. table.concat(parts, ", ") .. "}"
  end
  return tostring(v)
end

-- "an integer >= 1", "a number in (0, 1)", ... (the engine's words)
function M.range_text(o) return C.range_text(o.name) end

function M.type_text(o)
  if o.choices then
    local c = {}
    for i, v in ipairs(o.choices) do c[i] = quote(v) end
    return table.concat(c, " | ")
  end
  return ({ integer = "integer", number = "number", boolean = "boolean", string = "string",
            path = "path", list = "list of strings", int_list = "list of integers",
            ["function"] = "function", model = "path | peft.Model",
            bool_or_int = "boolean | integer >= 1", size = 'integer | "512M"',
            tracking = "string | table | false" })[o.type] or o.type
end

function M.default_text(o)
  if o.doc then return o.doc end
  if o.default ~= nil then return show(o.default) end
  if o.required then return "required" end
  return "none"
end

-- Sizes: "512M", "8G", "1.5GiB", 1048576.
function M.parse_size(v)
  if math.type(v) == "integer" then return v >= 1 and v or nil end
  if type(v) == "number" then return v >= 1 and math.floor(v) or nil end
  if type(v) ~= "string" then return nil end
  local n, u = v:match("^%s*([%d%.]+)%s*([kKmMgGtT]?)[iI]?[bB]?%s*$")
  n = tonumber(n)
  if not n then return nil end
  local mul = ({ k = 2^10, m = 2^20, g = 2^30, t = 2^40 })[u:lower()] or 1
  local b = math.floor(n * mul)
  return b >= 1 and b or nil
end

local function is_model(v)
  local mt = getmetatable(v)
  return type(v) == "userdata" and mt and (mt.__name == "peft.Model")
end

-- One value against its descriptor: nil when fine, else what is wrong ("must be ...").
function M.check_value(o, v)
  local t = o.type
  if t == "integer" then
    if math.type(v) ~= "integer" then
      if type(v) == "number" and v == math.floor(v) and v == v then return nil end
      return "must be " .. M.range_text(o)
    end
  elseif t == "number" then
    if type(v) ~= "number" or v ~= v then return "must be " .. M.range_text(o) end
  elseif t == "boolean" then
    if type(v) ~= "boolean" then return "must be true or false" end
  elseif t == "string" then
    if type(v) ~= "string" then return "must be a string" end
  elseif t == "function" then
    if type(v) ~= "function" then return "must be a function" end
  elseif t == "model" then
    if type(v) ~= "string" and not is_model(v) then return "must be a model path or a peft.Model" end
  elseif t == "path" then
    if type(v) ~= "string" then return "must be a file path" end
    local f, err = io.open(v, "rb")
    if not f then
      local why = tostring(err):match(":%s*([^:]+)$") or tostring(err)
      return "cannot be read (" .. why:lower() .. ")"
    end
    local ok, rerr = f:read(0)
    f:close()
    if ok == nil and rerr and rerr:find("directory") then return "is a directory, not a data file" end
  elseif t == "list" then
    if type(v) ~= "table" then return "must be a list of names" end
    for _, x in ipairs(v) do if type(x) ~= "string" then return "must be a list of names" end end
  elseif t == "int_list" then
    if type(v) ~= "table" then return "must be a list of integers" end
    for _, x in ipairs(v) do if math.type(x) ~= "integer" or x < 0 then return "must be a list of integers >= 0" end end
  elseif t == "bool_or_int" then
    if type(v) ~= "boolean" and not (math.type(v) == "integer" and v >= 1) then
      return "must be false, true or an integer >= 1"
    end
  elseif t == "tracking" then
    if type(v) ~= "string" and type(v) ~= "table" and v ~= false then
      return 'must be a store path such as "mlruns", a table {uri =, experiment =, run_name =, tags =} or false'
    end
    if type(v) == "table" then
      local known = {}
      for _, k in ipairs(o.keys) do known[k] = true end
      local bad = {}
      for k in pairs(v) do if not known[k] then bad[#bad + 1] = tostring(k) end end
      table.sort(bad)
      if bad[1] then
        local s = M.suggest(bad[1], o.keys)
        return string.format("has an unknown key '%s'%s (%s)", bad[1], s and string.format(" (did you mean '%s'?)", s) or "",
          table.concat(o.keys, ", "))
      end
      if v.uri == nil then return "needs uri (the mlruns directory)" end
    end
  elseif t == "size" then
    if not M.parse_size(v) then return 'must be a size in bytes (an integer >= 1, or a string such as "512M" or "8G")' end
  end
  if o.choices then
    local why = C.check_choice(o.name, v)
    if why then return why end
  end
  if (t == "integer" or t == "number") then
    local why = C.check_number(o.name, v)
    if why then return why end
  end
  return nil
end

-- Check a configuration. Returns nil when it is fine, else message, key (the first problem).
-- Messages start with the key: "lora_rank = 0 is out of range (an integer >= 1)".
function M.check(cfg)
  if type(cfg) ~= "table" then return "expects a configuration table" end
  local names = {}
  for _, o in ipairs(O) do names[#names + 1] = o.name end
  local unknown = {}
  for k in pairs(cfg) do
    if type(k) ~= "string" or not M.by_name[k] then unknown[#unknown + 1] = tostring(k) end
  end
  table.sort(unknown)
  if unknown[1] then
    local k = unknown[1]
    local s = M.suggest(k, names)
    return string.format("unknown option '%s'%s (peft.train.options() lists them)", k,
      s and string.format(" (did you mean '%s'?)", s) or ""), k
  end
  -- values first (paths, which touch the file system, last), then combinations
  local function values(paths)
    for _, o in ipairs(O) do
      if (o.type == "path") == paths then
        local v = cfg[o.name]
        if v == nil then
          if o.required then return string.format("'%s' is required (%s)", o.name, o.help), o.name end
        else
          local why = M.check_value(o, v)
          if why then
            local shown = (type(v) == "string" or type(v) == "number" or type(v) == "boolean") and quote(v) or type(v)
            return string.format("%s = %s %s", o.name, shown, why), o.name
          end
        end
      end
    end
  end
  local msg, key = values(false)
  if msg then return msg, key end
  if cfg.max_iters and cfg.epochs then return "give max_iters or epochs, not both", "epochs" end
  if (cfg.loss_scale ~= nil or cfg.growth_interval ~= nil) and cfg.precision ~= "fp16" then
    return 'loss_scale and growth_interval are for precision = "fp16"', cfg.loss_scale ~= nil and "loss_scale" or "growth_interval"
  end
  if (cfg.quant ~= nil or cfg.double_quant ~= nil or cfg.embed_dtype ~= nil) and cfg.method ~= "qlora" then
    local k = cfg.quant ~= nil and "quant" or cfg.double_quant ~= nil and "double_quant" or "embed_dtype"
    return k .. ' is for method = "qlora"', k
  end
  if cfg.valid ~= nil and cfg.valid_fraction ~= nil then return "give valid or valid_fraction, not both", "valid_fraction" end
  if cfg.resume and cfg.overwrite then return "give resume or overwrite, not both", "overwrite" end
  return values(true)
end

-- Coerce a command-line string to the option's type ("--lora_rank 16" -> 16).
function M.from_string(o, s)
  local t = o.type
  if t == "integer" then return math.tointeger(tonumber(s)) or s end
  if t == "number" then return tonumber(s) or s end
  if t == "boolean" then
    if s == "true" or s == "1" or s == "yes" then return true end
    if s == "false" or s == "0" or s == "no" then return false end
    return s
  end
  if t == "bool_or_int" then
    if s == "true" then return true elseif s == "false" then return false end
    return math.tointeger(tonumber(s)) or s
  end
  if t == "list" then
    local l = {}
    for x in s:gmatch("[^,%s]+") do l[#l + 1] = x end
    return l
  end
  if t == "int_list" then
    local l = {}
    for x in s:gmatch("[^,%s]+") do l[#l + 1] = math.tointeger(tonumber(x)) or x end
    return l
  end
  if t == "size" then return math.tointeger(tonumber(s)) or s end
  if t == "tracking" and s == "false" then return false end
  return s
end

-- The help text: one line per option, grouped.
function M.help()
  local groups = { run = "Run", method = "Method and memory", lora = "LoRA", schedule = "Length and batches",
                   optimizer = "Optimizer and schedule", data = "Data", eval = "Evaluation, saving, output" }
  local order = { "run", "method", "lora", "schedule", "optimizer", "data", "eval" }
  local lines = {}
  for _, g in ipairs(order) do
    lines[#lines + 1] = groups[g] .. ":"
    for _, o in ipairs(O) do
      if o.group == g then
        local ty = (o.min or o.max) and M.range_text(o) or M.type_text(o)
        lines[#lines + 1] = string.format("  %-16s %-30s default %s", o.name, ty, M.default_text(o))
        lines[#lines + 1] = string.format("  %-16s %s", "", o.help)
      end
    end
  end
  return table.concat(lines, "\n")
end

return M
