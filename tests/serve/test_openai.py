#!/usr/bin/env python3
"""tests/serve/test_openai.py — the real `openai` PyPI client (pinned in
scripts/requirements-test.txt) against a real `peftlua serve` on 127.0.0.1.

    python3 tests/serve/test_openai.py [HOST_BINARY] [MODEL]

HOST_BINARY defaults to build/peftlua (`make asan` passes build/asan/peftlua: the same checks
then run on the sanitised server, and any sanitizer report in its stderr fails the test).
MODEL defaults to ../shared/models/stories260K/stories260K.gguf. Prints one line per check
and "N passed, N failed"; exits 1 on any failure. Asserts on values, never on timing.
"""
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HOST_BIN = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build", "peftlua")
MODEL = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "..", "shared", "models", "stories260K", "stories260K.gguf")
KEY = "sk-peftlua-test-key"
MID = "stories260K"
ADAPTER = os.path.join(ROOT, "tests", "data", "lora", "st260k_lora")   # an HF-PEFT-saved LoRA
AID = "st260k_lora"

try:
    import openai
except ImportError:
    print("test_openai: the openai package is missing: python3 -m pip install -r scripts/requirements-test.txt")
    sys.exit(1)

passed = failed = 0


def check(name, fn):
    global passed, failed
    try:
        fn()
        passed += 1
        print(f"ok   {name}")
    except Exception as e:  # noqa: BLE001 — report every failure and go on
        failed += 1
        print(f"FAIL {name}: {type(e).__name__}: {e}")


class Server:
    def __init__(self):
        self.err_path = os.path.join(ROOT, "build", "serve-test.stderr")
        os.makedirs(os.path.dirname(self.err_path), exist_ok=True)
        self.errf = open(self.err_path, "w+")
        self.p = subprocess.Popen([HOST_BIN, "serve", "--model", MODEL, "--adapter", ADAPTER, "--port", "0", "--api-key", KEY],
                                  stdout=subprocess.PIPE, stderr=self.errf, text=True, cwd=ROOT)
        line = self.p.stdout.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)/v1", line)
        if not m:
            self.p.kill()
            raise SystemExit(f"test_openai: the server did not start: {line!r}\n{self.log()}")
        self.port = int(m.group(1))
        self.base = f"http://127.0.0.1:{self.port}/v1"

    def log(self):
        self.errf.flush()
        with open(self.err_path) as f:
            return f.read()

    def alive(self):
        return self.p.poll() is None


srv = Server()
client = openai.OpenAI(base_url=srv.base, api_key=KEY, max_retries=0, timeout=120)
PROMPT = "Once upon a time"


def engine_greedy(prompt, n, adapter=None):
    """The engine's own greedy continuation (peft.model, no HTTP), to compare the server with."""
    code = ("local m = peft.model.load(%r); %s io.write((m:generate(%r, {max_tokens = %d, greedy = true})))"
            % (MODEL, "m:load_adapter(%r);" % adapter if adapter else "", prompt, n))
    r = subprocess.run([HOST_BIN, "-e", code], capture_output=True, text=True, cwd=ROOT, check=True)
    return r.stdout


def t_models():
    ids = [m.id for m in client.models.list().data]
    assert ids == [MID, AID], ids
    assert client.models.retrieve(MID).id == MID and client.models.retrieve(AID).id == AID


def t_completion_matches_engine():
    want = engine_greedy(PROMPT, 24)
    r = client.completions.create(model=MID, prompt=PROMPT, max_tokens=24, temperature=0)
    assert r.choices[0].text == want, (r.choices[0].text, want)
    assert r.usage.completion_tokens == 24 and r.choices[0].finish_reason == "length", r.usage
    assert r.usage.prompt_tokens == 5 and r.usage.total_tokens == 29, r.usage


def t_adapter():
    base = engine_greedy(PROMPT, 16)
    want = engine_greedy(PROMPT, 16, ADAPTER)
    assert want != base
    r = client.completions.create(model=AID, prompt=PROMPT, max_tokens=16, temperature=0)
    assert r.choices[0].text == want, (r.choices[0].text, want)
    r = client.completions.create(model=MID, prompt=PROMPT, max_tokens=16, temperature=0)
    assert r.choices[0].text == base, (r.choices[0].text, base)   # the base stays the base


def t_completion_stream():
    want = engine_greedy(PROMPT, 24)
    parts, finish = [], None
    for ch in client.completions.create(model=MID, prompt=PROMPT, max_tokens=24, temperature=0, stream=True):
        parts.append(ch.choices[0].text)
        finish = ch.choices[0].finish_reason or finish
    assert "".join(parts) == want, ("".join(parts), want)
    assert finish == "length" and len(parts) > 5, (finish, len(parts))


def chat(**kw):
    return client.chat.completions.create(model=MID, messages=[{"role": "user", "content": PROMPT}], **kw)


def t_chat():
    r = chat(max_tokens=20, seed=7, temperature=0.8)
    msg = r.choices[0].message
    assert msg.role == "assistant" and isinstance(msg.content, str) and msg.content, msg
    assert r.usage.completion_tokens == 20 and r.usage.prompt_tokens == 5, r.usage
    again = chat(max_tokens=20, seed=7, temperature=0.8)
    assert again.choices[0].message.content == msg.content          # a seed repeats
    other = chat(max_tokens=20, seed=8, temperature=0.8)
    assert other.choices[0].message.content != msg.content          # and matters
    assert chat(max_completion_tokens=3, seed=7).usage.completion_tokens == 3


def t_chat_stream_usage():
    whole = chat(max_tokens=20, seed=11, temperature=0.9).choices[0].message.content
    parts, usage, roles, nchunks = [], None, set(), 0
    for ch in chat(max_tokens=20, seed=11, temperature=0.9, stream=True, stream_options={"include_usage": True}):
        nchunks += 1
        if ch.usage is not None:
            usage = ch.usage
            assert ch.choices == []
            continue
        d = ch.choices[0].delta
        if d.role:
            roles.add(d.role)
        if d.content:
            parts.append(d.content)
    assert "".join(parts) == whole, ("".join(parts), whole)
    assert roles == {"assistant"}, roles
    assert usage is not None and usage.completion_tokens == 20 and usage.prompt_tokens == 5, usage


def t_stop():
    want = engine_greedy(PROMPT, 24)
    cut = want.index(" was")
    r = client.completions.create(model=MID, prompt=PROMPT, max_tokens=24, temperature=0, stop=[" was"])
    assert r.choices[0].text == want[:cut] and r.choices[0].finish_reason == "stop", r.choices[0]


def t_bad_request():
    for kw in ({"temperature": 5}, {"top_p": 1.5}, {"max_tokens": 0}, {"n": 2}, {"stop": ["a"] * 5}):
        try:
            chat(**kw)
        except openai.BadRequestError as e:
            assert e.status_code == 400 and e.body and e.body.get("type") == "invalid_request_error", e.body
        else:
            raise AssertionError(f"{kw} was accepted")
    try:
        client.chat.completions.create(model=MID, messages=[])
    except openai.BadRequestError as e:
        assert "messages" in str(e), e
    else:
        raise AssertionError("empty messages accepted")


def t_unknown_model():
    try:
        client.chat.completions.create(model="gpt-17", messages=[{"role": "user", "content": "hi"}])
    except openai.NotFoundError as e:
        assert e.status_code == 404 and e.body.get("code") == "model_not_found", e.body
    else:
        raise AssertionError("unknown model accepted")


def t_api_key():
    bad = openai.OpenAI(base_url=srv.base, api_key="sk-wrong", max_retries=0)
    for call in (lambda: bad.models.list(), lambda: bad.completions.create(model=MID, prompt="x", max_tokens=2)):
        try:
            call()
        except openai.AuthenticationError as e:
            assert e.status_code == 401, e
        else:
            raise AssertionError("a wrong key was accepted")
    # /health needs no key
    c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    c.request("GET", "/health")
    r = c.getresponse()
    assert r.status == 200 and json.loads(r.read()) == {"status": "ok"}


def t_concurrent():
    n = 8
    out, errs = [None] * n, []

    def run(i):
        try:
            parts = []
            for ch in client.completions.create(model=MID, prompt=PROMPT, max_tokens=32, seed=100 + i,
                                                temperature=1.0, stream=True):
                parts.append(ch.choices[0].text)
            out[i] = "".join(parts)
        except Exception as e:  # noqa: BLE001
            errs.append(f"client {i}: {e!r}")

    ts = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(300)
    assert not errs and all(o is not None for o in out), errs
    # each stream is exactly its own request's text: no interleaving between clients
    for i in range(n):
        whole = client.completions.create(model=MID, prompt=PROMPT, max_tokens=32, seed=100 + i, temperature=1.0)
        assert out[i] == whole.choices[0].text, (i, out[i], whole.choices[0].text)
    assert len(set(out)) > 1


def t_killed_client():
    # a separate process streams a long completion and is SIGKILLed after its first chunk
    code = f"""
import openai, sys
c = openai.OpenAI(base_url={srv.base!r}, api_key={KEY!r}, max_retries=0)
for ch in c.completions.create(model={MID!r}, prompt="Once upon a time", max_tokens=2000, seed=1, stream=True):
    print("chunk", flush=True)
"""
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "chunk"
    p.send_signal(signal.SIGKILL)
    p.wait()
    # the server keeps serving, and the request it was streaming ended early
    r = client.completions.create(model=MID, prompt=PROMPT, max_tokens=4, temperature=0)
    assert r.usage.completion_tokens == 4
    lines = [l for l in srv.log().splitlines() if "stream 5+" in l and "client gone" in l]
    assert lines, "no 'client gone' line in the server's log"
    ntok = int(re.search(r"stream 5\+(\d+) tokens", lines[-1]).group(1))
    assert ntok < 2000, lines[-1]
    print(f"     killed client: the server stopped after {ntok} of 2000 tokens")


def raw(method, path, body=b"", headers=None):
    c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=120)
    h = {"Authorization": f"Bearer {KEY}"}
    h.update(headers or {"Content-Type": "application/json"})
    c.request(method, path, body=body, headers=h)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, json.loads(data) if data else None


def t_malformed():
    cases = [
        ("malformed JSON", "POST", "/v1/chat/completions", b'{"model": "stories260K", "messages": [', None, 400, "invalid_json"),
        ("JSON not an object", "POST", "/v1/completions", b'[1, 2]', None, 400, "invalid_json"),
        ("empty body", "POST", "/v1/completions", b'', None, 400, "invalid_json"),
        ("non-UTF-8 body", "POST", "/v1/completions", b'{"model": "stories260K", "prompt": "caf\xe9"}', None, 400, "invalid_utf8"),
        ("10 MB body", "POST", "/v1/completions", b'{"prompt": "' + b"a" * (10 << 20) + b'"}', None, 413, "request_too_large"),
        ("wrong content type", "POST", "/v1/completions", b'{}', {"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
        ("wrong method", "GET", "/v1/completions", b'', None, 405, "method_not_allowed"),
        ("unknown path", "GET", "/v2/nothing", b'', None, 404, "not_found"),
        ("prompt type", "POST", "/v1/completions", b'{"model": "stories260K", "prompt": 7}', None, 400, "invalid_type"),
        ("message role", "POST", "/v1/chat/completions", b'{"model": "stories260K", "messages": [{"role": "x", "content": "y"}]}', None, 400, "invalid_value"),
    ]
    for name, method, path, body, hdr, status, code in cases:
        st, js = raw(method, path, body, hdr)
        assert st == status, (name, st, js)
        assert js["error"]["code"] == code and js["error"]["message"], (name, js)
    # a body that says it is 10 MB, sent in chunks without Content-Length
    s = socket.create_connection(("127.0.0.1", srv.port))
    s.sendall(f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
              "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
    chunk = b"a" * (1 << 20)
    for _ in range(10):
        s.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
    s.sendall(b"0\r\n\r\n")
    head = s.recv(65536).decode("latin-1")
    s.close()
    assert head.startswith("HTTP/1.1 413"), head[:80]
    assert srv.alive()
    assert [m.id for m in client.models.list().data] == [MID, AID]


def t_queue_drop():
    # a client that hangs up right after sending: the server drops or answers into the void
    s = socket.create_connection(("127.0.0.1", srv.port))
    body = json.dumps({"model": MID, "prompt": PROMPT, "max_tokens": 4}).encode()
    s.sendall(f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
              f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
    s.close()
    r = client.completions.create(model=MID, prompt=PROMPT, max_tokens=3, temperature=0)
    assert r.usage.completion_tokens == 3 and srv.alive()


def t_sigint():
    srv.p.send_signal(signal.SIGINT)
    rc = srv.p.wait(120)
    log = srv.log()
    assert rc == 0 and "serve: stopped" in log, (rc, log[-2000:])
    for bad in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
        assert bad not in log, log[-4000:]


for name, fn in [("models list and retrieve", t_models),
                 ("completion equals the engine's greedy text", t_completion_matches_engine),
                 ("an adapter as a model id (HF PEFT LoRA)", t_adapter),
                 ("completion streaming", t_completion_stream),
                 ("chat, seeds, max_completion_tokens", t_chat),
                 ("chat streaming with usage", t_chat_stream_usage),
                 ("stop strings", t_stop),
                 ("bad requests -> BadRequestError", t_bad_request),
                 ("unknown model -> NotFoundError", t_unknown_model),
                 ("API key refused -> AuthenticationError", t_api_key),
                 ("8 concurrent streaming clients", t_concurrent),
                 ("client killed mid-stream", t_killed_client),
                 ("malformed, oversized, non-UTF-8 bodies -> 4xx", t_malformed),
                 ("client gone before its answer", t_queue_drop),
                 ("Ctrl-C stops the server cleanly", t_sigint)]:
    check(name, fn)
if srv.alive():
    srv.p.kill()
print(f"test_openai (openai {openai.__version__}, {os.path.relpath(HOST_BIN, ROOT)}): {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
