-- peftlua version: the version line, then the git commit and build flags the host was built
-- from, the OpenBLAS core type in use and the thread count (lua/peft/cli.lua's version()).
-- The commands' convention: one file per command under lua/peft/cmd/, run as
-- `peftlua <command> [args]`, arguments in `arg` and `...`; shared parsing in peft.cli.
local cli = require "peft.cli"
cli.parse({ name = "version", usage = "peftlua version", summary = "Print the version, git commit, build flags, OpenBLAS core and threads.", flags = {} }, { ... })
cli.version()
