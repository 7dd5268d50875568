"""Reads the MLflow file store that peftlua wrote with MLflow itself (mlflow-skinny, pinned in
scripts/requirements-test.txt) and checks it against peftlua's own files.

Driven by tests/lua/test_track.lua, which trains on stories260K and writes a manifest:
  {"root": "/abs/mlruns", "experiment": "name", "model": "registered name", "alias": "champion",
   "runs": [{"run_id", "output", "status", "lora_rank"}, ...],
   "live": {"root": a copy of the store taken during a run, "run_id", "steps": steps done}}

  python3 check_mlflow.py MANIFEST.json      every check below; exit 1 on the first failure

Checks (MLflow 3.x refuses the file store unless MLFLOW_ALLOW_FILE_STORE=true, set here):
  - the store copied mid-run shows that run RUNNING with one loss point per step done
  - search_runs by a param and a metric finds exactly the runs that match (and not the others)
  - get_metric_history(run, "loss") equals the loss lines of the run's metrics.jsonl (step, value)
  - status FINISHED / FAILED / KILLED as peftlua's run.json says; tags carry the model sha256 and
    the dataset md5 that run.json recorded
  - list_artifacts shows adapter/ (with its files), run.json, metrics.jsonl
  - the registered model's alias resolves to a version whose download is the run's adapter,
    byte for byte
"""
import hashlib
import json
import os
import sys
import tempfile

os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"

import mlflow  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

checks = 0


def check(cond, what):
    global checks
    if not cond:
        print("check_mlflow: FAILED:", what)
        sys.exit(1)
    checks += 1


def client_for(root):
    uri = "file://" + root
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def jsonl_loss(output):
    pts = []
    with open(os.path.join(output, "metrics.jsonl")) as f:
        for line in f:
            d = json.loads(line)
            if "loss" in d and "event" not in d and d["loss"] is not None:
                pts.append((d["step"], float(d["loss"])))
    return pts


def live(root, run_id, steps):
    c = client_for(root)
    run = c.get_run(run_id)
    check(run.info.status == "RUNNING", f"live run status {run.info.status}, expected RUNNING")
    hist = c.get_metric_history(run_id, "loss")
    check(len(hist) == steps, f"live run has {len(hist)} loss points, expected {steps}")
    print(f"check_mlflow: a copy taken mid-run shows {run_id} RUNNING with {len(hist)} loss points")


def all_checks(manifest):
    m = json.load(open(manifest))
    if "live" in m:
        live(m["live"]["root"], m["live"]["run_id"], m["live"]["steps"])
    c = client_for(m["root"])
    exp = c.get_experiment_by_name(m["experiment"])
    check(exp is not None, f"experiment {m['experiment']!r} found")
    runs = {r["run_id"]: r for r in m["runs"]}
    finished = [r for r in m["runs"] if r["status"] == "FINISHED"]

    # search by a param and a metric: the finished run with the smaller rank, loss below its own
    target = min(finished, key=lambda r: r["lora_rank"])
    loss_last = jsonl_loss(target["output"])[-1][1]
    flt = f"params.lora_rank = '{target['lora_rank']}' and metrics.loss <= {loss_last!r}"
    found = c.search_runs([exp.experiment_id], filter_string=flt)
    check([r.info.run_id for r in found] == [target["run_id"]],
          f"search_runs({flt!r}) gave {[r.info.run_id for r in found]}, expected [{target['run_id']}]")
    found = c.search_runs([exp.experiment_id], filter_string="params.method = 'lora'")
    check({r.info.run_id for r in found} == set(runs), "search_runs by method finds every run")
    found = c.search_runs([exp.experiment_id], filter_string="metrics.loss < 0")
    check(found == [] or len(found) == 0, "search_runs with an impossible metric finds nothing")

    for rid, r in runs.items():
        run = c.get_run(rid)
        check(run.info.status == r["status"], f"{rid}: status {run.info.status}, expected {r['status']}")
        rec = json.load(open(os.path.join(r["output"], "run.json")))
        check(rec["mlflow"]["run_id"] == rid, f"{rid}: run.json names the run")
        check(run.data.tags.get("peftlua.model.sha256") == rec["model"]["sha256"], f"{rid}: model sha256 tag")
        with open(rec["model"]["path"], "rb") as f:
            check(hashlib.sha256(f.read()).hexdigest() == rec["model"]["sha256"], f"{rid}: sha256 of the model file")
        for d in rec["data"]:
            check(run.data.tags.get(f"peftlua.data.{d['role']}.md5") == d["md5"], f"{rid}: {d['role']} md5 tag")
            with open(d["path"], "rb") as f:
                check(hashlib.md5(f.read()).hexdigest() == d["md5"], f"{rid}: md5 of {d['path']}")
        check(run.data.tags.get("mlflow.runName") == run.info.run_name, f"{rid}: run name tag")
        check(run.data.params.get("lora_rank") == str(r["lora_rank"]), f"{rid}: lora_rank param")
        hist = sorted((h.step, h.value) for h in c.get_metric_history(rid, "loss"))
        want = jsonl_loss(r["output"])
        check(hist == want, f"{rid}: get_metric_history(loss) {hist[:3]}... != metrics.jsonl {want[:3]}...")
        check(all(h.timestamp > 1_500_000_000_000 for h in c.get_metric_history(rid, "loss")), f"{rid}: ms timestamps")
        arts = {a.path: a for a in c.list_artifacts(rid)}
        check("run.json" in arts and "metrics.jsonl" in arts, f"{rid}: run.json and metrics.jsonl artefacts: {sorted(arts)}")
        if r["status"] == "FINISHED":
            check("adapter" in arts and arts["adapter"].is_dir, f"{rid}: adapter/ artefact")
            inner = sorted(a.path for a in c.list_artifacts(rid, "adapter"))
            check("adapter/adapter_model.safetensors" in inner and "adapter/adapter_config.json" in inner,
                  f"{rid}: adapter files {inner}")
        else:
            check(rec["status"] in ("failed", "killed") and rec.get("error"), f"{rid}: run.json error")

    # model registry: alias -> version -> the adapter, byte for byte
    mv = c.get_model_version_by_alias(m["model"], m["alias"])
    check(mv.run_id == m["registered_run"], f"alias {m['alias']} -> run {mv.run_id}")
    check(int(mv.version) == m["alias_version"], f"alias {m['alias']} -> version {mv.version}")
    versions = c.search_model_versions(f"name = '{m['model']}'")
    check(len(versions) == m["versions"], f"{len(versions)} versions, expected {m['versions']}")
    out = runs[m["registered_run"]]["output"]
    with tempfile.TemporaryDirectory() as tmp:
        got = mlflow.artifacts.download_artifacts(f"models:/{m['model']}@{m['alias']}", dst_path=tmp)
        names = sorted(os.listdir(got))
        check(names == sorted(os.listdir(os.path.join(out, "adapter"))), f"registered files {names}")
        for n in names:
            a = open(os.path.join(got, n), "rb").read()
            b = open(os.path.join(out, "adapter", n), "rb").read()
            check(a == b, f"registered {n} equals {out}/adapter/{n}")
    print(f"check_mlflow: mlflow {mlflow.__version__}: {checks} checks passed "
          f"({len(runs)} runs, model {m['model']!r} v{mv.version} @{m['alias']})")


if __name__ == "__main__":
    all_checks(sys.argv[1])
