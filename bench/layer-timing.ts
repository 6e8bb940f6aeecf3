/**
 * Per-layer timing for the profile scripts (a measurement aid): wraps each layer's forward and backward
 * (awaited, so split kernels count in full) and accumulates wall and process-CPU milliseconds per call.
 *
 * Usage: `const timing = timeLayers(layers); …train…; timing.stats.clear(); …train…; console.log(timing.report());`
 */
import type { Layer } from '../src/index.ts';

/** Accumulated time of one `layer method` key. */
export interface LayerTime {
  wall: number;
  cpu: number;
  n: number;
}

/** Process CPU time (user + system), ms. */
export const cpuNow = (): number => {
  const c = process.cpuUsage();
  return (c.user + c.system) / 1000;
};

/**
 * Wraps `layers` in place; `label(layer, method, args)` names the key of a call (default `name method`).
 *
 * Usage: `const { stats, report } = timeLayers(model.layers);`
 */
export function timeLayers(
  layers: readonly Layer[],
  label: (layer: Layer, method: 'forward' | 'backward', args: unknown[]) => string = (l, m) => `${l.name} ${m}`,
): { stats: Map<string, LayerTime>; report(): string; totalWall(): number } {
  const stats = new Map<string, LayerTime>();
  const record = (key: string, wall: number, cpu: number) => {
    const s = stats.get(key) ?? { wall: 0, cpu: 0, n: 0 };
    s.wall += wall; s.cpu += cpu; s.n++;
    stats.set(key, s);
  };
  for (const layer of layers) {
    for (const m of ['forward', 'backward'] as const) {
      const orig = (layer[m] as (...a: unknown[]) => unknown).bind(layer);
      (layer as unknown as Record<string, unknown>)[m] = (...a: unknown[]) => {
        const t0 = performance.now(), c0 = cpuNow();
        const r = orig(...a);
        const key = label(layer, m, a);
        if (r instanceof Promise) return r.then((v) => (record(key, performance.now() - t0, cpuNow() - c0), v));
        record(key, performance.now() - t0, cpuNow() - c0);
        return r;
      };
    }
  }
  return {
    stats,
    report: () => formatLayerTimes(stats),
    totalWall: () => [...stats.values()].reduce((sum, s) => sum + s.wall / s.n, 0),
  };
}

/** One line per key: mean wall and CPU ms per call. */
export function formatLayerTimes(stats: ReadonlyMap<string, LayerTime>): string {
  return [...stats].map(([k, s]) => `  ${k.padEnd(28)} ${(s.wall / s.n).toFixed(3).padStart(8)} ms wall ${(s.cpu / s.n).toFixed(3).padStart(8)} ms cpu`).join('\n');
}
