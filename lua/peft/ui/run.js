// run.js — one run, live: server-sent events with ids; a reload replays them all, a dropped
// connection resumes after the last id it saw (Last-Event-ID), so no point is lost.
'use strict';
(function () {
  const $ = P.$;
  const id = P.query('id');
  const FINAL = { done: 1, failed: 1, stopped: 1 };
  const st = {
    steps: new Map(),   // step -> {loss, lr, ...}
    evals: new Map(),   // step -> val_loss
    last: null, phase: '', total: 0, lastId: 0, logs: [], error: null, dups: 0, result: null,
  };
  let es = null, info = null, dirty = false;

  function smooth(points, w) {   // exponential moving average, debiased (as TensorBoard)
    const out = []; let acc = 0, n = 0;
    for (const [x, y] of points) { acc = acc * w + (1 - w) * y; n++; out.push([x, acc / (1 - Math.pow(w, n))]); }
    return out;
  }

  function render() {
    dirty = false;
    const ph = $('phase');
    ph.textContent = st.phase || '…';
    ph.className = 'badge ' + st.phase;
    document.body.dataset.phase = st.phase;
    const l = st.last;
    const total = st.total || (l && l.total) || 0;
    const step = l ? l.step : 0;
    $('bar').style.width = total ? (100 * step / total).toFixed(1) + '%' : '0';
    $('f-step').textContent = total ? `${step} / ${total}` : '–';
    $('f-pct').textContent = total ? (100 * step / total).toFixed(1) + '%' : '–';
    if (l) {
      $('f-elapsed').textContent = P.time(l.elapsed);
      $('f-eta').textContent = FINAL[st.phase] ? '–' : P.time(l.eta);
      $('f-tps').textContent = P.num(l.tokens_per_s, 0);
      $('f-loss').textContent = P.num(l.loss);
      $('f-lr').textContent = l.lr !== undefined ? Number(l.lr).toExponential(2) : '–';
      $('f-mem').textContent = `${P.bytes(l.rss)} / ${P.bytes(l.rss_peak)}`;
    }
    let peak = 0;
    for (const v of st.steps.values()) peak = Math.max(peak, v.mem_peak || 0);
    const est = info && info.estimate ? info.estimate.total : null;
    $('f-est').textContent = `${P.bytes(est)} / ${peak ? P.bytes(peak) : '–'}`;
    const ev = [...st.evals.entries()].sort((a, b) => a[0] - b[0]);
    $('f-val').textContent = ev.length ? P.num(ev[ev.length - 1][1]) : '–';
    const err = $('run-error');
    if (st.phase === 'failed' || (st.phase === 'stopped' && st.error)) {
      err.hidden = false;
      err.textContent = (st.phase === 'failed' ? 'Failed: ' : 'Stopped: ') + (st.error || '');
    } else err.hidden = true;
    $('stop-btn').disabled = !!FINAL[st.phase] || st.phase === '';
    $('resume-btn').disabled = !(st.phase === 'failed' || st.phase === 'stopped');

    const pts = [...st.steps.entries()].sort((a, b) => a[0] - b[0]);
    const raw = pts.map(([s, v]) => [s, v.loss]);
    const series = [];
    if ($('smooth').checked) {
      series.push({ name: 'train-raw', cls: 'train-raw', points: raw });
      series.push({ name: 'train', cls: 'train', points: smooth(raw, 0.8) });
    } else series.push({ name: 'train', cls: 'train', points: raw });
    series.push({ name: 'eval', cls: 'eval', points: ev, dots: true });
    const chart = $('chart');
    P.lineChart(chart, { series, xmin: 0, xmax: Math.max(total, 1), legend: [['train', 'training loss'], ['eval', 'evaluation loss']] });
    chart.dataset.trainPoints = pts.length;
    chart.dataset.evalPoints = ev.length;
    chart.dataset.steps = pts.map(([s]) => s).join(',');
    chart.dataset.lastEventId = st.lastId;
    chart.dataset.duplicates = st.dups;
    P.lineChart($('lrchart'), { series: [{ name: 'lr', cls: 'lr', points: pts.map(([s, v]) => [s, v.lr]) }], xmin: 0,
      xmax: Math.max(total, 1), yfmt: (y) => y.toExponential(1), empty: 'learning rate' });
    const log = $('log');
    const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    log.textContent = st.logs.slice(-200).join('\n');
    if (atEnd) log.scrollTop = log.scrollHeight;
  }

  function later() { if (!dirty) { dirty = true; requestAnimationFrame(render); } }

  function onEvent(e) {
    const n = Number(e.lastEventId);
    if (n && n <= st.lastId) return;          // already seen (never expected: ids only grow)
    if (n) st.lastId = n;
    let ev;
    try { ev = JSON.parse(e.data); } catch (x) { return; }
    if (ev.type === 'phase') {
      const was = st.phase;
      st.phase = ev.phase;
      if (ev.phase === 'queued') st.error = null;
      if (ev.error) st.error = ev.error;
      if (ev.estimate && info) info.estimate = ev.estimate;
      if (FINAL[ev.phase] && !FINAL[was]) refreshInfo();
    } else if (ev.type === 'step') {
      if (st.steps.has(ev.step)) st.dups++;
      st.steps.set(ev.step, ev);
      st.last = ev;
      st.total = ev.total;
    } else if (ev.type === 'eval') {
      st.evals.set(ev.step, ev.val_loss);
    } else if (ev.type === 'resume') {
      // the run continues from its checkpoint: what came after it is done again
      for (const s of [...st.steps.keys()]) if (s > ev.step) st.steps.delete(s);
      for (const s of [...st.evals.keys()]) if (s > ev.step) st.evals.delete(s);
      st.logs.push(`— resumed from the checkpoint at step ${ev.step} —`);
    } else if (ev.type === 'log') {
      st.logs.push(ev.line);
    } else if (ev.type === 'result') {
      st.result = ev;
    }
    later();
  }

  function connect(after) {
    if (es) es.close();
    const url = `/api/runs/${encodeURIComponent(id)}/events` + (after ? `?last_event_id=${after}` : '');
    es = new EventSource(url);
    es.onmessage = onEvent;
    es.onopen = () => { $('conn').textContent = 'live'; };
    es.onerror = () => { $('conn').textContent = 'reconnecting…'; };   // the browser retries with Last-Event-ID
  }
  // for tests and for a stuck proxy: drop the stream and continue after the last id seen
  window.peftReconnect = () => connect(st.lastId);

  async function refreshInfo() {
    try { info = await P.api('GET', `/api/runs/${encodeURIComponent(id)}`); } catch (e) {
      $('run-error').hidden = false; $('run-error').textContent = e.message; return;
    }
    $('run-desc').textContent = `${info.method} on ${info.model} · dataset ${info.dataset_name || info.dataset}` +
      (info.preset ? ` · preset ${info.preset}` : '') + (info.pid ? ` · worker pid ${info.pid}` : '');
    document.body.dataset.pid = info.pid || '';
    const f = P.clear($('files'));
    for (const x of info.files) {
      f.append(P.el('li', {}, P.el('a', { href: x.url, download: x.path.split('/').pop(), 'data-kind': x.kind, text: x.path }),
        ` — ${x.kind}, ${P.bytes(x.size)}`));
    }
    if (!info.files.length) f.append(P.el('li', { class: 'muted', text: 'nothing yet' }));
    later();
  }

  async function post(action) {
    try { info = await P.api('POST', `/api/runs/${encodeURIComponent(id)}/${action}`); } catch (e) {
      $('run-error').hidden = false; $('run-error').textContent = e.message;
    }
    refreshInfo();
  }

  async function generate() {
    const prompt = $('prompt').value;
    P.clear($('ans-tuned')); P.clear($('ans-base'));
    const out = { tuned: $('ans-tuned'), base: $('ans-base') };
    $('gen-btn').disabled = true;
    document.body.dataset.generating = '1';
    try {
      const r = await fetch('/api/generate', { method: 'POST', credentials: 'same-origin',
        headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ run: id, prompt, max_tokens: 48 }) });
      if (!r.ok) {
        const t = await r.text(); let m = t;
        try { m = JSON.parse(t).error.message; } catch (x) { /* text */ }
        out.tuned.textContent = m;
        return;
      }
      const rd = r.body.getReader(), dec = new TextDecoder();
      let buf = '';
      for (;;) {
        const { value, done } = await rd.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const frame = buf.slice(0, i); buf = buf.slice(i + 2);
          const data = frame.split('\n').filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).join('\n');
          if (!data || data === '[DONE]') continue;
          const ev = JSON.parse(data);
          if (ev.text && out[ev.side]) out[ev.side].append(document.createTextNode(ev.text));
          if (ev.done && out[ev.side]) out[ev.side].dataset.done = ev.tokens;
        }
      }
    } finally {
      $('gen-btn').disabled = false;
      document.body.dataset.generating = '';
    }
  }

  $('run-id').textContent = id || '?';
  $('stop-btn').addEventListener('click', () => post('stop'));
  $('resume-btn').addEventListener('click', () => post('resume'));
  $('smooth').addEventListener('change', later);
  $('gen-btn').addEventListener('click', generate);
  refreshInfo().then(() => connect(0));
  render();
})();
