import { ShapeError, type BuildContext, type Layer, type Parameter, type StepContext } from '../src/layer.ts';
import { formatShape, type DType, type Shape, type Tensor } from '../src/tensor.ts';
import { childContext } from '../src/layer.ts';
import { Chain } from './chain.ts';
import { dense } from './dense.ts';
import { dropout } from './dropout.ts';
import { gelu } from './gelu.ts';
import { layerNorm } from './layer-norm.ts';
import { MultiHeadAttention, multiHeadAttention, type CrossAttentionSource, readCrossSource } from './multi-head-attention.ts';
import { relu } from './relu.ts';
import { residual } from './residual.ts';
import { constructLayer, registerLayer, type ConfigReader } from '../src/registry.ts';

/** Options of {@link transformerEncoderBlock}. */
export interface TransformerBlockOptions {
  heads: number;
  /** Model width D: the block maps `[T, D]` to `[T, D]`. */
  dim: number;
  /** Hidden width of the feed-forward sublayer (commonly 4·dim). */
  ffDim: number;
  /** Dropout rate on the attention weights and on each sublayer's output before the residual sum (default 0). */
  dropout?: number;
  /** Self-attention sees only earlier positions (default false for the encoder block, true for the decoder block). */
  causal?: boolean;
  /** Side column with the padding mask of the sequence (`[T]`, 1 = real, 0 = padding). */
  mask?: string;
  /** Per-head query/key size (default dim / heads, which must then divide evenly). */
  keyDim?: number;
  /** 'pre' (default; GPT-2, the stable choice without warm-up) or 'post' (the original 2017 layout). */
  norm?: 'pre' | 'post';
  /** Feed-forward activation (default 'gelu'). */
  activation?: 'gelu' | 'relu';
  /** layerNorm epsilon (default 1e-5). */
  epsilon?: number;
  name?: string;
}

/** Options of {@link transformerDecoderBlock}: an encoder block's, plus an optional cross-attention. */
export interface TransformerDecoderBlockOptions extends TransformerBlockOptions {
  /** Cross-attention to a memory sequence in a side column (an encoder's output); absent: a decoder-only (GPT) block. */
  cross?: CrossAttentionSource;
}

/**
 * A Transformer block as a chain of residual sublayers over the same layer protocol:
 *   pre-norm:  x += Drop(SelfAttn(LN(x)));  [x += Drop(CrossAttn(LN(x), memory));]  x += Drop(FF(LN(x)))
 *   post-norm: x = LN(x + Drop(SelfAttn(x)));  [x = LN(x + Drop(CrossAttn(x, memory)));]  x = LN(x + Drop(FF(x)))
 * with FF = dense(ffDim) → gelu → dense(dim). Pre-norm leaves the residual stream unnormalised, so a
 * pre-norm stack ends with a final `layerNorm()` before the output head (and an encoder whose output
 * is cross-attended to should too). Backward is the children's, in reverse (chain and residual).
 * `config()` returns the constructor options; the children are rebuilt from them.
 */
class TransformerBlock extends Chain {
  override readonly kind: string;
  constructor(kind: 'transformerEncoderBlock' | 'transformerDecoderBlock', private readonly options: TransformerDecoderBlockOptions, name: string) {
    super(blockLayers(kind, options), name);
    this.kind = kind;
  }

  override build(inputShape: Shape, ctx: BuildContext): Shape {
    const last = inputShape[inputShape.length - 1];
    if (inputShape.length !== 2 || last !== this.options.dim) {
      throw new ShapeError(`${this.name} (${this.kind})`, `input shape ${formatShape(inputShape)} must be [length, ${this.options.dim}] (dim)`);
    }
    return super.build(inputShape, ctx);
  }

  override config(): Record<string, unknown> {
    const o = this.options;
    return {
      heads: o.heads, dim: o.dim, ffDim: o.ffDim, dropout: o.dropout ?? 0, causal: o.causal ?? (this.kind === 'transformerDecoderBlock'),
      mask: o.mask ?? null, keyDim: o.keyDim ?? o.dim / o.heads, norm: o.norm ?? 'pre', activation: o.activation ?? 'gelu',
      epsilon: o.epsilon ?? 1e-5, ...(this.kind === 'transformerDecoderBlock' ? { cross: o.cross ?? null } : {}),
    };
  }
}

function blockLayers(kind: 'transformerEncoderBlock' | 'transformerDecoderBlock', o: TransformerDecoderBlockOptions): Layer[] {
  const where = `${kind}`;
  for (const [field, v] of [['heads', o.heads], ['dim', o.dim], ['ffDim', o.ffDim]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`${where}: ${field} must be a positive integer, got ${v}`);
  }
  if (o.keyDim === undefined && o.dim % o.heads !== 0) throw new RangeError(`${where}: dim ${o.dim} is not divisible by heads ${o.heads}; give keyDim`);
  const rate = o.dropout ?? 0;
  if (!(rate >= 0 && rate < 1)) throw new RangeError(`${where}: dropout must be in [0, 1), got ${rate}`);
  const norm = o.norm ?? 'pre';
  if (norm !== 'pre' && norm !== 'post') throw new RangeError(`${where}: norm must be 'pre' or 'post', got '${String(norm)}'`);
  const activation = o.activation ?? 'gelu';
  if (activation !== 'gelu' && activation !== 'relu') throw new RangeError(`${where}: activation must be 'gelu' or 'relu', got '${String(activation)}'`);
  const keyDim = o.keyDim ?? o.dim / o.heads;
  const causal = o.causal ?? kind === 'transformerDecoderBlock';
  const ln = () => layerNorm({ ...(o.epsilon !== undefined ? { epsilon: o.epsilon } : {}) });
  const drop = (): Layer[] => (rate > 0 ? [dropout(rate)] : []);
  const selfAttention = multiHeadAttention({ heads: o.heads, keyDim, causal, dropout: rate, ...(o.mask ? { mask: o.mask } : {}) });
  const crossAttention = o.cross ? multiHeadAttention({ heads: o.heads, keyDim, dropout: rate, cross: o.cross }) : null;
  const feedForward = [dense(o.ffDim), activation === 'gelu' ? gelu() : relu(), dense(o.dim)];
  const sublayers: { name: string; layers: Layer[] }[] = [
    { name: 'self_attention', layers: [selfAttention] },
    ...(crossAttention ? [{ name: 'cross_attention', layers: [crossAttention] }] : []),
    { name: 'feed_forward', layers: feedForward },
  ];
  if (norm === 'pre') return sublayers.map((s) => residual([ln(), ...s.layers, ...drop()], { name: s.name }));
  return sublayers.flatMap((s) => {
    const normLayer = ln();
    normLayer.name = `${s.name}_norm`;
    return [residual([...s.layers, ...drop()], { name: s.name }), normLayer];
  });
}

/**
 * A Transformer encoder block (self-attention + feed-forward), pre-norm by default.
 *
 * Usage: `transformerEncoderBlock({ heads: 4, dim: 64, ffDim: 256, dropout: 0.1, causal: false, mask: 'mask' })`
 */
export function transformerEncoderBlock(options: TransformerBlockOptions): Layer {
  return new TransformerBlock('transformerEncoderBlock', options, options.name ?? '');
}

/**
 * A Transformer decoder block: causal self-attention, cross-attention to a memory column when
 * `cross` is given, feed-forward; pre-norm by default. Without `cross` it is a GPT block.
 *
 * Usage: `transformerDecoderBlock({ heads: 4, dim: 64, ffDim: 256, dropout: 0.1, cross: { column: 'memory', mask: 'sourceMask' } })`
 */
export function transformerDecoderBlock(options: TransformerDecoderBlockOptions): Layer {
  return new TransformerBlock('transformerDecoderBlock', options, options.name ?? '');
}

// ---------------------------------------------------------------- encoder–decoder

/** Options of {@link encoderDecoder}. */
export interface EncoderDecoderOptions {
  /** Batch column holding the encoder's input (e.g. source token ids), per example of `sourceShape`. */
  source: string;
  /** Per-example shape of the source column (e.g. `[S]` token ids or `[S, D]` features). */
  sourceShape: Shape;
  /** Layers turning the source into the memory `[S, Dm]`. */
  encoder: readonly Layer[];
  /** Layers over the main stream (the decoder input); their cross-attentions read the memory column. */
  decoder: readonly Layer[];
  /** Name of the side column the memory is published as (default 'memory'). */
  memory?: string;
  name?: string;
}

/** Every MultiHeadAttention under a layer (through chains, residuals and blocks). */
function attentionLayers(layer: Layer): MultiHeadAttention[] {
  if (layer instanceof MultiHeadAttention) return [layer];
  if (layer instanceof Chain) return layer.children.flatMap(attentionLayers);
  return [];
}

/**
 * How the second input of cross-attention arrives: as a side column. Cross-attention reads its
 * keys and values from `step.columns.get(column)`; the column either comes straight from the batch
 * (a precomputed memory: no gradient flows into it) or is produced inside the model by this
 * combinator, which runs an encoder on another batch column, publishes its output as the column,
 * runs the decoder on the main stream, and then backpropagates the memory gradient that the
 * decoder's cross-attentions accumulated (`StepContext.openColumnGradient` in src/layer.ts)
 * through the encoder. The combinator declares the encoder's source column as a side input and hides
 * the memory column it produces, so a model built around it asks the batch only for real columns.
 * Order: forward encoder → decoder; backward decoder → encoder (the encoder's input gets no gradient).
 */
class EncoderDecoder implements Layer {
  readonly kind = 'encoderDecoder';
  private readonly encoder: Chain;
  private readonly decoder: Chain;
  private readonly memory: string;
  private memoryShape: Shape = [];

  constructor(private readonly options: EncoderDecoderOptions, public name: string) {
    this.encoder = new Chain(options.encoder, 'encoder');
    this.decoder = new Chain(options.decoder, 'decoder');
    this.memory = options.memory ?? 'memory';
    if (options.source === this.memory) throw new RangeError(`encoderDecoder: the source column and the memory column are both '${this.memory}'`);
  }

  get inputDType(): DType | undefined {
    return this.decoder.inputDType;
  }

  get trainingDiffers(): boolean {
    return this.encoder.trainingDiffers || this.decoder.trainingDiffers;
  }

  get sideInputs(): readonly string[] {
    const names = [this.options.source, ...this.encoder.sideInputs, ...this.decoder.sideInputs];
    return [...new Set(names)].filter((n) => n !== this.memory);
  }

  build(inputShape: Shape, ctx: BuildContext): Shape {
    this.memoryShape = this.encoder.build(this.options.sourceShape, childContext(this.encoder, ctx));
    const operator = `${this.name} (encoderDecoder)`;
    if (this.memoryShape.length !== 2) throw new ShapeError(operator, `the encoder maps ${formatShape(this.options.sourceShape)} to ${formatShape(this.memoryShape)}; the memory must be [length, features]`);
    const out = this.decoder.build(inputShape, childContext(this.decoder, ctx));
    // Each cross-attention's memory width is known once it is built (by default its query width).
    for (const a of this.decoder.children.flatMap(attentionLayers)) {
      if (a.cross?.column === this.memory && a.memoryDim !== this.memoryShape[1]) {
        throw new ShapeError(operator, `${a.name} (multiHeadAttention) expects memory features ${a.memoryDim} but the encoder outputs ${formatShape(this.memoryShape)}`);
      }
    }
    return out;
  }

  parameters(): Parameter[] {
    return [...this.encoder.parameters(), ...this.decoder.parameters()];
  }

  async forward(x: Tensor, step: StepContext): Promise<Tensor> {
    const source = step.columns.get(this.options.source);
    if (!source) throw new TypeError(`${this.name} (encoderDecoder): needs the side column '${this.options.source}', which this step does not have`);
    const memory = await this.encoder.forward(source, step);
    step.columns.set(this.memory, memory);
    step.openColumnGradient(this.memory, memory.shape);
    return this.decoder.forward(x, step);
  }

  async backward(dy: Tensor, step: StepContext, needInputGradient: boolean): Promise<Tensor | null> {
    const dx = await this.decoder.backward(dy, step, needInputGradient);
    const dMemory = step.columnGradient(this.memory);
    if (dMemory) {
      await this.encoder.backward(dMemory, step, false);
      // Consumed: zero it so that a repeated backward of the same step (gradient checks) starts afresh.
      dMemory.data().fill(0);
    }
    return dx;
  }

  config(): Record<string, unknown> {
    const describe = (c: Chain) => c.children.map((l) => ({ kind: l.kind, name: l.name, config: l.config() }));
    return { source: this.options.source, sourceShape: this.options.sourceShape, memory: this.memory, encoder: describe(this.encoder), decoder: describe(this.decoder) };
  }
}

/**
 * An encoder–decoder model body: the encoder runs on the batch column `source`, its output becomes
 * the memory column that the decoder's cross-attention reads, and gradients flow back into the encoder.
 *
 * Usage: `encoderDecoder({ source: 'source', sourceShape: [S], encoder: [embedding(v, 64), transformerEncoderBlock({…}), layerNorm()], decoder: [embedding(v, 64), transformerDecoderBlock({ …, cross: { column: 'memory' } })] })`
 */
export function encoderDecoder(options: EncoderDecoderOptions): Layer {
  return new EncoderDecoder(options, options.name ?? '');
}

function readBlockOptions(c: ConfigReader, name: string, decoder: boolean): TransformerDecoderBlockOptions {
  const mask = c.stringOrNull('mask');
  const cross = decoder ? readCrossSource(c) : undefined;
  return {
    name,
    heads: c.positiveInteger('heads'),
    dim: c.positiveInteger('dim'),
    ffDim: c.positiveInteger('ffDim'),
    dropout: c.number('dropout', 0),
    causal: c.boolean('causal', decoder),
    keyDim: c.positiveInteger('keyDim'),
    norm: c.choice('norm', ['pre', 'post'] as const, 'pre'),
    activation: c.choice('activation', ['gelu', 'relu'] as const, 'gelu'),
    epsilon: c.number('epsilon', 1e-5),
    ...(mask !== null ? { mask } : {}),
    ...(cross ? { cross } : {}),
  };
}

registerLayer('transformerEncoderBlock', (c, name) => {
  const options = readBlockOptions(c, name, false);
  c.done();
  return constructLayer(c, 'dim', () => transformerEncoderBlock(options));
});

registerLayer('transformerDecoderBlock', (c, name) => {
  const options = readBlockOptions(c, name, true);
  c.done();
  return constructLayer(c, 'dim', () => transformerDecoderBlock(options));
});

registerLayer('encoderDecoder', (c, name) => {
  const source = c.string('source');
  const sourceShape = c.shape('sourceShape');
  const memory = c.string('memory', 'memory');
  const encoder = c.layers('encoder');
  const decoder = c.layers('decoder');
  c.done();
  return constructLayer(c, 'encoder', () => encoderDecoder({ source, sourceShape, memory, encoder, decoder, name }));
});
