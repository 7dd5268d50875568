// common.js — helpers shared by the pages. Everything shown is set as text (textContent,
// attributes through setAttribute): nothing from the server or a file is parsed as HTML.
'use strict';
const P = {};

P.$ = (id) => document.getElementById(id);

// P.el('div', {class: 'x', 'data-n': 3}, 'text', child, ...)
P.el = function (tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'text') e.textContent = String(v);
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, String(v));
  }
  for (const c of kids) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
};

P.svg = function (tag, attrs, ...kids) {
  const e = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined && v !== null) e.setAttribute(k, String(v));
  for (const c of kids) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
};

P.clear = function (e) { while (e.firstChild) e.removeChild(e.firstChild); return e; };

// fetch + JSON; a non-2xx answer throws an Error carrying .status and .data (the error body)
P.api = async function (method, path, body, headers) {
  const o = { method, credentials: 'same-origin', headers: Object.assign({}, headers || {}) };
  if (body !== undefined && !(body instanceof Blob)) {
    o.headers['Content-Type'] = 'application/json';
    o.body = JSON.stringify(body);
  } else if (body !== undefined) {
    o.body = body;
  }
  const r = await fetch(path, o);
  let data = null;
  const text = await r.text();
  try { data = text ? JSON.parse(text) : null; } catch (e) { data = { error: { message: text } }; }
  if (!r.ok) {
    const err = new Error((data && data.error && data.error.message) || ('HTTP ' + r.status));
    err.status = r.status;
    err.data = data;
    throw err;
  }
  return data;
};

P.bytes = function (b) {
  if (b === undefined || b === null || b < 0) return '–';
  if (b >= 2 ** 30) return (b / 2 ** 30).toFixed(2) + ' GiB';
  if (b >= 2 ** 20) return (b / 2 ** 20).toFixed(1) + ' MiB';
  if (b >= 2 ** 10) return (b / 2 ** 10).toFixed(1) + ' KiB';
  return b + ' B';
};

P.time = function (s) {
  if (s === undefined || s === null || !isFinite(s)) return '–';
  s = Math.round(s);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), x = s % 60;
  const two = (n) => String(n).padStart(2, '0');
  return h > 0 ? `${h}:${two(m)}:${two(x)}` : `${m}:${two(x)}`;
};

P.num = function (v, d) {
  if (v === undefined || v === null || !isFinite(v)) return '–';
  return Number(v).toFixed(d === undefined ? 4 : d);
};

P.query = (name) => new URLSearchParams(location.search).get(name);
