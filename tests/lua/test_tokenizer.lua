-- test_tokenizer.lua — peft.tokenizer from Lua (owner: tokenizer). The exhaustive checks
-- (llama.cpp vectors, goldens) are in tests/c/test_tokenizer.c; these check the binding.
local T = require "testlib"
local tk = peft.tokenizer
local VEC = T.shared .. "/tokenizer-tests/llamacpp/"
local SMOL = T.root .. "/models/SmolLM2-135M-Instruct.Q4_1.gguf"

local function same(a, b, msg)
  T.eq(#a, #b, (msg or "") .. " length")
  for i = 1, #a do T.eq(a[i], b[i], (msg or "") .. " [" .. i .. "]") end
end

return {
  missing_file_is_nil_message = function()
    local t, msg = tk.load(T.tmp .. "/no-such-tokenizer.bin")
    T.eq(t, nil)
    T.ok(msg:find("no%-such%-tokenizer%.bin"), msg)
    T.raises(function() tk.load() end, "string expected")
  end,

  spm_encode_decode = function()
    local t <close> = assert(tk.load(VEC .. "ggml-vocab-llama-spm.gguf"))
    T.eq(t:kind(), "spm")
    T.eq(t:vocab_size(), 32000)
    T.eq(t.bos, 1); T.eq(t.eos, 2)
    -- llama.cpp's vector for " Hello world" (no BOS): 29871 15043 3186
    same(t:encode(" Hello world", { bos = false }), { 29871, 15043, 3186 }, "spm")
    local ids = t:encode("Hello world")            -- the vocabulary adds BOS by default
    T.eq(ids[1], 1)
    T.eq(t:decode(ids), "Hello world")
    local he = t:encode("Hello", { eos = true })
    T.eq(t:decode(he, { special = true }), "<s>Hello</s>")
    T.eq(t:decode(he, { special = true, keep_prefix = true }), "<s> Hello</s>")
    T.eq(t:piece(15043), "\u{2581}Hello")
    T.eq(t:bytes(15043), " Hello")
    T.eq(t:type(1), "control"); T.eq(t:type(15043), "normal")
    T.eq(t:find("\u{2581}Hello"), 15043); T.eq(t:find("no such piece"), nil)
    T.raises(function() t:encode("x", { bogus = 1 }) end, "unknown option 'bogus'")
    T.raises(function() t:decode({ 32000 }) end, "not a token id in %[0, 32000%)")
    T.raises(function() t:piece(-1) end, "out of range")
  end,

  bpe_gpt2_vector = function()
    local t = assert(tk.load(VEC .. "ggml-vocab-gpt-2.gguf"))
    T.eq(t:kind(), "bpe"); T.eq(t:pre(), "gpt-2")
    -- from ggml-vocab-gpt-2.gguf.out: "Hello, world!" -> 15496 11 995 0
    same(t:encode("Hello, world!"), { 15496, 11, 995, 0 }, "gpt-2")
    local s = "    Hello\n    Hello \u{1F999} 3333"
    T.eq(t:decode(t:encode(s)), s)
    t:close()
    T.raises(function() t:encode("x") end, "after close")
    T.eq(tostring(t), "peft.Tokenizer (closed)")
  end,

  llama2c_bin = function()
    local t = assert(tk.load(T.shared .. "/models/stories260K/tok512.bin"))
    T.eq(t:kind(), "llama2c"); T.eq(t:vocab_size(), 512)
    local ids = t:encode("Once upon a time")
    T.eq(ids[1], 1, "BOS first, as run.c")
    T.eq(t:decode(ids), "Once upon a time")
    -- the stories260K GGUF (llama.cpp's SPM) gives the same ids
    local g = assert(tk.load(T.shared .. "/models/stories260K/stories260K.gguf"))
    same(g:encode("Once upon a time"), ids, "gguf vs bin")
  end,

  smollm2_chat = function()
    if not T.exists(SMOL) then print("  (skipped: no " .. SMOL .. ")") return end
    local t <close> = assert(tk.load(SMOL))
    T.eq(t:pre(), "smollm"); T.eq(t.bos, 1); T.eq(t.eos, 2)
    T.eq(t:template_family(), "chatml")
    local msgs = { { role = "user", content = "Hi" }, { role = "assistant", content = "Hello!" } }
    local text, spans = t:chat(msgs)
    T.eq(text, "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
      .. "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n")
    T.eq(#spans, 1)
    T.eq(text:sub(spans[1][1], spans[1][2]), "Hello!<|im_end|>")
    T.eq(text:sub(spans[1][1], spans[1].content_last), "Hello!")
    T.eq(spans[1].msg, 2)
    local g = t:chat({ msgs[1] }, { add_generation_prompt = true })
    T.ok(g:sub(-#"<|im_start|>assistant\n") == "<|im_start|>assistant\n", g)
    -- forcing a family, and a Lua function overriding the template
    T.eq(t:chat(msgs, { template = "zephyr" }), "<|user|>\nHi<|im_end|>\n<|assistant|>\nHello!<|im_end|>\n")
    local seen
    local out, sp = t:chat(msgs, { template = function(m, o) seen = #m; return "custom:" .. m[1].content end })
    T.eq(out, "custom:Hi"); T.eq(seen, 2); T.eq(#sp, 0)
    T.raises(function() t:chat(msgs, { template = "vicuna" }) end, "unknown template family 'vicuna'")
    T.raises(function() t:chat({ { role = "user" } }) end, "content is not a string")
    -- special tokens are parsed only when asked
    local ids = t:encode("<|im_start|>user", { special = true })
    T.eq(ids[1], 1)
    T.ok(t:encode("<|im_start|>user")[1] ~= 1, "plain text by default")
    T.eq(t:decode(ids, { special = true }), "<|im_start|>user")
  end,

  wordpiece = function()
    local t = assert(tk.load(VEC .. "ggml-vocab-bert-bge.gguf"))
    T.eq(t:kind(), "wpm")
    -- ggml-vocab-bert-bge.gguf.out: "Hello world" -> 7592 2088; BOS/EOS are [CLS]/[SEP]
    same(t:encode("Hello world"), { 101, 7592, 2088, 102 }, "bert")
    same(t:encode("Hello world", { bos = false, eos = false }), { 7592, 2088 }, "bert plain")
    T.eq(t:decode({ 7592, 2088 }), "hello world")
  end,

  detect = function()
    T.eq(tk.detect("{{ '<|start_header_id|>' }}"), "llama3")
    T.eq(tk.detect("{{ messages }}"), nil)
    T.eq(#tk.families(), 5)
  end,
}
