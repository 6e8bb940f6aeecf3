import type { Layer } from '../src/layer.ts';
import type { Random } from '../src/random.ts';
import { constructLayer, registerLayer } from '../src/registry.ts';
import { RandomShift } from './random-translate.ts';

/** Options of {@link randomCrop}. */
export interface RandomCropOptions {
  /** Pixels of padding on every side before cropping back to the input size. Default 4 (CIFAR-style). */
  padding?: number;
  /** Value of the padding. Default 0. */
  fillValue?: number;
  name?: string;
}

/**
 * Pad-and-crop augmentation: pads each training image by `padding` pixels of `fillValue` on every side
 * and crops a window of the original size at a uniformly random offset (0 … 2·padding per axis). That is
 * a whole-pixel shift by U{−padding … padding} per axis, so it shares {@link RandomShift}: features only,
 * seeded from `step.rng`, inference = identity, backward = the exact adjoint. Shape rule: identity.
 */
class RandomCrop extends RandomShift {
  readonly kind = 'randomCrop';
  constructor(readonly padding: number, fillValue: number, name: string) {
    super(name, fillValue);
    if (!Number.isInteger(padding) || padding < 0) throw new RangeError(`randomCrop: padding must be an integer ≥ 0, got ${padding}`);
  }

  protected drawShift(rng: Random): [number, number] {
    const span = 2 * this.padding + 1;
    // Crop offset o ∈ [0, 2p] from the padded image's corner = content shifted by p − o.
    return [this.padding - rng.int(span), this.padding - rng.int(span)];
  }

  config(): Record<string, unknown> {
    return { padding: this.padding, fillValue: this.fillValue };
  }
}

/**
 * Random pad-and-crop of each training image (identity at inference); the output keeps the input size.
 *
 * Usage: `sequential([randomCrop({ padding: 2 }), conv2d(16, 3), relu(), flatten(), dense(10)], { inputShape: [28, 28, 1] })`
 */
export function randomCrop(options: RandomCropOptions = {}): Layer {
  return new RandomCrop(options.padding ?? 4, options.fillValue ?? 0, options.name ?? '');
}

registerLayer('randomCrop', (c, name) => {
  const padding = c.number('padding', 4);
  const fillValue = c.number('fillValue', 0);
  c.done();
  return constructLayer(c, 'padding', () => randomCrop({ padding, fillValue, name }));
});
