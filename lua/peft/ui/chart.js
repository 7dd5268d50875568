// chart.js — line charts and histograms drawn as SVG in the page.
'use strict';

// P.lineChart(svg, {series: [{points: [[x, y], ...], cls, dots}], xlabel, ylabel, xmin, xmax})
P.lineChart = function (svg, o) {
  P.clear(svg);
  const vb = svg.viewBox.baseVal;
  const W = vb.width, H = vb.height;
  const L = 56, R = 12, T = 10, B = 26;
  let xmin = o.xmin !== undefined ? o.xmin : Infinity, xmax = o.xmax !== undefined ? o.xmax : -Infinity;
  let ymin = Infinity, ymax = -Infinity;
  for (const s of o.series) for (const [x, y] of s.points) {
    if (!isFinite(y)) continue;
    if (o.xmin === undefined) xmin = Math.min(xmin, x);
    if (o.xmax === undefined) xmax = Math.max(xmax, x);
    ymin = Math.min(ymin, y); ymax = Math.max(ymax, y);
  }
  if (!isFinite(ymin)) {
    svg.append(P.svg('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle' }, o.empty || 'no points yet'));
    return;
  }
  if (xmax <= xmin) xmax = xmin + 1;
  if (ymax <= ymin) { ymax += 0.5; ymin -= 0.5; }
  const pad = (ymax - ymin) * 0.05; ymin -= pad; ymax += pad;
  const sx = (x) => L + (x - xmin) / (xmax - xmin) * (W - L - R);
  const sy = (y) => T + (1 - (y - ymin) / (ymax - ymin)) * (H - T - B);
  for (let i = 0; i <= 4; i++) {
    const y = ymin + (ymax - ymin) * i / 4;
    svg.append(P.svg('line', { x1: L, x2: W - R, y1: sy(y), y2: sy(y), class: 'grid' }));
    svg.append(P.svg('text', { x: L - 6, y: sy(y) + 4, 'text-anchor': 'end' }, o.yfmt ? o.yfmt(y) : y.toPrecision(3)));
  }
  for (let i = 0; i <= 5; i++) {
    const x = xmin + (xmax - xmin) * i / 5;
    svg.append(P.svg('text', { x: sx(x), y: H - 8, 'text-anchor': 'middle' }, String(Math.round(x))));
  }
  svg.append(P.svg('line', { x1: L, x2: L, y1: T, y2: H - B, class: 'axis' }));
  svg.append(P.svg('line', { x1: L, x2: W - R, y1: H - B, y2: H - B, class: 'axis' }));
  for (const s of o.series) {
    const pts = s.points.filter(([, y]) => isFinite(y));
    if (!pts.length) continue;
    const d = pts.map(([x, y], i) => (i ? 'L' : 'M') + sx(x).toFixed(1) + ' ' + sy(y).toFixed(1)).join('');
    svg.append(P.svg('path', { d, class: s.cls, 'data-series': s.name, 'data-points': pts.length }));
    if (s.dots) for (const [x, y] of pts) svg.append(P.svg('circle', { cx: sx(x), cy: sy(y), r: 3, class: s.cls + 'dot' }));
  }
  if (o.legend) {
    let x = L + 8;
    for (const [cls, label] of o.legend) {
      svg.append(P.svg('line', { x1: x, x2: x + 16, y1: T + 8, y2: T + 8, class: cls }));
      svg.append(P.svg('text', { x: x + 20, y: T + 12 }, label));
      x += 30 + label.length * 6.5;
    }
  }
};

// P.histogram(svg, [{lo, hi, count}], label)
P.histogram = function (svg, bins, label) {
  P.clear(svg);
  const vb = svg.viewBox.baseVal;
  const W = vb.width, H = vb.height, L = 36, B = 34, T = 8;
  let last = bins.length - 1;
  while (last > 0 && !bins[last].count) last--;
  let first = 0;
  while (first < last && !bins[first].count) first++;
  const use = bins.slice(first, last + 1);
  const max = Math.max(1, ...use.map((b) => b.count));
  const bw = Math.min(90, (W - L - 8) / Math.max(1, use.length));
  use.forEach((b, i) => {
    const h = (H - T - B) * b.count / max;
    const x = L + i * bw;
    svg.append(P.svg('rect', { x: x + 2, y: H - B - h, width: Math.max(1, bw - 4), height: h, class: 'hist', 'data-count': b.count }));
    svg.append(P.svg('text', { x: x + bw / 2, y: H - B + 13, 'text-anchor': 'middle' }, b.hi === undefined || b.hi === null ? `${b.lo}+` : `${b.lo}–${b.hi}`));
    svg.append(P.svg('text', { x: x + bw / 2, y: H - B - h - 3, 'text-anchor': 'middle' }, String(b.count)));
  });
  svg.append(P.svg('text', { x: W / 2, y: H - 4, 'text-anchor': 'middle' }, label || ''));
};
