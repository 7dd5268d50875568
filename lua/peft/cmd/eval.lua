-- peftlua eval --model M [--adapter DIR] FILE — loss and perplexity of a model (or model +
-- adapter) on a data file, with the training pipeline's rendering and loss mask; on a chat
-- file of tool calls, also the exact-match metric of generated answers (--toolcall N).
local cli = require "peft.cli"
local spec = {
  name = "eval",
  usage = "peftlua eval --model M [--adapter DIR] [options] FILE",
  summary = "Mean loss (nats per scored token) and perplexity on FILE, scored as training scores it\n" ..
            "(prompt tokens masked, the chat template applied); --toolcall N also generates the\n" ..
            "answers of the first N chats and reports the tool-call exact match.",
  flags = {
    { "model", "path", "the model (a path, or a name on the models search path)", required = true },
    { "adapter", "dir", "a LoRA adapter folder (PEFT layout)" },
    { "max-seq-len", "integer", "tokens per example", default = 512 },
    { "limit", "integer", "score only the first N examples" },
    { "no-chat-template", "boolean", "prompt/completion records as [BOS] prompt completion" },
    { "toolcall", "integer", "generate answers for the first N chats and score the tool calls" },
    { "json", "boolean", "print one JSON object" },
  },
  examples = { "peftlua eval --model stories260K.gguf tests/fixtures/shared/data/wikisql/valid.jsonl",
               "peftlua eval --model m.gguf --adapter runs/x/adapter --toolcall 50 valid.jsonl" },
}
local o, rest = cli.parse(spec, { ... })
local file = rest[1] or cli.die("eval", "give a data file (peftlua eval --help)")
cli.run("eval", function()
  local m <close> = cli.load_model("eval", o.model, o.adapter)
  if file:match("%.txt$") then
    -- plain text: documents (split at <|endoftext|>), every token scored
    local ppl, mean, count = m:perplexity(file, { max_seq_len = o.max_seq_len })
    if o.json then
      print(string.format('{"file":%q,"tokens":%d,"loss":%.6f,"perplexity":%.6f}', file, count, mean, ppl))
    else
      print(string.format("%s: %d scored tokens\nloss       %.4f nats/token\nperplexity %.3f", file, count, mean, ppl))
    end
    return
  end
  local ds = peft.data.load(file, { tokenizer = m, max_seq_len = o.max_seq_len,
                                    chat_template = not o.no_chat_template })
  local sum, count, n = 0, 0, 0
  for i = 1, ds:count() do
    if o.limit and n >= o.limit then break end
    local ex = ds:example(i)
    -- the scored positions: token j+1 predicted from ids[1..j] where its mask is set
    local probs
    for j = 1, #ex.ids - 1 do
      if ex.mask[j + 1] == 1 then
        probs = probs or m:forward({ { table.unpack(ex.ids, 1, #ex.ids - 1) } }):select(1, 1):softmax(2)
        sum = sum - math.log(probs:get(j, ex.ids[j + 1] + 1))
        count = count + 1
      end
    end
    n = n + 1
  end
  local mean = count > 0 and sum / count or 0 / 0
  local acc
  if o.toolcall then
    local pairs_ = peft.data.eval_pairs(file, o.toolcall)
    local preds, refs = {}, {}
    for _, p in ipairs(pairs_) do
      preds[#preds + 1] = m:chat(p.messages, { greedy = true, max_tokens = 96 })
      refs[#refs + 1] = p.reference
    end
    acc = peft.data.toolcall_accuracy(preds, refs)
  end
  if o.json then
    print(string.format('{"file":%q,"examples":%d,"tokens":%d,"loss":%.6f,"perplexity":%.6f%s}', file, n, count,
      mean, math.exp(mean), acc and string.format(',"toolcall_exact_match":%.6f', acc) or ""))
  else
    print(string.format("%s: %d examples, %d scored tokens", file, n, count))
    print(string.format("loss       %.4f nats/token", mean))
    print(string.format("perplexity %.3f", math.exp(mean)))
    if acc then print(string.format("tool calls %.1f%% exact match (%d chats)", 100 * acc, o.toolcall)) end
  end
end)
