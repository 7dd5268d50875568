"""Shared by the UI tests: a real `peftlua ui` on 127.0.0.1 with a fresh workspace."""
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def stories_model():
    for p in ("tests/fixtures/stories260K/stories260K.gguf", "tests/fixtures/stories260K.gguf",
              "../shared/models/stories260K/stories260K.gguf"):
        full = os.path.join(ROOT, p)
        if os.path.exists(full):
            return full
    sys.exit("ui test: stories260K.gguf not found (tests/fixtures or ../shared/models)")


class Server:
    def __init__(self, host_bin, name, args=(), host="127.0.0.1", model=True, keep=False):
        self.ws = os.path.join(ROOT, "build", "ui-test", name)
        if not keep:
            shutil.rmtree(self.ws, ignore_errors=True)
            os.makedirs(os.path.join(self.ws, "models"))
        if model and not keep:
            shutil.copy(stories_model(), os.path.join(self.ws, "models", "stories260K.gguf"))
        self.log = open(os.path.join(ROOT, "build", "ui-test", name + ".log"), "a" if keep else "w")
        env = dict(os.environ)
        env.pop("PEFT_MODEL", None)
        cmd = [host_bin, "ui", "--workspace", self.ws, "--port", "0", "--host", host, "--threads", "1", *args]
        self.p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.log, text=True, cwd=self.ws, env=env)
        self.token = None
        line = self.p.stdout.readline()
        m = re.search(r"http://([^:/]+):(\d+)/", line)
        if not m:
            self.p.kill()
            sys.exit("ui test: the server did not start: " + line + open(self.log.name).read())
        self.host, self.port = m.group(1), int(m.group(2))
        self.base = f"http://{self.host}:{self.port}"
        if host != "127.0.0.1":
            line = self.p.stdout.readline()
            t = re.search(r"\?token=([0-9a-f]+)", line)
            self.token = t.group(1) if t else None

    def alive(self):
        return self.p.poll() is None

    def api(self, method, path, body=None, headers=None):
        data = None
        h = dict(headers or {})
        if body is not None:
            data = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def wait_run(self, rid, phases=("done", "failed", "stopped"), timeout=300):
        t0 = time.time()
        while time.time() - t0 < timeout:
            st, r = self.api("GET", "/api/runs/" + rid)
            if r["phase"] in phases:
                return r
            time.sleep(0.2)
        raise AssertionError(f"{rid} did not reach {phases}")

    def stop(self, sig=2):
        if self.p.poll() is None:
            self.p.send_signal(sig)   # Ctrl-C or SIGTERM: the server stops its worker with a checkpoint
            try:
                self.p.wait(30)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.log.close()
        return self.p.returncode


def metrics(path):
    steps, evals = {}, {}
    for line in open(path):
        d = json.loads(line)
        if "loss" in d:
            steps[d["step"]] = d
        elif "val_loss" in d:
            evals[d["step"]] = d["val_loss"]
    return steps, evals


def write_datasets(d):
    good = os.path.join(d, "stories.jsonl")
    with open(good, "w") as f:
        for i in range(48):
            a, b = (i * 7) % 9 + 1, (i * 5) % 9 + 1
            f.write(json.dumps({"prompt": f"Tom had {a} apples and found {b} more. ",
                                "completion": f"Now Tom has {a + b} apples. He was happy."}) + "\n")
    bad = os.path.join(d, "bad.jsonl")
    with open(bad, "w") as f:
        f.write(json.dumps({"prompt": "Lily saw a cat. ", "completion": "The cat was soft."}) + "\n")
        f.write('{"prompt": "Ben ran", "completion": \n')
        f.write(json.dumps({"prompt": "Sue sang."}) + "\n")
    return good, bad
