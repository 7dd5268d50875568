-- make_toolcall_dataset.lua — writes the quickstart's example dataset: synthetic tool-calling
-- chats (about 1000) in which a user asks for something in natural language and the assistant
-- answers with exactly one JSON tool call, e.g.
--   {"name":"get_weather","arguments":{"city":"Paris","unit":"celsius"}}
-- Each chat has a system turn listing the tools. Seeded and deterministic (peft.data.rng, the
-- same on every platform); 746 train / 254 validation examples, no example in both.
--
--   peftlua recipes/make_toolcall_dataset.lua [outdir] [seed]
--     outdir defaults to build/data/toolcall; writes outdir/train.jsonl and outdir/valid.jsonl
-- The metric for a model's answer is peft.data.toolcall_exact_match(answer, reference).
local outdir = arg and arg[1] or "build/data/toolcall"
local seed = tonumber(arg and arg[2] or "") or 20251
local N_TRAIN, N_VALID = 746, 254

local rng = peft.data.rng(seed)
local function pick(list) return list[rng:random(#list)] end

-- JSON writing with a fixed key order, so the reference text is stable.
local function jstr(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    local esc = { ['"'] = '\\"', ['\\'] = '\\\\', ['\n'] = '\\n', ['\t'] = '\\t', ['\r'] = '\\r' }
    return esc[c] or string.format("\\u%04x", c:byte())
  end) .. '"'
end
local function jval(v)
  if type(v) == "string" then return jstr(v) end
  if math.type(v) == "integer" then return tostring(v) end
  return string.format("%.10g", v)
end
local function call_json(name, args, order)
  local parts = {}
  for _, k in ipairs(order) do parts[#parts + 1] = jstr(k) .. ":" .. jval(args[k]) end
  return '{"name":' .. jstr(name) .. ',"arguments":{' .. table.concat(parts, ",") .. '}}'
end

local SYSTEM = table.concat({
  "You are a function-calling assistant. Answer every request with exactly one JSON tool call",
  'of the form {"name": ..., "arguments": {...}} and nothing else. Tools:',
  "get_weather(city, unit: celsius|fahrenheit)",
  "set_timer(minutes)",
  "convert_units(value, from_unit, to_unit)",
  "create_event(title, date: YYYY-MM-DD, time: HH:MM)",
  "send_email(to, subject)",
  "web_search(query)",
  "translate(text, target_language)",
  "get_stock_price(symbol)",
}, "\n")

local CITIES = { "Paris", "London", "Tokyo", "New York", "Berlin", "Madrid", "Rome", "Sydney", "Toronto",
  "Cairo", "Mumbai", "Seoul", "Lisbon", "Dublin", "Oslo", "Nairobi", "Lima", "Chicago", "Vienna", "Prague",
  "Bangkok", "Istanbul", "Mexico City", "Buenos Aires", "Helsinki", "Athens", "Zurich", "Boston" }
local MONTHS = { "January", "February", "March", "April", "May", "June", "July", "August", "September",
  "October", "November", "December" }
local CONTACTS = { "alice@example.com", "bob@example.org", "carol@work.example", "dan@example.net",
  "erin@school.example", "frank@example.com", "grace@lab.example", "hiro@example.jp" }
local SUBJECTS = { "Meeting notes", "Lunch on Friday", "Project update", "Invoice 2031", "Holiday plans",
  "Quarterly report", "Welcome aboard", "Server maintenance", "Birthday party", "Draft contract" }
local EVENTS = { "Dentist appointment", "Team standup", "Yoga class", "Dinner with Sam", "Budget review",
  "Flight to Rome", "Piano lesson", "Book club", "Code review", "Parent-teacher meeting" }
local QUERIES = { "best hiking trails near Denver", "how to repot a cactus", "latest Mars rover news",
  "cheap flights to Lisbon", "recipe for banana bread", "python list comprehension examples",
  "history of the printing press", "symptoms of vitamin D deficiency", "how tall is Mount Kilimanjaro",
  "electric car charging stations in Oslo", "rules of cricket", "how to fix a leaking tap" }
local PHRASES = { "good morning", "where is the train station", "thank you very much", "I would like a coffee",
  "how much does this cost", "the meeting is at noon", "see you tomorrow", "I lost my keys",
  "happy birthday", "can you help me" }
local LANGS = { "French", "German", "Spanish", "Italian", "Japanese", "Portuguese", "Dutch", "Korean" }
local STOCKS = { { "Apple", "AAPL" }, { "Microsoft", "MSFT" }, { "Tesla", "TSLA" }, { "Amazon", "AMZN" },
  { "Nvidia", "NVDA" }, { "Alphabet", "GOOGL" }, { "Netflix", "NFLX" }, { "Intel", "INTC" } }
local UNITS = {   -- spoken names -> argument name
  { "kilometers", "km" }, { "miles", "mi" }, { "pounds", "lb" }, { "kilograms", "kg" },
  { "celsius", "C" }, { "fahrenheit", "F" }, { "liters", "L" }, { "gallons", "gal" },
  { "inches", "in" }, { "centimeters", "cm" }, { "feet", "ft" }, { "meters", "m" } }
local UNIT_PAIRS = { { 1, 2 }, { 2, 1 }, { 3, 4 }, { 4, 3 }, { 5, 6 }, { 6, 5 }, { 7, 8 }, { 8, 7 },
  { 9, 10 }, { 10, 9 }, { 11, 12 }, { 12, 11 } }

local function cap(s) return (s:gsub("^%l", string.upper)) end

local makers = {
  function()   -- weather
    local city, unit = pick(CITIES), pick { "celsius", "fahrenheit" }
    local t = pick {
      "What's the weather like in %s? Give me %s.", "How warm is it in %s right now, in %s?",
      "Weather for %s please, temperatures in %s.", "Is it cold in %s today? Use %s.",
      "Check the forecast in %s for me (%s).", "Tell me the current temperature in %s in degrees %s.",
    }
    return t:format(city, unit), call_json("get_weather", { city = city, unit = unit }, { "city", "unit" })
  end,
  function()   -- timer
    local m = pick { 1, 2, 3, 5, 7, 8, 10, 12, 15, 20, 25, 30, 40, 45, 60, 90, 120 }
    local spoken = m % 60 == 0 and m >= 60 and ((m // 60) .. (m == 60 and " hour" or " hours")) or (m .. (m == 1 and " minute" or " minutes"))
    local t = pick {
      "Set a timer for %s.", "Start a %s countdown.", "Can you time %s for me?", "Remind me when %s have passed.",
      "Timer, %s, please.", "I need a timer of %s for the pasta.",
    }
    return t:format(spoken), call_json("set_timer", { minutes = m }, { "minutes" })
  end,
  function()   -- units
    local pr = pick(UNIT_PAIRS)
    local a, b = UNITS[pr[1]], UNITS[pr[2]]
    local v = pick { 1, 2, 3, 5, 8, 10, 12, 20, 25, 42, 50, 75, 100, 150, 2.5, 0.5, 7.5, 1000 }
    local vs = math.type(v) == "integer" and tostring(v) or string.format("%g", v)
    local t = pick {
      "Convert %s %s to %s.", "How many %s is %s %s?", "What is %s %s in %s?", "%s %s to %s, please.",
      "Could you change %s %s into %s?",
    }
    local q
    if t:find("^How many") then q = t:format(b[1], vs, a[1]) else q = t:format(vs, a[1], b[1]) end
    return cap(q), call_json("convert_units", { value = v, from_unit = a[2], to_unit = b[2] }, { "value", "from_unit", "to_unit" })
  end,
  function()   -- calendar
    local title, mo, d = pick(EVENTS), rng:random(12), rng:random(28)
    local h, mi = rng:random(7, 20), pick { 0, 15, 30, 45 }
    local date = string.format("2026-%02d-%02d", mo, d)
    local time = string.format("%02d:%02d", h, mi)
    local spoken_date = pick { MONTHS[mo] .. " " .. d .. ", 2026", d .. " " .. MONTHS[mo] .. " 2026", date }
    local h12 = h % 12 == 0 and 12 or h % 12
    local spoken_time = pick { time, (mi == 0 and tostring(h12) or string.format("%d:%02d", h12, mi)) .. (h < 12 and " am" or " pm") }
    local t = pick {
      "Add \"%s\" to my calendar on %s at %s.", "Schedule %s for %s at %s.", "Put %s in the calendar, %s, %s.",
      "Create an event called %s on %s at %s.", "Book %s on %s at %s in my calendar.",
    }
    return t:format(title, spoken_date, spoken_time),
      call_json("create_event", { title = title, date = date, time = time }, { "title", "date", "time" })
  end,
  function()   -- email
    local to, subj = pick(CONTACTS), pick(SUBJECTS)
    local t = pick {
      "Send an email to %s with the subject \"%s\".", "Email %s about \"%s\".", "Write to %s, subject: %s.",
      "Please mail %s, subject line \"%s\".", "Drop %s a message titled \"%s\".",
    }
    return t:format(to, subj), call_json("send_email", { to = to, subject = subj }, { "to", "subject" })
  end,
  function()   -- search
    local q = pick(QUERIES)
    local t = pick { "Search the web for %s.", "Look up %s.", "Can you google %s?", "Find me results on %s.",
      "I want to know about %s, search for it." }
    return t:format(q), call_json("web_search", { query = q }, { "query" })
  end,
  function()   -- translate
    local p, l = pick(PHRASES), pick(LANGS)
    local t = pick { "Translate \"%s\" into %s.", "How do you say \"%s\" in %s?", "What is \"%s\" in %s?",
      "Please put \"%s\" into %s." }
    return t:format(p, l), call_json("translate", { text = p, target_language = l }, { "text", "target_language" })
  end,
  function()   -- stocks
    local s = pick(STOCKS)
    local name = pick { s[1], s[2] }
    local t = pick { "What's the stock price of %s?", "How is %s trading today?", "Get me the share price for %s.",
      "Quote for %s, please.", "Check %s stock." }
    return t:format(name), call_json("get_stock_price", { symbol = s[2] }, { "symbol" })
  end,
}

-- Draw unique requests until there are enough.
local examples, seen = {}, {}
local attempts = 0
while #examples < N_TRAIN + N_VALID do
  attempts = attempts + 1
  assert(attempts < 100000, "make_toolcall_dataset: not enough distinct requests")
  local user, call = makers[rng:random(#makers)]()
  if not seen[user] then
    seen[user] = true
    examples[#examples + 1] = '{"messages":[{"role":"system","content":' .. jstr(SYSTEM) ..
      '},{"role":"user","content":' .. jstr(user) .. '},{"role":"assistant","content":' .. jstr(call) .. '}]}'
  end
end
rng:shuffle(examples)

os.execute("mkdir -p '" .. outdir:gsub("'", "'\\''") .. "'")
local function write(name, from, to)
  local path = outdir .. "/" .. name
  local f = assert(io.open(path, "wb"))
  for i = from, to do f:write(examples[i], "\n") end
  f:close()
  return path
end
local tp = write("train.jsonl", 1, N_TRAIN)
local vp = write("valid.jsonl", N_TRAIN + 1, N_TRAIN + N_VALID)
print(string.format("wrote %d train examples to %s and %d validation examples to %s (seed %d)",
  N_TRAIN, tp, N_VALID, vp, seed))
