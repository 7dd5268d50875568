"""DVC itself (PyPI `dvc`, pinned in scripts/requirements-test.txt) on a repository whose data
`peftlua data add` versioned. Driven by tests/lua/test_track.lua:

  python3 check_dvc.py REPO TARGET...      (targets relative to REPO: files or directories)

Checks, exit 1 on the first failure:
  - `dvc status` reports nothing to do
  - every md5 peftlua wrote equals hashlib's and `md5sum`'s over the bytes as they are (a CRLF
    file included, whose LF-converted md5 differs: DVC 3 does not convert line endings)
  - `dvc add` of a copy of the same data in a fresh DVC repository writes the same outs (md5,
    size, nfiles), and the same .dir listing object
  - the targets deleted, `dvc checkout` restores them byte for byte; `dvc status` clean again
  - a file changed is reported by `dvc status`; `dvc checkout --force` puts the version back
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

ENV = dict(os.environ, DVC_NO_ANALYTICS="1", CI="1")
checks = 0


def check(cond, what):
    global checks
    if not cond:
        print("check_dvc: FAILED:", what)
        sys.exit(1)
    checks += 1


def dvc(repo, *args):
    p = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo, env=ENV, capture_output=True, text=True)
    check(p.returncode == 0, f"dvc {' '.join(args)} exited {p.returncode}: {p.stdout}{p.stderr}")
    return p.stdout


def status(repo):
    return json.loads(dvc(repo, "status", "--json") or "{}")


def outs(dvcfile):
    # the first out, key: value lines (the subset DVC writes for `dvc add`)
    out = {}
    for line in open(dvcfile):
        line = line.strip().lstrip("- ")
        if ":" in line and not line.startswith("outs"):
            k, v = line.split(":", 1)
            out[k.strip()] = v.strip().strip("'")
    return out


def md5(path):
    return hashlib.md5(open(path, "rb").read()).hexdigest()


def tree(path):
    """{relpath: md5} of every file under path (or {"": md5} for a file)."""
    if os.path.isfile(path):
        return {"": md5(path)}
    res = {}
    for root, dirs, files in os.walk(path):
        dirs[:] = [d for d in dirs if d not in (".git", ".dvc")]
        for f in files:
            full = os.path.join(root, f)
            res[os.path.relpath(full, path).replace(os.sep, "/")] = md5(full)
    return res


def main(repo, targets):
    repo = os.path.abspath(repo)
    check(status(repo) == {}, "dvc status is clean on what peftlua wrote")
    saved = {t: tree(os.path.join(repo, t)) for t in targets}
    crlf_seen = False
    for t in targets:
        o = outs(os.path.join(repo, t + ".dvc"))
        check(o.get("hash") == "md5" and o.get("path") == os.path.basename(t), f"{t}.dvc: hash and path {o}")
        full = os.path.join(repo, t)
        if os.path.isfile(full):
            ms = subprocess.run(["md5sum", full], capture_output=True, text=True).stdout.split()[0]
            check(o["md5"] == md5(full) == ms, f"{t}: md5 {o['md5']} = hashlib {md5(full)} = md5sum {ms}")
            check(int(o["size"]) == os.path.getsize(full), f"{t}: size")
        else:
            check(o["md5"].endswith(".dir") and int(o["nfiles"]) == len(saved[t]), f"{t}: .dir and nfiles {o}")
            for rel, h in saved[t].items():
                p = os.path.join(full, rel)
                ms = subprocess.run(["md5sum", p], capture_output=True, text=True).stdout.split()[0]
                check(h == ms, f"{t}/{rel}: md5sum")
                data = open(p, "rb").read()
                if b"\r\n" in data:
                    crlf_seen = True
                    check(hashlib.md5(data.replace(b"\r\n", b"\n")).hexdigest() != h, f"{t}/{rel}: CRLF bytes hashed as they are")
            listing = os.path.join(repo, ".dvc/cache/files/md5", o["md5"][:2], o["md5"][2:])
            entries = json.load(open(listing))
            check({e["relpath"]: e["md5"] for e in entries} == saved[t], f"{t}: the .dir listing matches the files")
    check(crlf_seen, "a CRLF file was among the data")

    # DVC's own `dvc add` on a copy writes the same versions
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["git", "init", "-q"], cwd=tmp, check=True)
        dvc(tmp, "init", "-q")
        for t in targets:
            src, dst = os.path.join(repo, t), os.path.join(tmp, t)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            (shutil.copytree if os.path.isdir(src) else shutil.copy)(src, dst)
            dvc(tmp, "add", "-q", t)
            ours, theirs = outs(os.path.join(repo, t + ".dvc")), outs(os.path.join(tmp, t + ".dvc"))
            check(ours == theirs, f"{t}.dvc: peftlua {ours} vs dvc add {theirs}")
            if theirs["md5"].endswith(".dir"):
                h = theirs["md5"]
                a = open(os.path.join(repo, ".dvc/cache/files/md5", h[:2], h[2:]), "rb").read()
                b = open(os.path.join(tmp, ".dvc/cache/files/md5", h[:2], h[2:]), "rb").read()
                check(a == b, f"{t}: the .dir object is byte-identical to DVC's")

    # delete, checkout, compare
    for t in targets:
        full = os.path.join(repo, t)
        shutil.rmtree(full) if os.path.isdir(full) else os.remove(full)
    check(all(k.endswith(".dvc") for k in status(repo)), "dvc status reports the deleted data")
    dvc(repo, "checkout")
    for t in targets:
        check(tree(os.path.join(repo, t)) == saved[t], f"{t}: dvc checkout restored the same bytes")
    check(status(repo) == {}, "dvc status clean after checkout")

    # a change is seen, and checkout --force undoes it
    t = targets[0]
    full = os.path.join(repo, t)
    f = full if os.path.isfile(full) else os.path.join(full, sorted(saved[t])[0])
    os.chmod(f, 0o644)
    with open(f, "ab") as fh:
        fh.write(b"changed\n")
    check(status(repo) != {}, "dvc status reports a changed file")
    dvc(repo, "checkout", "--force")
    check(tree(os.path.join(repo, t)) == saved[t] and status(repo) == {}, "dvc checkout --force restored it")
    ver = subprocess.run([sys.executable, "-m", "dvc", "--version"], env=ENV, capture_output=True, text=True).stdout.strip()
    print(f"check_dvc: dvc {ver}: {checks} checks passed ({', '.join(targets)})")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
