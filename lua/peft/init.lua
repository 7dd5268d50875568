-- peft — the umbrella module: peft.<name> loads the C module peft.<name> (extended by
-- lua/peft/<name>.lua when that file exists) or a pure-Lua module lua/peft/<name>.lua.
local peft = { _VERSION = "peftlua 0.1.0" }

local cmods = debug.getregistry()["peft.cmodules"] or {}
peft.modules = {}
for _, name in ipairs(cmods) do peft.modules[#peft.modules + 1] = name end

setmetatable(peft, {
  __index = function(t, k)
    if type(k) ~= "string" then return nil end
    local ok, mod = pcall(require, "peft." .. k)
    if ok then rawset(t, k, mod); return mod end
    if tostring(mod):find("module 'peft." .. k .. "' not found", 1, true) then return nil end
    error(mod, 2)
  end,
})

-- Load every C module now, so the REPL and recipes see them all (errors surface here).
for _, name in ipairs(cmods) do rawset(peft, name, require("peft." .. name)) end

return peft
