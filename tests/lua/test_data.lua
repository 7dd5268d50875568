-- tests/lua/test_data.lua — peft.data from Lua (owner: data): format detection on the shared
-- datasets, line-numbered errors and skip_bad, option checking, loss masks against the chat
-- template's spans, truncation counts, deterministic shuffling, iterator save/restore, the
-- tool-call dataset recipe and the exact-match scorer.
local T = require "testlib"
local data = peft.data

local function write(name, text)
  local path = T.tmp .. "/" .. name
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  return path
end

-- A byte-level tokenizer written in Lua (the tokenizer-table protocol): id = byte + 10,
-- 1 = BOS, 2 = EOS; chat renders "<role>content|" with loss on the assistant's content + "|".
local function byte_tok()
  return {
    encode = function(s) local t = {} for i = 1, #s do t[i] = s:byte(i) + 10 end return t end,
    token_bytes = function(id) return string.char(id - 10) end,
    chat = function(msgs)
      local parts, spans, at = {}, {}, 0
      for _, m in ipairs(msgs) do
        local head = "<" .. m.role .. ">"
        parts[#parts + 1] = head .. m.content .. "|"
        if m.role == "assistant" then spans[#spans + 1] = { at + #head + 1, at + #head + #m.content + 1 } end
        at = at + #head + #m.content + 1
      end
      return table.concat(parts), spans
    end,
    bos = 1, eos = 2, pad = 0, add_bos = true,
  }
end

local function smol_tok()
  local tok = peft.tokenizer.load(T.model)
  T.ok(tok, "the default model is needed (make model)")
  return tok
end

local function order_of(it, n)
  local out = {}
  for _ = 1, n do
    local b = it:next()
    for _, e in ipairs(b.examples) do out[#out + 1] = e end
  end
  return table.concat(out, ",")
end

return {
  detect_shared_formats = function()
    local cases = {
      { "/data/wikisql/train.jsonl", "text", 1000, "jsonl" },
      { "/data/alpaca-demo/alpaca_en_demo.json", "alpaca", 999, "json" },
      { "/data/chat-demo/dummy_conversation.messages.jsonl", "chat", 500, "jsonl" },
    }
    for _, c in ipairs(cases) do
      local recs, info = data.read(T.shared .. c[1])
      T.eq(info.format, c[2], c[1])
      T.eq(#recs, c[3], c[1])
      T.eq(info.kind, c[4], c[1])
      T.eq(#info.issues, 0, c[1])
    end
    local recs = data.read(T.shared .. "/data/chat-demo/dummy_conversation.messages.jsonl")
    T.eq(recs[1].messages[1].role, "user")
    T.eq(recs[1].messages[1].content, "Who are you?")
    -- override: reading alpaca data as chat reports the missing key with the line
    local _, info = data.read(T.shared .. "/data/alpaca-demo/alpaca_en_demo.json", { format = "chat" })
    T.eq(info.issues[1], T.shared .. "/data/alpaca-demo/alpaca_en_demo.json:2: missing key 'messages'")
    local missing, err = data.read(T.tmp .. "/no-such-file.jsonl")
    T.eq(missing, nil)
    T.ok(err:find("no%-such%-file.jsonl: cannot open"), err)
  end,

  bad_lines_fail_with_file_and_line = function()
    local p = write("data_bad.jsonl", table.concat({
      '{"prompt": "a", "completion": "b"}',
      '{"prompt": "a"}',
      '{"prompt": "a", "completion": "b"',
      '',
      '{"prompt": "a", "completion": ""}',
      '{"text": "x"}',
      '{"prompt": "c", "completion": "d"}',
    }, "\n") .. "\n")
    local err = T.raises(function() data.load(p, { tokenizer = byte_tok() }) end)
    T.ok(err:find("data_bad.jsonl:2: missing key 'completion' (and 3 more problems", 1, true), err)
    local r = data.validate(p)
    T.eq(r.ok, false)
    T.eq(r.records, 6)
    T.eq(r.skipped, 4)
    T.eq(#r.issues, 4)
    T.eq(r.issues[1], p .. ":2: missing key 'completion'")
    T.eq(r.issues[2], p .. ":3: invalid JSON at column 34 (unexpected end of line)")
    T.eq(r.issues[3], p .. ":5: empty 'completion'")
    T.ok(r.issues[4]:find(":6: a text record", 1, true), r.issues[4])
    -- skip_bad: loads the good lines and reports how many were skipped
    local ds = data.load(p, { tokenizer = byte_tok(), skip_bad = true })
    T.eq(ds:count(), 2)
    local rep = ds:report()
    T.eq(rep.skipped, 4)
    T.eq(#rep.issues, 4)
    T.eq(rep.records, 6)
    -- an empty file fails too
    local e = write("data_empty.jsonl", "")
    T.raises(function() data.load(e, { tokenizer = byte_tok() }) end, "data_empty.jsonl: empty file")
  end,

  options_are_checked = function()
    local p = T.shared .. "/data/wikisql/valid.jsonl"
    T.raises(function() data.load(p, { tokenizer = byte_tok(), max_len = 5 }) end, "unknown option 'max_len'")
    T.raises(function() data.load(p, { tokenizer = byte_tok(), format = "xml" }) end, "unknown format 'xml'")
    T.raises(function() data.load(p, {}) end, "option 'tokenizer' is required")
    T.raises(function() data.load(p, { tokenizer = 5 }) end, "must be a peft.Tokenizer")
    local ds = data.load(p, { tokenizer = byte_tok() })
    T.raises(function() ds:batches { batch = 4 } end, "unknown option 'batch'")
    T.raises(function() ds:batches { as = "numpy" } end, "as must be")
    T.raises(function() ds:example(0) end, "out of range")
    -- a tokenizer callback that fails is reported, with the record's line
    local broken = byte_tok()
    broken.encode = function() error("boom") end
    T.raises(function() data.load(p, { tokenizer = broken }) end, "valid.jsonl:1: cannot render: tokenizer.encode: .*boom")
    broken.encode = function() return { 1, "x" } end
    T.raises(function() data.load(p, { tokenizer = broken }) end, "id 2 is not a valid token id")
    -- validate with a tokenizer adds the length statistics
    local r = data.validate(p, { tokenizer = byte_tok(), max_seq_len = 64 })
    T.eq(r.ok, true)
    T.eq(r.examples, 100)
    T.eq(r.lengths.max, 64)
    T.ok(r.truncated > 0)
    T.ok(data.format_report(r):find("truncated to 64 tokens", 1, true))
    T.raises(function() data.validate(p, { valid = p }) end, "unknown option 'valid'")
  end,

  text_examples_and_truncation = function()
    local p = write("data_text.jsonl", '{"text": "abcdef"}\n{"text": "abcdefghijklmnop"}\n{"text": "xy"}\n')
    local ds = data.load(p, { tokenizer = byte_tok(), max_seq_len = 8 })
    local e = ds:example(1)
    T.eq(table.concat(e.ids, ","), "1,107,108,109,110,111,112,2")   -- BOS a..f EOS
    T.eq(table.concat(e.mask, ","), "0,1,1,1,1,1,1,1")
    local r = ds:report()
    T.eq(r.truncated, 1)
    T.eq(r.truncated_tokens, 10)      -- 18 tokens cut to 8
    T.eq(r.lengths.max, 8)
    T.eq(r.lengths.min, 4)
    T.eq(r.tokens, 8 + 8 + 4)
    T.eq(ds:example(2).truncated, 10)
  end,

  chat_masks_match_template_spans = function()
    local tok = smol_tok()
    local p = write("data_chat.jsonl",
      '{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"What is 2+2?"},' ..
      '{"role":"assistant","content":"4"},{"role":"user","content":"And 3+3?"},{"role":"assistant","content":"It is 6."}]}\n')
    local ds = data.load(p, { tokenizer = tok })
    local e = ds:example(1)
    local msgs = data.read(p)[1].messages
    local text, spans = tok:chat(msgs)
    T.eq(#spans, 2)
    -- the whole conversation is the template's text, encoded at once
    local want = tok:encode(text, { special = true, bos = false })
    T.eq(table.concat(e.ids, ","), table.concat(want, ","))
    -- loss exactly on the assistant spans (content + end of turn)
    local loss = {}
    for i, id in ipairs(e.ids) do if e.mask[i] == 1 then loss[#loss + 1] = id end end
    local expect = {}
    for _, s in ipairs(spans) do expect[#expect + 1] = text:sub(s[1], s[2]) end
    T.eq(tok:decode(loss, { special = true }), table.concat(expect))
    T.eq(loss[#loss], tok.eot)
    -- prompt tokens are not trained on unless asked
    local n_loss = #loss
    T.ok(n_loss < #e.ids / 2)
    local ds2 = data.load(p, { tokenizer = tok, train_on_prompt = true })
    local e2 = ds2:example(1)
    local all = 0
    for i = 2, #e2.mask do all = all + e2.mask[i] end
    T.eq(all, #e2.ids - 1)
    tok:close()
  end,

  spm_completion_mask = function()
    -- SentencePiece (space prefix): the example is the whole text encoded at once, and the loss
    -- starts at the completion's first token
    local tok = peft.tokenizer.load(T.shared .. "/tokenizer-tests/llamacpp/ggml-vocab-llama-spm.gguf")
    local p = write("data_spm.jsonl", '{"prompt":"The capital of France is","completion":" Paris, of course."}\n')
    local e = data.load(p, { tokenizer = tok }):example(1)
    local whole = tok:encode("The capital of France is Paris, of course.", { bos = true, eos = true })
    T.eq(table.concat(e.ids, ","), table.concat(whole, ","))
    local marked = {}
    for i, id in ipairs(e.ids) do marked[i] = tok:piece(id) .. (e.mask[i] == 1 and "*" or "") end
    T.eq(table.concat(marked, " "), "<s> ▁The ▁capital ▁of ▁France ▁is ▁Paris* ,* ▁of* ▁course* .* </s>*")
    tok:close()
  end,

  alpaca_and_chat_override = function()
    local p = write("data_alpaca.json",
      '[{"instruction": "Add", "input": "1 2", "output": "3"}, {"instruction": "Say hi", "output": "hi"}]')
    local ds = data.load(p, { tokenizer = byte_tok() })
    T.eq(ds:format(), "alpaca")
    local e = ds:example(1)
    -- "<user>Add\n\n1 2|<assistant>3|" after BOS; loss on "3|"
    local s = {}
    for i = 2, #e.ids do s[#s + 1] = string.char(e.ids[i] - 10) end
    T.eq(table.concat(s), "<user>Add\n\n1 2|<assistant>3|")
    local loss = {}
    for i = 1, #e.ids do if e.mask[i] == 1 then loss[#loss + 1] = string.char(e.ids[i] - 10) end end
    T.eq(table.concat(loss), "3|")
    -- a chat override replaces the template
    local ds2 = data.load(p, { tokenizer = byte_tok(), chat = function(msgs)
      local t = "Q:" .. msgs[1].content .. " A:" .. msgs[2].content
      return t, { { #t - #msgs[2].content + 1, #t } }
    end })
    local e2 = ds2:example(2)
    local s2, l2 = {}, {}
    for i = 2, #e2.ids do
      s2[#s2 + 1] = string.char(e2.ids[i] - 10)
      if e2.mask[i] == 1 then l2[#l2 + 1] = s2[#s2] end
    end
    T.eq(table.concat(s2), "Q:Say hi A:hi")
    T.eq(table.concat(l2), "hi")
    T.raises(function()
      data.load(p, { tokenizer = byte_tok(), chat = function() return "x", { { 5, 9 } } end })
    end, "span 1 is not")
  end,

  batches_shift_pad_and_tensors = function()
    local ds = data.load(T.shared .. "/data/wikisql/valid.jsonl", { tokenizer = byte_tok(), max_seq_len = 64 })
    local it = ds:batches { batch_size = 3, seed = 9, as = "table" }
    local b = it:next()
    T.eq(b.batch, 3)
    T.eq(b.epoch, 1)
    T.eq(b.index, 1)
    local longest = 0
    for r = 1, b.batch do
      local e = ds:example(b.examples[r])
      longest = math.max(longest, #e.ids - 1)
      for t = 1, b.seq do
        if t < #e.ids then
          T.eq(b.ids[r][t], e.ids[t])
          T.eq(b.targets[r][t], e.mask[t + 1] == 1 and e.ids[t + 1] or -1)
        else
          T.eq(b.ids[r][t], 0)      -- the tokenizer's pad id
          T.eq(b.targets[r][t], -1)
        end
      end
    end
    T.eq(b.seq, longest)
    -- tensors by default, [batch, seq] i32, same content
    local it2 = ds:batches { batch_size = 3, seed = 9 }
    local bt = it2:next()
    T.eq(tostring(bt.ids), "peft.Tensor i32[3," .. b.seq .. "]")
    local tt = bt.targets:totable()
    T.eq(tt[2][1], b.targets[2][1])
    T.eq(bt.ids:totable()[3][b.seq], b.ids[3][b.seq])
    -- one epoch by default: 100 examples in batches of 3 = 34 batches
    local n = 2
    for _ in it2 do n = n + 1 end
    T.eq(n, 35)   -- counts the two taken above plus the nil that ended the loop
    T.eq(it2:batches_per_epoch(), 34)
  end,

  shuffling_is_deterministic = function()
    local ds = data.load(T.shared .. "/data/wikisql/valid.jsonl", { tokenizer = byte_tok(), max_seq_len = 64 })
    local a = order_of(ds:batches { batch_size = 4, seed = 1 }, 25)
    local b = order_of(ds:batches { batch_size = 4, seed = 1 }, 25)
    local c = order_of(ds:batches { batch_size = 4, seed = 2 }, 25)
    T.eq(a, b)
    T.ok(a ~= c, "different seeds give different orders")
    local plain = order_of(ds:batches { batch_size = 4, shuffle = false, bucket = 0 }, 25)
    local seq = {}
    for i = 1, 100 do seq[i] = i end
    T.eq(plain, table.concat(seq, ","))
    -- the RNG itself: same seed, same numbers; shuffle is a permutation
    local r1, r2 = data.rng(123), data.rng(123)
    for _ = 1, 10 do T.eq(r1:random(1000), r2:random(1000)) end
    local t = { 1, 2, 3, 4, 5, 6, 7, 8 }
    r1:shuffle(t)
    table.sort(t)
    T.eq(table.concat(t, ","), "1,2,3,4,5,6,7,8")
    local st = r1:state()
    local x = r1:next()
    r1:set_state(st)
    T.eq(r1:next(), x)
  end,

  iterator_save_and_restore = function()
    local ds = data.load(T.shared .. "/data/wikisql/valid.jsonl", { tokenizer = byte_tok(), max_seq_len = 64 })
    local opts = { batch_size = 8, seed = 77, epochs = 0 }
    local full = ds:batches(opts)
    local ref = order_of(full, 30)            -- 13 batches an epoch: crosses into epoch 3
    local it = ds:batches(opts)
    order_of(it, 17)
    local st = it:state()
    T.eq(st.epoch, 1)
    T.eq(st.index, 4)
    local rest = order_of(it, 13)
    local o2 = {}
    for k, v in pairs(opts) do o2[k] = v end
    o2.state = st
    local resumed = ds:batches(o2)
    T.eq(order_of(resumed, 13), rest)
    T.eq(order_of(ds:batches(opts), 17) .. "," .. rest, ref)
    -- restore() on a live iterator too, and the state survives a round trip through text
    local again = ds:batches(opts)
    local copy = load("return " .. string.format("{epoch=%d,index=%d,rng={%d,%d,%d,%d}}", st.epoch, st.index,
      st.rng[1], st.rng[2], st.rng[3], st.rng[4]))()
    again:restore(copy)
    T.eq(order_of(again, 13), rest)
    T.raises(function() again:restore({ epoch = 0, index = 999, rng = st.rng }) end, "past the")
  end,

  valid_split_by_fraction_and_file = function()
    local p = T.shared .. "/data/wikisql/train.jsonl"
    local tr, va = data.load(p, { tokenizer = byte_tok(), valid_fraction = 0.1, seed = 4, max_seq_len = 32 })
    T.eq(tr:count() + va:count(), 1000)
    T.eq(va:count(), 100)
    local tr2, va2 = data.load(p, { tokenizer = byte_tok(), valid_fraction = 0.1, seed = 4, max_seq_len = 32 })
    T.eq(va2:example(7).line, va:example(7).line)
    T.eq(tr2:example(500).line, tr:example(500).line)
    local tr3, va3 = data.load(p, { tokenizer = byte_tok(), valid = T.shared .. "/data/wikisql/valid.jsonl", max_seq_len = 32 })
    T.eq(tr3:count(), 1000)
    T.eq(va3:count(), 100)
    T.eq(va3:example(1).file, 2)
    T.raises(function() data.load(p, { tokenizer = byte_tok(), valid_fraction = 1.5 }) end, "valid_fraction")
  end,

  toolcall_dataset_recipe = function()
    local dir = T.tmp .. "/toolcall"
    local rc, out = T.sh(string.format("'%s' '%s/recipes/make_toolcall_dataset.lua' '%s'", T.host, T.root, dir))
    T.eq(rc, 0, out)
    T.ok(out:find("wrote 746 train examples", 1, true), out)
    local train, tinfo = data.read(dir .. "/train.jsonl")
    local valid, vinfo = data.read(dir .. "/valid.jsonl")
    T.eq(#train, 746)
    T.eq(#valid, 254)
    T.eq(tinfo.format, "chat")
    T.eq(#tinfo.issues + #vinfo.issues, 0)
    local seen, names = {}, {}
    for _, r in ipairs(train) do seen[r.messages[2].content] = true end
    for _, r in ipairs(valid) do T.ok(not seen[r.messages[2].content], "validation request also in train") end
    for _, set in ipairs { train, valid } do
      for _, r in ipairs(set) do
        T.eq(#r.messages, 3)
        T.eq(r.messages[1].role, "system")
        local call = r.messages[3].content
        T.ok(data.json_canonical(call), "assistant answer is JSON: " .. call)
        names[call:match('"name":"([%w_]+)"')] = true
      end
    end
    local n = 0
    for _ in pairs(names) do n = n + 1 end
    T.eq(n, 8, "all eight tools occur")
    -- deterministic: a second run writes the same bytes
    local rc2 = T.sh(string.format("'%s' '%s/recipes/make_toolcall_dataset.lua' '%s2'", T.host, T.root, dir))
    T.eq(rc2, 0)
    for _, f in ipairs { "train.jsonl", "valid.jsonl" } do
      local a = assert(io.open(dir .. "/" .. f, "rb")):read("a")
      local b = assert(io.open(dir .. "2/" .. f, "rb")):read("a")
      T.ok(a == b, f .. " differs between runs")
    end
    -- loaded as a split, the report confirms: no duplicates, no overlap
    local tr, va = data.load(dir .. "/train.jsonl", { tokenizer = byte_tok(), valid = dir .. "/valid.jsonl", max_seq_len = 1024 })
    T.eq(tr:report().duplicates, 0)
    T.eq(tr:report().overlap, 0)
    T.eq(va:report().overlap, 0)
    -- evaluation pairs: the conversation without its answer, and the answer as reference
    local pairs_ = data.eval_pairs(dir .. "/valid.jsonl", 5)
    T.eq(#pairs_, 5)
    T.eq(#pairs_[1].messages, 2)
    T.eq(pairs_[1].messages[2].content, valid[1].messages[2].content)
    T.eq(pairs_[1].reference, valid[1].messages[3].content)
    T.eq(data.toolcall_exact_match(pairs_[1].reference, valid[1].messages[3].content), true)
  end,

  toolcall_exact_match = function()
    local ref = '{"name":"get_weather","arguments":{"city":"Paris","unit":"celsius"}}'
    T.eq(data.toolcall_exact_match(ref, ref), true)
    T.eq(data.toolcall_exact_match('  {"arguments": {"unit": "celsius", "city": "Paris"}, "name": "get_weather"}\n', ref), true)
    local ok, why = data.toolcall_exact_match('{"name":"get_weather","arguments":{"city":"paris","unit":"celsius"}}', ref)
    T.eq(ok, false)
    T.ok(why:find("different call"), why)
    T.eq((data.toolcall_exact_match('{"name":"get_weather","arguments":{"city":"Paris"}}', ref)), false)
    T.eq((data.toolcall_exact_match('{"name":"get_weather","arguments":{"city":"Paris","unit":"celsius"}} thanks', ref)), false)
    T.eq((data.toolcall_exact_match('', ref)), false)
    T.eq((data.toolcall_exact_match('{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"', ref)), false)
    T.eq(data.toolcall_exact_match('{"name":"set_timer","arguments":{"minutes":10.0}}', '{"name":"set_timer","arguments":{"minutes":10}}'), true)
    T.eq(data.toolcall_accuracy({ ref, "nope" }, { ref, ref }), 0.5)
    T.raises(function() data.toolcall_exact_match(ref, "{bad") end, "reference is not valid JSON")
  end,
}
