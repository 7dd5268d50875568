-- peftlua version: the version line (the commands' convention: one file per command under
-- lua/peft/cmd/, run as `peftlua <command> [args]`, arguments in `arg` and `...`).
print(("peftlua %s (%s)"):format(peft.VERSION or "0.1.0", _VERSION))
