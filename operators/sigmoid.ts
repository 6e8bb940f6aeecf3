import type { Layer } from '../src/layer.ts';
import { activation } from './elementwise.ts';
import { registerLayer } from '../src/registry.ts';

/**
 * Logistic sigmoid: y = 1/(1+e^(−x)); dx = dy·y·(1−y), from the saved output. Shape rule: identity.
 *
 * Usage: `sequential([dense(1), sigmoid()], { inputShape: [4] })`
 */
export function sigmoid(options: { name?: string } = {}): Layer {
  return activation({
    kind: 'sigmoid',
    saves: 'output',
    forward: (k, x, y, n) => k.sigmoidForward(x, y, n),
    backward: (k, y, dy, dx, n) => k.sigmoidBackward(y, dy, dx, n),
  }, options.name);
}

registerLayer('sigmoid', (c, name) => (c.done(), sigmoid({ name })));
