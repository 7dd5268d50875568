-- peft.serve — an OpenAI-compatible HTTP API over one model (owner: serve). The HTTP layer is
-- peft.http (src/net/http.c over libmicrohttpd): its connection threads parse, limit and check
-- requests; this Lua thread is the one model worker and answers them in order.
--
--   local s = peft.serve.new{model = path | peft.Model, adapters = {dir | file, ...}, name = id,
--                            host = "127.0.0.1", port = 8080, api_key = key, max_body = bytes,
--                            max_queue = n, chat_template = family, log = io.stderr | false,
--                            server = a peft.http server not yet started}
--   s.port                      the port it listens on (port = 0 picks a free one)
--   s:serve()                   answer requests until Ctrl-C (returns) or s:close()
--   s:step([timeout_s])         answer at most one request; true if one was answered
--   s:close()
-- With server = srv (another application's server, the web UI's) the OpenAI routes are added to
-- srv and nothing is started: that application's worker loop gives s:handle(req) the requests
-- whose path peft.serve.owns(path) (then releases them), and answers the rest itself.
--
-- Routes: GET /health, GET /v1/models, GET /v1/models/{id}, POST /v1/chat/completions,
-- POST /v1/completions (stream = true: server-sent events ending with "data: [DONE]";
-- stream_options.include_usage adds the usage chunk). docs/serve.md lists the fields.
local peft = require("peft")
local http = peft.http

local M = {}
local S = {}
S.__index = S

local null = http.null

-- an OpenAI-shaped client error, raised and answered by the dispatcher
local function fail(status, message, code, param)
  error({ status = status, message = message, code = code, param = param,
          type = status == 401 and "authentication_error" or "invalid_request_error" }, 0)
end

local function basename(p) return (p:gsub("/+$", ""):match("([^/]+)$") or p) end

local function model_id(path)
  return (basename(path):gsub("%.gguf$", ""):gsub("%.bin$", ""):gsub("%.safetensors$", ""))
end

-- ---------------------------------------------------------------- request fields

local function check_type(v, key, want)
  if v == nil then return nil end
  local t = math.type(v) == "integer" and "integer" or type(v)
  if want == "number" and t == "integer" then return v end
  if t ~= want then fail(400, ("'%s' must be a%s %s, not %s"):format(key, want == "integer" and "n" or "", want, t), "invalid_type", key) end
  return v
end

local function num(body, key, lo, hi)
  local v = check_type(body[key], key, "number")
  if v and (v ~= v or v < lo or v > hi) then
    fail(400, ("'%s' must be between %g and %g (got %g)"):format(key, lo, hi, v), "invalid_value", key)
  end
  return v
end

local function int(body, key, lo, hi)
  local v = body[key]
  if math.type(v) == "float" and v == math.floor(v) then v = math.tointeger(v) end
  v = check_type(v, key, "integer")
  if v and (v < lo or v > hi) then
    fail(400, ("'%s' must be between %d and %d (got %d)"):format(key, lo, hi, v), "invalid_value", key)
  end
  return v
end

-- The sampling options every completion takes, as m:generate options.
local function sampling(body, ctx, n_prompt)
  local o = {}
  local mt = int(body, "max_completion_tokens", 1, 1 << 30) or int(body, "max_tokens", 1, 1 << 30)
  local room = ctx - n_prompt
  o.max_tokens = math.min(mt or room, room)
  local temp = num(body, "temperature", 0, 2)
  local top_p = num(body, "top_p", 0, 1)
  o.temperature = temp or 1.0
  o.top_p = top_p or 1.0
  if o.temperature == 0 or o.top_p == 0 then o.greedy = true; o.temperature = 1.0; o.top_p = 1.0 end
  o.top_k = int(body, "top_k", 0, 1 << 30) or 0
  o.seed = int(body, "seed", math.mininteger, math.maxinteger) or math.random(1, 1 << 40)
  local stop = body.stop
  if type(stop) == "string" then stop = { stop } end
  if stop ~= nil then
    if type(stop) ~= "table" then fail(400, "'stop' must be a string or a list of strings", "invalid_type", "stop") end
    if #stop > 4 then fail(400, "'stop' takes at most 4 strings", "invalid_value", "stop") end
    local s = {}
    for i, v in ipairs(stop) do
      if type(v) ~= "string" then fail(400, ("'stop[%d]' must be a string"):format(i - 1), "invalid_type", "stop") end
      if v ~= "" then s[#s + 1] = v end
    end
    if #s > 0 then o.stop = s end
  end
  if body.ignore_eos ~= nil then   -- llama.cpp's extension: generate max_tokens whatever comes
    o.ignore_eos = check_type(body.ignore_eos, "ignore_eos", "boolean")
  end
  local n = int(body, "n", 1, 1 << 30)
  if n and n ~= 1 then fail(400, "only n = 1 is supported", "unsupported_value", "n") end
  for _, k in ipairs({ "presence_penalty", "frequency_penalty" }) do
    local v = num(body, k, -2, 2)
    if v and v ~= 0 then fail(400, ("'%s' is not supported"):format(k), "unsupported_parameter", k) end
  end
  if body.logprobs ~= nil and body.logprobs ~= false then
    fail(400, "'logprobs' is not supported", "unsupported_parameter", "logprobs")
  end
  if body.tools ~= nil and type(body.tools) == "table" and #body.tools > 0 then
    fail(400, "'tools' is not supported", "unsupported_parameter", "tools")
  end
  if body.stream ~= nil and type(body.stream) ~= "boolean" then fail(400, "'stream' must be a boolean", "invalid_type", "stream") end
  local so = body.stream_options
  if so ~= nil then
    if type(so) ~= "table" then fail(400, "'stream_options' must be an object", "invalid_type", "stream_options") end
    if not body.stream then fail(400, "'stream_options' is only allowed with stream = true", "invalid_value", "stream_options") end
    if so.include_usage ~= nil and type(so.include_usage) ~= "boolean" then
      fail(400, "'stream_options.include_usage' must be a boolean", "invalid_type", "stream_options")
    end
  end
  return o
end

local roles = { system = "system", developer = "system", user = "user", assistant = "assistant" }

local function messages_of(body)
  local msgs = body.messages
  if type(msgs) ~= "table" or #msgs == 0 then
    fail(400, "'messages' must be a non-empty list of {role, content}", msgs == nil and "missing_required_parameter" or "invalid_type", "messages")
  end
  local out = {}
  for i, m in ipairs(msgs) do
    local where = ("messages[%d]"):format(i - 1)
    if type(m) ~= "table" then fail(400, where .. " must be an object", "invalid_type", where) end
    local role = roles[m.role]
    if not role then
      fail(400, ("%s.role must be system, developer, user or assistant (got %s)"):format(where, tostring(m.role)), "invalid_value", where .. ".role")
    end
    local c = m.content
    if type(c) == "table" then   -- a list of content parts: text parts only
      local parts = {}
      for j, p in ipairs(c) do
        if type(p) ~= "table" or p.type ~= "text" or type(p.text) ~= "string" then
          fail(400, ("%s.content[%d]: only {type = \"text\", text = ...} parts are supported"):format(where, j - 1), "invalid_value", where .. ".content")
        end
        parts[#parts + 1] = p.text
      end
      c = table.concat(parts)
    elseif c == nil and role == "assistant" then
      c = ""
    end
    if type(c) ~= "string" then fail(400, where .. ".content must be a string or a list of text parts", "invalid_type", where .. ".content") end
    out[#out + 1] = { role = role, content = c }
  end
  return out
end

-- ---------------------------------------------------------------- the server

-- Render a conversation: the model's chat template, the family chosen with chat_template, or
-- (a model with neither) the contents one per line.
function S:render(messages)
  if self.template_mode == "plain" then
    local t = {}
    for _, m in ipairs(messages) do t[#t + 1] = m.content end
    return table.concat(t, "\n")
  end
  local ok, text = pcall(self.tok.chat, self.tok, messages, { add_generation_prompt = true, template = self.template })
  if not ok then fail(400, "chat template: " .. tostring(text):gsub("^.-: ", ""), "invalid_value", "messages") end
  return text
end

function S:log(fmt, ...)
  if self.logf then self.logf:write(("serve: " .. fmt .. "\n"):format(...)); self.logf:flush() end
end

local sse_headers = { ["Content-Type"] = "text/event-stream", ["Cache-Control"] = "no-cache",
                      ["X-Accel-Buffering"] = "no" }

function S:completion(req, chat)
  local body = req.json
  if type(body.model) ~= "string" then
    fail(400, "'model' must be given (GET /v1/models lists them)", "missing_required_parameter", "model")
  end
  local entry = self.models[body.model]
  if not entry then
    fail(404, ("the model '%s' does not exist (this server has: %s)"):format(body.model, table.concat(self.ids, ", ")), "model_not_found", "model")
  end
  local prompt
  if chat then
    prompt = self:render(messages_of(body))
  else
    prompt = body.prompt
    if type(prompt) == "table" then
      if #prompt ~= 1 or type(prompt[1]) ~= "string" then
        fail(400, "'prompt' must be a string (one prompt per request)", "invalid_value", "prompt")
      end
      prompt = prompt[1]
    end
    if type(prompt) ~= "string" then fail(400, "'prompt' must be a string", prompt == nil and "missing_required_parameter" or "invalid_type", "prompt") end
    if body.echo then fail(400, "'echo' is not supported", "unsupported_parameter", "echo") end
    if body.suffix ~= nil then fail(400, "'suffix' is not supported", "unsupported_parameter", "suffix") end
    local bo = int(body, "best_of", 1, 1 << 30)
    if bo and bo ~= 1 then fail(400, "only best_of = 1 is supported", "unsupported_value", "best_of") end
  end
  local ids = self.m:encode(prompt)
  if #ids == 0 then ids = { self.bos } end
  if #ids >= self.ctx then
    fail(400, ("the prompt has %d tokens; this model's context is %d tokens"):format(#ids, self.ctx), "context_length_exceeded", chat and "messages" or "prompt")
  end
  local o = sampling(body, self.ctx, #ids)
  o.adapter = entry.adapter or false   -- the base model alone unless an adapter's id was asked
  local stream = body.stream == true
  local usage_chunk = stream and type(body.stream_options) == "table" and body.stream_options.include_usage == true

  self.seq = self.seq + 1
  local id = (chat and "chatcmpl-" or "cmpl-") .. self.seq
  local created = os.time()
  local object = chat and "chat.completion.chunk" or "text_completion"
  local gone, pending, count = false, "", 0

  local function chunk(text, finish)
    local choice
    if chat then
      local delta = {}
      if text then delta.content = text end
      choice = { index = 0, delta = delta, logprobs = null, finish_reason = finish or null }
    else
      choice = { index = 0, text = text or "", logprobs = null, finish_reason = finish or null }
    end
    local c = { id = id, object = object, created = created, model = body.model, choices = { choice } }
    if usage_chunk then c.usage = null end
    return c
  end
  local function send(c)
    if gone then return false end
    if not req:write("data: " .. http.json(c) .. "\n\n") then gone = true end
    return not gone
  end

  if stream then
    req:stream(200, sse_headers)
    if chat then
      local first = chunk(nil)
      first.choices[1].delta = { role = "assistant", content = "" }
      send(first)
    end
  end
  o.on_token = function(piece)
    count = count + 1
    if stream then
      local head
      head, pending = http.utf8_split(pending .. piece)
      if head ~= "" and not send(chunk(head)) then return true end
    elseif count % 8 == 0 and req:gone() then
      gone = true
      return true
    end
    return false
  end
  local text, ngen = self.m:generate(ids, o)
  local finish = ngen >= o.max_tokens and "length" or "stop"
  local usage = { prompt_tokens = #ids, completion_tokens = ngen, total_tokens = #ids + ngen }
  if stream then
    if pending ~= "" then send(chunk(pending)) end
    send(chunk(nil, finish))
    if usage_chunk then
      send({ id = id, object = object, created = created, model = body.model, choices = http.array(), usage = usage })
    end
    if not gone then req:write("data: [DONE]\n\n") end
    req:finish()
  elseif not gone then
    local choice
    if chat then
      choice = { index = 0, message = { role = "assistant", content = text }, logprobs = null, finish_reason = finish }
    else
      choice = { index = 0, text = text, logprobs = null, finish_reason = finish }
    end
    req:respond(200, http.json({ id = id, object = chat and "chat.completion" or "text_completion",
                                 created = created, model = body.model, choices = { choice }, usage = usage }))
  end
  return ("%s%d+%d tokens%s"):format(stream and "stream " or "", #ids, ngen, gone and ", client gone" or "")
end

-- the OpenAI routes this server answers (the paths S:handle takes)
function S.owns(path)
  return path == "/v1/chat/completions" or path == "/v1/completions" or path:match("^/v1/models/") ~= nil
end

function S:dispatch(req)
  local p, m = req.path, req.method
  if p == "/v1/chat/completions" then return self:completion(req, true) end
  if p == "/v1/completions" then return self:completion(req, false) end
  local mid = p:match("^/v1/models/(.+)$")
  if mid then
    if not self.models[mid] then fail(404, ("the model '%s' does not exist"):format(mid), "model_not_found", "model") end
    req:respond(200, http.json(self.cards[mid]))
    return ""
  end
  fail(404, ("no route for %s %s"):format(m, p), "not_found")
end

-- Answer one request taken from the server (errors included, OpenAI-shaped) and log it. The
-- caller releases it. A Ctrl-C while answering is raised again after the client is told.
function S:handle(req)
  local ok, info = pcall(self.dispatch, self, req)
  local status = 200
  if not ok then
    local e = info
    if type(e) == "table" and e.status then
      status = e.status
      pcall(req.respond, req, e.status, http.json({ error = { message = e.message, type = e.type,
                                                              code = e.code or null, param = e.param or null } }))
      info = e.message
    else
      local msg = tostring(e)
      status = 500
      -- an error after a stream started: tell the client in the stream, then end it
      if not pcall(req.error, req, 500, msg, "server_error") then
        pcall(req.write, req, "data: " .. http.json({ error = { message = msg, type = "server_error", code = null } }) .. "\n\n")
        pcall(req.finish, req)
      end
      if msg:find("interrupted", 1, true) then error(e, 0) end
      info = msg
    end
  end
  self:log("#%d %s %s %d %s", req.id, req.method, req.path, status, info or "")
end

-- Answer at most one request; false when none came within timeout seconds.
function S:step(timeout)
  local req <close> = self.srv:next(timeout or 1)
  if not req then return false end
  self:handle(req)
  return true
end

function S:serve()
  self:log("%s on http://%s:%d/v1 (%s)", table.concat(self.ids, ", "), self.host, self.port,
           self.token and "API key required" or "no API key")
  while true do
    local ok, err = pcall(self.step, self, 1)
    if not ok then
      if tostring(err):find("interrupted", 1, true) then self:log("interrupted; stopping"); return end
      error(err, 0)
    end
  end
end

function S:close()
  if self.srv then self.srv:close(); self.srv = nil end   -- only a server of our own
end
S.__close = S.close
S.__gc = S.close

function M.new(o)
  o = o or {}
  local allowed = { model = 1, adapters = 1, name = 1, host = 1, port = 1, api_key = 1, max_body = 1,
                    max_queue = 1, chat_template = 1, log = 1, server = 1 }
  for k in pairs(o) do if not allowed[k] then error(("peft.serve.new: unknown option '%s'"):format(k), 2) end end
  local self = setmetatable({ seq = 0, models = {}, ids = {}, cards = {} }, S)
  local m = o.model
  if type(m) == "string" then
    local path = m
    m = peft.model.load(path)
    self.owned_model = m
    self.base_id = o.name or model_id(path)
  else
    assert(m, "peft.serve.new: model (a path or a peft.Model) is required")
    self.base_id = o.name or model_id(m:card().path or "model")
  end
  self.m = m
  self.ctx = m:config().seq_len
  self.bos = m:config().bos_id
  self.logf = o.log == nil and io.stderr or o.log or nil
  self.host = o.host or "127.0.0.1"
  self.token = o.api_key
  -- the chat template: the model's, a family by name, or plain text for a model with none
  self.tok = m:tokenizer()
  self.template = o.chat_template
  if not self.template and not self.tok:template_family() then
    self.template_mode = "plain"
    self:log("the model has no chat template: chat messages are joined by newlines (choose one with --chat-template)")
  end
  local created = os.time()
  local function add(id, adapter)
    if self.models[id] then error(("serve: two models named '%s'"):format(id), 0) end
    self.models[id] = { adapter = adapter }
    self.ids[#self.ids + 1] = id
    self.cards[id] = { id = id, object = "model", created = created, owned_by = "peftlua" }
  end
  add(self.base_id)
  for _, dir in ipairs(o.adapters or {}) do   -- each adapter is a model id of its own
    local name = model_id(dir)
    if self.models[name] then error(("serve: two models named '%s' (%s)"):format(name, dir), 0) end
    add(m:load_adapter(dir, { name = name }), name)
  end
  -- our own server, or (server = srv: the web UI's, not started yet) routes added to another;
  -- then its worker loop passes requests whose path S.owns() to s:handle(req)
  local srv = o.server
  if not srv then
    srv = http.server{ host = self.host, port = o.port or 8080, token = o.api_key,
                       max_body = o.max_body or (4 << 20), max_queue = o.max_queue or 64,
                       headers = { ["X-Content-Type-Options"] = "nosniff" } }
    self.srv = srv
    srv:fixed("GET", "/health", 200, http.json({ status = "ok" }))
  end
  local list = {}
  for _, id in ipairs(self.ids) do list[#list + 1] = self.cards[id] end
  srv:fixed("GET", "/v1/models", 200, http.json({ object = "list", data = list }), { auth = true })
  srv:route("GET", "/v1/models/", { prefix = true, auth = true })
  srv:route("POST", "/v1/chat/completions", { body = "json", auth = true })
  srv:route("POST", "/v1/completions", { body = "json", auth = true })
  if o.server then return self end
  self.port = srv:start()
  return self
end

M.owns = S.owns

return M
