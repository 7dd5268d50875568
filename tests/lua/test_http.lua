-- peft.http (src/net/http.c): JSON out, UTF-8 splitting, and a real server on 127.0.0.1 driven by
-- python3's http.client — fixed responses and static files (answered by the connection
-- threads while this thread waits), path traversal refused, the token, bodies streamed to
-- disk with their limit, server-sent events, the queue limit.
local T = require "testlib"
local http = peft.http

local function write(path, s) local f = assert(io.open(path, "wb")); f:write(s); f:close() end
local function read(path) local f = io.open(path, "rb"); if not f then return nil end local s = f:read("a"); f:close(); return s end

local tag = tostring({}):match("0x(%x+)") or tostring(os.time())   -- two runs at once do not collide

-- python3 snippet with PORT set; synchronous: returns its stdout
local function py(port, code)
  local file = T.tmp .. "/http_client" .. tag .. ".py"
  write(file, "import http.client, json, socket, sys\nPORT = " .. port .. "\n" ..
              "def req(m, p, body=None, h=None):\n" ..
              "    c = http.client.HTTPConnection('127.0.0.1', PORT, timeout=30)\n" ..
              "    c.request(m, p, body=body, headers=h or {})\n" ..
              "    r = c.getresponse(); d = r.read(); c.close()\n" ..
              "    return r.status, d.decode('utf-8', 'replace'), r.getheader('Content-Type')\n" .. code)
  local rc, out = T.sh("python3 " .. file)
  T.eq(rc, 0, "python client: " .. out)
  return out
end

-- the same in the background (for requests this thread must answer); output in a file
local bg_n = 0
local function py_bg(port, code)
  bg_n = bg_n + 1
  local file, out = T.tmp .. "/http_bg" .. tag .. "_" .. bg_n .. ".py", T.tmp .. "/http_bg" .. tag .. "_" .. bg_n .. ".out"
  os.remove(out)
  write(file, "import http.client, sys\nPORT = " .. port .. "\n" ..
              "c = http.client.HTTPConnection('127.0.0.1', PORT, timeout=60)\n" .. code)
  os.execute("(python3 " .. file .. " > " .. out .. ".part 2>&1; mv " .. out .. ".part " .. out .. ") &")
  return out
end

local function wait_file(path)
  for _ = 1, 600 do local s = read(path); if s then return s end; os.execute("sleep 0.05") end
  error("no output in " .. path)
end

return {
  json_encoding = function()
    T.eq(http.json({ 1, 2, "x" }), '[1,2,"x"]')
    T.eq(http.json({}), "{}")
    T.eq(http.json(http.array()), "[]")
    T.eq(http.json({ a = http.null }), '{"a":null}')
    T.eq(http.json({ s = "caf\xc3\xa9 \xff\"\n" }), '{"s":"caf\xc3\xa9 \xef\xbf\xbd\\"\\n"}')
    T.eq(http.json(0.25), "0.25")
    T.eq(http.json(true), "true")
    T.raises(function() http.json({ f = print }) end, "cannot encode a function")
    T.raises(function() http.json({ [true] = 1 }) end, "keys must be strings")
    local cyc = {}; cyc.self = cyc
    T.raises(function() http.json(cyc) end, "nested more than 64")
  end,

  utf8_split = function()
    local h, t = http.utf8_split("ab\xe2\x82")
    T.eq(h, "ab"); T.eq(t, "\xe2\x82")
    h, t = http.utf8_split("ab\xe2\x82\xac")
    T.eq(h, "ab\xe2\x82\xac"); T.eq(t, "")
    h, t = http.utf8_split("\xf0\x9f\x98")
    T.eq(h, ""); T.eq(t, "\xf0\x9f\x98")
    h, t = http.utf8_split("a\xff")   -- not a lead byte: passed on (the JSON layer replaces it)
    T.eq(h, "a\xff"); T.eq(t, "")
  end,

  options_checked = function()
    T.raises(function() http.server{ prot = 1 } end, "unknown option 'prot'")
    T.raises(function() http.server{ port = 70000 } end, "port")
    local s <close> = http.server{ port = 0 }
    T.raises(function() s:route("post", "/x") end, "bad method")
    T.raises(function() s:route("POST", "x") end, "start with '/'")
    T.raises(function() s:route("POST", "/x", { body = "xml" }) end, "body must be")
    T.raises(function() s:route("POST", "/x", { body = "file", spool = "/nonexistent/dir" }) end, "spool directory")
    s:route("POST", "/x")
    T.raises(function() s:route("POST", "/x") end, "already routed")
  end,

  fixed_static_and_traversal = function()
    local root = T.tmp .. "/http_static"
    os.execute("rm -rf '" .. root .. "' && mkdir -p '" .. root .. "/site/sub' && ln -s ../secret.txt '" .. root .. "/site/link.txt'")
    write(root .. "/secret.txt", "SECRET")
    write(root .. "/site/index.html", "<p>home</p>")
    write(root .. "/site/sub/app.js", "let x = 1;")
    local s <close> = http.server{ port = 0, headers = { ["Content-Security-Policy"] = "default-src 'self'" } }
    s:fixed("GET", "/health", 200, '{"status":"ok"}')
    s:static("/ui/", root .. "/site")
    local port = s:start()
    T.ok(port > 0)
    local out = py(port, [[
for p in ["/health", "/ui/", "/ui", "/ui/sub/app.js", "/ui/../secret.txt", "/ui/%2e%2e/secret.txt",
          "/ui/sub/..%2f..%2fsecret.txt", "/ui/link.txt", "/ui//etc/passwd", "/ui/nope.html", "/other"]:
    st, body, ct = req("GET", p)
    print(p, st, ct, body.replace("\n", " ")[:60], sep="\t")
c = http.client.HTTPConnection('127.0.0.1', PORT); c.request("GET", "/health"); r = c.getresponse()
print("csp", r.getheader("Content-Security-Policy"), sep="\t")
]])
    local function line(p) return out:match("\n?" .. p:gsub("%p", "%%%0") .. "\t([^\n]*)") end
    T.eq(line("/health"), '200\tapplication/json\t{"status":"ok"}')
    T.eq(line("/ui/"), "200\ttext/html; charset=utf-8\t<p>home</p>")
    T.eq(line("/ui"), "200\ttext/html; charset=utf-8\t<p>home</p>")
    T.eq(line("/ui/sub/app.js"), "200\ttext/javascript; charset=utf-8\tlet x = 1;")
    for _, p in ipairs({ "/ui/../secret.txt", "/ui/%2e%2e/secret.txt", "/ui/sub/..%2f..%2fsecret.txt",
                         "/ui/link.txt", "/ui//etc/passwd", "/ui/nope.html", "/other" }) do
      local l = line(p)
      T.ok(l and l:match("^404\tapplication/json\t{\"error\""), p .. " -> " .. tostring(l))
    end
    T.ok(not out:find("SECRET", 1, true), "a file outside the root leaked: " .. out)
    T.ok(out:find("csp\tdefault-src 'self'", 1, true), "server-wide headers: " .. out)
  end,

  token_header_and_cookie = function()
    local s <close> = http.server{ port = 0, token = "t0k", token_cookie = "peft_token" }
    s:fixed("GET", "/open", 200, "{}")
    s:fixed("GET", "/closed", 200, '{"in":1}', { auth = true })
    local port = s:start()
    local out = py(port, [[
print(req("GET", "/open")[0], req("GET", "/closed")[0], req("GET", "/closed", h={"Authorization": "Bearer nope"})[0],
      req("GET", "/closed", h={"Authorization": "Bearer t0k"})[0], req("GET", "/closed", h={"Cookie": "peft_token=t0k"})[0],
      req("GET", "/closed", h={"Cookie": "peft_token=t0"})[0])
]])
    T.eq(out, "200 401 401 200 200 401\n")
  end,

  worker_bodies_stream_and_limits = function()
    local spool = T.tmp .. "/http_spool"
    os.execute("rm -rf '" .. spool .. "' && mkdir -p '" .. spool .. "'")
    local s <close> = http.server{ port = 0, max_queue = 1 }
    s:route("POST", "/upload", { body = "file", spool = spool, max_body = 1000 })
    s:route("POST", "/echo", { body = "json" })
    s:route("GET", "/events")
    local port = s:start()
    -- an upload goes to a file in the spool directory
    local o1 = py_bg(port, [[c.request("POST", "/upload?name=a.jsonl", body=b"x" * 500)
r = c.getresponse(); print(r.status, r.read().decode())]])
    local req = s:next(30)
    T.ok(req, "a request came")
    T.eq(req.method, "POST"); T.eq(req.path, "/upload"); T.eq(req:query("name"), "a.jsonl")
    T.eq(req.body, nil); T.eq(req.body_size, 500)
    local path = req.body_path
    T.ok(path:find(spool, 1, true) == 1, path)
    T.eq(read(path), ("x"):rep(500))
    req:respond(201, '{"stored":true}')
    req:release()
    T.eq(wait_file(o1), '201 {"stored":true}\n')
    T.eq(read(path), nil, "the spool file is removed with the request")
    -- over the limit: answered 413 by the connection thread, nothing reaches the worker
    local out = py(port, [[st, body, ct = req("POST", "/upload", body=b"x" * 5000); print(st, json.loads(body)["error"]["code"])]])
    T.eq(out, "413 request_too_large\n")
    T.eq(s:next(0.2), nil)
    -- JSON parsed by the layer; the worker gets the document
    local o2 = py_bg(port, [[c.request("POST", "/echo", body='{"a": [1, 2.5, "\u00e9"], "b": null}'.encode(), headers={"Content-Type": "application/json"})
r = c.getresponse(); print(r.status, r.getheader("Content-Type"), r.read().decode())]])
    req = s:next(30)
    local j = req.json
    T.eq(j.a[1], 1); T.eq(j.a[2], 2.5); T.eq(j.a[3], "\xc3\xa9"); T.eq(j.b, nil)
    T.eq(req:header("content-type"), "application/json")
    T.eq(req:headers()["content-type"], "application/json")
    req:respond(200, http.json({ got = j.a }), { ["Content-Type"] = "application/json; charset=utf-8" })
    req:release()
    T.eq(wait_file(o2), '200 application/json; charset=utf-8 {"got":[1,2.5,"\xc3\xa9"]}\n')
    -- server-sent events, chunk by chunk
    local o3 = py_bg(port, [[c.request("GET", "/events"); r = c.getresponse()
print(r.status, r.getheader("Content-Type"), repr(r.read().decode()))]])
    req = s:next(30)
    req:stream(200, { ["Content-Type"] = "text/event-stream" })
    for i = 1, 3 do T.eq(req:write("data: " .. i .. "\n\n"), true) end
    req:finish()
    T.raises(function() req:respond(200, "{}") end, "already answered")
    req:release()
    T.eq(wait_file(o3), "200 text/event-stream 'data: 1\\n\\ndata: 2\\n\\ndata: 3\\n\\n'\n")
    -- a request dropped without an answer is answered 500
    local o4 = py_bg(port, [[c.request("GET", "/events"); r = c.getresponse(); print(r.status)]])
    req = s:next(30)
    req:release()
    T.eq(wait_file(o4), "500\n")
    -- max_queue = 1: while one waits, the next is refused with 503
    local o5 = py_bg(port, [[c.request("GET", "/events"); r = c.getresponse(); print(r.status, r.read().decode())]])
    for _ = 1, 600 do if s:queued() == 1 then break end os.execute("sleep 0.05") end
    T.eq(s:queued(), 1)
    T.eq(py(port, [[print(req("GET", "/events")[0])]]), "503\n")
    req = s:next(30)
    req:respond(200, "{}")
    req:release()
    T.eq(wait_file(o5), "200 {}\n")
  end,

  -- the web UI's way: its own server, the OpenAI routes added to it by peft.serve
  serve_on_another_server = function()
    local srv <close> = http.server{ port = 0 }
    srv:route("GET", "/api/ping")
    local s = peft.serve.new{ server = srv, model = T.shared .. "/models/stories260K/stories260K.gguf", log = false }
    local port = srv:start()
    local o = py_bg(port, [[import json
c.request("POST", "/v1/completions", body=json.dumps({"model": "stories260K", "prompt": "Once upon a time",
          "max_tokens": 6, "temperature": 0}), headers={"Content-Type": "application/json"})
r = c.getresponse(); j = json.loads(r.read()); print(r.status, j["usage"]["completion_tokens"], j["choices"][0]["text"], sep="|")
c.request("GET", "/api/ping"); r = c.getresponse(); print(r.status, r.read().decode())
c.request("GET", "/v1/models"); r = c.getresponse(); print(r.status, json.loads(r.read())["data"][0]["id"])]])
    local m <close> = peft.model.load(T.shared .. "/models/stories260K/stories260K.gguf")
    local want = m:generate("Once upon a time", { max_tokens = 6, greedy = true })
    for _ = 1, 2 do
      local req <close> = srv:next(30)
      T.ok(req, "a request came")
      if peft.serve.owns(req.path) then s:handle(req) else req:respond(200, '{"pong":true}') end
    end
    T.eq(wait_file(o), "200|6|" .. want .. '\n200 {"pong":true}\n200 stories260K\n')
  end,
}
