-- peftlua train CONFIG.lua [--key value ...] — fine-tune from a config file.
-- The config file is Lua: `return { model = ..., dataset = ..., output = ..., ... }` or the
-- same keys as top-level assignments; every key is a peft.train.run option
-- (lua/peft/train_options.lua), except `shape` (the model's shape for the memory estimate,
-- when the model file is not here yet). Flags override keys: --lora_rank 16, --lora-rank=16,
-- --targets q_proj,v_proj, --resume. Errors name the config's own line or the flag.
local cli = require "peft.cli"
local OPTIONS = require "peft.train_options"

local cfg_flags = {}
local spec = {
  name = "train",
  usage = "peftlua train CONFIG.lua [--key value ...]",
  summary = "Fine-tune a model with the options of a config file (a Lua table of peft.train.run\n" ..
            "options); --key value on the command line overrides a key of the file.",
  flags = {
    { "estimate", "boolean", "print the memory model's estimate for this machine and stop" },
  },
  passthrough = function(key, val, opts)
    local o = OPTIONS.by_name[key]
    if not o then
      local names = {}
      for _, d in ipairs(OPTIONS.list) do names[#names + 1] = d.name end
      local s = OPTIONS.suggest(key, names)
      cli.die("train", string.format("unknown option --%s%s (peftlua train --help lists them)", key,
        s and string.format(" (did you mean --%s?)", s) or ""))
    end
    cfg_flags[key] = OPTIONS.from_string(o, val)
  end,
  more = "config keys (also flags --key value):\n" .. OPTIONS.help():gsub("\n", "\n  "):gsub("^", "  ") ..
    "\n\n  shape            {dim=, hidden_dim=, layers=, heads=, kv_heads=, vocab_size=} or a memory-model\n" ..
    "                   preset name: the shape for the estimate printed before the model is loaded\n\n" ..
    "The output folder holds adapter/ (PEFT layout), checkpoint/, metrics.jsonl and memory.json\n" ..
    "(docs/api.md, \"Output folder\"). Presets: recipes/presets/*.lua.",
  examples = {
    "peftlua train recipes/presets/quickstart.lua",
    "peftlua train my.lua --learning_rate 1e-4 --max_iters 50 --output runs/b",
    "peftlua train recipes/presets/mistral7b-toolcall-lora.lua --estimate",
  },
}
local opts, rest = cli.parse(spec, { ... })
local path = rest[1] or cli.die("train", "give a config file: peftlua train CONFIG.lua (peftlua train --help)")

-- ---------------------------------------------------------------- the config file
local f, ferr = io.open(path, "rb")
if not f then cli.die("train", string.format("%s: cannot open the config file (%s)", path, (ferr or ""):match(":%s*([^:]+)$") or ferr)) end
local ok_read, text = pcall(f.read, f, "a")
f:close()
if not ok_read or not text then cli.die("train", path .. ": is a directory, not a config file") end
local env = setmetatable({}, { __index = _G })
local chunk, perr = load(text, "@" .. path, "t", env)
if not chunk then cli.die("train", perr) end
local okc, ret = pcall(chunk)
if not okc then cli.die("train", cli.clean(ret)) end
local cfg = type(ret) == "table" and ret or env
if type(ret) ~= "table" then
  local t = {}
  for k, v in pairs(env) do t[k] = v end
  cfg = t
end
for k, v in pairs(cfg_flags) do cfg[k] = v end
local shape = cfg.shape
cfg.shape = nil

-- The line of the config file where key is set (for errors), or nil.
local function line_of(key)
  local n = 0
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    if line:match("^%s*" .. key .. "%s*=") or line:match("[{,;]%s*" .. key .. "%s*=") then return n end
  end
end

-- Input paths: as given when they exist from here, else relative to the config file.
local cfg_dir = path:match("^(.*)/[^/]*$") or "."
for _, k in ipairs { "dataset", "valid" } do
  local v = cfg[k]
  if type(v) == "string" and v:sub(1, 1) ~= "/" and not cli.exists(v) and cli.exists(cfg_dir .. "/" .. v) then
    cfg[k] = cfg_dir .. "/" .. v
  end
end
if type(cfg.model) == "string" then cfg.model = cli.find_model(cfg.model) end

-- --estimate reads no data: the data paths are not checked then
local chk = cfg
if opts.estimate then
  chk = {}
  for k, v in pairs(cfg) do chk[k] = v end
  chk.dataset, chk.valid = path, nil
end
local msg, key = OPTIONS.check(chk)
if msg then
  if key and cfg_flags[key] ~= nil then cli.die("train", "--" .. key .. ": " .. msg) end
  local ln = key and line_of(key)
  cli.die("train", string.format("%s:%s %s", path, ln and (ln .. ":") or "", msg))
end


-- ---------------------------------------------------------------- the estimate, before loading
local function estimate_opts()
  local e = { method = cfg.method, batch_size = cfg.batch_size or 4, seq_len = cfg.max_seq_len or 512,
              grad_accum = cfg.grad_accum, checkpointing = cfg.checkpointing, precision = cfg.precision,
              lora_rank = cfg.lora_rank, targets = cfg.targets, optimizer = cfg.optimizer, quant = cfg.quant,
              compute = cfg.compute }
  if type(shape) == "string" then e.preset = shape
  elseif type(shape) == "table" then for k, v in pairs(shape) do e[k] = v end end
  return e
end
local budget = cfg.memory_budget and OPTIONS.parse_size(cfg.memory_budget) or peft.memory.budget and peft.memory.budget()
if budget == nil or budget <= 0 then budget = peft.hw.info().memory_budget end
if shape or opts.estimate then
  if not shape then
    -- the file is here: the shape comes from its header (the weights stay mapped)
    local okm, m = pcall(peft.model.load, cfg.model)
    if not okm then cli.die("train", cli.clean(m)) end
    shape = m
  end
  local e = estimate_opts()
  if type(shape) == "userdata" then e.model = shape end
  local oke, est = pcall(peft.memory.estimate, e)
  if not oke then cli.die("train", cli.clean(est)) end
  local hw = peft.hw.info()
  print(string.format("memory estimate for this machine (%s, budget %s from %s):", hw.cpu or "?",
    peft.memory.format(budget), cfg.memory_budget and "memory_budget" or hw.budget_source or "the hardware report"))
  print(peft.memory.report(est))
  if est.resident > budget then
    print(string.format("does not fit: %s needed, %s available. What other settings need:",
      peft.memory.format(est.resident), peft.memory.format(budget)))
    local tries = {
      { "checkpointing = true", { checkpointing = true } },
      { 'method = "qlora"', { method = "qlora" } },
      { 'method = "qlora", checkpointing = true', { method = "qlora", checkpointing = true } },
      { 'method = "qlora", checkpointing = true, batch_size = 1', { method = "qlora", checkpointing = true, batch_size = 1 } },
    }
    local any = false
    for _, t in ipairs(tries) do
      local e2 = estimate_opts()
      if type(shape) == "userdata" then e2.model = shape end
      for k, v in pairs(t[2]) do e2[k] = v end
      local ok2, est2 = pcall(peft.memory.estimate, e2)
      if ok2 then
        local fits = est2.resident <= budget
        any = any or fits
        print(string.format("  %-58s %12s  %s", t[1], peft.memory.format(est2.resident), fits and "fits" or "does not fit"))
      end
    end
    if not any then print("  none of these fits: a machine with more memory, or a smaller model") end
  else
    print(string.format("fits: %s of the %s budget", peft.memory.format(est.resident), peft.memory.format(budget)))
  end
  if opts.estimate then os.exit(0) end
  if type(shape) == "userdata" then shape:close() end
end

-- ---------------------------------------------------------------- the run
cli.run("train", function()
  local r = peft.train.run(cfg)
  if r.trainer then r.trainer:close(); r.trainer = nil end
  if not cfg.quiet then
    print(string.format("output   %s (adapter/, checkpoint/, metrics.jsonl, memory.json)", r.output))
  end
end)
