-- tests/lua/run.lua — the Lua test runner.
-- Runs every tests/lua/test_*.lua (or the files named on the command line). Each test file
-- returns a table of name -> function; a function fails by raising an error. Helpers:
-- T.eq(a, b, msg), T.near(a, b, tol, msg), T.raises(fn, pattern), T.ok(cond, msg).
-- Prints a final "N passed, N failed" line and exits non-zero on any failure.
local T = {}
package.loaded["testlib"] = T

local function fmt(v) return type(v) == "string" and string.format("%q", v) or tostring(v) end
function T.ok(c, msg) if not c then error(msg or "assertion failed", 2) end return c end
function T.eq(a, b, msg)
  if a ~= b then error(string.format("%sexpected %s, got %s", msg and (msg .. ": ") or "", fmt(b), fmt(a)), 2) end
end
function T.near(a, b, tol, msg)
  if type(a) ~= "number" or math.abs(a - b) > tol or a ~= a then
    error(string.format("%sexpected %s ± %g, got %s", msg and (msg .. ": ") or "", fmt(b), tol, fmt(a)), 2)
  end
end
function T.raises(fn, pattern, msg)
  local ok, err = pcall(fn)
  if ok then error((msg or "expected an error") .. " but call succeeded", 2) end
  if pattern and not tostring(err):find(pattern) then
    error(string.format("error %q does not match %q", tostring(err), pattern), 2)
  end
  return err
end
-- project paths
local here = debug.getinfo(1, "S").source:sub(2):match("^(.*)/tests/lua/") or "."
do local p = io.popen("cd '" .. here .. "' && pwd"); here = p:read("l") or here; p:close() end
T.root = here
T.shared = os.getenv("PEFT_SHARED") or "tests/fixtures/shared"
if T.shared:sub(1, 1) ~= "/" then T.shared = here .. "/" .. T.shared end
T.host = os.getenv("PEFT_HOST") or (here .. "/build/peftlua")
T.model = os.getenv("PEFT_MODEL") or (here .. "/models/SmolLM2-135M-Instruct.Q4_1.gguf")
T.tmp = here .. "/build/tmp"
os.execute("mkdir -p '" .. T.tmp .. "'")
function T.exists(p) local f = io.open(p, "rb"); if f then f:close() return true end return false end
-- run a shell command, return exit code and combined output
function T.sh(cmd)
  local f = io.popen(cmd .. " 2>&1; echo \"__rc=$?\"")
  local out = f:read("a"); f:close()
  local rc = tonumber(out:match("__rc=(%d+)%s*$"))
  return rc, (out:gsub("__rc=%d+%s*$", ""))
end

local files = {}
if arg and #arg > 0 then
  for i = 1, #arg do files[#files + 1] = arg[i] end
else
  local p = io.popen("ls '" .. here .. "/tests/lua/'test_*.lua 2>/dev/null")
  for line in p:lines() do files[#files + 1] = line end
  p:close()
end

local passed, failed = 0, 0
for _, file in ipairs(files) do
  local chunk, err = loadfile(file)
  if not chunk then
    print("FAIL  " .. file .. ": " .. err); failed = failed + 1
  else
    local ok, suite = xpcall(chunk, debug.traceback)
    if not ok then
      print("FAIL  " .. file .. ": " .. tostring(suite)); failed = failed + 1
    else
      local names = {}
      for name in pairs(suite) do names[#names + 1] = name end
      table.sort(names)
      for _, name in ipairs(names) do
        local t0 = os.clock()
        local ok2, e = xpcall(suite[name], debug.traceback)
        local short = file:match("([^/]+)$")
        if ok2 then
          passed = passed + 1
          print(string.format("ok    %s :: %s (%.2fs)", short, name, os.clock() - t0))
        else
          failed = failed + 1
          print(string.format("FAIL  %s :: %s\n%s", short, name, tostring(e)))
        end
      end
    end
  end
end
print(string.format("%d passed, %d failed", passed, failed))
os.exit(failed == 0 and 0 or 1)
