"""HTTP-level tests of `peftlua ui` (make uitest; under make asan with the ASan build):
paths that try to leave the workspace or the page directory (../, encoded, absolute, a symlink
in the workspace), an oversized upload, wrong content types, bad JSON, a cross-origin POST, a
foreign Host, a missing token on a non-loopback bind — each refused with 4xx while the server
keeps serving; the memory refusal with its recommendation; SSE replay after Last-Event-ID.

  python3 tests/ui/test_ui_http.py build/peftlua"""
import hashlib
import http.client
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(__file__))
from uiserver import ROOT, Server, write_datasets  # noqa: E402

HOST = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build", "peftlua"))
checks = 0


def ok(cond, what):
    global checks
    if not cond:
        raise AssertionError(what)
    checks += 1
    print("ok", checks, "-", what)


def raw(srv, method, path, body=None, headers=None, host=None):
    """A request with the path sent exactly as given (no client-side normalisation)."""
    c = http.client.HTTPConnection(srv.host, srv.port, timeout=60)
    c.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    c.putheader("Host", host or f"{srv.host}:{srv.port}")
    h = dict(headers or {})
    if body is not None:
        h.setdefault("Content-Length", str(len(body)))
    for k, v in h.items():
        c.putheader(k, v)
    c.endheaders()
    if body is not None:
        c.send(body)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data, r


def until(fn, what, timeout=120):
    t = time.time()
    while not fn():
        if time.time() - t > timeout:
            raise AssertionError("timed out: " + what)
        time.sleep(0.1)


def serving(srv):
    st, body, _ = raw(srv, "GET", "/api/info")
    return st == 200 and json.loads(body)["budget"] > 0


def main():
    t0 = time.time()
    srv = Server(HOST, "http", ["--max-upload", "6000"])
    good, bad = write_datasets(os.path.dirname(srv.ws))
    try:
        st, body, r = raw(srv, "GET", "/ui/index.html")
        csp = r.getheader("Content-Security-Policy") or ""
        ok(st == 200 and "script-src 'self'" in csp and "unsafe-inline" not in csp, "pages come with a CSP without inline scripts")
        ok(b"<script>" not in body and b"onclick" not in body, "the page has no inline script")

        # a secret outside, a run directory with a symlink pointing at it
        secret = os.path.join(os.path.dirname(srv.ws), "secret.txt")
        open(secret, "w").write("MARKER-of-the-secret-file\n")
        os.makedirs(os.path.join(srv.ws, "runs", "run-0999"))
        os.symlink(secret, os.path.join(srv.ws, "runs", "run-0999", "evil.txt"))
        os.symlink(os.path.dirname(srv.ws), os.path.join(srv.ws, "runs", "run-0999", "up"))
        for path in ("/ui/../../../../etc/passwd", "/ui/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "/ui/..%2f..%2f..%2fetc%2fpasswd",
                     "/ui/%252e%252e/etc/passwd", "/files/runs/../secret.txt", "/files/runs/%2e%2e/secret.txt",
                     "/files/runs//etc/passwd", "/files/runs/%2fetc%2fpasswd", "/files/runs/run-0999/evil.txt",
                     "/files/runs/run-0999/up/secret.txt", "/files/datasets/../secret.txt", "/ui/..\\..\\secret.txt",
                     "/api/datasets/..%2f..%2fsecret.txt", "/api/runs/..%2fsecret.txt", "/api/runs/run-0999%2f..%2f..%2fsecret.txt"):
            st, body, _ = raw(srv, "GET", path)
            ok(400 <= st < 500 and b"MARKER-of" not in body and b"root:" not in body, f"GET {path} -> {st}")
        st, body, _ = raw(srv, "GET", "http://evil.example/../../etc/passwd")
        ok(400 <= st < 500 and b"root:" not in body, f"an absolute URI with ../ -> {st}")

        # uploads: size, type; requests: JSON, origin, host
        big = b'{"text":"' + b"x" * 8000 + b'"}\n'
        st, body, _ = raw(srv, "POST", "/api/datasets?name=big.jsonl", big, {"Content-Type": "application/x-ndjson"})
        ok(st == 413, f"an upload over --max-upload -> {st}")
        st, body, _ = raw(srv, "POST", "/api/datasets?name=a.jsonl", b'{"text":"hi"}\n', {"Content-Type": "text/plain"})
        ok(st == 415, f"an upload as text/plain -> {st}")
        st, body, _ = raw(srv, "POST", "/api/datasets?name=a.jsonl", b'{"text":"hi"}\n', {"Content-Type": "multipart/form-data; boundary=x"})
        ok(st == 415, f"an upload as a form -> {st}")
        st, body, _ = raw(srv, "POST", "/api/runs", b'{"dataset":', {"Content-Type": "application/json"})
        ok(st == 400 and b"invalid" in body.lower(), f"bad JSON -> {st}")
        st, body, _ = raw(srv, "POST", "/api/runs", b'{"dataset":"x"}', {"Content-Type": "text/plain"})
        ok(st == 415, f"a JSON route with text/plain -> {st}")
        st, body, _ = raw(srv, "POST", "/api/runs", b'{"dataset":"x","options":{"rm -rf":1}}', {"Content-Type": "application/json"})
        ok(st == 400 and b"unknown option" in body, f"an unknown option -> {st}")
        st, body, _ = raw(srv, "POST", "/api/estimate", b'{"model":"../../secret.txt"}', {"Content-Type": "application/json"})
        ok(st == 400 and b"no model" in body, f"a model outside the list -> {st}")
        st, body, _ = raw(srv, "POST", "/api/datasets?name=a.jsonl", b'{"text":"hi"}\n',
                          {"Content-Type": "application/x-ndjson", "Origin": "http://evil.example"})
        ok(st == 403, f"a cross-origin upload -> {st}")
        st, body, _ = raw(srv, "POST", "/api/runs/run-0001/stop", b"", {"Origin": "http://evil.example", "Content-Type": "text/plain"})
        ok(st == 403, f"a cross-origin stop -> {st}")
        st, body, _ = raw(srv, "POST", "/api/runs", b'{}', {"Content-Type": "application/json", "Sec-Fetch-Site": "cross-site"})
        ok(st == 403, f"a cross-site fetch without Origin -> {st}")
        st, body, _ = raw(srv, "GET", "/api/info", host="evil.example:%d" % srv.port)
        ok(st == 421, f"a foreign Host (DNS rebinding) -> {st}")
        st, body, _ = raw(srv, "GET", "/api/runs/run-0001/stop")
        ok(st == 404, f"GET on a state-changing path -> {st}")
        st, body, _ = raw(srv, "DELETE", "/api/runs")
        ok(400 <= st < 500, f"DELETE -> {st}")

        # a good upload, named by the server; the name echoed is the client's, as data
        name = '<img src=x onerror=alert(1)>.jsonl'
        data = open(good, "rb").read()
        st, body, _ = raw(srv, "POST", "/api/datasets?name=" + urllib.parse.quote(name), data,
                          {"Content-Type": "application/x-ndjson", "Origin": f"http://{srv.host}:{srv.port}"})
        d = json.loads(body)
        if st != 201:
            print(st, body[:300])
        ok(st == 201 and d["id"] == d["sha256"] + ".jsonl" and os.path.exists(os.path.join(srv.ws, "datasets", d["id"])),
           "a same-origin upload is stored by its sha256")
        ok(not any(c in "".join(os.listdir(os.path.join(srv.ws, "datasets"))) for c in "<>"), "the client's name is not a file name")
        dvc = open(os.path.join(srv.ws, "datasets", d["id"] + ".dvc")).read()
        if shutil.which("dvc"):   # the real tool (pinned in scripts/requirements-test.txt) agrees
            out = subprocess.run(["dvc", "status"], cwd=srv.ws, capture_output=True, text=True, timeout=120)
            ok(out.returncode == 0 and "up to date" in out.stdout, "dvc status in the workspace: " + out.stdout.strip())
        ok(f"md5: {hashlib.md5(data).hexdigest()}" in dvc and d['id'] in dvc and d.get("dvc"), "the dataset has its DVC file (peft.data.version)")
        st, body, _ = raw(srv, "POST", "/api/datasets?name=bad.jsonl", open(bad, "rb").read(), {"Content-Type": "application/x-ndjson"})
        e = json.loads(body)["error"]
        ok(st == 422 and [i["line"] for i in e["issues"]] == [2, 3], "a bad upload -> 422 with the lines of its problems")
        ok(len(os.listdir(os.path.join(srv.ws, "tmp"))) == 0, "refused and bad uploads leave nothing in the spool")

        # a chat dataset as SmolLM2 sees it: its ChatML template, the prompt masked, the answer and
        # its end-of-turn marker trained on (when the default model is here: `make model`)
        smol = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
        if os.path.exists(smol):
            os.symlink(smol, os.path.join(srv.ws, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
            chat = b"".join(json.dumps({"messages": [{"role": "user", "content": f"What is {i} + {i}?"},
                                                     {"role": "assistant", "content": f"It is {2 * i}."}]}).encode() + b"\n" for i in range(4))
            st, body, _ = raw(srv, "POST", "/api/datasets?name=chat.jsonl", chat, {"Content-Type": "application/x-ndjson"})
            cid = json.loads(body)["id"]
            st, body, _ = raw(srv, "GET", f"/api/datasets/{cid}?model=SmolLM2-135M-Instruct.Q4_1.gguf")
            segs = json.loads(body)["preview"][1]["segments"]
            masked = "".join(x["text"] for x in segs if not x["train"])
            trained = [x["text"] for x in segs if x["train"]]
            ok(st == 200 and "<|im_start|>user\nWhat is 1 + 1?<|im_end|>" in masked and trained == ["It is 2.<|im_end|>"],
               f"a chat record is previewed through the template, prompt masked: trained {trained}")

        # the memory model refuses what does not fit, and says what would
        big = {"model": "stories260K.gguf", "method": "lora", "dataset": d["id"], "options": {"batch_size": 512, "max_seq_len": 2048}}
        st, body, _ = raw(srv, "POST", "/api/runs", json.dumps(big).encode(), {"Content-Type": "application/json"})
        e = json.loads(body)["error"]
        ok(st == 422 and e["message"].startswith("refused:") and e["estimate"]["recommendations"], "a run over the budget is refused: " + e["message"])

        # a run, then its events after Last-Event-ID
        small = {"model": "stories260K.gguf", "method": "lora", "dataset": d["id"],
                 "options": {"max_iters": 12, "batch_size": 4, "max_seq_len": 64, "save_every": 4, "eval_every": 0}}
        st, run = srv.api("POST", "/api/runs", small)
        ok(st == 201 and run["status"] in ("queued", "running"), "a small run starts")
        r = srv.wait_run(run["id"])
        ok(r["phase"] == "done" and r["step"] == 12, "it is done")
        kinds = {f["kind"] for f in r["files"]}
        ok({"adapter", "gguf adapter", "ollama modelfile", "run record", "report", "metrics"} <= kinds, "its files are listed: " + ", ".join(sorted(kinds)))
        st, body, _ = raw(srv, "GET", f"/files/runs/{run['id']}/out/adapter.gguf")
        ok(st == 200 and body[:4] == b"GGUF", "the GGUF adapter downloads")
        c = http.client.HTTPConnection(srv.host, srv.port, timeout=10)
        c.request("GET", f"/api/runs/{run['id']}/events", headers={"Last-Event-ID": "5"})
        resp = c.getresponse()
        ok(resp.getheader("Content-Type").startswith("text/event-stream"), "events are server-sent")
        buf = b""
        while buf.count(b"\n\nid:") < 4:
            buf += resp.read1(4096)
        frames = buf.decode().split("\n\n")[:-1]
        ids = [int(l[4:]) for f in frames for l in f.splitlines() if l.startswith("id: ")]
        ok(ids[:3] == [6, 7, 8], f"replay starts after Last-Event-ID 5 ({ids[:3]})")
        c.close()
        # the queue (one at a time), stop with a checkpoint, resume from it
        long = dict(small, options=dict(small["options"], max_iters=100000, save_every=0))
        st, a = srv.api("POST", "/api/runs", long)
        st, b = srv.api("POST", "/api/runs", small)
        ok(b["status"] == "queued" and b["queue_position"] == 1, "a second run waits in the queue while one trains")
        until(lambda: (srv.api("GET", "/api/runs/" + a["id"])[1].get("step") or 0) >= 5, "the long run trains")
        st, _ = srv.api("POST", f"/api/runs/{a['id']}/stop")
        ok(st == 202, "stop is accepted")
        ra = srv.wait_run(a["id"], ("stopped", "failed", "done"))
        ok(ra["phase"] == "stopped" and "checkpoint saved in out/checkpoint" in (ra["error"] or ""), "stopped with a checkpoint: " + str(ra["error"]))
        rb = srv.wait_run(b["id"])
        ok(rb["phase"] == "done", "the queued run ran after the stop")
        st, _ = srv.api("POST", f"/api/runs/{b['id']}/resume")
        ok(st == 409, "a finished run cannot be resumed")
        st, _ = srv.api("POST", f"/api/runs/{a['id']}/resume")
        ok(st == 202, "the stopped run resumes")
        until(lambda: any(json.loads(l)["type"] == "resume" for l in open(os.path.join(srv.ws, "runs", a["id"], "events.jsonl"))),
              "the resumed run reports where it continues")
        res = [json.loads(l) for l in open(os.path.join(srv.ws, "runs", a["id"], "events.jsonl"))]
        stop_step = int(ra["error"].split("at step ")[1].split(";")[0])
        ok([e["step"] for e in res if e["type"] == "resume"] == [stop_step], f"resume continues at the stop's checkpoint (step {stop_step})")
        # the server stopped (SIGTERM) while a run trains: the run is stopped with a checkpoint
        until(lambda: srv.api("GET", "/api/runs/" + a["id"])[1]["status"] == "running", "the resumed run trains")
        st, body, _ = raw(srv, "GET", f"/files/runs/{run['id']}/out/adapter/adapter_model.safetensors")
        want = open(os.path.join(srv.ws, "runs", run["id"], "out", "adapter", "adapter_model.safetensors"), "rb").read()
        ok(st == 200 and body == want, "the adapter downloads byte for byte")
        ok(serving(srv) and srv.alive(), "the server keeps serving after every refusal")
    finally:
        code = srv.stop(15)
    ok(code == 0, "the server stops cleanly on SIGTERM")
    evs = [json.loads(l) for l in open(os.path.join(srv.ws, "runs", a["id"], "events.jsonl"))]
    last = [e for e in evs if e["type"] == "phase"][-1]
    ok(last["phase"] == "stopped" and "checkpoint saved" in last.get("error", ""), "its running worker was stopped with a checkpoint first")

    # a new server on the same workspace knows the runs; the stopped one resumes from its checkpoint
    srv = Server(HOST, "http", keep=True)
    try:
        st, runs = srv.api("GET", "/api/runs")
        byid = {r["id"]: r for r in runs}
        ok(byid[a["id"]]["status"] == "stopped" and byid[a["id"]]["resumable"] and byid[run["id"]]["status"] == "done",
           "after a restart the runs are listed as they were")
        n0 = len(open(os.path.join(srv.ws, "runs", a["id"], "events.jsonl")).readlines())
        ckpt = int(last["error"].split("at step ")[1].split(";")[0])
        srv.api("POST", f"/api/runs/{a['id']}/resume")
        until(lambda: any(json.loads(l)["type"] == "resume" for l in open(os.path.join(srv.ws, "runs", a["id"], "events.jsonl")).readlines()[n0:]),
              "the resumed run reports where it continues")
        res = [json.loads(l) for l in open(os.path.join(srv.ws, "runs", a["id"], "events.jsonl")).readlines()[n0:]]
        ok([e["step"] for e in res if e["type"] == "resume"] == [ckpt], f"and continues from the checkpoint of the shutdown (step {ckpt})")
    finally:
        code = srv.stop()
    ok(code == 0, "the server stops cleanly on Ctrl-C")

    # a bind other than 127.0.0.1 needs the token (127.0.0.2 is this machine too; the rule is simple)
    srv = Server(HOST, "token", host="127.0.0.2", model=False)
    try:
        ok(srv.token and len(srv.token) >= 32, "a random token is printed at start")
        for path in ("/api/info", "/ui/index.html", "/files/runs/x"):
            st, body, _ = raw(srv, "GET", path)
            ok(st == 401, f"GET {path} without the token -> {st}")
        st, body, _ = raw(srv, "GET", "/api/info", headers={"Authorization": "Bearer wrong"})
        ok(st == 401, "a wrong token -> 401")
        st, body, _ = raw(srv, "GET", "/?token=wrong")
        ok(st == 401, "the entry with a wrong token -> 401")
        st, body, r = raw(srv, "GET", "/?token=" + srv.token)
        cookie = r.getheader("Set-Cookie") or ""
        ok(st == 303 and "HttpOnly" in cookie and "SameSite=Strict" in cookie, "the entry URL sets an HttpOnly SameSite cookie")
        st, body, _ = raw(srv, "GET", "/ui/index.html", headers={"Cookie": cookie.split(";")[0]})
        ok(st == 200, "the cookie opens the pages")
        st, body, _ = raw(srv, "GET", "/api/info", headers={"Authorization": "Bearer " + srv.token})
        ok(st == 200, "the token as a header opens the API")
        st, body, _ = raw(srv, "POST", "/api/estimate", b"{}", {"Content-Type": "application/json", "Cookie": cookie.split(";")[0],
                                                             "Origin": "http://evil.example"})
        ok(st == 403, "a cross-origin POST with the cookie -> 403")
    finally:
        code = srv.stop()
    ok(code == 0, "the token server stops cleanly")
    print(f"ui http test: {checks} checks passed in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
