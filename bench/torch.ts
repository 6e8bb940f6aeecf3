/**
 * The optional PyTorch column of bench/threads.ts: runs bench/reference/train_speed_torch.py with the
 * Debian `python3-torch` (system python; `RXGRAD_TORCH_PYTHON` overrides, `none` skips the column) and reads its JSON. Absent
 * PyTorch gives null and a note. Each thread count runs in its own process with OPENBLAS_NUM_THREADS and
 * OMP_NUM_THREADS set to it, and OPENBLAS_CORETYPE removed from that process's environment only (the
 * machine sets it; PyTorch's BLAS must pick its own kernels); note that Debian's PyTorch uses the generic
 * reference BLAS unless `libopenblas0-pthread` is installed.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

/** Examples/s on 1 and 2 threads per model. */
export type TorchRates = Record<'mlp64' | 'mlp256' | 'cnn64' | 'lstm64', { one: number; two: number }>;

const run = promisify(execFile);

/** The first python that imports torch, or null. */
async function torchPython(): Promise<string | null> {
  const candidates = [process.env['RXGRAD_TORCH_PYTHON'], '/usr/bin/python3', 'python3'].filter((p): p is string => !!p);
  for (const python of candidates) {
    try {
      await run(python, ['-c', 'import torch'], { timeout: 60_000 });
      return python;
    } catch {
      // not this one
    }
  }
  return null;
}

/**
 * Measures PyTorch's training rates (under whatever load the host has now), or null when PyTorch is absent.
 *
 * Usage: `const torch = await torchRates(true, log);`
 */
export async function torchRates(quick: boolean, log: (message: string) => void): Promise<TorchRates | null> {
  if (process.env['RXGRAD_TORCH_PYTHON'] === 'none') {
    log('  (no PyTorch column: RXGRAD_TORCH_PYTHON=none)');
    return null;
  }
  const python = await torchPython();
  if (!python) {
    log('  (no PyTorch column: python3-torch is not installed; apt-get install python3-torch libopenblas0-pthread)');
    return null;
  }
  if (!existsSync('/usr/lib/x86_64-linux-gnu/openblas-pthread')) {
    log('  note: libopenblas0-pthread is not installed, so PyTorch multiplies with the reference BLAS (slow)');
  }
  const script = fileURLToPath(new URL('./reference/train_speed_torch.py', import.meta.url));
  // One process per thread count: OpenBLAS sizes its own pool from the environment (torch.set_num_threads does not).
  const measure = async (threads: number): Promise<Record<keyof TorchRates, number>> => {
    // OMP_WAIT_POLICY=PASSIVE: GNU OpenMP's idle threads otherwise spin and take the cores from OpenBLAS's own
    // threads (measured here: 2 threads 0.3-0.8x of 1 thread with the default policy, 1.0-1.4x with PASSIVE).
    const env: NodeJS.ProcessEnv = { ...process.env, OPENBLAS_NUM_THREADS: String(threads), OMP_NUM_THREADS: String(threads), OMP_WAIT_POLICY: 'PASSIVE' };
    delete env['OPENBLAS_CORETYPE'];
    const { stdout } = await run(python, [script, '--threads', String(threads), ...(quick ? ['--quick'] : [])], { env, timeout: 600_000 });
    return JSON.parse(stdout.trim().split('\n').at(-1)!) as Record<keyof TorchRates, number>;
  };
  try {
    const one = await measure(1);
    const two = await measure(2);
    const models = Object.keys(one) as (keyof TorchRates)[];
    return Object.fromEntries(models.map((m) => [m, { one: one[m], two: two[m] }])) as TorchRates;
  } catch (error) {
    log(`  ! PyTorch column: ${(error as Error).message.split('\n')[0]}`);
    return null;
  }
}
