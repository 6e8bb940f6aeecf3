// What the page holds: a snapshot of the run on connect, then deltas (both from the server's
// Server-Sent Events). Bounded: series are thinned past MAX_POINTS, histograms and evaluations capped.
/** Points kept per series in the page; older ones are merged in pairs (the server's buckets do the same). */
const MAX_POINTS = 4000;
const KEEP_RECENT = 1500;

export const series = new Map(); // key -> { meta, x, y, lo, hi, total, banded }
export const histograms = new Map(); // tensor name -> snapshots
export const evaluations = [];
export const trials = new Map();
/** The run's status (from the server) and the page's smoothing weight. */
export const view = { status: null, smoothing: 0.6 };
/** What changed since the last frame: panel ids, 'histograms', 'confusion', 'trials', 'status'. */
export const dirty = new Set();
export const counters = { snapshots: 0, updates: 0 };

function resetData() {
  series.clear();
  histograms.clear();
  evaluations.length = 0;
  trials.clear();
}

function setSeries(meta, data) {
  // Old points arrive as buckets (mean, min, max); recent ones as they were (min = max = the value).
  const s = {
    meta, x: data.bx.concat(data.x), y: data.by.concat(data.y), lo: data.blo.concat(data.y), hi: data.bhi.concat(data.y),
    total: data.total, banded: data.bx.length > 0,
  };
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
    s.lo.push(ys[i]);
    s.hi.push(ys[i]);
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
  const lo = [];
  const hi = [];
  const pick = (a, b, f) => (a === null ? b : b === null ? a : f(a, b));
  for (let i = 0; i + 1 < old; i += 2) {
    x.push((s.x[i] + s.x[i + 1]) / 2);
    y.push(pick(s.y[i], s.y[i + 1], (a, b) => (a + b) / 2));
    lo.push(pick(s.lo[i], s.lo[i + 1], Math.min));
    hi.push(pick(s.hi[i], s.hi[i + 1], Math.max));
  }
  const start = old - (old % 2);
  s.x = x.concat(s.x.slice(start));
  s.y = y.concat(s.y.slice(start));
  s.lo = lo.concat(s.lo.slice(start));
  s.hi = hi.concat(s.hi.slice(start));
  s.banded = true;
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

export function applySnapshot(snapshot) {
  resetData();
  view.status = snapshot.status;
  for (const { meta, data } of snapshot.series) setSeries(meta, data);
  for (const [name, list] of Object.entries(snapshot.histograms)) for (const h of list) addHistogram(name, h);
  for (const e of snapshot.evaluations) addEvaluation(e);
  for (const t of snapshot.trials) trials.set(t.trial, t);
  dirty.add('all');
  counters.snapshots++;
}

export function applyDelta(delta) {
  view.status = delta.status;
  for (const meta of delta.meta) if (!series.has(meta.key)) setSeries(meta, { bx: [], by: [], blo: [], bhi: [], x: [], y: [], total: 0 });
  for (const s of delta.series) {
    if (s.replace) setSeries(series.get(s.key).meta, s.replace);
    else appendSeries(s.key, s.from, s.x, s.y);
  }
  for (const [name, h] of Object.entries(delta.histograms)) addHistogram(name, h);
  for (const e of delta.evaluations) addEvaluation(e);
  for (const t of delta.trials) trials.set(t.trial, t);
  if (delta.trials.length || delta.status.search) dirty.add('trials');
  dirty.add('status');
  counters.updates++;
}
