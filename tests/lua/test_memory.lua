local T = require "testlib"
local mem = peft.memory
return {
  categories = function()
    local cats = mem.categories()
    for _, want in ipairs { "weights", "adapters", "gradients", "optimizer", "activations", "workspace" } do
      local found = false
      for _, c in ipairs(cats) do if c == want then found = true end end
      T.ok(found, "missing category " .. want)
    end
  end,
  unknown_category_raises = function()
    T.raises(function() mem.current("nope") end, "unknown memory category 'nope'")
  end,
  stats_consistent = function()
    local s = mem.stats()
    local sum = 0
    for _, c in ipairs(mem.categories()) do
      T.ok(s[c].peak >= s[c].current, c .. " peak below current")
      if c ~= "mapped" then sum = sum + s[c].current end
    end
    T.eq(s.total.current, sum, "total is the sum of categories")
    T.ok(s.rss > 0, "rss measured")
  end,
}
