-- lua/peft/repl.lua — the REPL's helpers (src/host/main.c calls them): the printer of results
-- (tables and peftlua objects readably, depth-limited), help() / help(fn) (the global `help`),
-- and tab completion of globals, fields (peft.tr<Tab>) and methods (m:ge<Tab>).
local M = {}

-- ------------------------------------------------------------------ printer
M.max_depth = 2      -- nested tables shown this deep, then "{...}"
M.max_items = 24     -- entries per table, then "... (N more)"

local function is_ident(k) return type(k) == "string" and k:match("^[%a_][%w_]*$") end

local function type_name(v)
  local mt = getmetatable(v)
  if type(mt) == "table" and type(mt.__name) == "string" then return mt.__name end
  return type(v)
end

local function scalar(v)
  if type(v) == "string" then
    if #v > 200 then return string.format("%q", v:sub(1, 200)):gsub("\\\n", "\\n") .. "..." end
    return (string.format("%q", v):gsub("\\\n", "\\n"))
  end
  if math.type(v) == "float" then
    if v == math.floor(v) and math.abs(v) < 1e15 then return string.format("%.1f", v) end
    return string.format("%.6g", v)
  end
  return tostring(v)
end

local function show(v, depth, seen, indent)
  local t = type(v)
  if t ~= "table" and t ~= "userdata" then
    if t == "function" then
      if not M.names[v] then M.index_names() end
      local name = M.names[v]
      return name and ("function " .. name) or tostring(v)
    end
    return scalar(v)
  end
  local mt = getmetatable(v)
  if type(mt) == "table" and mt.__tostring then
    local ok, s = pcall(tostring, v)
    if ok then return s end
  end
  if t == "userdata" then
    return string.format("<%s>", type_name(v))
  end
  if seen[v] then return "{<cycle>}" end
  if depth >= M.max_depth then
    local n = 0
    for _ in pairs(v) do n = n + 1 end
    return n == 0 and "{}" or string.format("{... %d entries}", n)
  end
  seen[v] = true
  local keys, n = {}, #v
  for k in pairs(v) do
    if not (math.type(k) == "integer" and k >= 1 and k <= n) then keys[#keys + 1] = k end
  end
  table.sort(keys, function(a, b)
    local ta, tb = type(a), type(b)
    if ta ~= tb then return ta < tb end
    if ta == "string" or ta == "number" then return a < b end
    return tostring(a) < tostring(b)
  end)
  local items, shown = {}, 0
  for i = 1, n do
    if shown >= M.max_items then break end
    items[#items + 1] = show(v[i], depth + 1, seen, indent .. "  ")
    shown = shown + 1
  end
  for _, k in ipairs(keys) do
    if shown >= M.max_items then break end
    local ks = is_ident(k) and k or ("[" .. scalar(k) .. "]")
    items[#items + 1] = ks .. " = " .. show(v[k], depth + 1, seen, indent .. "  ")
    shown = shown + 1
  end
  local total = n + #keys
  if total > shown then items[#items + 1] = string.format("... (%d more)", total - shown) end
  seen[v] = nil
  if #items == 0 then return "{}" end
  local one = "{ " .. table.concat(items, ", ") .. " }"
  if #one + #indent <= 100 and not one:find("\n") then return one end
  return "{\n" .. indent .. "  " .. table.concat(items, ",\n" .. indent .. "  ") .. "\n" .. indent .. "}"
end

function M.format(v) return show(v, 0, {}, "") end

function M.print(...)
  local n = select("#", ...)
  local parts = {}
  for i = 1, n do parts[i] = M.format((select(i, ...))) end
  print(table.concat(parts, "\t"))
end

-- ------------------------------------------------------------------ names of functions
-- peft.<module>.<fn> and <Class>:<method> for every function reachable from peft (help and
-- the printer use them).
M.names = setmetatable({}, { __mode = "k" })
function M.index_names()
  if not peft then return end
  for _, mod in ipairs(peft.modules or {}) do
    local t = peft[mod]
    if type(t) == "table" then
      for k, f in pairs(t) do
        if type(f) == "function" and not M.names[f] then M.names[f] = "peft." .. mod .. "." .. k end
      end
    end
  end
  for k, mt in pairs(debug.getregistry()) do
    if type(k) == "string" and k:match("^peft%.%u") and type(mt) == "table" then
      local idx = type(mt.__index) == "table" and mt.__index or mt
      for name, f in pairs(idx) do
        if type(f) == "function" and not name:match("^__") and not M.names[f] then
          M.names[f] = k:gsub("%.methods$", "") .. ":" .. name
        end
      end
    end
  end
end

-- ------------------------------------------------------------------ help
local OVERVIEW = [[
peftlua REPL: Lua 5.4 with every peft.* module loaded.
  help(x)            help on a function, module or object: help(peft.train.run), help(peft.model)
  peft.modules       the C modules; each is peft.<name> (tensor, model, tokenizer, data, train,
                     memory, tune, report, hw)
  m = peft.model.load("models/SmolLM2-135M-Instruct.Q4_1.gguf")
  m                  printing shows objects and tables readably; m:card() for the details
  m:chat({{role = "user", content = "Hi"}}, {max_tokens = 64, on_token = io.write})
  peft.train.run{model = ..., dataset = ..., output = ...}   help(peft.train.run) lists options
Tab completes globals, peft.<module>.<fn> and methods (m:<Tab>). Ctrl-C interrupts what runs
(generation keeps the text so far); exit, quit or Ctrl-D leaves. Docs: docs/api.md.]]

function M.help(x)
  M.index_names()
  if x == nil then print(OVERVIEW) return end
  local api = require "peft.api"
  if x == peft.train.run or x == peft.train then
    if x == peft.train then print(api.help_module("train")) print() end
    print("peft.train.run(options) -> result\n")
    print(require("peft.train_options").help())
    return
  end
  if type(x) == "function" then
    local name = M.names[x]
    if not name then print("a function (not part of peft; no help)") return end
    print(api.help_function(name) or (name .. ": no help text (see docs/api.md)"))
    return
  end
  if type(x) == "table" then
    for _, mod in ipairs(peft.modules or {}) do
      if peft[mod] == x then print(api.help_module(mod)) return end
    end
    if x == peft then print(OVERVIEW) return end
  end
  local tn = type_name(x)
  if tn:match("^peft%.") then
    print(api.help_class(tn) or (tn .. ": see docs/api.md"))
    return
  end
  print(string.format("a %s value: %s", tn, M.format(x)))
end

-- ------------------------------------------------------------------ completion
local KEYWORDS = { "and", "break", "do", "else", "elseif", "end", "false", "for", "function",
                   "goto", "if", "in", "local", "nil", "not", "or", "repeat", "return", "then",
                   "true", "until", "while", "exit", "quit" }

local function fields(v, methods)
  local out = {}
  local function add_from(t)
    if type(t) ~= "table" then return end
    for k, val in pairs(t) do
      if type(k) == "string" and is_ident(k) and not k:match("^__") then
        if not methods or type(val) == "function" then out[k] = true end
      end
    end
  end
  local ok = pcall(function()
    if type(v) == "table" and not methods then add_from(v) end
    local mt = getmetatable(v)
    local depth = 0
    while type(mt) == "table" and depth < 4 do
      local idx = rawget(mt, "__index")
      if type(idx) == "table" then add_from(idx) end
      if type(idx) ~= "table" then break end
      mt = getmetatable(idx)
      depth = depth + 1
    end
    if type(v) == "table" and methods then add_from(v) end
  end)
  if not ok then return {} end
  local list = {}
  for k in pairs(out) do list[#list + 1] = k end
  table.sort(list)
  return list
end

-- word: the text being completed ("peft.tr", "m:ge", "pri"); returns the full candidates.
function M.complete(word)
  local prefix, sep, last = word:match("^(.-)([%.:])([%w_]*)$")
  local cands = {}
  if not prefix then
    last = word
    local seen = {}
    for k in pairs(_G) do if type(k) == "string" then seen[k] = true end end
    for _, k in ipairs(KEYWORDS) do seen[k] = true end
    for k in pairs(seen) do
      if k:sub(1, #last) == last then cands[#cands + 1] = k end
    end
    table.sort(cands)
    return cands
  end
  -- resolve prefix (a chain of names and dots) from the globals, without calling anything
  local v = _G
  for part in prefix:gmatch("[^%.]+") do
    if not is_ident(part) then return {} end
    local ok, nv = pcall(function() return v[part] end)
    if not ok or nv == nil then return {} end
    v = nv
  end
  if prefix:find("[^%w_%.]") then return {} end
  for _, k in ipairs(fields(v, sep == ":")) do
    if k:sub(1, #last) == last then cands[#cands + 1] = prefix .. sep .. k end
  end
  return cands
end

-- The REPL's globals: help (and exit/quit handled by the host's line reader).
_G.help = M.help

return M
