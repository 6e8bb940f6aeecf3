// The rxgrad dashboard page: connects to the server's Server-Sent Events and redraws what changed
// once per animation frame. Plain browser JavaScript modules (no build step).
import { charts, drawPanel, PANELS } from './charts.js';
import { $, formatSeconds } from './format.js';
import { applyDelta, applySnapshot, counters, dirty, evaluations, series, view } from './store.js';
import { drawConfusion, drawHistograms, drawTrials, renderConfusion } from './tables.js';

// For tests and the console: what the page holds.
window.__dashboard = { counters, series, charts };
let frameRequested = false;

function schedule() {
  if (frameRequested) return;
  frameRequested = true;
  requestAnimationFrame(() => {
    frameRequested = false;
    const all = dirty.has('all');
    const todo = (what) => all || dirty.has(what);
    for (const panel of PANELS) if (todo(panel.id)) drawPanel(panel);
    if (todo('histograms')) drawHistograms();
    if (todo('confusion')) drawConfusion();
    if (todo('trials')) drawTrials();
    dirty.clear();
    drawStatus();
  });
}

function drawStatus() {
  const status = view.status;
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

$('smoothing').addEventListener('input', (event) => {
  view.smoothing = Number(event.target.value);
  $('smoothing-value').textContent = view.smoothing.toFixed(2);
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
  source.addEventListener('snapshot', (event) => {
    applySnapshot(JSON.parse(event.data));
    schedule();
  });
  source.addEventListener('update', (event) => {
    applyDelta(JSON.parse(event.data));
    schedule();
  });
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
setInterval(() => view.status && view.status.state === 'running' && ($('status-elapsed').textContent = formatSeconds((Date.now() - view.status.startedAt) / 1000)), 1000);
