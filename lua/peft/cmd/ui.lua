-- peftlua ui: the web interface (lua/peft/ui.lua; docs/ui.md). Ctrl-C stops it (a running
-- training writes a checkpoint first).
local usage = [[
usage: peftlua ui [options]
  --workspace DIR       models/, datasets/, runs/ live here (default ./peftlua-workspace)
  --host ADDR           address to bind (default 127.0.0.1: this machine only; any other
                        address needs the token, printed at start)
  --port N              port (default 8800; 0: a free one, printed at start)
  --token TOKEN         the token for a non-loopback bind (default: a random one; also PEFT_UI_TOKEN)
  --model FILE          a model offered besides the workspace's models/ (default: $PEFT_MODEL,
                        else models/SmolLM2-135M-Instruct.Q4_1.gguf when it exists)
  --max-upload BYTES    largest dataset upload (default 268435456)
  --memory-budget BYTES the budget runs are checked against (default: the hardware report's)
  --step-delay SECONDS  sleep after each training step (demonstrations and tests)
  --threads N           engine threads, the server's and the trainings' (default: peft.hw's choice)]]

local args = { ... }
if #args == 0 and arg then for i = 1, #arg do args[i] = arg[i] end end

if args[1] == "--worker" then
  local dir = args[2]
  if not dir then io.stderr:write("peftlua ui --worker RUNDIR [--resume]\n"); os.exit(2) end
  os.exit(peft.ui.worker(dir, args[3] == "--resume"))
end

local o = {}
local i = 1
local function value(flag)
  local v = args[i + 1]
  if v == nil then io.stderr:write(("peftlua ui: %s needs a value\n%s\n"):format(flag, usage)); os.exit(2) end
  i = i + 2
  return v
end
local function number(flag, float)
  local s = value(flag)
  local n = float and tonumber(s) or math.tointeger(tonumber(s))
  if not n or n < 0 then io.stderr:write(("peftlua ui: %s takes a %snumber, not '%s'\n"):format(flag, float and "" or "whole ", s)); os.exit(2) end
  return n
end
while i <= #args do
  local a = args[i]
  if a == "--workspace" then o.workspace = value(a)
  elseif a == "--host" then o.host = value(a)
  elseif a == "--port" then o.port = number(a)
  elseif a == "--token" then o.token = value(a)
  elseif a == "--model" then o.model = value(a); o.model_given = true
  elseif a == "--max-upload" then o.max_upload = number(a)
  elseif a == "--memory-budget" then o.memory_budget = number(a)
  elseif a == "--step-delay" then o.step_delay = number(a, true)
  elseif a == "--threads" then o.threads = number(a); peft.hw.threads(o.threads)
  elseif a == "-h" or a == "--help" then print(usage); return
  else io.stderr:write(("peftlua ui: unknown argument '%s'\n%s\n"):format(a, usage)); os.exit(2) end
end
o.token = o.token or os.getenv("PEFT_UI_TOKEN")
if o.token == "" then o.token = nil end
if not o.model then
  local env = os.getenv("PEFT_MODEL")
  if env and env ~= "" then o.model = env
  else
    local f = io.open("models/SmolLM2-135M-Instruct.Q4_1.gguf", "rb")
    if f then f:close(); o.model = "models/SmolLM2-135M-Instruct.Q4_1.gguf" end
  end
end
if o.model then
  local real = peft.fs.realpath(o.model)
  if not real and o.model_given then io.stderr:write(("peftlua ui: --model %s: no such file\n"):format(o.model)); os.exit(2) end
  o.model = real
end
o.model_given = nil

local u = peft.ui.new(o)
print(("peftlua ui: http://%s:%d/ (workspace %s)"):format(u.host, u.port, u.ws))
if u.token then print(("peftlua ui: open %s (the token is needed from other machines)"):format(u.url)) end
io.stdout:flush()
local ok, err = pcall(u.serve, u)   -- returns on Ctrl-C
u:close()
if not ok and not tostring(err):find("interrupted", 1, true) then error(err, 0) end
