// index.js — the start page: datasets, a new run, the runs.
'use strict';
(function () {
  const $ = P.$;
  let info = null;
  let current = null;   // the selected dataset id

  function status(id, text, cls) {
    const e = $(id);
    e.textContent = text || '';
    e.className = 'status' + (cls ? ' ' + cls : '');
  }

  // ---------------------------------------------------------------- datasets
  async function upload(file) {
    P.clear($('upload-errors'));
    if (file.size > info.max_upload) {
      status('upload-status', `${file.name} is ${P.bytes(file.size)}, over the ${P.bytes(info.max_upload)} limit`, 'bad');
      return;
    }
    status('upload-status', `Uploading ${file.name} (${P.bytes(file.size)})…`);
    const type = /\.json$/i.test(file.name) ? 'application/json' : 'application/x-ndjson';
    try {
      const d = await P.api('POST', '/api/datasets?name=' + encodeURIComponent(file.name), file, { 'Content-Type': type });
      status('upload-status', `${file.name}: ${d.records} records, format ${d.format} — valid`, 'ok');
      await loadDatasets(d.id);
      showDataset(d);
    } catch (e) {
      status('upload-status', e.message, 'bad');
      const issues = (e.data && e.data.error && e.data.error.issues) || [];
      for (const i of issues) $('upload-errors').append(P.el('li', { 'data-line': i.line, text: i.text }));
    }
  }

  async function loadDatasets(select) {
    const list = await P.api('GET', '/api/datasets');
    const s = P.clear($('dataset-select'));
    for (const d of list) s.append(P.el('option', { value: d.id, text: `${d.name} — ${d.records} records (${d.id.slice(0, 12)}…)` }));
    if (select) s.value = select;
    if (!list.length) s.append(P.el('option', { value: '', text: 'none yet' }));
    current = s.value || null;
  }

  async function fetchDataset(id) {
    const q = new URLSearchParams({ model: $('model').value });
    const msl = $('opt-max_seq_len').value;
    if (msl) q.set('max_seq_len', msl);
    try { showDataset(await P.api('GET', `/api/datasets/${encodeURIComponent(id)}?${q}`)); } catch (e) {
      P.clear($('dataset-detail')).append(P.el('p', { class: 'status bad', text: e.message }));
    }
  }

  function stat(k, v) { return P.el('div', {}, P.el('span', { class: 'k', text: k }), P.el('span', { text: v })); }

  function showDataset(d) {
    current = d.id;
    const box = P.clear($('dataset-detail'));
    box.append(P.el('p', { class: 'muted small' }, `${d.name} · ${d.format} · ${P.bytes(d.size)} · sha256 ${d.sha256} · `,
      P.el('a', { href: d.download, download: d.name, text: 'download' }),
      d.dvc ? ' · ' : null, d.dvc ? P.el('a', { href: d.dvc, download: d.name + '.dvc', text: 'DVC file' }) : null));
    if (d.error) { box.append(P.el('p', { class: 'status bad', text: d.error })); return; }
    if (!d.stats) return;
    const s = d.stats;
    box.append(P.el('div', { class: 'stats', id: 'ds-stats' },
      stat('examples', s.examples), stat('tokens', s.tokens), stat('trained tokens', s.target_tokens),
      stat('length min / median / max', `${s.lengths.min} / ${s.lengths.median} / ${s.lengths.max}`),
      stat('duplicates', s.duplicates), stat(`truncated at ${s.max_seq_len}`, s.truncated), stat('no trained token', s.no_target)));
    if (s.duplicates > 0) {
      box.append(P.el('p', { class: 'muted small', text: 'Duplicates: ' + s.duplicate_lines.map((x) => `line ${x.line} = line ${x.first_line}`).join(', ') }));
    }
    const h = P.svg('svg', { viewBox: '0 0 900 180', class: 'chart', id: 'ds-hist' });
    box.append(h);
    P.histogram(h, s.histogram, `tokens per example (with ${d.model})`);
    box.append(P.el('h3', { text: 'As the model sees it' }),
      P.el('p', { class: 'legend' }, P.el('span', { class: 'prompt', text: 'prompt (masked, no loss)' }), ' ',
        P.el('span', { class: 'train', text: 'trained on' })));
    const pv = P.el('div', { id: 'preview' });
    for (const ex of d.preview || []) {
      const pre = P.el('div', { class: 'preview', 'data-line': ex.line },
        P.el('div', { class: 'muted small', text: `line ${ex.line} · ${ex.tokens} tokens${ex.truncated ? ' · truncated' : ''}` }));
      for (const seg of ex.segments) pre.append(P.el('span', { class: seg.train ? 'train' : 'prompt', text: seg.text }));
      pv.append(pre);
    }
    box.append(pv);
  }

  // ---------------------------------------------------------------- new run
  const OPTS = ['max_iters', 'epochs', 'batch_size', 'grad_accum', 'learning_rate', 'lora_rank', 'lora_alpha',
    'max_seq_len', 'valid_fraction', 'eval_every', 'save_every', 'warmup'];
  const CHECKS = ['checkpointing', 'export_gguf'];
  let preset = null;

  function applyPreset(p) {
    preset = p.id;
    for (const k of OPTS) $('opt-' + k).value = p.options[k] !== undefined ? p.options[k] : '';
    for (const k of CHECKS) if (k in p.options) $('opt-' + k).checked = !!p.options[k];
    for (const b of document.querySelectorAll('#presets button')) b.classList.toggle('on', b.dataset.preset === p.id);
    P.clear($('estimate'));
  }

  function form() {
    const options = {};
    for (const k of OPTS) {
      const v = $('opt-' + k).value;
      if (v !== '') options[k] = Number(v);
    }
    for (const k of CHECKS) if ($('opt-' + k).checked) options[k] = true;
    return { model: $('model').value, method: $('method').value, dataset: current, preset, options };
  }

  function showEstimate(e) {
    const box = P.clear($('estimate'));
    box.className = 'estimate ' + (e.fits ? 'fits' : 'nofit');
    box.id = 'estimate';
    box.dataset.total = e.total;
    box.dataset.fits = e.fits;
    const pct = Math.min(100, 100 * e.total / e.budget);
    box.append(P.el('div', { text: `Estimated peak ${P.bytes(e.total)} for batch ${e.batch_size} × ${e.seq_len} tokens (accumulation ${e.grad_accum}); this machine's budget ${P.bytes(e.budget)}.` }),
      P.el('div', { class: 'bar' }, P.el('div', { style: null })),
      P.el('div', { class: 'small muted', text: Object.entries(e.by).filter(([, v]) => v > 0).map(([k, v]) => `${k} ${P.bytes(v)}`).join(' · ') }));
    box.querySelector('.bar div').style.width = pct.toFixed(1) + '%';
    if (!e.fits) {
      box.append(P.el('p', { text: 'It does not fit: ' + e.message }));
      for (const r of e.recommendations || []) {
        box.append(P.el('button', { type: 'button', text: 'Use ' + r.text, onclick: () => {
          if (r.options) for (const [k, v] of Object.entries(r.options)) {
            const i = $('opt-' + k); if (i.type === 'checkbox') i.checked = !!v; else i.value = v;
          }
          if (r.method) $('method').value = r.method;
          estimate();
        } }));
      }
    }
  }

  async function estimate() {
    try { showEstimate(await P.api('POST', '/api/estimate', form())); return true; } catch (e) {
      const box = P.clear($('estimate')); box.className = 'estimate nofit'; box.textContent = e.message; return false;
    }
  }

  async function start() {
    status('start-status', '');
    if (!current) { status('start-status', 'Upload or choose a dataset first.', 'bad'); return; }
    $('start-btn').disabled = true;
    try {
      const r = await P.api('POST', '/api/runs', form());
      status('start-status', `Started ${r.id}`, 'ok');
      location.href = 'run.html?id=' + encodeURIComponent(r.id);
    } catch (e) {
      status('start-status', e.message, 'bad');
      if (e.data && e.data.error && e.data.error.estimate) showEstimate(e.data.error.estimate);
    } finally { $('start-btn').disabled = false; }
  }

  // ---------------------------------------------------------------- runs
  function spark(r) {   // the training loss, small
    const svg = P.svg('svg', { viewBox: '0 0 160 40', class: 'spark', 'data-points': (r.curve || []).length });
    const pts = r.curve || [];
    if (pts.length < 2) return svg;
    const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]);
    const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
    const d = pts.map(([x, y], i) => (i ? 'L' : 'M') + (2 + 156 * (x - x0) / Math.max(1e-9, x1 - x0)).toFixed(1) + ' ' +
      (38 - 36 * (y - y0) / Math.max(1e-9, y1 - y0)).toFixed(1)).join('');
    svg.append(P.svg('path', { d, class: 'train' }));
    return svg;
  }
  async function loadRuns() {
    let runs;
    try { runs = await P.api('GET', '/api/runs'); } catch (e) { return; }
    const tb = P.clear(document.querySelector('#runs-table tbody'));
    for (const r of runs) {
      const pct = r.total ? Math.floor(100 * (r.step || 0) / r.total) + '%' : '';
      tb.append(P.el('tr', { 'data-run': r.id },
        P.el('td', {}, P.el('a', { href: 'run.html?id=' + encodeURIComponent(r.id), text: r.id })),
        P.el('td', {}, P.el('span', { class: 'badge ' + r.phase, text: r.phase + (r.queue_position ? ` #${r.queue_position}` : '') })),
        P.el('td', { text: r.total ? `${r.step || 0}/${r.total} ${pct}` : '' }),
        P.el('td', {}, spark(r)),
        P.el('td', { text: P.num(r.loss) }), P.el('td', { text: P.num(r.val_loss) }),
        P.el('td', { text: r.model }), P.el('td', { text: r.dataset_name || '' }),
        P.el('td', { text: `${P.bytes(r.estimate && r.estimate.total)} / ${P.bytes(r.mem_peak)}` })));
    }
  }

  async function init() {
    info = await P.api('GET', '/api/info');
    $('machine').textContent = `${info.hw.cpu}, ${info.hw.cores} cores, memory budget ${P.bytes(info.budget)}`;
    $('maxup').textContent = P.bytes(info.max_upload);
    const ms = $('model');
    for (const m of info.models) ms.append(P.el('option', { value: m.id, text: m.id + (m.default ? ' (default)' : '') }));
    if (info.models.length) ms.value = info.models[0].id;
    for (const p of info.presets) {
      $('presets').append(P.el('button', { type: 'button', 'data-preset': p.id, text: p.label, onclick: () => applyPreset(p) }));
    }
    applyPreset(info.presets[0]);
    $('opt-max_iters').addEventListener('input', () => { if ($('opt-max_iters').value) $('opt-epochs').value = ''; });
    $('opt-epochs').addEventListener('input', () => { if ($('opt-epochs').value) $('opt-max_iters').value = ''; });
    $('file').addEventListener('change', (e) => { if (e.target.files[0]) upload(e.target.files[0]); e.target.value = ''; });
    const drop = $('drop');
    drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
    drop.addEventListener('dragleave', () => drop.classList.remove('over'));
    drop.addEventListener('drop', (e) => {
      e.preventDefault(); drop.classList.remove('over');
      if (e.dataTransfer.files[0]) upload(e.dataTransfer.files[0]);
    });
    $('dataset-select').addEventListener('change', () => { current = $('dataset-select').value; if (current) fetchDataset(current); });
    ms.addEventListener('change', () => { if (current) fetchDataset(current); P.clear($('estimate')); });
    $('estimate-btn').addEventListener('click', estimate);
    $('start-btn').addEventListener('click', start);
    await loadDatasets();
    if (current) fetchDataset(current);
    loadRuns();
    setInterval(loadRuns, 2000);
    document.body.dataset.ready = '1';
  }
  init().catch((e) => status('upload-status', e.message, 'bad'));
})();
