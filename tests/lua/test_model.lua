-- tests/lua/test_model.lua — peft.model from Lua: load, card, forward, loss, generate,
-- perplexity and bad input through the host. Owner: model.
local T = require "testlib"
local model = peft.model
local S = T.shared .. "/models/stories260K/"

local function stories() return model.load(S .. "stories260K.bin") end

return {
  card_of_stories = function()
    local m <close> = stories()
    local c = m:card()
    T.eq(c.arch, "llama")
    T.eq(c.format, "llama2.c")
    T.eq(c.params, 260032)
    T.eq(c.layers, 5)
    T.eq(c.vocab_size, 512)
    T.eq(c.context_length, 512)
    T.eq(c.kv_heads, 4)
    T.eq(c.dtypes.f32, 47, "tensors (shared classifier counted once)")
    T.eq(c.tied_output, true)
    T.eq(c.tokenizer, true)
    local g <close> = model.load(S .. "stories260K.gguf")
    T.eq(g:card().format, "gguf")
    T.eq(g:card().tied_output, false)
    T.eq(#g:params(), #m:params() + 1)
    T.eq(m:params()[2], "model.layers.0.input_layernorm.weight")
  end,

  forward_shapes_and_argmax = function()
    local m <close> = stories()
    local z = m:forward({ 1, 403, 395 })
    local s = z:shape()
    T.eq(#s, 3); T.eq(s[1], 1); T.eq(s[2], 3); T.eq(s[3], 512)
    -- the NumPy reference's argmax after BOS (tests/ref/golden/stories260K_logits.bin)
    local best, bi = -math.huge, 0
    for j = 1, 512 do
      local v = z:get(1, 1, j)
      if v > best then best, bi = v, j - 1 end
    end
    T.eq(bi, 403)
    local last = m:forward({ { 1, 403, 395 }, { 1, 403, 395 } }, { last = true })
    T.eq(#last:shape(), 2)
    T.near(last:get(2, 7), z:get(1, 3, 7), 1e-5, "last row of a batch equals the full forward")
    T.raises(function() m:forward({ { 1, 2 }, { 1 } }) end, "row 2 has 1 ids")
    T.raises(function() m:forward({ 1, 99999 }) end, "outside the vocabulary")
    T.raises(function() m:forward({ 1 }, { bogus = 1 }) end, "unknown option 'bogus'")
  end,

  greedy_story = function()
    local m <close> = stories()
    local text, n = m:generate("", { greedy = true, max_tokens = 60 })
    T.ok(n > 20, "tokens generated")
    local want = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park."
    T.eq(text:sub(1, #want), want)
    local pieces = {}
    local t2 = m:generate("", { greedy = true, max_tokens = 10,
      on_token = function(piece) pieces[#pieces + 1] = piece end })
    T.eq(#pieces, 10)
    T.eq(table.concat(pieces), t2)
    local streamed = {}
    local t3 = m:generate("", { greedy = true, max_tokens = 60, stop = { "girl", "once more" },
      on_token = function(piece) streamed[#streamed + 1] = piece end })
    T.eq(t3, "Once upon a time, there was a little ")
    T.eq(table.concat(streamed), t3, "the stop string is never streamed")
    T.raises(function() m:generate("", { max_tokens = 0 }) end, "max_tokens")
    T.raises(function() m:generate("", { top_p = 2 }) end, "top_p")
    T.raises(function() m:generate("", { on_token = function() error("boom") end }) end, "boom")
  end,

  seeded_sampling_repeats = function()
    local m <close> = stories()
    local a = m:generate("Once", { seed = 7, temperature = 1.5, top_k = 40, max_tokens = 40 })
    local b = m:generate("Once", { seed = 7, temperature = 1.5, top_k = 40, max_tokens = 40 })
    local c = m:generate("Once", { seed = 8, temperature = 1.5, top_k = 40, max_tokens = 40 })
    T.eq(a, b)
    T.ok(a ~= c, "a different seed gives a different story")
  end,

  loss_and_encode = function()
    local m <close> = stories()
    local ids = m:encode("Once upon a time, there was a little girl.")
    T.eq(ids[1], 1, "BOS first")
    T.eq(m:decode(ids), "Once upon a time, there was a little girl.")
    local l1, n1 = m:loss(ids)
    local l2, n2 = m:loss("Once upon a time, there was a little girl.")
    T.eq(n1, #ids - 1)
    T.near(l1, l2, 1e-9)
    T.ok(l1 > 0.1 and l1 < 4, "plausible loss " .. l1)
    local ppl, mean, count = m:perplexity(T.shared .. "/data/text/tinystories_sample.txt")
    T.near(mean, 1.266, 0.01, "mean CE on tinystories_sample.txt")
    T.near(ppl, math.exp(mean), 1e-9)
    T.ok(count > 800, "tokens scored")
  end,

  smollm2_perplexity_wikisql = function()
    if not T.exists(T.model) then print("SKIP: " .. T.model .. " absent (make model)") return end
    local m <close> = model.load(T.model)
    local c = m:card()
    T.eq(c.params, 134515008)
    T.eq(c.chat_template, "chatml")
    T.eq(c.dtypes.q4_1, 210)
    local ppl, mean, count = m:perplexity(T.shared .. "/data/wikisql/valid.jsonl", { format = "jsonl", limit = 20 })
    print(string.format("SmolLM2-135M perplexity on the first 20 records of wikisql valid.jsonl: %.3f (mean CE %.4f over %d tokens)",
      ppl, mean, count))
    T.ok(ppl > 1.5 and ppl < 30, "plausible perplexity " .. ppl)
    local reply = m:chat({ { role = "user", content = "What is the capital of France?" } },
      { greedy = true, max_tokens = 24 })
    T.ok(reply:find("Paris"), "the chat reply names Paris: " .. reply)
    T.ok(not reply:find("<|im_", 1, true), "no template markers in the reply")
  end,

  quickstart_recipe_smoke = function()
    local rc, out = T.sh(string.format("cd %q && PEFT_SMOKE=1 %q recipes/quickstart.lua %q %q", T.root, T.host,
      S .. "stories260K.bin", T.shared .. "/data/text/tinystories_sample.txt"))
    T.eq(rc, 0, out)
    T.ok(out:find("params     0.3 M", 1, true), out)
    T.ok(out:find("Once upon a time", 1, true), out)
    T.ok(out:find("perplexity on text/tinystories_sample.txt: 3.54", 1, true), out)
  end,

  bad_input_exits_cleanly = function()
    local tmp = T.tmp .. "/model_bad"
    os.execute("mkdir -p '" .. tmp .. "'")
    local f = io.open(tmp .. "/trunc.bin", "wb")
    local src = io.open(S .. "stories260K.bin", "rb")
    f:write(src:read(4000)); src:close(); f:close()
    f = io.open(tmp .. "/bad.gguf", "wb"); f:write("NOPE" .. string.rep("\0", 64)); f:close()
    local cases = {
      { tmp .. "/trunc.bin", "truncated" },
      { tmp .. "/bad.gguf", "magic" },
      { tmp .. "/missing.gguf", "missing.gguf" },
    }
    for _, c in ipairs(cases) do
      local rc, out = T.sh(string.format("%q -e 'peft.model.load(%q)'", T.host, c[1]))
      T.ok(rc ~= 0 and rc < 128, "non-zero exit without a crash for " .. c[1] .. " (rc " .. tostring(rc) .. ")")
      T.ok(out:find(c[1], 1, true), "error names the file: " .. out)
      T.ok(out:lower():find(c[2], 1, true), "error says " .. c[2] .. ": " .. out)
    end
    T.raises(function() model.load(tmp .. "/trunc.bin") end, "truncated")
    T.raises(function() model.load(S .. "stories260K.bin", { tokenizer = tmp .. "/nope.bin" }) end, "nope.bin")
  end,
}
