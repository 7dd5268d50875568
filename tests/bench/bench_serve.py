#!/usr/bin/env python3
"""tests/bench/bench_serve.py — serving speed (make bench): tokens/s of `peftlua serve` for one
stream and for 4 concurrent streams, and the same requests against llama.cpp's llama-server
(build/llamacpp/bin/, from `make llamacpp`) on the same GGUF and the same thread count.

    python3 tests/bench/bench_serve.py HOST_BINARY MODEL THREADS [MAX_TOKENS]

Each request is POST /v1/completions with stream = true, ignore_eos = true (both servers take
it) and max_tokens tokens; tokens/s = generated tokens / wall seconds from sending to the last
chunk (the concurrent figure: all tokens / wall seconds of the whole batch). Prints figures,
never fails on time.
"""
import http.client
import json
import os
import re
import subprocess
import sys
import threading
import time

HOST_BIN, MODEL, THREADS = sys.argv[1], sys.argv[2], int(sys.argv[3])
MAX_TOKENS = int(sys.argv[4]) if len(sys.argv) > 4 else 128
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LLAMA = os.path.join(ROOT, "build", "llamacpp", "bin", "llama-server")
PROMPT = "Once upon a time, in a small village by the sea, there lived"


def stream(port, model, seed):
    """One streamed completion: (tokens, seconds to first token, seconds in all)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    body = json.dumps({"model": model, "prompt": PROMPT, "max_tokens": MAX_TOKENS, "stream": True,
                       "ignore_eos": True, "seed": seed, "temperature": 0.8,
                       "stream_options": {"include_usage": True}})
    t0 = time.perf_counter()
    c.request("POST", "/v1/completions", body=body, headers={"Content-Type": "application/json"})
    r = c.getresponse()
    if r.status != 200:
        raise RuntimeError(f"HTTP {r.status}: {r.read()[:200]!r}")
    first, chunks, usage = None, 0, None
    for line in r:
        line = line.strip()
        if not line.startswith(b"data: "):
            continue
        data = line[6:]
        if data == b"[DONE]":
            break
        j = json.loads(data)
        if j.get("usage"):
            usage = j["usage"]["completion_tokens"]
        if j.get("choices") and j["choices"][0].get("text"):
            chunks += 1
            if first is None:
                first = time.perf_counter() - t0
    t = time.perf_counter() - t0
    c.close()
    return (usage if usage is not None else chunks), first or t, t


def run(port, model, label):
    stream(port, model, 1)  # warm-up
    n, ttft, t = stream(port, model, 2)
    print(f"  {label:10s} 1 stream:   {n} tokens in {t:.2f} s = {n / t:6.1f} tokens/s (first token {ttft * 1000:.0f} ms)")
    res = [None] * 4

    def one(i):
        res[i] = stream(port, model, 10 + i)
    t0 = time.perf_counter()
    ts = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    for th in ts:
        th.start()
    for th in ts:
        th.join()
    wall = time.perf_counter() - t0
    total = sum(r[0] for r in res)
    worst = max(r[1] for r in res)
    print(f"  {label:10s} 4 streams:  {total} tokens in {wall:.2f} s = {total / wall:6.1f} tokens/s in all, "
          f"{total / wall / 4:5.1f} per stream (slowest first token {worst * 1000:.0f} ms)")


def wait_health(port, p, secs=180):
    end = time.time() + secs
    while time.time() < end:
        if p.poll() is not None:
            return False
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/health")
            if c.getresponse().status == 200:
                return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


print(f"serving speed ({os.path.basename(MODEL)}, {THREADS} threads, {MAX_TOKENS} tokens per request, "
      f"prompt of ~13 tokens, /v1/completions streamed; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores):")
env = dict(os.environ, PEFT_THREADS=str(THREADS))
p = subprocess.Popen([HOST_BIN, "serve", "--model", MODEL, "--port", "0", "--threads", str(THREADS)],
                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
m = re.search(r"127\.0\.0\.1:(\d+)/v1", p.stdout.readline())
try:
    if not m:
        print("  peftlua: the server did not start")
    else:
        model_id = re.sub(r"\.gguf$", "", os.path.basename(MODEL))
        run(int(m.group(1)), model_id, "peftlua")
finally:
    p.terminate()
    p.wait()

if not os.path.exists(LLAMA):
    print("  llama.cpp  not built (make llamacpp builds build/llamacpp/bin/llama-server)")
    sys.exit(0)
port = 18000 + os.getpid() % 1000
q = subprocess.Popen([LLAMA, "-m", MODEL, "-t", str(THREADS), "-tb", str(THREADS), "-c", "4096", "-np", "4",
                      "--host", "127.0.0.1", "--port", str(port)],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    if wait_health(port, q):
        run(port, "model", "llama.cpp")
    else:
        print("  llama.cpp  llama-server did not start")
finally:
    q.terminate()
    q.wait()
