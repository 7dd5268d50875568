#!/usr/bin/env python3
"""repl_pty.py HOST MODEL — the REPL's tab completion through a pseudo-terminal (readline only
completes on a terminal). Types a partial name and a Tab, finishes the line so that it prints
COMPLETED <name> only when the Tab completed it, then exits. Used by tests/lua/test_cli.lua."""
import os
import pty
import select
import sys
import time

host, model = sys.argv[1], sys.argv[2]
pid, fd = pty.fork()
if pid == 0:
    os.environ["HOME"] = "/tmp"
    os.execv(host, [host])

out = b""


def drain(until, timeout=60):
    global out
    end = time.time() + timeout
    while time.time() < end:
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                return False
            if not chunk:
                return False
            out += chunk
            if until in out:
                return True
    return False


drain(b"> ")
os.write(fd, b"x = peft.train.ru\t\n")
drain(b"> ")
os.write(fd, b"print(x == peft.train.run and 'COMPLETED ' .. 'peft.train.run')\n")
drain(b"COMPLETED peft.train.run\r\n")
os.write(fd, ("m = peft.model.load('%s')\n" % model).encode())
drain(b"> ")
os.write(fd, b"print(m:gene\t('Once', {max_tokens = 1}) and 'COMPLETED ' .. 'm:generate')\n")
drain(b"COMPLETED m:generate\r\n")
os.write(fd, b"exit\n")
drain(b"\n", 5)
os.waitpid(pid, 0)
text = out.decode("utf-8", "replace")
for line in text.splitlines():
    if line.startswith("COMPLETED"):
        print(line.strip())
