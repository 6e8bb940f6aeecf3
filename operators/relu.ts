import type { Layer } from '../src/layer.ts';
import { activation } from './elementwise.ts';
import { registerLayer } from '../src/registry.ts';

/**
 * Rectified linear unit: y = max(x, 0); dx = dy·[x > 0] (the kink at 0 takes gradient 0).
 * Shape rule: identity.
 *
 * Usage: `sequential([dense(128), relu(), dense(10)], { inputShape: [784] })`
 */
export function relu(options: { name?: string } = {}): Layer {
  return activation({
    kind: 'relu',
    saves: 'input',
    forward: (k, x, y, n) => k.reluForward(x, y, n),
    backward: (k, x, dy, dx, n) => k.reluBackward(x, dy, dx, n),
    // Memory-bound: large batches (a conv feature map of batch 256: 12.8 MB) split across the pool.
    split: { forward: 'reluForward', backward: 'reluBackward' },
  }, options.name);
}

registerLayer('relu', (c, name) => (c.done(), relu({ name })));
