-- lua/peft/cli.lua — what the commands (lua/peft/cmd/<command>.lua) share: argument parsing
-- from a declared list of flags, --help text made from the same list, errors for people (one
-- line, exit status 1, no traceback), the models search path, `peftlua --help` and --version.
--
--   local cli = require "peft.cli"
--   local spec = { name = "generate", summary = "...", usage = "peftlua generate --model M [PROMPT]",
--                  flags = { { "model", "path", "the model" , required = true}, { "max-tokens", "integer", "...", default = 128 } },
--                  positional = "PROMPT", examples = { "peftlua generate --model m.gguf 'Once'" } }
--   local opts, rest = cli.parse(spec, {...})     -- prints help and exits on --help
--   cli.die("message")                             -- "peftlua generate: message", exit 1
--   cli.find_model("SmolLM2-135M-Instruct.Q4_1.gguf")  -- path on the models search path
local M = {}

local function host() return package.loaded["peft.host"] or {} end

-- One line on stderr and exit status 1 (no traceback: errors are for people; PEFT_DEBUG=1 adds
-- the traceback to errors raised, not to these).
function M.die(cmd, msg)
  io.stderr:write(string.format("peftlua%s: %s\n", cmd and (" " .. cmd) or "", msg))
  os.exit(1)
end

-- The message of a caught Lua error without the internal file position (a position inside
-- lua/peft/ says nothing to a user; one in the user's own file stays).
function M.clean(err)
  local msg = tostring(err)
  msg = msg:gsub("^[^\n]-/lua/peft/[%w_/]+%.lua:%d+: ", "")
  return msg
end

-- ------------------------------------------------------------------ models search path
-- A model name is looked up as given (a path that exists), then in each folder of
-- PEFT_MODEL_PATH (':'-separated), then ./models, ~/.cache/peftlua/models and the installed
-- share/peftlua/models. The first existing file wins; a name found nowhere is returned as
-- given (the loader's error names it).
function M.model_dirs()
  local dirs = {}
  local env = os.getenv("PEFT_MODEL_PATH")
  if env and env ~= "" then for d in env:gmatch("[^:]+") do dirs[#dirs + 1] = d end end
  dirs[#dirs + 1] = "models"
  local home = os.getenv("HOME")
  local cache = os.getenv("XDG_CACHE_HOME") or (home and home .. "/.cache")
  if cache then dirs[#dirs + 1] = cache .. "/peftlua/models" end
  local lua_dir = PEFTLUA_LUA_DIR or ""
  local root = lua_dir:match("^(.*)/lua$")
  if root then
    dirs[#dirs + 1] = root .. "/models"                 -- source tree: <root>/models
    dirs[#dirs + 1] = root .. "/tests/fixtures/shared/models/stories260K"
  end
  return dirs
end

local function exists(p)
  local f = io.open(p, "rb")
  if f then f:close() return true end
  return false
end
M.exists = exists

function M.find_model(name)
  if type(name) ~= "string" then return name end
  if exists(name) or name:sub(1, 1) == "/" then return name end
  for _, d in ipairs(M.model_dirs()) do
    local p = d .. "/" .. name
    if exists(p) then return p end
  end
  return name
end

-- ------------------------------------------------------------------ flags
local function flag_key(name) return (name:gsub("-", "_")) end

local function coerce(kind, s, flag, cmd)
  if kind == "integer" then
    local v = math.tointeger(tonumber(s))
    if not v then M.die(cmd, string.format("--%s %s: expected an integer", flag, s)) end
    return v
  elseif kind == "number" then
    local v = tonumber(s)
    if not v then M.die(cmd, string.format("--%s %s: expected a number", flag, s)) end
    return v
  end
  return s
end

-- The --help text of a command spec.
function M.help_text(spec)
  local lines = { "usage: " .. spec.usage, "", spec.summary }
  if spec.flags and #spec.flags > 0 then
    lines[#lines + 1] = ""
    lines[#lines + 1] = "options:"
    for _, f in ipairs(spec.flags) do
      local left = "--" .. f[1] .. (f[2] ~= "boolean" and (" " .. f[2]:upper()) or "")
      local d = f.default ~= nil and string.format(" (default %s)", tostring(f.default)) or ""
      lines[#lines + 1] = string.format("  %-24s %s%s%s", left, f[3], d, f.required and " (required)" or "")
    end
    lines[#lines + 1] = string.format("  %-24s %s", "--help", "this help")
  end
  if spec.more then lines[#lines + 1] = ""; lines[#lines + 1] = spec.more end
  if spec.examples then
    lines[#lines + 1] = ""
    lines[#lines + 1] = "examples:"
    for _, e in ipairs(spec.examples) do lines[#lines + 1] = "  " .. e end
  end
  return table.concat(lines, "\n")
end

-- Parse argv against spec.flags. Returns opts (flag names with '-' as '_'), positional args.
-- spec.passthrough = function(name, value, opts) -> true when it took an unknown --name value
-- (peftlua train: any option of peft.train.run).
function M.parse(spec, argv)
  local opts, rest = {}, {}
  local by = {}
  for _, f in ipairs(spec.flags or {}) do by[f[1]] = f; if f.default ~= nil then opts[flag_key(f[1])] = f.default end end
  local i = 1
  while argv[i] do
    local a = argv[i]
    if a == "--help" or a == "-h" then
      print(M.help_text(spec))
      os.exit(0)
    elseif a == "--" then
      for j = i + 1, #argv do rest[#rest + 1] = argv[j] end
      break
    elseif a:sub(1, 2) == "--" then
      local name, val = a:sub(3):match("^([^=]+)=(.*)$")
      name = name or a:sub(3)
      local f = by[name] or by[name:gsub("_", "-")]
      if f then
        if f[2] == "boolean" then
          opts[flag_key(f[1])] = val == nil and true or (val == "true" or val == "1")
        else
          if val == nil then i = i + 1; val = argv[i] end
          if val == nil then M.die(spec.name, string.format("--%s needs a value (peftlua %s --help)", name, spec.name)) end
          opts[flag_key(f[1])] = coerce(f[2], val, name, spec.name)
        end
      elseif spec.passthrough then
        if val == nil then
          local nxt = argv[i + 1]
          if nxt == nil or nxt:sub(1, 2) == "--" then val = "true" else i = i + 1; val = nxt end
        end
        spec.passthrough(flag_key(name), val, opts)
      else
        local names = {}
        for _, g in ipairs(spec.flags or {}) do names[#names + 1] = g[1] end
        local s = require("peft.train_options").suggest(name, names)
        M.die(spec.name, string.format("unknown option --%s%s (peftlua %s --help)", name,
          s and string.format(" (did you mean --%s?)", s) or "", spec.name))
      end
    else
      rest[#rest + 1] = a
    end
    i = i + 1
  end
  for _, f in ipairs(spec.flags or {}) do
    if f.required and opts[flag_key(f[1])] == nil then
      M.die(spec.name, string.format("--%s is required (peftlua %s --help)", f[1], spec.name))
    end
  end
  return opts, rest
end

-- Run fn, turning a raised error into one line (traceback with PEFT_DEBUG=1) and exit 1.
function M.run(cmd, fn, ...)
  local h = host()
  local ok, err = xpcall(fn, function(e)
    if h.debug then return debug.traceback(tostring(e), 2) end
    return e
  end, ...)
  if not ok then M.die(cmd, h.debug and tostring(err) or M.clean(err)) end
end

-- Load a model (name on the search path) and, when given, an adapter (m:load_adapter).
function M.load_model(cmd, path, adapter)
  local p = M.find_model(path)
  local m = peft.model.load(p)
  if adapter then
    if type(m.load_adapter) ~= "function" then
      M.die(cmd, "this build cannot load adapters (m:load_adapter is missing)")
    end
    m:load_adapter(adapter)
  end
  return m
end

-- ------------------------------------------------------------------ peftlua --help, --version
M.commands = {
  { "train", "fine-tune from a config file: peftlua train CONFIG.lua [--key value ...]" },
  { "chat", "talk with a model (and an adapter): peftlua chat --model M [--adapter DIR]" },
  { "generate", "continue a prompt: peftlua generate --model M [--adapter DIR] PROMPT" },
  { "eval", "loss, perplexity (and tool-call metric) of a model or adapter on a data file" },
  { "export", "write a model as GGUF or safetensors; an adapter as a GGUF LoRA (--lora-gguf)" },
  { "data", "check and describe a dataset: peftlua data check|stats FILE" },
  { "version", "version, git commit, build flags, OpenBLAS core" },
}

-- Commands found in lua/peft/cmd/ that the list above does not describe (other issues' ones).
local function extra_commands()
  local known, extra = {}, {}
  for _, c in ipairs(M.commands) do known[c[1]] = true end
  local dir = (PEFTLUA_LUA_DIR or "lua") .. "/peft/cmd"
  local p = io.popen("ls '" .. dir .. "' 2>/dev/null")
  if p then
    for f in p:lines() do
      local n = f:match("^([%w_-]+)%.lua$")
      if n and not known[n] then extra[#extra + 1] = n end
    end
    p:close()
  end
  table.sort(extra)
  return extra
end

function M.usage()
  local out = {
    "usage: peftlua <command> [args]      run a command (peftlua <command> --help)",
    "       peftlua script.lua [args]     run a Lua recipe with every peft.* module loaded",
    "       peftlua [-i] [-e code]        the REPL (help() inside it)",
    "",
    "commands:",
  }
  for _, c in ipairs(M.commands) do out[#out + 1] = string.format("  %-10s %s", c[1], c[2]) end
  for _, n in ipairs(extra_commands()) do out[#out + 1] = string.format("  %-10s (peftlua %s --help)", n, n) end
  local rest = {
    "",
    "options:",
    "  -e CODE          run CODE (repeatable; with a script, before it)",
    "  -i               enter the REPL after the script or -e",
    "  -v, --version    version, git commit, build flags, OpenBLAS core",
    "  -h, --help       this help",
    "",
    "environment:",
    "  PEFT_MEMORY_BUDGET   bytes training may use (e.g. 8G; default 85% of available RAM)",
    "  PEFT_THREADS         threads (default: physical cores; then OMP_NUM_THREADS, OPENBLAS_NUM_THREADS)",
    "  PEFT_MODEL_PATH      ':'-separated folders searched for model names (then ./models,",
    "                       ~/.cache/peftlua/models, the installed share/peftlua/models)",
    "  PEFT_DEBUG=1         Lua tracebacks with errors",
    "  PEFTLUA_LUA_DIR      where the Lua layer is (default: beside the binary)",
    "",
    "docs: docs/api.md (every function and option), docs/train.md, docs/data.md, docs/memory.md,",
    "      docs/from-mlx-lm-llamafactory.md, man peftlua; installed under share/peftlua/ and in",
    "      the REPL: help(), help(peft.train.run)",
  }
  for _, l in ipairs(rest) do out[#out + 1] = l end
  print(table.concat(out, "\n"))
end

function M.version()
  local h = host()
  local hw = peft.hw.info and peft.hw.info() or {}
  print(string.format("peftlua %s (%s)", peft.VERSION or (peft._VERSION or ""):match("[%d.]+$") or "0.1.0", _VERSION))
  local commit = h.commit
  if (not commit or commit == "unknown") and peft.track and peft.track.build then commit = peft.track.build().commit end
  print(string.format("commit   %s", commit or "unknown"))
  print(string.format("build    %s", h.flags or "unknown"))
  print(string.format("openblas %s core%s", tostring(hw.blas_core or "unknown"),
    os.getenv("OPENBLAS_CORETYPE") and (" (OPENBLAS_CORETYPE=" .. os.getenv("OPENBLAS_CORETYPE") .. ")") or ""))
  print(string.format("threads  %s", tostring(peft.hw.threads and peft.hw.threads() or "?")))
end

return M
