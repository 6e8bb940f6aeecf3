/**
 * What a dashboard reads from the model itself, each at a bounded cost:
 * - gradient and update norms per layer: `gradients$`/`updates$` are listened to for one step at
 *   most every `normsIntervalMs` (listening makes a step compute norms and copy the weights);
 * - weight histograms and per-tensor sparsity (fraction of exact zeros, e.g. after pruning):
 *   every `histogramIntervalMs`, from at most `histogramSample` values per tensor (a stride over
 *   the live weights, no copy), read right after a step (no step is running then);
 * - a confusion matrix at each evaluation (after an epoch of `train`, or every
 *   `evaluateEverySteps` steps of an online stream) on the first `maxExamples` validation rows.
 */
import { take, type Subscription } from 'rxjs';
import type { BatchArrays } from '../batch.ts';
import { modelHost, type Model } from '../model.ts';
import { confusionMatrix } from './confusion.ts';
import type { Recorder } from './recorder.ts';
import type { DashboardState, EvaluationRecord, HistogramSnapshot, SeriesMeta } from './state.ts';

/** Options of the model's sampling (part of `DashboardOptions`). */
export interface ModelSamplingOptions {
  /** Least time between two steps whose gradient/update norms are recorded (default 200 ms). */
  normsIntervalMs?: number;
  /** Least time between two weight histograms (default 2000 ms). */
  histogramIntervalMs?: number;
  /** Values read per tensor for a histogram, at most (a stride over larger tensors; default 16,384). */
  histogramSample?: number;
  /** Bins per histogram (default 30). */
  histogramBins?: number;
  /** Labelled data for the confusion matrix at each evaluation (usually the `validation` given to `train`). */
  validation?: BatchArrays;
  /** Validation rows the confusion matrix covers at most (default 10,000). */
  maxExamples?: number;
  /** For `fit` and test-then-train streams (no epochs): evaluate the validation data every n steps. */
  evaluateEverySteps?: number;
  /** Class names for the confusion matrix's rows and columns. */
  classNames?: string[];
  /** Weights the confusion matrix predicts with (as `train`'s `validationWeights`). */
  validationWeights?: 'current' | 'average';
}

const layerOf = (parameter: string): string => parameter.split('/')[0]!;
const nowMs = (): number => performance.now();

/** Per-layer L2 norm from per-parameter norms (the hypot of its parameters'). */
function perLayer(norms: Record<string, number>): Map<string, number> {
  const squares = new Map<string, number>();
  for (const [name, norm] of Object.entries(norms)) squares.set(layerOf(name), (squares.get(layerOf(name)) ?? 0) + norm * norm);
  return new Map([...squares].map(([layer, s]) => [layer, Math.sqrt(s)]));
}

/**
 * Samples one model for a dashboard (see the module comment).
 *
 * Usage: `const sampler = new ModelSampler(model, state, recorder, options); sampler.afterStep(step);`
 */
export class ModelSampler {
  private lastNorms = -Infinity;
  private lastHistogram = -Infinity;
  private armed: Subscription[] = [];
  private evaluating: Promise<void> | null = null;
  private lastEvaluatedStep = 0;
  private readonly metas = new Map<string, SeriesMeta>();
  private closed = false;

  constructor(
    private readonly model: Model,
    private readonly state: DashboardState,
    private readonly recorder: Recorder,
    private readonly options: ModelSamplingOptions,
  ) {}

  private meta(key: string, panel: SeriesMeta['panel'], label: string): SeriesMeta {
    let m = this.metas.get(key);
    if (!m) this.metas.set(key, (m = { key, panel, label, axis: 'step' }));
    return m;
  }

  /** Called right after each training step's report. */
  afterStep(step: number): void {
    if (this.closed) return;
    const now = nowMs();
    if (now - this.lastNorms >= (this.options.normsIntervalMs ?? 200) && this.armed.length === 0) {
      this.lastNorms = now;
      this.armNorms();
    }
    if (now - this.lastHistogram >= (this.options.histogramIntervalMs ?? 2000)) {
      this.lastHistogram = now;
      this.sampleWeights(step);
    }
    const every = this.options.evaluateEverySteps;
    if (every !== undefined && this.options.validation && step - this.lastEvaluatedStep >= every) {
      this.lastEvaluatedStep = step;
      this.evaluate({ step });
    }
  }

  /** Listens to the next step's gradient and update norms, then stops listening. */
  private armNorms(): void {
    const gradients = this.model.gradients$.pipe(take(1)).subscribe(({ step, norms }) => {
      for (const [layer, norm] of perLayer(norms)) this.state.point(this.meta(`grad:${layer}`, 'gradientNorm', layer), step, norm);
    });
    const updates = this.model.updates$.pipe(take(1)).subscribe(({ step, norms, weightNorms }) => {
      const weights = perLayer(weightNorms);
      for (const [layer, norm] of perLayer(norms)) {
        this.state.point(this.meta(`update:${layer}`, 'updateNorm', layer), step, norm);
        const w = weights.get(layer) ?? 0;
        if (w > 0) this.state.point(this.meta(`ratio:${layer}`, 'updateRatio', layer), step, norm / w);
      }
      this.disarm();
    });
    this.armed = [gradients, updates];
  }

  private disarm(): void {
    for (const s of this.armed) s.unsubscribe();
    this.armed = [];
  }

  /** Histograms and exact-zero fractions of each weight tensor (rank ≥ 2: kernels, embeddings), from a strided sample. */
  private sampleWeights(step: number): void {
    const bins = this.options.histogramBins ?? 30;
    const sample = this.options.histogramSample ?? 16_384;
    // Live views of the weights (no copy): read right after a step, when none is running.
    for (const p of modelHost(this.model).parameters) {
      if (p.shape.length < 2) continue;
      const values = p.value.data();
      const stride = Math.max(1, Math.ceil(values.length / sample));
      let min = Infinity;
      let max = -Infinity;
      let zeros = 0;
      let n = 0;
      for (let i = 0; i < values.length; i += stride) {
        const v = values[i]!;
        if (!Number.isFinite(v)) continue;
        if (v < min) min = v;
        if (v > max) max = v;
        if (v === 0) zeros++;
        n++;
      }
      if (n === 0) continue;
      const counts = new Array<number>(bins).fill(0);
      const width = max > min ? (max - min) / bins : 1;
      for (let i = 0; i < values.length; i += stride) {
        const v = values[i]!;
        if (Number.isFinite(v)) counts[Math.min(bins - 1, Math.floor((v - min) / width))]!++;
      }
      const snapshot: HistogramSnapshot = { step, min, max, counts, sampled: n, size: values.length };
      this.state.histogram(p.name, snapshot);
      // Sparsity appears once a tensor has exact zeros (pruning); dense training never makes them.
      const sparsityKey = `sparsity:${p.name}`;
      if (zeros > 0 || this.state.series.has(sparsityKey)) this.state.point(this.meta(sparsityKey, 'sparsity', p.name), step, zeros / n);
    }
  }

  /**
   * Records an evaluation: the given metrics (from `train`'s epoch event) and, with validation
   * data, a confusion matrix computed now (asynchronously; it runs between training steps).
   */
  evaluate(record: Omit<EvaluationRecord, 'confusion' | 'confusionError'>): void {
    const validation = this.options.validation;
    if (!validation) {
      if (record.loss !== undefined || record.accuracy !== undefined) this.state.evaluation(record);
      return;
    }
    // One evaluation at a time: a slow one is skipped rather than queued.
    if (this.evaluating || this.closed) return;
    const classNames = this.options.classNames;
    this.evaluating = confusionMatrix(this.model, validation, {
      ...(this.options.maxExamples !== undefined ? { maxExamples: this.options.maxExamples } : {}),
      ...(this.options.validationWeights ? { weights: this.options.validationWeights } : {}),
    })
      .then((confusion) => {
        const accuracy = record.accuracy ?? confusion.correct / confusion.examples;
        if (record.accuracy === undefined) this.recorder.validation(record.step, accuracy);
        this.state.evaluation({ ...record, accuracy, examples: record.examples ?? confusion.examples, confusion: { ...confusion, ...(classNames ? { classNames } : {}) } });
      })
      .catch((error: unknown) => {
        const message = error instanceof Error ? error.message : String(error);
        this.state.warn(`confusion matrix: ${message}`);
        this.state.evaluation({ ...record, confusionError: message });
      })
      .finally(() => {
        this.evaluating = null;
      });
  }

  /** Resolves when no evaluation is running (the run's end waits for the last confusion matrix). */
  async idle(): Promise<void> {
    await this.evaluating;
  }

  /** Stops listening to the model. */
  close(): void {
    this.closed = true;
    this.disarm();
  }
}
