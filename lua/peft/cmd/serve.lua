-- peftlua serve: an OpenAI-compatible HTTP server over one model (lua/peft/serve.lua;
-- docs/serve.md). Ctrl-C stops it.
local usage = [[
usage: peftlua serve --model FILE [options]
  --model FILE          the model (GGUF, safetensors directory, llama2.c .bin)
  --adapter DIR         also serve this adapter, as a model named after DIR (repeatable)
  --name ID             the base model's id (default: the file name without .gguf)
  --host ADDR           address to bind (default 127.0.0.1: this machine only)
  --port N              port (default 8080; 0: a free one, printed at start)
  --api-key KEY         require "Authorization: Bearer KEY" (also PEFT_API_KEY)
  --chat-template NAME  chat template family (chatml, llama2, llama3, mistral, zephyr) for a
                        model without its own
  --max-body BYTES      largest request body (default 4194304)
  --max-queue N         requests waiting beyond this get 503 (default 64)
  --threads N           engine threads (default: peft.hw's choice)]]

local args = { ... }
if #args == 0 and arg then for i = 1, #arg do args[i] = arg[i] end end
local o = { adapters = {} }
local i = 1
local function value(flag)
  local v = args[i + 1]
  if v == nil then io.stderr:write(("peftlua serve: %s needs a value\n%s\n"):format(flag, usage)); os.exit(2) end
  i = i + 2
  return v
end
local function number(flag)
  local s = value(flag)
  local n = math.tointeger(tonumber(s))
  if not n or n < 0 then io.stderr:write(("peftlua serve: %s takes a whole number, not '%s'\n"):format(flag, s)); os.exit(2) end
  return n
end
while i <= #args do
  local a = args[i]
  if a == "--model" then o.model = value(a)
  elseif a == "--adapter" then o.adapters[#o.adapters + 1] = value(a)
  elseif a == "--name" then o.name = value(a)
  elseif a == "--host" then o.host = value(a)
  elseif a == "--port" then o.port = number(a)
  elseif a == "--api-key" then o.api_key = value(a)
  elseif a == "--chat-template" then o.chat_template = value(a)
  elseif a == "--max-body" then o.max_body = number(a)
  elseif a == "--max-queue" then o.max_queue = number(a)
  elseif a == "--threads" then peft.hw.threads(number(a))
  elseif a == "-h" or a == "--help" then print(usage); return
  else io.stderr:write(("peftlua serve: unknown argument '%s'\n%s\n"):format(a, usage)); os.exit(2) end
end
if not o.model then io.stderr:write("peftlua serve: --model FILE is required\n" .. usage .. "\n"); os.exit(2) end
o.api_key = o.api_key or os.getenv("PEFT_API_KEY")
if o.api_key == "" then o.api_key = nil end

local okn, s = pcall(peft.serve.new, o)
if not okn then io.stderr:write("peftlua serve: " .. tostring(s):gsub("^[^\n]-%.lua:%d+: ", ""):gsub("^serve: ", "") .. "\n"); os.exit(1) end
print(("peftlua serve: %s on http://%s:%d/v1"):format(table.concat(s.ids, ", "), s.host, s.port))
io.stdout:flush()
local ok, err = pcall(s.serve, s)   -- returns on Ctrl-C
s:close()
io.stderr:write("serve: stopped\n")
if not ok and not tostring(err):find("interrupted", 1, true) then error(err, 0) end
