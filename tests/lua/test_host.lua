-- The host: REPL through a pipe, recipes with errors (traceback + exit status), -e, arg table,
-- running from another directory without LUA_PATH.
local T = require "testlib"
local host = T.host
local function write(path, s) local f = assert(io.open(path, "w")); f:write(s); f:close() end

return {
  repl_through_pipe = function()
    local rc, out = T.sh("printf 'x = 6 * 7\\nx\\nfor i = 1, 2 do\\nprint(\"line\" .. i)\\nend\\nerror(\"boom\")\\nprint(\"still here\", type(peft.memory))\\n' | " .. host)
    T.eq(rc, 0, "REPL exits 0 at end of input")
    T.ok(out:find("42", 1, true), "expression value printed: " .. out)
    T.ok(out:find("line1", 1, true) and out:find("line2", 1, true), "multi-line statement ran")
    T.ok(out:find("stdin:1: boom", 1, true), "error reported with chunk:line")
    T.ok(not out:find("stack traceback", 1, true), "one line, no traceback (PEFT_DEBUG=1 adds it)")
    T.ok(out:find("still here\ttable", 1, true), "REPL continues after an error with peft loaded")
  end,
  recipe_error_traceback_and_status = function()
    local p = T.tmp .. "/bad_recipe.lua"
    write(p, "local function inner()\n  local t = nil\n  return t.field\nend\ninner()\n")
    local rc, out = T.sh(host .. " " .. p)
    T.eq(rc, 1, "non-zero exit")
    T.ok(out:find("bad_recipe.lua:3:", 1, true), "file:line of the error: " .. out)
    T.ok(not out:find("stack traceback", 1, true), "no traceback by default: " .. out)
    rc, out = T.sh("PEFT_DEBUG=1 " .. host .. " " .. p)
    T.eq(rc, 1, "non-zero exit")
    T.ok(out:find("in local 'inner'", 1, true) or out:find("in function 'inner'", 1, true), "PEFT_DEBUG=1: the traceback names the function")
  end,
  syntax_error_exit = function()
    local p = T.tmp .. "/syntax.lua"
    write(p, "x = = 1\n")
    local rc, out = T.sh(host .. " " .. p)
    T.eq(rc, 1)
    T.ok(out:find("syntax.lua:1:", 1, true), out)
  end,
  args_and_e = function()
    local p = T.tmp .. "/args.lua"
    write(p, "print(arg[0]:match('args.lua') ~= nil, select('#', ...), arg[1], arg[2], (select(2, ...)))\n")
    local rc, out = T.sh(host .. " -e 'io.write(\"E;\")' " .. p .. " a b")
    T.eq(rc, 0)
    T.eq(out, "E;true\t2\ta\tb\tb\n")
  end,
  runs_from_any_directory = function()
    local rc, out = T.sh("cd / && env -u LUA_PATH -u LUA_PATH_5_4 " .. host .. " -e 'print(type(peft.memory.stats), require(\"peft\") == peft)'")
    T.eq(rc, 0, out)
    T.eq(out, "function\ttrue\n")
  end,
  missing_script = function()
    local rc, out = T.sh(host .. " /nonexistent/recipe.lua")
    T.eq(rc, 1)
    T.ok(out:find("cannot open /nonexistent/recipe.lua", 1, true), out)
  end,
  unknown_option = function()
    local rc, out = T.sh(host .. " --bogus")
    T.eq(rc, 1)
    T.ok(out:find("unknown option '--bogus'", 1, true), out)
  end,
  interrupt_is_a_safe_lua_error = function()
    -- SIGINT during a long Lua loop becomes an "interrupted!" error, exit status 1, no crash
    local p = T.tmp .. "/spin.lua"
    local flag = T.tmp .. "/spin.ready"
    os.remove(flag)
    write(p, "local f = io.open(arg[1], 'w'); f:write('1'); f:close(); local x = 0; while true do x = x + 1 end\n")
    -- wait for the script to signal it is running (no fixed sleep), then interrupt it
    local rc, out = T.sh("(" .. host .. " " .. p .. " " .. flag .. " & pid=$!; while [ ! -s " .. flag ..
      " ]; do sleep 0.05; done; kill -INT $pid; wait $pid)")
    T.eq(rc, 1, out)
    T.ok(out:find("interrupted!", 1, true), out)
  end,
}
