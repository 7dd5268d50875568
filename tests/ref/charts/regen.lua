-- tests/ref/charts/regen.lua — rewrite the golden chart PNGs from cases.lua.
-- Owner: report (issue 6).
--
--   make BUILD=build && build/peftlua tests/ref/charts/regen.lua     (from the repository root)
--
-- Run it only after an intended change to the renderer, look at every PNG it writes (they
-- are the reference now), and commit them. CI never runs this; tests/lua/test_report.lua
-- compares freshly rendered charts with the committed files. The goldens were made on Debian 12
-- (libgd 2.3.3, FreeType 2.12, DejaVu Sans 2.37 from fonts-dejavu-core); another FreeType or
-- font version can move anti-aliased text pixels, which the test's tolerance absorbs.
local dir = (debug.getinfo(1, "S").source:sub(2):match("^(.*)/") or ".")
local cases = dofile(dir .. "/cases.lua")
for _, c in ipairs(cases) do
  local img = c.make(peft.report)
  local L = img:layout()
  if not L.font and c.name ~= "line_bitmap_font" then
    error("no TrueType font found (install fonts-dejavu-core); goldens must use DejaVu Sans")
  end
  local path = dir .. "/" .. c.name .. ".png"
  assert(img:save(path))
  print(string.format("wrote %s (%d bytes, font %s)", path, #img:png(), tostring(L.font)))
end
