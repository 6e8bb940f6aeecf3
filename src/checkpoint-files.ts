/**
 * Checkpoint files: where a checkpoint path puts its two files, atomic writes (temp file, fsync,
 * rename, directory fsync; the weights first, the manifest last, so the manifest's rename is the
 * single commit point), garbage collection of superseded weights and dead writers' temp files, and
 * reading a manifest with its weights checked against the recorded size and sha256.
 */
import { createHash } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { CheckpointError, parseManifest, WEIGHTS_NAME, weightsName, type CheckpointManifest } from './checkpoint-manifest.ts';

/** Where a save went. */
export interface SavedCheckpoint {
  /** The manifest path (`<base>.json`). */
  json: string;
  /** The weights path (`<base>.<hash16>.safetensors`). */
  weights: string;
  sha256: string;
  bytes: number;
  stepCount: number;
}


/** Everything a save writes, copied out of the heap in one synchronous call. */
export interface Snapshot {
  weights: Uint8Array;
  manifest: Omit<CheckpointManifest, 'weights'>;
}

// ---------------------------------------------------------------- paths

export interface Paths {
  dir: string;
  /** File name prefix: `run` for `dir/run.json`. */
  base: string;
  json: string;
}

/** The name used inside a directory given as the checkpoint path. */
const DIRECTORY_BASE = 'checkpoint';

/** `dir/` or an existing directory → `dir/checkpoint`; `x.json` / `x.safetensors` → `x`; else `path` is the base. */
export async function resolvePaths(path: string, create: boolean): Promise<Paths> {
  let dir: string;
  let base: string;
  const isDir = /[\\/]$/.test(path) || (await stat(path).then((s) => s.isDirectory(), () => false));
  if (isDir) {
    dir = path.replace(/[\\/]+$/, '') || '/';
    base = DIRECTORY_BASE;
  } else {
    dir = dirname(path);
    base = basename(path).replace(/\.(json|safetensors)$/, '');
  }
  if (create) await mkdir(dir, { recursive: true });
  return { dir, base, json: join(dir, `${base}.json`) };
}


// ---------------------------------------------------------------- atomic writes

let tempCounter = 0;
const TEMP = /^\.(.+)\.tmp-(\d+)-\d+$/;

/**
 * Writes `data` to a temp file beside `name`, fsyncs it and renames it over `name` (also the search state's writer).
 *
 * Usage: `await writeAtomic(dir, 'state.json', text);`
 */
export async function writeAtomic(dir: string, name: string, data: Uint8Array | string): Promise<void> {
  const temp = join(dir, `.${name}.tmp-${process.pid}-${tempCounter++}`);
  try {
    const handle = await open(temp, 'w', 0o644);
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, join(dir, name));
  } catch (error) {
    await unlink(temp).catch(() => {});
    throw error;
  }
}

/** Makes the renames in `dir` durable (a rename is only on disk once its directory is). */
async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } catch (error) {
    // Some file systems cannot fsync a directory; the rename is still atomic there.
    if (!['EINVAL', 'EISDIR', 'EPERM', 'ENOTSUP'].includes((error as NodeJS.ErrnoException).code ?? '')) throw error;
  } finally {
    await handle.close();
  }
}

/** sha256 in 4 MiB slices with an event-loop turn between them, so a large model does not freeze the host. */
async function sha256(bytes: Uint8Array): Promise<string> {
  const hash = createHash('sha256');
  const slice = 4 << 20;
  for (let at = 0; at < bytes.length; at += slice) {
    hash.update(bytes.subarray(at, at + slice));
    if (at + slice < bytes.length) await new Promise<void>((resolve) => setImmediate(resolve));
  }
  return hash.digest('hex');
}

const processAlive = (pid: number): boolean => {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
};

/** Removes weights files the manifest no longer names, and temp files of writers that died. */
async function collectGarbage(paths: Paths, keep: string): Promise<void> {
  for (const entry of await readdir(paths.dir)) {
    const weights = WEIGHTS_NAME.exec(entry);
    const temp = TEMP.exec(entry);
    const stale =
      (weights !== null && weights[1] === paths.base && entry !== keep) ||
      (temp !== null && (temp[1] === `${paths.base}.json` || WEIGHTS_NAME.exec(temp[1]!)?.[1] === paths.base) && !processAlive(Number(temp[2])));
    if (stale) await unlink(join(paths.dir, entry)).catch(() => {});
  }
}

/** Saves to one path never overlap within this process (the garbage collection of one must not race the other's files). */
const pathLocks = new Map<string, Promise<unknown>>();

/**
 * Writes a snapshot to `path` atomically; saves to one path never overlap within this process.
 *
 * Usage: `const saved = await writeSnapshot('runs/mnist', snapshot);`
 */
export async function writeSnapshot(path: string, snap: Snapshot): Promise<SavedCheckpoint> {
  const paths = await resolvePaths(path, true);
  const previous = pathLocks.get(paths.json) ?? Promise.resolve();
  const work = previous.catch(() => {}).then(async (): Promise<SavedCheckpoint> => {
    const digest = await sha256(snap.weights);
    const file = weightsName(paths.base, digest);
    // 1. The weights under a new name; the current manifest still points at the old file.
    await writeAtomic(paths.dir, file, snap.weights);
    await syncDirectory(paths.dir);
    // 2. The manifest: its rename is the commit point.
    const manifest: CheckpointManifest = { ...snap.manifest, weights: { file, sha256: digest, bytes: snap.weights.length } };
    await writeAtomic(paths.dir, basename(paths.json), `${JSON.stringify(manifest, null, 1)}\n`);
    await syncDirectory(paths.dir);
    // 3. Only now is the old weights file unreferenced.
    await collectGarbage(paths, file);
    return { json: paths.json, weights: join(paths.dir, file), sha256: digest, bytes: snap.weights.length, stepCount: snap.manifest.stepCount };
  });
  pathLocks.set(paths.json, work);
  try {
    return await work;
  } finally {
    if (pathLocks.get(paths.json) === work) pathLocks.delete(paths.json);
  }
}


/** Reads the manifest at `paths` and its weights, checked against the recorded size and sha256. */
export async function readManifest(paths: Paths): Promise<{ manifest: CheckpointManifest; weights: Uint8Array; weightsPath: string }> {
  let text: string;
  try {
    text = await readFile(paths.json, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new CheckpointError(paths.json, '(file)', code === 'ENOENT' ? 'no checkpoint here (the manifest does not exist)' : `cannot be read (${(error as Error).message})`);
  }
  const manifest = parseManifest(text, paths.json);
  const weightsPath = join(paths.dir, manifest.weights.file);
  let weights: Uint8Array;
  try {
    weights = await readFile(weightsPath);
  } catch (error) {
    throw new CheckpointError(paths.json, 'weights.file', `'${manifest.weights.file}' cannot be read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
  }
  if (weights.length !== manifest.weights.bytes) {
    throw new CheckpointError(weightsPath, 'size', `${weights.length} bytes, but ${basename(paths.json)} records ${manifest.weights.bytes}: truncated, or not the pair of this manifest`);
  }
  const digest = createHash('sha256').update(weights).digest('hex');
  if (digest !== manifest.weights.sha256) {
    throw new CheckpointError(weightsPath, 'sha256', `is ${digest}, but ${basename(paths.json)} records ${manifest.weights.sha256}: corrupt, or not the pair of this manifest`);
  }
  return { manifest, weights, weightsPath };
}

