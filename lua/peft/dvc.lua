-- lua/peft/dvc.lua — DVC-compatible dataset versions, written the way DVC 3 writes them so that
-- `dvc status`, `dvc checkout` and `dvc push` work on what peftlua recorded (the real tool
-- checks this in tests/ref/track/check_dvc.py). Owner: track.
--
--   local v = peft.data.version("data/train.jsonl")      -- or a directory
--   --> { path =, md5 = "…" (directories: "….dir"), size =, nfiles = (directories),
--         dvcfile = "data/train.jsonl.dvc", root = "/abs/repo", cached = <objects added> }
--   local c = peft.dvc.check("data/train.jsonl")
--   --> nil when no .dvc file covers the path, else { dvcfile =, recorded =, md5 =, changed = }
--
-- What is written (DVC 3, md5 of the bytes as they are: CRLF files are not converted):
--   FILE.dvc        outs: - md5, size, (nfiles), hash: md5, path   (path relative to FILE.dvc)
--   cache           <root>/.dvc/cache/files/md5/<first 2 hex>/<other 30>, mode 0444; for a
--                   directory each file's object plus "<md5>.dir": the JSON list
--                   [{"md5": …, "relpath": …}, …] sorted by relpath, as Python's json.dumps
--                   writes it, whose md5 names the directory
--   .gitignore      "/<name>" beside FILE.dvc (once)
-- The repository root is the nearest directory above the data holding .dvc/; without one, a
-- DVC repository is initialised (.dvc/config, .dvc/.gitignore) at the enclosing git work
-- tree's root, or, outside git, in the data's directory with core.no_scm = True.
local M = {}
local fs = require "peft.fs"

local function dirname(p) return p:match("^(.*)/[^/]*$") or "." end
local function basename(p) return p:match("([^/]*)$") end

local function fail(msg) error("peft.data.version: " .. msg, 0) end

local function write_file(path, text)   -- atomic (peft.fs.write); a full disk names the file
  local ok, err = fs.write(path, text)
  if not ok then fail(err) end
end

local function read_file(path) return (fs.read(path)) end   -- nil when it cannot be read

-- A JSON string as Python's json.dumps writes it (ensure_ascii: every character outside
-- printable ASCII as \uXXXX, astral ones as surrogate pairs).
local function py_json_str(s)
  local ok, out = pcall(function()
    local t = { '"' }
    for _, c in utf8.codes(s) do
      if c == 34 then t[#t + 1] = '\\"'
      elseif c == 92 then t[#t + 1] = "\\\\"
      elseif c == 10 then t[#t + 1] = "\\n"
      elseif c == 13 then t[#t + 1] = "\\r"
      elseif c == 9 then t[#t + 1] = "\\t"
      elseif c == 8 then t[#t + 1] = "\\b"
      elseif c == 12 then t[#t + 1] = "\\f"
      elseif c >= 32 and c < 127 then t[#t + 1] = string.char(c)
      elseif c < 0x10000 then t[#t + 1] = string.format("\\u%04x", c)
      else
        local v = c - 0x10000
        t[#t + 1] = string.format("\\u%04x\\u%04x", 0xd800 + (v >> 10), 0xdc00 + (v & 0x3ff))
      end
    end
    t[#t + 1] = '"'
    return table.concat(t)
  end)
  if not ok then fail(string.format("%q: a file name that is not UTF-8", s)) end
  return out
end

-- A YAML scalar for a path: plain when it cannot be read as anything but that string.
local function yaml_path(s)
  local plain = s:match("^[%w_][%w_%.%-/]*$") and not s:match("^%d") and
    not ({ ["true"] = 1, ["false"] = 1, ["null"] = 1, yes = 1, no = 1, on = 1, off = 1, y = 1, n = 1 })[s:lower()]
  if plain then return s end
  return "'" .. s:gsub("'", "''") .. "'"
end

local function yaml_unquote(v)
  v = v:gsub("%s+$", "")
  if v:sub(1, 1) == "'" then return (v:sub(2, -2):gsub("''", "'")) end
  if v:sub(1, 1) == '"' then return (v:sub(2, -2):gsub('\\"', '"'):gsub("\\\\", "\\")) end
  return v
end

-- The absolute path of p's directory joined with its name (p itself may not exist yet).
local function abspath(p)
  local st = fs.stat(p)
  if st then return (assert(fs.realpath(p))) end
  local d = fs.realpath(dirname(p))
  if not d then fail(p .. ": no such file or directory") end
  return d .. "/" .. basename(p)
end

-- Nearest ancestor of dir (inclusive) holding name; nil at "/".
local function find_up(dir, name)
  local d = dir
  while true do
    if fs.stat(d .. "/" .. name) then return d end
    if d == "/" or d == "" then return nil end
    d = dirname(d)
    if d == "" then d = "/" end
  end
end

-- The DVC repository root for an absolute path, made when there is none.
local function repo_root(abs)
  local dir = dirname(abs)
  local root = find_up(dir, ".dvc")
  if root and (fs.stat(root .. "/.dvc") or {}).type == "dir" then return root end
  local git = find_up(dir, ".git")
  root = git or dir
  assert(fs.mkdir(root .. "/.dvc/tmp"))
  if not fs.stat(root .. "/.dvc/config") then
    write_file(root .. "/.dvc/config", git and "" or "[core]\n    no_scm = True\n")
  end
  if not fs.stat(root .. "/.dvc/.gitignore") then
    write_file(root .. "/.dvc/.gitignore", "/config.local\n/tmp\n/cache\n")
  end
  return root
end

local function object_path(root, md5)
  return string.format("%s/.dvc/cache/files/md5/%s/%s", root, md5:sub(1, 2), md5:sub(3))
end

-- Place src in the cache under md5 (read-only) unless it is there; true when added.
local function cache_file(root, md5, src)
  local dst = object_path(root, md5)
  if fs.stat(dst) then return false end
  assert(fs.mkdir(dirname(dst)))
  local ok, err = fs.copy(src, dst, tonumber("444", 8))
  if not ok then fail(err) end
  return true
end

local function hash_file(path)
  local md5, size = fs.hash(path, "md5")
  if not md5 then fail(size) end
  return md5, size
end

-- md5 ("….dir"), total size, file count, the .dir object's bytes and its entries.
function M.hash_dir(path)
  local files = fs.list(path)
  local entries, json, total = {}, {}, 0
  for i, rel in ipairs(files) do
    local md5, size = hash_file(path .. "/" .. rel)
    entries[i] = { relpath = rel, md5 = md5, size = size }
    total = total + size
    json[i] = string.format('{"md5": "%s", "relpath": %s}', md5, py_json_str(rel))
  end
  local bytes = "[" .. table.concat(json, ", ") .. "]"
  return fs.hash_string(bytes, "md5") .. ".dir", total, #files, bytes, entries
end

-- md5 (file) or "….dir" (directory), size, nfiles (directories), entries (directories).
function M.hash(path)
  local st = fs.stat(path)
  if not st then fail(path .. ": no such file or directory") end
  if st.type == "dir" then
    local md5, size, n, _, entries = M.hash_dir(path)
    return md5, size, n, entries
  elseif st.type ~= "file" then
    fail(path .. ": neither a regular file nor a directory")
  end
  return hash_file(path)
end

function M.add(path, opts)
  opts = opts or {}
  if type(path) ~= "string" or path == "" then fail("expects a file or directory path") end
  path = path:gsub("/+$", "")
  if path == "" then path = "/" end
  local st = fs.stat(path)
  if not st then fail(path .. ": no such file or directory") end
  if st.type ~= "file" and st.type ~= "dir" then fail(path .. ": neither a regular file nor a directory") end
  local abs = abspath(path)
  local name = basename(abs)
  if name == ".dvc" or name == ".git" or abs:match("%.dvc$") then fail(path .. ": not a dataset") end
  local root = repo_root(abs)
  if abs:find("/.dvc/", 1, true) then fail(path .. ": inside .dvc/") end
  local rec = { path = path, root = root, dvcfile = path .. ".dvc", cached = 0 }
  if st.type == "file" then
    rec.md5, rec.size = hash_file(path)
    if cache_file(root, rec.md5, path) then rec.cached = rec.cached + 1 end
  else
    local md5, size, n, bytes, entries = M.hash_dir(path)
    rec.md5, rec.size, rec.nfiles = md5, size, n
    for _, e in ipairs(entries) do
      if cache_file(root, e.md5, path .. "/" .. e.relpath) then rec.cached = rec.cached + 1 end
    end
    local obj = object_path(root, md5)
    if not fs.stat(obj) then
      assert(fs.mkdir(dirname(obj)))
      local tmp = string.format("%s.%s.tmp", obj, require("peft.track").random_hex(4))
      write_file(tmp, bytes)
      local ok, err = fs.copy(tmp, obj, tonumber("444", 8))
      os.remove(tmp)
      if not ok then fail(err) end
      rec.cached = rec.cached + 1
    end
  end
  local lines = { "outs:", "- md5: " .. rec.md5, "  size: " .. rec.size }
  if rec.nfiles then lines[#lines + 1] = "  nfiles: " .. rec.nfiles end
  lines[#lines + 1] = "  hash: md5"
  lines[#lines + 1] = "  path: " .. yaml_path(name)
  local tmp = rec.dvcfile .. ".tmp"
  write_file(tmp, table.concat(lines, "\n") .. "\n")
  assert(os.rename(tmp, rec.dvcfile))
  -- .gitignore beside the .dvc file: "/name" once
  local gi = dirname(abs) .. "/.gitignore"
  local line = "/" .. name
  local cur = read_file(gi) or ""
  local present = false
  for l in cur:gmatch("[^\n]+") do if l == line then present = true end end
  if not present then
    local f = assert(io.open(gi, "ab"))
    if cur ~= "" and cur:sub(-1) ~= "\n" then f:write("\n") end
    f:write(line, "\n")
    f:close()
    rec.gitignore = gi
  end
  return rec
end

-- The first out of a .dvc file: { md5 =, size =, nfiles =, path = } or nil.
function M.read_dvcfile(file)
  local s = read_file(file)
  if not s then return nil end
  local out = {}
  local started = false
  for line in s:gmatch("[^\r\n]+") do
    local k, v = line:match("^%-?%s*([%w_]+):%s*(.-)%s*$")
    if line:match("^%- ") then
      if started then break end
      started = true
    end
    if k and started and v ~= "" then out[k] = yaml_unquote(v) end
  end
  if not out.md5 then return nil end
  out.size = math.tointeger(tonumber(out.size))
  out.nfiles = math.tointeger(tonumber(out.nfiles))
  return out
end

-- Does a .dvc file cover path (path.dvc, or <dir>.dvc for a directory above it), and does the
-- data still have the digest it records?
function M.check(path)
  local st = fs.stat(path)
  if not st then return nil end
  local rec = M.read_dvcfile(path .. ".dvc")
  if rec then
    local md5 = M.hash(path)
    return { dvcfile = path .. ".dvc", recorded = rec.md5, md5 = md5, changed = md5 ~= rec.md5 }
  end
  if st.type ~= "file" then return nil end
  -- a file inside a tracked directory: compare with its entry in the cached .dir listing
  local abs = abspath(path)
  local d, rel = dirname(abs), basename(abs)
  while d ~= "/" and d ~= "" do
    local r = M.read_dvcfile(d .. ".dvc")
    if r and r.md5:match("%.dir$") then
      local root = find_up(dirname(d), ".dvc")
      local listing = root and read_file(object_path(root, r.md5))
      local doc = listing and peft.memory.decode_json(listing)
      local recorded
      for _, e in ipairs(doc or {}) do if e.relpath == rel then recorded = e.md5 end end
      local md5 = hash_file(path)
      return { dvcfile = d .. ".dvc", recorded = recorded or "(not in " .. r.md5 .. ")", md5 = md5,
               changed = md5 ~= recorded }
    end
    rel = basename(d) .. "/" .. rel
    d = dirname(d)
  end
  return nil
end

return M
