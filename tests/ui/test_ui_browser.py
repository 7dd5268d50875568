"""Browser test of `peftlua ui`: Debian's chromium + chromium-driver driven by PyPI selenium
against a real server on 127.0.0.1 (make uitest; docs/ui.md).

  python3 tests/ui/test_ui_browser.py build/peftlua

Bad upload -> line-numbered errors; good upload -> preview; a smoke run on stories260K seen
live until done with a loss curve; a reload mid-run loses no point (and a dropped stream that
resumes with Last-Event-ID neither loses nor repeats one); the adapter downloaded through the
browser equals the run's file; the prompt box answers. Then a run whose worker is SIGKILLed:
the UI says it failed, resume continues from the last checkpoint and ends with the same loss
as the uninterrupted run. Prints the memory estimate against the measured peaks.
Screenshots: build/ui-screens/{start,dataset,mid-run,done,killed,resumed}.png."""
import json
import os
import signal
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

sys.path.insert(0, os.path.dirname(__file__))
from uiserver import ROOT, Server, metrics, write_datasets  # noqa: E402

HOST = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build", "peftlua"))
SHOTS = os.path.join(ROOT, "build", "ui-screens")
DL = os.path.join(ROOT, "build", "ui-test", "downloads")
STEPS = 160
OPTS = {"max_iters": STEPS, "batch_size": 4, "max_seq_len": 64, "valid_fraction": 0.2, "eval_every": 20,
        "save_every": 20, "learning_rate": 0.002, "warmup": 5, "lora_rank": 8}
checks = 0


def ok(cond, what):
    global checks
    if not cond:
        raise AssertionError(what)
    checks += 1
    print("ok", checks, "-", what)


def browser():
    o = webdriver.ChromeOptions()
    o.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              "--window-size=1280,1500", "--disable-extensions", "--no-first-run"):
        o.add_argument(a)
    o.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    o.add_experimental_option("prefs", {"download.default_directory": DL, "download.prompt_for_download": False,
                                        "safebrowsing.enabled": False})
    d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=o)
    d.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": DL})
    return d


def wait(d, fn, what, timeout=120):
    try:
        return WebDriverWait(d, timeout, poll_frequency=0.1).until(lambda _: fn())
    except Exception:
        d.save_screenshot(os.path.join(SHOTS, "failure.png"))
        raise AssertionError("timed out waiting: " + what)


def chart(d):
    c = d.find_element(By.ID, "chart")
    steps = c.get_attribute("data-steps")
    return {"n": int(c.get_attribute("data-train-points") or 0), "eval": int(c.get_attribute("data-eval-points") or 0),
            "steps": [int(s) for s in steps.split(",")] if steps else [], "last": int(c.get_attribute("data-last-event-id") or 0),
            "dups": int(c.get_attribute("data-duplicates") or 0)}


def phase(d):
    return d.find_element(By.TAG_NAME, "body").get_attribute("data-phase")


def main():
    os.makedirs(SHOTS, exist_ok=True)
    os.makedirs(DL, exist_ok=True)
    for f in os.listdir(DL):
        os.remove(os.path.join(DL, f))
    srv = Server(HOST, "browser", ["--step-delay", "0.05"])
    good, bad = write_datasets(os.path.dirname(srv.ws))
    d = browser()
    t0 = time.time()
    try:
        d.get(srv.base + "/")
        wait(d, lambda: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1", "the start page")
        ok(d.current_url.endswith("/ui/"), "/ redirects to the UI")
        d.save_screenshot(os.path.join(SHOTS, "start.png"))

        # a bad file: every problem, with its line
        d.find_element(By.ID, "file").send_keys(bad)
        wait(d, lambda: len(d.find_elements(By.CSS_SELECTOR, "#upload-errors li")) >= 2, "the upload errors")
        errs = [e.text for e in d.find_elements(By.CSS_SELECTOR, "#upload-errors li")]
        print("  errors shown:", errs)
        ok(any(e.startswith("bad.jsonl:2: invalid JSON") for e in errs), "line 2's invalid JSON is listed by line")
        ok(any(e.startswith("bad.jsonl:3: missing key 'completion'") for e in errs), "line 3's missing key is listed by line")
        ok(not any("upload-" in e for e in errs), "the server's spool name is not shown")

        # a good one: statistics and the preview as the model sees it
        Select(d.find_element(By.ID, "model")).select_by_value("stories260K.gguf")
        d.find_element(By.ID, "file").send_keys(good)
        wait(d, lambda: len(d.find_elements(By.CSS_SELECTOR, "#preview .preview")) > 0, "the preview")
        ok("48 records" in d.find_element(By.ID, "upload-status").text, "the good upload is accepted with its count")
        first = d.find_element(By.CSS_SELECTOR, "#preview .preview")
        prompt = first.find_elements(By.CSS_SELECTOR, "span.prompt")
        train = first.find_elements(By.CSS_SELECTOR, "span.train")
        ok(prompt and "Tom had 1 apples and found 1 more." in prompt[0].text, "the prompt is shown as masked")
        ok(train and "Now Tom has 2 apples" in train[0].text, "the completion is shown as trained on")
        ok(len(d.find_elements(By.CSS_SELECTOR, "#ds-hist rect.hist")) > 0, "the token-length histogram is drawn")
        stats = d.find_element(By.ID, "ds-stats").text
        ok("duplicates" in stats, "statistics name the duplicates")
        d.save_screenshot(os.path.join(SHOTS, "dataset.png"))

        # a new run: quick preset, then the smoke settings; the estimate before starting
        d.find_element(By.CSS_SELECTOR, "#presets button[data-preset=quick]").click()
        for k, v in OPTS.items():
            e = d.find_element(By.ID, "opt-" + k)
            e.clear()
            e.send_keys(str(v))
        d.find_element(By.ID, "estimate-btn").click()
        wait(d, lambda: d.find_element(By.ID, "estimate").get_attribute("data-total"), "the estimate")
        est_shown = int(d.find_element(By.ID, "estimate").get_attribute("data-total"))
        ok(d.find_element(By.ID, "estimate").get_attribute("data-fits") == "true", "the smoke run fits the budget")
        d.find_element(By.ID, "start-btn").click()
        wait(d, lambda: "run.html" in d.current_url, "the run page")
        rid = d.current_url.split("id=")[1]

        # live, then a reload mid-run
        wait(d, lambda: chart(d)["n"] >= 15 and phase(d) in ("training", "evaluating", "saving"), "15 steps live")
        d.save_screenshot(os.path.join(SHOTS, "mid-run.png"))
        before = chart(d)
        d.refresh()
        wait(d, lambda: chart(d)["n"] >= before["n"], "the points after the reload")
        after = chart(d)
        ph = phase(d)
        ok(ph in ("training", "evaluating", "saving"), f"the reload happened mid-run (phase {ph}, step {after['steps'][-1]})")
        # the step list alone (one attribute, written in one render): the point count is read in
        # another call, and a live event may land between the two reads
        ok(after["steps"] == list(range(1, len(after["steps"]) + 1)) and len(after["steps"]) >= before["n"],
           f"after the reload every step 1..{len(after['steps'])} is there (had {before['n']}): {after['steps']}")
        # a dropped stream resumed after the last id seen
        d.execute_script("window.peftReconnect()")
        wait(d, lambda: phase(d) == "done", "done", 240)
        time.sleep(0.3)
        d.save_screenshot(os.path.join(SHOTS, "done.png"))
        fin = chart(d)
        steps, evals = metrics(os.path.join(srv.ws, "runs", rid, "out", "metrics.jsonl"))
        ok(fin["steps"] == sorted(steps) and fin["n"] == STEPS, f"the page has all {STEPS} training points of metrics.jsonl")
        ok(fin["dups"] == 0, "no point came twice (reconnect with Last-Event-ID)")
        ok(fin["eval"] == len(evals) and fin["eval"] >= 8, f"the page has the {len(evals)} evaluation points")
        path = d.find_element(By.CSS_SELECTOR, "#chart path[data-series=train]")
        ok(int(path.get_attribute("data-points")) == STEPS and len(path.get_attribute("d")) > 100, "the loss curve is drawn")
        ok(d.find_element(By.CSS_SELECTOR, "#chart path[data-series=eval]") is not None, "the evaluation curve is drawn")

        # the adapter, downloaded by the browser
        link = wait(d, lambda: d.find_element(By.CSS_SELECTOR, "#files a[href$='adapter_model.safetensors']"), "the adapter link")
        link.click()
        target = os.path.join(DL, "adapter_model.safetensors")
        wait(d, lambda: os.path.exists(target) and not os.path.exists(target + ".crdownload"), "the download", 30)
        got = open(target, "rb").read()
        want = open(os.path.join(srv.ws, "runs", rid, "out", "adapter", "adapter_model.safetensors"), "rb").read()
        ok(got == want and len(got) > 1000, f"the downloaded adapter equals the run's ({len(got)} bytes)")

        # the prompt box: fine-tuned next to base
        ta = d.find_element(By.ID, "prompt")
        ta.clear()
        ta.send_keys("Tom had 2 apples and found 3 more. ")
        d.find_element(By.ID, "gen-btn").click()
        wait(d, lambda: d.find_element(By.ID, "ans-base").get_attribute("data-done"), "the answers", 60)
        tuned, base = d.find_element(By.ID, "ans-tuned").text, d.find_element(By.ID, "ans-base").text
        print("  fine-tuned:", repr(tuned[:80]))
        print("  base:      ", repr(base[:80]))
        ok(len(tuned) > 0 and len(base) > 0, "both answers streamed into the page")
        ok(tuned != base, "the fine-tuned answer differs from the base model's")
        d.save_screenshot(os.path.join(SHOTS, "answer.png"))
        report = d.find_element(By.CSS_SELECTOR, "#files a[data-kind=report]").get_attribute("href")
        d.get(report)
        imgs = d.find_elements(By.CSS_SELECTOR, "img")
        ok(len(imgs) >= 2 and all(d.execute_script("return arguments[0].naturalWidth", i) > 0 for i in imgs),
           f"the run report shows its {len(imgs)} charts")
        ok(d.execute_script("return getComputedStyle(document.querySelector('main')).maxWidth") == "1000px",
           "the report's style sheet applies under the CSP (allowed by its hash)")
        d.save_screenshot(os.path.join(SHOTS, "report.png"))
        st, r1 = srv.api("GET", "/api/runs/" + rid)

        # a worker killed with SIGKILL mid-run
        st, ds = srv.api("GET", "/api/datasets")
        st, run = srv.api("POST", "/api/runs", {"model": "stories260K.gguf", "method": "lora", "dataset": ds[0]["id"], "options": OPTS})
        ok(st == 201, "a second run starts through the API")
        rid2 = run["id"]
        d.get(srv.base + "/ui/run.html?id=" + rid2)
        wait(d, lambda: chart(d)["n"] >= 50, "50 steps of the second run")
        st, r = srv.api("GET", "/api/runs/" + rid2)
        killed_at = r["step"]
        os.kill(r["pid"], signal.SIGKILL)
        wait(d, lambda: phase(d) == "failed", "the failure shown")
        msg = d.find_element(By.ID, "run-error").text
        ok("SIGKILL" in msg and msg.startswith("Failed"), "the UI says the run failed: " + msg)
        ok(srv.alive() and srv.api("GET", "/api/info")[0] == 200, "the server survived the worker's death")
        d.save_screenshot(os.path.join(SHOTS, "killed.png"))
        d.find_element(By.ID, "resume-btn").click()
        wait(d, lambda: phase(d) == "done", "the resumed run done", 240)
        d.save_screenshot(os.path.join(SHOTS, "resumed.png"))
        evs = [json.loads(l) for l in open(os.path.join(srv.ws, "runs", rid2, "events.jsonl"))]
        res = [e["step"] for e in evs if e["type"] == "resume"]
        ok(f"resume continues from the checkpoint at step {res[0] if res else '?'}" in msg, "the failure names the checkpoint resume continues from")
        ok(len(res) == 1 and res[0] > 0 and res[0] % 20 == 0 and res[0] <= killed_at,
           f"resume continued from the last checkpoint (step {res[0] if res else None}; killed at about {killed_at})")
        fin2 = chart(d)
        ok(fin2["steps"] == list(range(1, STEPS + 1)), "the resumed run's page has every step once")
        st, r2 = srv.api("GET", "/api/runs/" + rid2)
        ok(r2["loss"] == r1["loss"], f"the killed-and-resumed run ends with the uninterrupted run's loss ({r2['loss']})")

        # past runs are listed with their curves
        d.get(srv.base + "/ui/")
        wait(d, lambda: len(d.find_elements(By.CSS_SELECTOR, "#runs-table tr[data-run] svg.spark path")) >= 2, "the runs list")
        rows = {e.get_attribute("data-run"): e for e in d.find_elements(By.CSS_SELECTOR, "#runs-table tr[data-run]")}
        ok(set(rows) >= {rid, rid2} and all("done" in rows[x].text for x in (rid, rid2)), "both runs are listed as done")
        ok(all(int(rows[x].find_element(By.CSS_SELECTOR, "svg.spark").get_attribute("data-points")) >= 50 for x in (rid, rid2)),
           "each with its loss curve")
        d.execute_script("document.getElementById('runs').scrollIntoView()")
        d.save_screenshot(os.path.join(SHOTS, "runs.png"))

        # the memory model's estimate against what the runs measured
        for r in (r1, r2):
            e = r["estimate"]["total"]
            print(f"  memory {r['id']}: estimate {e / 2**20:.2f} MiB (shown before start: {est_shown / 2**20:.2f} MiB); "
                  f"measured tracked peak {r['mem_peak'] / 2**20:.2f} MiB ({100 * (r['mem_peak'] - e) / e:+.1f}%), "
                  f"process RSS peak {r['rss_peak'] / 2**20:.2f} MiB")
        ok(abs(r1["mem_peak"] - est_shown) / est_shown < 0.25, "the estimate is within 25% of the measured tracked peak")
        csp = [m["message"] for m in d.get_log("browser") if "Content Security Policy" in m["message"]]
        ok(not csp, "no Content-Security-Policy violation in the pages: " + "; ".join(csp[:3]))
    finally:
        d.quit()
        code = srv.stop()
    ok(code == 0, "the server stopped cleanly on Ctrl-C")
    print(f"ui browser test: {checks} checks passed in {time.time() - t0:.0f} s; screenshots in {SHOTS}")


if __name__ == "__main__":
    main()
