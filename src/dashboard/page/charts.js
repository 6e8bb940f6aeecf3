// The line charts (uPlot): one panel per PANELS entry that has data, series aligned on one x.
import { COLORS, formatSeconds, formatValue } from './format.js';
import { series, view } from './store.js';

export const PANELS = [
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
export const charts = new Map(); // panel id -> { plot, keys, el, holder, latest, columns, hovering }

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
  document.getElementById('panels').insertBefore(section, later ? later.el : document.getElementById('panel-confusion'));
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
  const column = (s, values) => {
    const out = new Array(x.length).fill(null);
    for (let i = 0; i < s.x.length; i++) {
      const v = values[i];
      out[index.get(s.x[i])] = log && v !== null && v <= 0 ? null : v;
    }
    return out;
  };
  for (const s of list) {
    const raw = column(s, s.y);
    // Where history was downsampled, the min..max of each bucket is shaded around its mean.
    if (s.banded) columns.push({ meta: s.meta, values: column(s, s.hi), band: 'hi' }, { meta: s.meta, values: column(s, s.lo), band: 'lo' });
    if (s.meta.smooth) {
      const smoothed = smooth(raw, view.smoothing);
      columns.push({ meta: s.meta, values: raw, faint: true }, { meta: s.meta, values: smoothed, label: `${s.meta.label} (smoothed)` });
    } else columns.push({ meta: s.meta, values: raw });
  }
  return { x: Array.from(x), columns };
}

export function drawPanel(panel) {
  const list = [...series.values()].filter((s) => s.meta.panel === panel.id && s.x.length > 0);
  if (list.length === 0) return;
  const entry = panelElement(panel);
  const { x, columns } = align(list, panel.log);
  const keys = columns.map((c) => c.meta.key + (c.faint ? '~' : '') + (c.band || '')).join('|');
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
  const bands = [];
  const seriesOptions = columns.map((c, i) => {
    if (c.band) {
      if (c.band === 'lo') bands.push({ series: [i, i + 1], fill: `${COLORS[colorIndex % COLORS.length]}22` });
      return { label: `${c.meta.label} (${c.band === 'hi' ? 'max' : 'min'})`, stroke: 'transparent', width: 0, points: { show: false }, spanGaps: true };
    }
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
      bands,
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
    if (c.faint || c.band) continue;
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
