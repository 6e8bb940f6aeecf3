/**
 * A model's fingerprint: what must be equal for replicas to exchange gradients or weights — layer
 * kinds and names, parameter names and shapes, the optimizer and its configuration. A replica
 * whose fingerprint differs from its group's is refused on joining with an error naming the first
 * difference.
 */
import { createHash } from 'node:crypto';
import type { Model } from '../model.ts';
import type { Optimizer } from '../optimizers.ts';

/** The comparable description of a model and its optimizer. */
export interface ModelFingerprint {
  inputShape: number[];
  layers: { name: string; kind: string }[];
  parameters: { name: string; shape: number[] }[];
  optimizer: { name: string; config: Record<string, unknown> };
}

/**
 * The fingerprint of a model trained with `optimizer`.
 *
 * Usage: `const fp = modelFingerprint(model, adam());`
 */
export function modelFingerprint(model: Model, optimizer: Optimizer): ModelFingerprint {
  return {
    inputShape: [...model.inputShape],
    layers: model.layers.map((l) => ({ name: l.name, kind: l.kind })),
    parameters: model.parameters().map((p) => ({ name: p.name, shape: [...p.shape] })),
    optimizer: { name: optimizer.name, config: optimizer.config() },
  };
}

/** 8 bytes of the fingerprint's sha256: stamped on every message. Usage: `fingerprintDigest(fp)` */
export function fingerprintDigest(fp: ModelFingerprint): Uint8Array {
  return new Uint8Array(createHash('sha256').update(JSON.stringify(fp)).digest().subarray(0, 8));
}

const show = (v: unknown) => JSON.stringify(v);

/**
 * The first difference between two fingerprints, in words, or null when equal.
 *
 * Usage: `const why = fingerprintDifference(mine, group); if (why) throw new Error(why);`
 */
export function fingerprintDifference(mine: ModelFingerprint, group: ModelFingerprint): string | null {
  if (show(mine.inputShape) !== show(group.inputShape)) return `input shape ${show(mine.inputShape)} differs from the group's ${show(group.inputShape)}`;
  const layers = Math.max(mine.layers.length, group.layers.length);
  for (let i = 0; i < layers; i++) {
    const a = mine.layers[i];
    const b = group.layers[i];
    if (!a || !b) return `layer ${i}: ${a ? `this model has '${a.name}' (${a.kind})` : 'this model has none'}, the group's model ${b ? `has '${b.name}' (${b.kind})` : 'has none'}`;
    if (a.kind !== b.kind || a.name !== b.name) return `layer ${i}: '${a.name}' (${a.kind}) differs from the group's '${b.name}' (${b.kind})`;
  }
  const params = Math.max(mine.parameters.length, group.parameters.length);
  for (let i = 0; i < params; i++) {
    const a = mine.parameters[i];
    const b = group.parameters[i];
    if (!a || !b) return `parameter ${i}: ${a ? `this model has '${a.name}'` : 'this model has none'}, the group's model ${b ? `has '${b.name}'` : 'has none'}`;
    if (a.name !== b.name) return `parameter ${i}: '${a.name}' differs from the group's '${b.name}'`;
    if (show(a.shape) !== show(b.shape)) return `parameter '${a.name}': shape ${show(a.shape)} differs from the group's ${show(b.shape)}`;
  }
  if (mine.optimizer.name !== group.optimizer.name) return `optimizer '${mine.optimizer.name}' differs from the group's '${group.optimizer.name}'`;
  const keys = [...new Set([...Object.keys(mine.optimizer.config), ...Object.keys(group.optimizer.config)])].sort();
  for (const key of keys) {
    const a = show(mine.optimizer.config[key]);
    const b = show(group.optimizer.config[key]);
    if (a !== b) return `optimizer '${mine.optimizer.name}' option ${key}: ${a ?? 'unset'} differs from the group's ${b ?? 'unset'}`;
  }
  return null;
}

/** A replica refused by its group: its model or optimizer differs (the message names the first difference). */
export class FingerprintMismatchError extends Error {
  override name = 'FingerprintMismatchError';
}
