// Formatting and small DOM helpers shared by the page's modules.
export const COLORS = ['#2f6fde', '#e0662b', '#2a9d4b', '#c2399a', '#7a5ce0', '#b58b00', '#19a3a3', '#d23c3c', '#5d6b82', '#8fb82a'];

export const $ = (id) => document.getElementById(id);

export function formatSeconds(s) {
  if (s < 10) return `${+s.toFixed(1)} s`;
  if (s < 120) return `${Math.round(s)} s`;
  if (s < 7200) return `${(s / 60).toFixed(s < 600 ? 1 : 0)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

export function formatValue(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return '-';
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(2);
  return +v.toPrecision(4) + '';
}

export function canvasContext(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth;
  const height = canvas.clientHeight;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  const ctx = canvas.getContext('2d');
  ctx.scale(ratio, ratio);
  return { ctx, width, height };
}
