import type { Layer } from '../src/layer.ts';
import { activation } from './elementwise.ts';
import { registerLayer } from '../src/registry.ts';

/**
 * Leaky ReLU: y = x for x > 0, else slope·x; dx = dy for x > 0, else slope·dy. Shape rule: identity.
 *
 * Usage: `leakyRelu({ slope: 0.1 })`
 */
export function leakyRelu(options: { slope?: number; name?: string } = {}): Layer {
  const slope = options.slope ?? 0.01;
  if (!Number.isFinite(slope)) throw new RangeError(`leakyRelu: slope must be finite, got ${slope}`);
  return activation({
    kind: 'leakyRelu',
    saves: 'input',
    config: { slope },
    forward: (k, x, y, n) => k.leakyReluForward(x, y, n, slope),
    backward: (k, x, dy, dx, n) => k.leakyReluBackward(x, dy, dx, n, slope),
  }, options.name);
}

registerLayer('leakyRelu', (c, name) => {
  const slope = c.number('slope', 0.01);
  c.done();
  return leakyRelu({ slope, name });
});
