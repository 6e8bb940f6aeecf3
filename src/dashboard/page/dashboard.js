// The rxgrad dashboard page: a snapshot of the run on connect, then deltas over Server-Sent Events.
// Plain browser JavaScript (no build step); charts are uPlot, served by the same server.
'use strict';

const PANELS = [
  { id: 'loss', title: 'Loss', axis: 'step' },
  { id: 'metrics', title: 'Accuracy and metrics', axis: 'step' },
  { id: 'learningRate', title: 'Learning rate', axis: 'step' },
  { id: 'throughput', title: 'Examples per second', axis: 'time', zero: true },
  { id: 'eventLoop', title: 'Event-loop delay (ms)', axis: 'time', zero: true },
  { id: 'rolling', title: 'Rolling metrics (online)', axis: 'step' },
  { id: 'rollingError', title: 'Rolling error (online)', axis: 'step' },
  { id: 'counts', title: 'Dropped, skipped, waiting (online)', axis: 'step' },
  { id: 'gradientNorm', title: 'Gradient norm per layer', axis: 'step', log: true },
  { id: 'updateNorm', title: 'Update norm per layer', axis: 'step', log: true },
  { id: 'updateRatio', title: 'Update / weight norm per layer', axis: 'step', log: true },
  { id: 'sparsity', title: 'Sparsity per weight tensor (fraction of zeros)', axis: 'step' },
];
const COLORS = ['#2f6fde', '#e0662b', '#2a9d4b', '#c2399a', '#7a5ce0', '#b58b00', '#19a3a3', '#d23c3c', '#5d6b82', '#8fb82a'];
/** Points kept per series in the page; older ones are merged in pairs (the server's buckets do the same). */
const MAX_POINTS = 4000;
const KEEP_RECENT = 1500;

const series = new Map(); // key -> { meta, x, y, total }
const charts = new Map(); // panel id -> { plot, keys, el, holder }
const histograms = new Map(); // tensor name -> snapshots
let evaluations = [];
const trials = new Map();
let status = null;
let smoothing = 0.6;
let dirty = new Set();
let frameRequested = false;
const counters = { snapshots: 0, updates: 0 };
// For tests and the console: what the page holds.
window.__dashboard = { counters, series, charts };

const $ = (id) => document.getElementById(id);

function resetData() {
  series.clear();
  histograms.clear();
  evaluations = [];
  trials.clear();
}

function setSeries(meta, data) {
  const s = { meta, x: data.bx.concat(data.x), y: data.by.concat(data.y), total: data.total };
  series.set(meta.key, s);
  dirty.add(meta.panel);
}

function appendSeries(key, from, xs, ys) {
  const s = series.get(key);
  if (!s) return;
  // Points already in the snapshot are skipped (a delta may overlap it).
  const skip = Math.max(0, s.total - from);
  for (let i = skip; i < xs.length; i++) {
    s.x.push(xs[i]);
    s.y.push(ys[i]);
  }
  s.total = Math.max(s.total, from + xs.length);
  if (s.x.length > MAX_POINTS) thin(s);
  dirty.add(s.meta.panel);
}

/** Merges pairs among the oldest points so a long session keeps a bounded page. */
function thin(s) {
  const old = s.x.length - KEEP_RECENT;
  const x = [];
  const y = [];
  for (let i = 0; i + 1 < old; i += 2) {
    x.push((s.x[i] + s.x[i + 1]) / 2);
    const a = s.y[i];
    const b = s.y[i + 1];
    y.push(a === null ? b : b === null ? a : (a + b) / 2);
  }
  const start = old - (old % 2);
  s.x = x.concat(s.x.slice(start));
  s.y = y.concat(s.y.slice(start));
}

function addHistogram(name, snapshot) {
  let list = histograms.get(name);
  if (!list) histograms.set(name, (list = []));
  if (list.length && list[list.length - 1].step === snapshot.step) return;
  list.push(snapshot);
  if (list.length > 40) list.splice(0, list.length - 40);
  dirty.add('histograms');
}

function addEvaluation(e) {
  if (evaluations.some((o) => o.step === e.step && o.epoch === e.epoch)) return;
  evaluations.push(e);
  if (evaluations.length > 60) evaluations.splice(0, evaluations.length - 60);
  dirty.add('confusion');
}

function applySnapshot(snapshot) {
  resetData();
  status = snapshot.status;
  for (const { meta, data } of snapshot.series) setSeries(meta, data);
  for (const [name, list] of Object.entries(snapshot.histograms)) for (const h of list) addHistogram(name, h);
  for (const e of snapshot.evaluations) addEvaluation(e);
  for (const t of snapshot.trials) trials.set(t.trial, t);
  for (const p of PANELS) dirty.add(p.id);
  ['histograms', 'confusion', 'trials', 'status'].forEach((d) => dirty.add(d));
  counters.snapshots++;
  schedule();
}

function applyDelta(delta) {
  status = delta.status;
  for (const meta of delta.meta) if (!series.has(meta.key)) setSeries(meta, { bx: [], by: [], x: [], y: [], total: 0 });
  for (const s of delta.series) {
    if (s.replace) setSeries(series.get(s.key).meta, s.replace);
    else appendSeries(s.key, s.from, s.x, s.y);
  }
  for (const [name, h] of Object.entries(delta.histograms)) addHistogram(name, h);
  for (const e of delta.evaluations) addEvaluation(e);
  for (const t of delta.trials) trials.set(t.trial, t);
  if (delta.trials.length) dirty.add('trials');
  dirty.add('status');
  counters.updates++;
  schedule();
}

function schedule() {
  if (frameRequested) return;
  frameRequested = true;
  requestAnimationFrame(() => {
    frameRequested = false;
    const todo = dirty;
    dirty = new Set();
    for (const panel of PANELS) if (todo.has(panel.id)) drawPanel(panel);
    if (todo.has('histograms')) drawHistograms();
    if (todo.has('confusion')) drawConfusion();
    if (todo.has('trials')) drawTrials();
    drawStatus();
  });
}

// ---- line charts -------------------------------------------------------------------------

function formatSeconds(s) {
  if (s < 10) return `${+s.toFixed(1)} s`;
  if (s < 120) return `${Math.round(s)} s`;
  if (s < 7200) return `${(s / 60).toFixed(s < 600 ? 1 : 0)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

function formatValue(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return '-';
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(2);
  return +v.toPrecision(4) + '';
}

/** Debiased exponential moving average (TensorBoard's smoothing), skipping gaps. */
function smooth(values, weight) {
  const out = new Array(values.length);
  let last = 0;
  let n = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v === null) {
      out[i] = null;
      continue;
    }
    last = last * weight + (1 - weight) * v;
    n++;
    out[i] = last / (1 - Math.pow(weight, n));
  }
  return out;
}

function panelElement(panel) {
  let entry = charts.get(panel.id);
  if (entry) return entry;
  const section = document.createElement('section');
  section.className = 'panel';
  section.id = `panel-${panel.id}`;
  const h2 = document.createElement('h2');
  h2.textContent = panel.title;
  const latest = document.createElement('div');
  latest.className = 'latest';
  const holder = document.createElement('div');
  holder.className = 'chart';
  section.append(h2, latest, holder);
  // Chart panels come in PANELS order, before the wide tables.
  const later = PANELS.slice(PANELS.indexOf(panel) + 1).map((p) => charts.get(p.id)).find(Boolean);
  $('panels').insertBefore(section, later ? later.el : $('panel-confusion'));
  entry = { el: section, holder, latest, plot: null, keys: '' };
  charts.set(panel.id, entry);
  new ResizeObserver(() => entry.plot && entry.plot.setSize(size(holder))).observe(holder);
  return entry;
}

function size(holder) {
  const width = Math.max(200, holder.clientWidth);
  return { width, height: width < 480 ? 190 : 230 };
}

/** One x array for the panel's series (union of their x values) and each series' y at those x. */
function align(list, log) {
  const xs = new Set();
  for (const s of list) for (const x of s.x) xs.add(x);
  const x = Float64Array.from(xs).sort();
  const index = new Map();
  x.forEach((v, i) => index.set(v, i));
  const columns = [];
  for (const s of list) {
    const raw = new Array(x.length).fill(null);
    for (let i = 0; i < s.x.length; i++) {
      const v = s.y[i];
      raw[index.get(s.x[i])] = log && v !== null && v <= 0 ? null : v;
    }
    if (s.meta.smooth) {
      const smoothed = smooth(raw, smoothing);
      columns.push({ meta: s.meta, values: raw, faint: true }, { meta: s.meta, values: smoothed, label: `${s.meta.label} (smoothed)` });
    } else columns.push({ meta: s.meta, values: raw });
  }
  return { x: Array.from(x), columns };
}

function drawPanel(panel) {
  const list = [...series.values()].filter((s) => s.meta.panel === panel.id && s.x.length > 0);
  if (list.length === 0) return;
  const entry = panelElement(panel);
  const { x, columns } = align(list, panel.log);
  const keys = columns.map((c) => c.meta.key + (c.faint ? '~' : '')).join('|');
  const data = [x, ...columns.map((c) => c.values)];
  entry.columns = columns;
  if (!entry.hovering) showLatest(entry.latest, columns);
  if (entry.plot && entry.keys === keys) {
    entry.plot.setData(data);
    return;
  }
  if (entry.plot) entry.plot.destroy();
  entry.keys = keys;
  let colorIndex = 0;
  const seriesOptions = columns.map((c) => {
    const color = COLORS[(c.faint ? colorIndex : colorIndex++) % COLORS.length];
    return {
      label: c.label || (c.faint ? `${c.meta.label} (raw)` : c.meta.label),
      stroke: c.faint ? `${color}55` : color,
      width: c.faint ? 1 : c.meta.points ? 0 : 1.5,
      spanGaps: !c.meta.points,
      // Lines show their points only while they are sparse (uPlot's default); raw lines never.
      points: c.meta.points ? { show: true, size: 7, fill: color } : c.faint ? { show: false } : {},
      value: (u, v) => formatValue(v),
    };
  });
  const timeAxis = panel.axis === 'time';
  entry.plot = new uPlot(
    {
      ...size(entry.holder),
      // The line above the chart is the legend: latest values, or those under the cursor.
      legend: { show: false },
      cursor: { drag: { x: true, y: false } },
      hooks: {
        setCursor: [
          (u) => {
            const idx = u.cursor.idx;
            entry.hovering = idx !== null && idx !== undefined;
            const at = entry.hovering ? idx : undefined;
            showLatest(entry.latest, entry.columns, at);
            if (entry.hovering) entry.latest.prepend(`${timeAxis ? formatSeconds(u.data[0][idx]) : `step ${u.data[0][idx]}`}: `);
          },
        ],
      },
      scales: { x: { time: false }, y: panel.log ? { distr: 3 } : panel.zero ? { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] } : { auto: true } },
      axes: [
        { label: timeAxis ? 'time' : 'step', values: (u, ticks) => ticks.map((t) => (timeAxis ? formatSeconds(t) : formatValue(t))) },
        { values: (u, ticks) => ticks.map(formatValue), size: 60 },
      ],
      series: [{ label: timeAxis ? 'time' : 'step', value: (u, v) => (v === null ? '-' : timeAxis ? formatSeconds(v) : String(v)) }, ...seriesOptions],
    },
    data,
    entry.holder,
  );
}

/** The latest value of each (non-raw) series, with its colour: the key to the chart and its current reading. */
function showLatest(box, columns, at) {
  box.textContent = '';
  let colorIndex = 0;
  for (const c of columns) {
    if (c.faint) continue;
    const color = COLORS[colorIndex++ % COLORS.length];
    let v = null;
    if (at !== undefined) v = c.values[at];
    else for (let i = c.values.length - 1; i >= 0 && v === null; i--) v = c.values[i];
    const item = document.createElement('span');
    const swatch = document.createElement('i');
    swatch.style.background = color;
    item.append(swatch, `${c.label || c.meta.label} `, Object.assign(document.createElement('b'), { textContent: formatValue(v) }));
    box.append(item);
  }
}

// ---- histograms, confusion matrix, trials ------------------------------------------------

function canvasContext(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth;
  const height = canvas.clientHeight;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  const ctx = canvas.getContext('2d');
  ctx.scale(ratio, ratio);
  return { ctx, width, height };
}

function drawHistograms() {
  const container = $('histograms');
  if (histograms.size === 0) return;
  $('panel-histograms').hidden = false;
  for (const [name, list] of histograms) {
    let box = container.querySelector(`[data-name="${CSS.escape(name)}"]`);
    if (!box) {
      box = document.createElement('div');
      box.className = 'histogram';
      box.dataset.name = name;
      box.innerHTML = '<span class="caption"></span><canvas></canvas>';
      container.append(box);
    }
    const latest = list[list.length - 1];
    box.querySelector('.caption').textContent = `${name} · step ${latest.step} · [${formatValue(latest.min)}, ${formatValue(latest.max)}] · ${latest.sampled === latest.size ? latest.size : `${latest.sampled} of ${latest.size}`} values`;
    ridges(box.querySelector('canvas'), list.slice(-12));
  }
}

/** Histograms over time as ridges: oldest at the back (top), newest in front (bottom). */
function ridges(canvas, list) {
  const { ctx, width, height } = canvasContext(canvas);
  ctx.clearRect(0, 0, width, height);
  const lo = Math.min(...list.map((h) => h.min));
  const hi = Math.max(...list.map((h) => h.max));
  const span = hi > lo ? hi - lo : 1;
  const rows = list.length;
  const ridgeHeight = height * 0.45;
  const offset = rows > 1 ? (height - ridgeHeight - 4) / (rows - 1) : 0;
  list.forEach((h, r) => {
    const base = 4 + ridgeHeight + r * offset;
    const peak = Math.max(...h.counts) || 1;
    const binWidth = (h.max - h.min) / h.counts.length || span / h.counts.length;
    ctx.beginPath();
    ctx.moveTo(((h.min - lo) / span) * width, base);
    h.counts.forEach((c, i) => {
      const xv = h.min + (i + 0.5) * binWidth;
      ctx.lineTo(((xv - lo) / span) * width, base - (c / peak) * ridgeHeight);
    });
    ctx.lineTo(((h.max - lo) / span) * width, base);
    const shade = Math.round(200 - (150 * (r + 1)) / rows);
    ctx.fillStyle = `rgba(47, 111, 222, ${0.15 + (0.5 * (r + 1)) / rows})`;
    ctx.strokeStyle = `rgb(${shade}, ${shade}, ${shade + 40})`;
    ctx.fill();
    ctx.stroke();
  });
}

function drawConfusion() {
  if (evaluations.length === 0) return;
  $('panel-confusion').hidden = false;
  const select = $('evaluation-select');
  const previous = select.value;
  const wasLatest = !previous || previous === String(select.options.length - 1);
  select.textContent = '';
  evaluations.forEach((e, i) => {
    const option = document.createElement('option');
    option.value = String(i);
    option.textContent = `${e.epoch !== undefined ? `epoch ${e.epoch}, ` : ''}step ${e.step}`;
    select.append(option);
  });
  select.value = wasLatest ? String(evaluations.length - 1) : previous;
  renderConfusion(evaluations[Number(select.value)] || evaluations[evaluations.length - 1]);
}

function renderConfusion(e) {
  const table = $('confusion');
  table.textContent = '';
  const parts = [];
  if (e.accuracy !== undefined) parts.push(`accuracy ${(e.accuracy * 100).toFixed(2)}%`);
  if (e.loss !== undefined) parts.push(`loss ${formatValue(e.loss)}`);
  if (e.examples !== undefined) parts.push(`${e.examples} validation examples`);
  const c = e.confusion;
  if (!c) {
    $('confusion-caption').textContent = `${parts.join(' · ')}${e.confusionError ? ` · no matrix: ${e.confusionError}` : ''}`;
    return;
  }
  parts.push(`matrix over ${c.examples} examples (rows: true class, columns: predicted)`);
  $('confusion-caption').textContent = parts.join(' · ');
  table.dataset.examples = String(c.examples);
  const name = (i) => (c.classNames && c.classNames[i] !== undefined ? `${i} ${c.classNames[i]}` : String(i));
  const head = table.insertRow();
  head.append(Object.assign(document.createElement('th'), { textContent: 'true \\ pred' }));
  for (let j = 0; j < c.classes; j++) head.append(Object.assign(document.createElement('th'), { textContent: String(j) }));
  c.counts.forEach((row, i) => {
    const tr = table.insertRow();
    tr.append(Object.assign(document.createElement('th'), { className: 'row', textContent: name(i) }));
    const total = row.reduce((a, b) => a + b, 0) || 1;
    row.forEach((count, j) => {
      const td = tr.insertCell();
      td.className = 'count';
      td.textContent = String(count);
      const share = count / total;
      td.style.background = i === j ? `rgba(42, 157, 75, ${share * 0.8})` : count > 0 ? `rgba(210, 60, 60, ${Math.min(0.8, 0.1 + share * 2)})` : '';
    });
  });
}

let trialSort = { key: 'trial', descending: false };

function drawTrials() {
  if (trials.size === 0) return;
  $('panel-trials').hidden = false;
  const list = [...trials.values()];
  const byStatus = {};
  for (const t of list) byStatus[t.status] = (byStatus[t.status] || 0) + 1;
  $('trials-caption').textContent = `${list.length} trials · ${Object.entries(byStatus).map(([k, v]) => `${v} ${k}`).join(', ')}`;
  const configKeys = [...new Set(list.flatMap((t) => Object.keys(t.config)))];
  const value = (t, key) => (key in t ? t[key] : t.config[key]);
  list.sort((a, b) => {
    const va = value(a, trialSort.key);
    const vb = value(b, trialSort.key);
    const order = va === undefined ? 1 : vb === undefined ? -1 : va < vb ? -1 : va > vb ? 1 : 0;
    return trialSort.descending ? -order : order;
  });
  const table = $('trials');
  table.textContent = '';
  const head = table.insertRow();
  for (const key of ['trial', 'status', 'budget', 'rung', 'metric', ...configKeys, 'error']) {
    const th = document.createElement('th');
    th.textContent = key + (trialSort.key === key ? (trialSort.descending ? ' ▼' : ' ▲') : '');
    th.onclick = () => {
      trialSort = { key, descending: trialSort.key === key ? !trialSort.descending : false };
      drawTrials();
    };
    head.append(th);
  }
  for (const t of list.slice(0, 500)) {
    const tr = table.insertRow();
    const cells = [t.trial, t.status, t.budget, t.rung ?? '', t.metric === undefined ? '' : formatValue(t.metric), ...configKeys.map((k) => formatCell(t.config[k])), t.error ?? ''];
    cells.forEach((v, i) => {
      const td = tr.insertCell();
      td.textContent = String(v);
      if (i === 1) td.className = `status-${t.status}`;
      if (i >= 5) td.classList.add('config');
    });
  }
  drawTrialChart(list);
}

const formatCell = (v) => (typeof v === 'number' ? formatValue(v) : v === undefined ? '' : String(v));

function drawTrialChart(list) {
  const canvas = $('trials-chart');
  const { ctx, width, height } = canvasContext(canvas);
  ctx.clearRect(0, 0, width, height);
  const reports = list.flatMap((t) => t.reports);
  if (reports.length === 0) return;
  const pad = 36;
  const budgets = reports.map((r) => r.budget);
  const metrics = reports.map((r) => r.metric);
  const [b0, b1] = [Math.min(...budgets), Math.max(...budgets)];
  const [m0, m1] = [Math.min(...metrics), Math.max(...metrics)];
  const px = (b) => pad + 8 + ((b - b0) / (b1 - b0 || 1)) * (width - pad - 24);
  const py = (m) => height - 18 - ((m - m0) / (m1 - m0 || 1)) * (height - 28);
  ctx.fillStyle = '#6b7385';
  ctx.font = '11px system-ui, sans-serif';
  ctx.fillText(formatValue(m1), 2, 12);
  ctx.fillText(formatValue(m0), 2, height - 18);
  ctx.fillText(`budget ${formatValue(b0)} … ${formatValue(b1)} → metric per trial`, pad, height - 4);
  const color = { running: '#2f6fde', reported: '#2f6fde', promoted: '#7a5ce0', completed: '#2a9d4b', stopped: '#9aa1b0', failed: '#d23c3c' };
  for (const t of list) {
    if (t.reports.length === 0) continue;
    ctx.strokeStyle = ctx.fillStyle = color[t.status] || '#5d6b82';
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    t.reports.forEach((r, i) => (i ? ctx.lineTo(px(r.budget), py(r.metric)) : ctx.moveTo(px(r.budget), py(r.metric))));
    ctx.stroke();
    const last = t.reports[t.reports.length - 1];
    ctx.fillRect(px(last.budget) - 3, py(last.metric) - 3, 6, 6);
  }
}

// ---- status ------------------------------------------------------------------------------

function drawStatus() {
  if (!status) return;
  if (status.title) {
    $('title').textContent = status.title;
    document.title = `${status.title} · rxgrad`;
  }
  const state = $('state');
  state.textContent = status.source ? `${status.state} · ${status.source}` : status.state;
  state.className = `badge ${status.state}`;
  $('status-step').textContent = String(status.step);
  $('step-stat').hidden = status.source === 'search';
  if (status.epoch !== undefined) {
    $('epoch-stat').hidden = false;
    $('status-epoch').textContent = status.epochs ? `${status.epoch}/${status.epochs}` : String(status.epoch);
  }
  $('status-viewers').textContent = status.viewers === undefined ? '-' : String(status.viewers);
  $('status-elapsed').textContent = formatSeconds(((status.endedAt ?? Date.now()) - status.startedAt) / 1000);
  const messages = [];
  if (status.error) messages.push({ text: `failed: ${status.error}`, error: true });
  if (status.unknownEvents) messages.push({ text: `${status.unknownEvents} events of an unknown shape ignored (first: ${status.unknownExample})` });
  for (const w of status.warnings) messages.push({ text: w });
  const box = $('messages');
  box.textContent = '';
  for (const m of messages) box.append(Object.assign(document.createElement('div'), { textContent: m.text, className: m.error ? 'error' : '' }));
}

// ---- wiring ------------------------------------------------------------------------------

$('smoothing').addEventListener('input', (event) => {
  smoothing = Number(event.target.value);
  $('smoothing-value').textContent = smoothing.toFixed(2);
  for (const p of PANELS) dirty.add(p.id);
  schedule();
});
$('evaluation-select').addEventListener('change', (event) => renderConfusion(evaluations[Number(event.target.value)]));

function connect() {
  const source = new EventSource('events');
  const connection = $('connection');
  source.addEventListener('open', () => {
    connection.textContent = 'live';
    connection.className = 'badge live';
  });
  source.addEventListener('snapshot', (event) => applySnapshot(JSON.parse(event.data)));
  source.addEventListener('update', (event) => applyDelta(JSON.parse(event.data)));
  source.addEventListener('end', () => {
    source.close();
    connection.textContent = 'server closed';
    connection.className = 'badge muted';
  });
  source.addEventListener('error', () => {
    // EventSource reconnects by itself (and gets a fresh snapshot).
    connection.textContent = 'reconnecting';
    connection.className = 'badge muted';
  });
}
connect();
setInterval(() => status && status.state === 'running' && ($('status-elapsed').textContent = formatSeconds((Date.now() - status.startedAt) / 1000)), 1000);
