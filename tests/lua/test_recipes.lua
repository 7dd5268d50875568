-- Every recipe runs in the test suite: each recipes/*.lua must be run by some Lua test (with
-- its smoke settings), so a recipe nobody runs fails here.
local T = require "testlib"
local function lines(cmd) local p = io.popen(cmd); local t = {}; for l in p:lines() do t[#t + 1] = l end; p:close(); return t end
return {
  every_recipe_is_run_by_a_test = function()
    local recipes = lines("ls '" .. T.root .. "/recipes/'*.lua")
    T.ok(#recipes >= 3, "recipes found")
    local corpus = {}
    for _, f in ipairs(lines("ls '" .. T.root .. "/tests/lua/'test_*.lua")) do
      local h = io.open(f); corpus[#corpus + 1] = h:read("a"); h:close()
    end
    corpus = table.concat(corpus, "\n")
    for _, r in ipairs(recipes) do
      local name = r:match("([^/]+)$")
      T.ok(corpus:find("recipes/" .. name, 1, true), "no test runs recipes/" .. name)
    end
  end,
  recipes_parse = function()
    for _, r in ipairs(lines("ls '" .. T.root .. "/recipes/'*.lua")) do
      local f, err = loadfile(r)
      T.ok(f, err)
    end
  end,
}
