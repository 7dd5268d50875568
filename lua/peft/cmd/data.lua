-- peftlua data <subcommand> — datasets from the command line. One function per subcommand
-- (SUB below, its --help text in HELP).
--   peftlua data check FILE [--model M] [--max-seq-len N]   every issue, exit status 1 if any
--   peftlua data stats FILE --model M [--max-seq-len N]     tokens, lengths, truncation, duplicates
--   peftlua data add FILE|DIR ...   DVC-compatible versions (peft.data.version): FILE.dvc,
--                                   the data cached under .dvc/cache, a .gitignore line
local cli = require "peft.cli"
local argv = { ... }

local SUB = {}
local HELP = {}

local function data_path(cmd, rest)
  local file = rest[1] or cli.die(cmd, "give a data file (peftlua " .. cmd .. " --help)")
  local f, err = io.open(file, "rb")
  if not f then cli.die(cmd, string.format("%s: cannot open (%s)", file, (err or ""):match(":%s*([^:]+)$") or err)) end
  local ok, r = pcall(f.read, f, 0)
  f:close()
  if not ok or (r == nil and io.open(file .. "/.") ) then cli.die(cmd, file .. ": is a directory, not a data file") end
  return file
end

HELP.check = {
  name = "data check",
  usage = "peftlua data check FILE [--model M] [--max-seq-len N] [--format F]",
  summary = "Read FILE as training data and list every issue (bad JSON, missing keys, wrong types,\n" ..
            "empty texts, and with --model: examples left without a trained token). Exit status 1\n" ..
            "when there is any issue.",
  flags = {
    { "model", "path", "tokenize with this model's tokenizer and chat template" },
    { "max-seq-len", "integer", "tokens per example", default = 512 },
    { "format", "name", "auto, text, completion, chat, alpaca", default = "auto" },
  },
  examples = { "peftlua data check train.jsonl", "peftlua data check train.jsonl --model SmolLM2-135M-Instruct.Q4_1.gguf" },
}
function SUB.check(args)
  local o, rest = cli.parse(HELP.check, args)
  local file = data_path("data check", rest)
  local m = o.model and cli.load_model("data check", o.model) or nil
  local r, err = peft.data.validate(file, { format = o.format, tokenizer = m, max_seq_len = o.max_seq_len })
  if not r then cli.die("data check", err) end
  print(peft.data.format_report(r))
  local n = #(r.issues or {}) + (r.error and 1 or 0)
  print(n == 0 and "ok: no issues" or string.format("%d issue%s", n, n == 1 and "" or "s"))
  if n > 0 then os.exit(1) end
end

HELP.stats = {
  name = "data stats",
  usage = "peftlua data stats FILE --model M [--max-seq-len N] [--valid FILE]",
  summary = "Tokenize FILE as training would (the model's tokenizer and chat template) and print\n" ..
            "records, tokens, tokens trained on, the length distribution, truncation and duplicates.",
  flags = {
    { "model", "path", "the model whose tokenizer and chat template render the data", required = true },
    { "max-seq-len", "integer", "tokens per example", default = 512 },
    { "valid", "path", "a validation file (overlap with the training file is counted)" },
    { "no-chat-template", "boolean", "prompt/completion records as [BOS] prompt completion" },
    { "json", "boolean", "the report as Lua-printed fields, one per line" },
  },
  examples = { "peftlua data stats train.jsonl --model stories260K.gguf" },
}
function SUB.stats(args)
  local o, rest = cli.parse(HELP.stats, args)
  local file = data_path("data stats", rest)
  cli.run("data stats", function()
    local m <close> = cli.load_model("data stats", o.model)
    local ds = peft.data.load(file, { tokenizer = m, max_seq_len = o.max_seq_len, valid = o.valid,
                                      chat_template = not o.no_chat_template })
    local r = ds:report()
    r.max_seq_len = o.max_seq_len
    print(peft.data.format_report(r))
  end)
end

-- data add: version each path given; exits 1 on the first that cannot be versioned.
HELP.add = { summary = "version data for DVC (FILE.dvc + .dvc/cache)" }
function SUB.add(args)
  if #args == 0 or args[1] == "-h" or args[1] == "--help" then
    io.stdout:write("usage: peftlua data add FILE|DIR ...\n",
      "  Streams each path's md5, writes PATH.dvc (outs: md5, size, hash: md5, path; a directory as\n",
      "  <md5>.dir with nfiles), copies the data into .dvc/cache/files/md5/ (read-only) and adds\n",
      "  '/NAME' to the .gitignore beside it, as `dvc add` does; `dvc status` and `dvc checkout`\n",
      "  then work on it. Without a .dvc/ above the data, one is made at the git work tree's root.\n")
    os.exit(#args == 0 and 2 or 0)
  end
  for _, p in ipairs(args) do
    local ok, v = pcall(peft.data.version, p)
    if not ok then
      io.stderr:write("peftlua data add: ", (tostring(v):gsub("^peft%.data%.version: ", "")), "\n")
      os.exit(1)
    end
    print(string.format("%s: md5 %s, %d bytes%s -> %s (%d new cache object%s in %s/.dvc/cache)", p, v.md5,
      v.size, v.nfiles and string.format(", %d files", v.nfiles) or "", v.dvcfile, v.cached,
      v.cached == 1 and "" or "s", v.root))
  end
end

local function usage()
  print("usage: peftlua data <subcommand> [args]   (peftlua data <subcommand> --help)\n\nsubcommands:")
  local names = {}
  for k in pairs(SUB) do names[#names + 1] = k end
  table.sort(names)
  for _, k in ipairs(names) do
    print(string.format("  %-8s %s", k, (HELP[k] and HELP[k].summary or ""):match("^[^\n]*")))
  end
end

local sub = argv[1]
if sub == nil or sub == "--help" or sub == "-h" or sub == "help" then usage() os.exit(sub and 0 or 1) end
local fn = SUB[sub]
if not fn then
  local names = {}
  for k in pairs(SUB) do names[#names + 1] = k end
  local s = require("peft.train_options").suggest(sub, names)
  cli.die("data", string.format("unknown subcommand '%s'%s (peftlua data --help)", sub, s and (" (did you mean '" .. s .. "'?)") or ""))
end
fn({ table.unpack(argv, 2) })
