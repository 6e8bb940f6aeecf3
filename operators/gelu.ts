import type { Layer } from '../src/layer.ts';
import { activation } from './elementwise.ts';
import { registerLayer } from '../src/registry.ts';

/**
 * GELU, tanh approximation (as in GPT-2 and Keras `approximate=True`):
 * y = 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))); backward from the saved input. Shape rule: identity.
 *
 * Usage: `gelu()`
 */
export function gelu(options: { name?: string } = {}): Layer {
  return activation({
    kind: 'gelu',
    saves: 'input',
    forward: (k, x, y, n) => k.geluForward(x, y, n),
    backward: (k, x, dy, dx, n) => k.geluBackward(x, dy, dx, n),
  }, options.name);
}

registerLayer('gelu', (c, name) => (c.done(), gelu({ name })));
