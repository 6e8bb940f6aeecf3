import type { Layer } from '../src/layer.ts';
import { activation } from './elementwise.ts';
import { registerLayer } from '../src/registry.ts';

/**
 * Hyperbolic tangent: y = tanh(x); dx = dy·(1−y²), from the saved output. Shape rule: identity.
 *
 * Usage: `tanh()`
 */
export function tanh(options: { name?: string } = {}): Layer {
  return activation({
    kind: 'tanh',
    saves: 'output',
    forward: (k, x, y, n) => k.tanhForward(x, y, n),
    backward: (k, y, dy, dx, n) => k.tanhBackward(y, dy, dx, n),
  }, options.name);
}

registerLayer('tanh', (c, name) => (c.done(), tanh({ name })));
