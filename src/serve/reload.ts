/**
 * The model a server answers with, and its hot reload from a checkpoint directory. A trainer
 * commits a checkpoint by renaming its manifest (`<base>.json`, see docs/CHECKPOINTS.md); the
 * watcher sees the rename (fs.watch, with a stat poll as the fallback), loads the new checkpoint
 * fully (sha256 checked) beside the old model, then swaps it in between two batches. The old model
 * is disposed once no batch uses it. A checkpoint that fails to load leaves the old model serving.
 */
import { watch, type FSWatcher } from 'node:fs';
import { stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { exhaustMap, filter, from, interval, map, merge, Subject, type Subscription } from 'rxjs';
import { loadModel } from '../checkpoint.ts';
import type { Engine } from '../engine.ts';
import type { Model } from '../model.ts';

/** A model in service: the model and how many batches are using it. */
export interface ServedModel {
  model: Model;
  /** Step count at load (the trainer's step of the checkpoint). */
  step: number;
  /** Manifest identity it was loaded from (null: a model given directly). */
  signature: string | null;
  inFlight: number;
  retired: boolean;
  /** The server owns models it loaded and disposes them; a model given to it is the caller's. */
  owned: boolean;
}

/** What a reload attempt did. */
export type ReloadEvent = { kind: 'loaded'; step: number; seconds: number } | { kind: 'failed'; error: Error };

/** The manifest a checkpoint path commits to: an existing directory → `dir/checkpoint.json`, else `<base>.json`. */
export async function manifestPath(path: string): Promise<string> {
  const isDir = /[\\/]$/.test(path) || (await stat(path).then((s) => s.isDirectory(), () => false));
  if (isDir) return join(path.replace(/[\\/]+$/, '') || '/', 'checkpoint.json');
  return join(dirname(path), `${basename(path).replace(/\.(json|safetensors)$/, '')}.json`);
}

/** Identity of the committed manifest (a rename gives a new inode), or null when there is none. */
async function signatureOf(manifest: string): Promise<string | null> {
  try {
    const s = await stat(manifest, { bigint: true });
    return `${s.ino}:${s.mtimeNs}:${s.size}`;
  } catch {
    return null;
  }
}

/**
 * Holds the current model; batches `acquire` and `release` it so a swap never disposes a model mid-batch.
 *
 * Usage: `const slot = new ModelSlot(model); const served = slot.acquire(); … slot.release(served);`
 */
export class ModelSlot {
  private current: ServedModel;
  readonly reloads$ = new Subject<ReloadEvent>();
  private watcher: FSWatcher | null = null;
  private subscription: Subscription | null = null;

  constructor(model: Model, options: { step?: number; signature?: string | null; owned?: boolean } = {}) {
    this.current = { model, step: options.step ?? model.stepCount, signature: options.signature ?? null, inFlight: 0, retired: false, owned: options.owned ?? false };
  }

  /** The model in service now. */
  get served(): ServedModel {
    return this.current;
  }

  acquire(): ServedModel {
    this.current.inFlight++;
    return this.current;
  }

  release(served: ServedModel): void {
    served.inFlight--;
    if (served.retired && served.inFlight === 0 && served.owned) served.model.dispose();
  }

  /** Puts `next` in service; the previous model is disposed (if owned) once its batches finish. */
  swap(next: ServedModel): void {
    const previous = this.current;
    this.current = next;
    previous.retired = true;
    if (previous.inFlight === 0 && previous.owned) previous.model.dispose();
  }

  /**
   * Watches the checkpoint at `path` and swaps in each newly committed one.
   *
   * Usage: `slot.watch('runs/live', { engine, pollMs: 500 });`
   */
  async watch(path: string, options: { engine?: Engine; pollMs: number }): Promise<void> {
    const manifest = await manifestPath(path);
    const changed$ = new Subject<void>();
    try {
      this.watcher = watch(dirname(manifest), (_event, file) => {
        if (file === null || file === basename(manifest)) changed$.next();
      });
      this.watcher.on('error', () => undefined); // the poll below still runs
    } catch {
      this.watcher = null; // e.g. a file system without inotify: polling alone
    }
    this.subscription = merge(changed$, interval(options.pollMs))
      .pipe(
        // One load at a time; a commit that lands during a load is seen by the next poll or event.
        exhaustMap(() => from(signatureOf(manifest))),
        filter((signature): signature is string => signature !== null && signature !== this.current.signature),
        exhaustMap((signature) => from(this.load(path, signature, options.engine))),
        map((event) => this.reloads$.next(event)),
      )
      .subscribe();
  }

  private async load(path: string, signature: string, engine: Engine | undefined): Promise<ReloadEvent> {
    const t0 = performance.now();
    try {
      const { model } = await loadModel(path, engine ? { engine } : {});
      // The manifest may have been replaced again while loading: keep what was loaded (it is a
      // complete, verified checkpoint); the newer one is picked up by the next check.
      this.swap({ model, step: model.stepCount, signature, inFlight: 0, retired: false, owned: true });
      return { kind: 'loaded', step: model.stepCount, seconds: (performance.now() - t0) / 1000 };
    } catch (error) {
      // Remember the signature so a broken checkpoint is not retried in a loop; a new commit changes it.
      this.current.signature = signature;
      return { kind: 'failed', error: error as Error };
    }
  }

  /** Stops watching and disposes the model if the slot owns it. */
  close(): void {
    this.watcher?.close();
    this.subscription?.unsubscribe();
    this.reloads$.complete();
    this.current.retired = true;
    if (this.current.inFlight === 0 && this.current.owned) this.current.model.dispose();
  }
}

/**
 * Loads the checkpoint at `path` into a slot that owns it (the server's starting model).
 *
 * Usage: `const slot = await loadSlot('runs/live');`
 */
export async function loadSlot(path: string, engine?: Engine): Promise<ModelSlot> {
  const signature = await signatureOf(await manifestPath(path));
  const { model } = await loadModel(path, engine ? { engine } : {});
  return new ModelSlot(model, { step: model.stepCount, signature, owned: true });
}
