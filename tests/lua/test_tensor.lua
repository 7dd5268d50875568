-- peft.tensor from Lua: construction, indexing (1-based), views, arithmetic, save/load.
local T = require "testlib"
local tensor = peft.tensor
return {
  from_and_totable = function()
    local t = tensor.from { { 1, 2, 3 }, { 4, 5, 6 } }
    T.eq(t:dim(), 2); T.eq(t:size(1), 2); T.eq(t:size(2), 3); T.eq(t:numel(), 6)
    T.eq(t:get(2, 3), 6)
    local back = t:totable()
    T.eq(back[2][1], 4)
    T.eq(#t, 2)
    T.raises(function() tensor.from { { 1, 2 }, { 3 } } end, "ragged")
    T.raises(function() tensor.from({ 1, 2 }, { bogus = 1 }) end, "unknown option 'bogus'")
    T.raises(function() t:get(3, 1) end, "index 3 out of range")
  end,
  views = function()
    local t = tensor.arange(12):reshape { 3, 4 }
    local col = t:narrow(2, 2, 1)          -- column 2 (1-based)
    T.eq(col:shape()[1], 3); T.eq(col:get(3, 1), 9)
    local tr = t:t()
    T.eq(tr:get(4, 3), 11)
    T.eq(tr:is_contiguous(), false)
    tr:set(-1, 1, 1)
    T.eq(t:get(1, 1), -1, "writes through views reach the base")
  end,
  arithmetic = function()
    local a = tensor.from { { 1, 2 }, { 3, 4 } }
    local b = tensor.from { 10, 20 }
    local c = a + b
    T.eq(c:get(2, 2), 24)
    T.eq((a * 2):sum(), 20)
    T.eq((1 - a):get(1, 2), -1)
    T.eq((-a):min(), -4)
    T.eq(a:sum(2):get(2), 7)
    T.eq(a:argmax(), 4)
    local m = a:matmul(tensor.from { { 1 }, { 1 } })
    T.eq(m:get(2, 1), 7)
    local s = a:softmax(2)
    T.near(s:get(1, 1), 1 / (1 + math.exp(1)), 1e-6)
    T.raises(function() return a + tensor.from { 1, 2, 3 } end, "do not broadcast")
  end,
  dtypes = function()
    local x = tensor.randn({ 2, 64 }, 42)
    local y = tensor.randn({ 2, 64 }, 42)
    T.eq(x == y, true, "same seed, same sample")
    for _, dt in ipairs { "f16", "bf16", "q8_0", "q4_1", "nf4" } do
      local q = x:to(dt)
      T.eq(q:dtype(), dt)
      local err = tensor.max_abs_diff(q:to("f32"), x)
      T.ok(err > 0 and err < 0.5, dt .. " round trip error " .. err)
    end
    T.raises(function() x:to("q9_9") end, "unknown dtype 'q9_9'")
  end,
  save_load = function()
    local p = T.tmp .. "/t.safetensors"
    local a, b = tensor.randn({ 3, 5 }, 1), tensor.arange(4):to("bf16")
    T.ok(tensor.save(p, { alpha = a, beta = b, gamma = a:t() }))
    local r = assert(tensor.load(p))
    T.eq(tensor.max_abs_diff(r.alpha, a), 0)
    T.eq(r.beta:dtype(), "bf16")
    T.eq(r.gamma:get(5, 3), a:get(3, 5), "a strided view is saved as its values")
    local none, msg = tensor.load(T.tmp .. "/missing.safetensors")
    T.eq(none, nil); T.ok(msg:find("missing.safetensors", 1, true), msg)
  end,
  memory_is_released = function()
    collectgarbage(); collectgarbage()
    local before = peft.memory.current("workspace")
    do
      local big <close> = tensor.new { 1024, 1024 }
      T.eq(peft.memory.current("workspace") - before, 4 * 1024 * 1024)
    end
    T.eq(peft.memory.current("workspace"), before, "<close> frees at scope end")
  end,
}
