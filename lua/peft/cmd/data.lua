-- peftlua data <subcommand> [args] — dataset tools. One function per subcommand below;
-- SUBCOMMANDS maps the names to them.
--
--   peftlua data add FILE|DIR ...   DVC-compatible versions (peft.data.version): FILE.dvc,
--                                   the data cached under .dvc/cache, a .gitignore line

local SUBCOMMANDS, HELP = {}, {}

local function usage(out)
  out:write("usage: peftlua data <command> [args]\n")
  local names = {}
  for k in pairs(SUBCOMMANDS) do names[#names + 1] = k end
  table.sort(names)
  for _, k in ipairs(names) do out:write(("  %-28s %s\n"):format(HELP[k][1], HELP[k][2])) end
end

-- data add: version each path given; exits 1 on the first that cannot be versioned.
local function add(args)
  if #args == 0 or args[1] == "-h" or args[1] == "--help" then
    io.stdout:write("usage: peftlua data add FILE|DIR ...\n",
      "  Streams each path's md5, writes PATH.dvc (outs: md5, size, hash: md5, path; a directory as\n",
      "  <md5>.dir with nfiles), copies the data into .dvc/cache/files/md5/ (read-only) and adds\n",
      "  '/NAME' to the .gitignore beside it, as `dvc add` does; `dvc status` and `dvc checkout`\n",
      "  then work on it. Without a .dvc/ above the data, one is made at the git work tree's root.\n")
    return #args == 0 and 2 or 0
  end
  for _, p in ipairs(args) do
    local ok, v = pcall(peft.data.version, p)
    if not ok then
      io.stderr:write("peftlua data add: ", tostring(v):gsub("^peft%.data%.version: ", ""), "\n")
      return 1
    end
    print(string.format("%s: md5 %s, %d bytes%s -> %s (%d new cache object%s in %s/.dvc/cache)", p, v.md5,
      v.size, v.nfiles and string.format(", %d files", v.nfiles) or "", v.dvcfile, v.cached,
      v.cached == 1 and "" or "s", v.root))
  end
  return 0
end
SUBCOMMANDS.add, HELP.add = add, { "add FILE|DIR ...", "version data for DVC (FILE.dvc + .dvc/cache)" }

local args = { ... }
local sub = table.remove(args, 1)
if not sub or sub == "-h" or sub == "--help" or sub == "help" then
  usage(sub and io.stdout or io.stderr)
  os.exit(sub and 0 or 2)
end
local fn = SUBCOMMANDS[sub]
if not fn then
  io.stderr:write(("peftlua data: unknown command '%s'\n"):format(sub))
  usage(io.stderr)
  os.exit(2)
end
os.exit(fn(args))
