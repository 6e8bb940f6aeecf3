/**
 * A model's layers as a plain tree read through the public API only (each layer's `kind`, `name` and
 * `config()`, the combinators' child descriptions in their configs, and the model's named weights), so
 * the exporters need no access to layer internals.
 */
import type { Model } from '../model.ts';

/** One layer: kind, name, config, where its parameters live, and its children (combinators). */
export interface LayerNode {
  kind: string;
  name: string;
  config: Record<string, unknown>;
  /** Prefix of its parameter names in the model: `residual_1/dense_1/`. */
  prefix: string;
  /** Children in order (chain, residual, the expanded Transformer blocks); parallel: one chain per branch; encoderDecoder: encoder, decoder. */
  children: LayerNode[];
}

interface Described {
  kind: string;
  name: string;
  config: Record<string, unknown>;
}

/** The layer tree of a model. Usage: `for (const node of layerTree(model)) console.log(node.kind);` */
export function layerTree(model: Model): LayerNode[] {
  return model.layers.map((l) => node({ kind: l.kind, name: l.name, config: l.config() }, ''));
}

function node(d: Described, parentPrefix: string): LayerNode {
  const prefix = `${parentPrefix}${d.name}/`;
  const n: LayerNode = { kind: d.kind, name: d.name, config: d.config, prefix, children: [] };
  if (d.kind === 'chain' || d.kind === 'residual') n.children = (d.config['layers'] as Described[]).map((c) => node(c, prefix));
  else if (d.kind === 'parallel') {
    n.children = (d.config['branches'] as Described[][]).map((branch, i) => node({ kind: 'chain', name: `branch_${i + 1}`, config: { layers: branch } }, prefix));
  } else if (d.kind === 'encoderDecoder') {
    n.children = ['encoder', 'decoder'].map((part) => node({ kind: 'chain', name: part, config: { layers: d.config[part] } }, prefix));
  } else if (d.kind === 'transformerEncoderBlock' || d.kind === 'transformerDecoderBlock') {
    n.children = transformerChildren(d.config).map((c) => node(c, prefix));
  }
  return n;
}

/**
 * The children a Transformer block builds (operators/transformer.ts `blockLayers`), with the names its
 * chain gives them: pre-norm `residual(self_attention: [layerNorm_1, multiHeadAttention_1, dropout_1])`,
 * `residual(feed_forward: [layerNorm_1, dense_1, gelu_1, dense_2, dropout_1])`; post-norm the residuals
 * without the norms, each followed by `<sublayer>_norm`.
 */
function transformerChildren(c: Record<string, unknown>): Described[] {
  const rate = c['dropout'] as number;
  const ln = (name: string): Described => ({ kind: 'layerNorm', name, config: { epsilon: c['epsilon'] } });
  const drop: Described[] = rate > 0 ? [{ kind: 'dropout', name: 'dropout_1', config: { rate } }] : [];
  const attention = (causal: boolean, cross: unknown, mask: unknown): Described => ({
    kind: 'multiHeadAttention', name: 'multiHeadAttention_1',
    config: { heads: c['heads'], keyDim: c['keyDim'], valueDim: c['keyDim'], outputDim: null, causal, dropout: rate, mask, cross, useBias: true },
  });
  const activation = c['activation'] as string;
  const sublayers: { name: string; layers: Described[] }[] = [
    { name: 'self_attention', layers: [attention(c['causal'] as boolean, null, c['mask'] ?? null)] },
    ...(c['cross'] ? [{ name: 'cross_attention', layers: [attention(false, c['cross'], null)] }] : []),
    {
      name: 'feed_forward',
      layers: [
        { kind: 'dense', name: 'dense_1', config: { units: c['ffDim'], useBias: true } },
        { kind: activation, name: `${activation}_1`, config: {} },
        { kind: 'dense', name: 'dense_2', config: { units: c['dim'], useBias: true } },
      ],
    },
  ];
  if (c['norm'] === 'post') {
    return sublayers.flatMap((s) => [{ kind: 'residual', name: s.name, config: { layers: [...s.layers, ...drop] } }, ln(`${s.name}_norm`)]);
  }
  return sublayers.map((s) => ({ kind: 'residual', name: s.name, config: { layers: [ln('layerNorm_1'), ...s.layers, ...drop] } }));
}
