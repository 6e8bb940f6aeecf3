// The panels that are not line charts: weight histograms (ridges), the confusion matrix, the search's trials.
import { $, canvasContext, formatValue } from './format.js';
import { evaluations, histograms, trials, view } from './store.js';

export function drawHistograms() {
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

export function drawConfusion() {
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

export function renderConfusion(e) {
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

export function drawTrials() {
  if (trials.size === 0) return;
  $('panel-trials').hidden = false;
  const list = [...trials.values()];
  const byStatus = {};
  for (const t of list) byStatus[t.status] = (byStatus[t.status] || 0) + 1;
  const done = view.status && view.status.search;
  const best = done && done.best ? ` · best: trial ${done.best.trial}${done.best.metric !== undefined ? ` (${formatValue(done.best.metric)}, ${done.direction === 'maximize' ? 'higher' : 'lower'} is better)` : ''}` : '';
  $('trials-caption').textContent = `${list.length} trials · ${Object.entries(byStatus).map(([k, v]) => `${v} ${k}`).join(', ')}${best}`;
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
      if (i === 0 && done && done.best && done.best.trial === t.trial) tr.className = 'best';
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
