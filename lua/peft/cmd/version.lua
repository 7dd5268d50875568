-- peftlua version: the version line (the commands' convention: one file per command under
-- lua/peft/cmd/, run as `peftlua <command> [args]`, arguments in `arg` and `...`).
local commit = peft.track and peft.track.build().commit
print(("peftlua %s (%s)%s"):format(peft.VERSION or "0.1.0", _VERSION, commit and (", commit " .. commit) or ""))
