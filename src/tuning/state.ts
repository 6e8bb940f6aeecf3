import { readFile } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { writeAtomic } from '../checkpoint-files.ts';
import { SearchConfigError } from './space.ts';

/** One outside event the search processed, in processing order: a job's metric (non-finite ones as strings: JSON has no NaN), error or early completion. */
export type LoggedEvent = { job: number; metric: number | string } | { job: number; error: string } | { job: number; complete: true };

/** What a search's state file holds (format 'rxgrad-search', version 1). */
export interface SearchState {
  format: 'rxgrad-search';
  version: 1;
  /** The settings that fix the trial sequence; a resumed search must match them. */
  settings: Record<string, unknown>;
  log: LoggedEvent[];
  /** Present once the search finished. */
  table?: unknown;
}

/**
 * Reads a state file written by an earlier run of the same search, or null when there is none.
 * A file from a search with other settings is refused, naming the setting.
 */
export async function readSearchState(path: string, settings: Record<string, unknown>): Promise<SearchState | null> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
  let state: SearchState;
  try {
    state = JSON.parse(text) as SearchState;
  } catch (error) {
    throw new SearchConfigError('statePath', `${path} is not JSON (${(error as Error).message})`);
  }
  if (state.format !== 'rxgrad-search' || state.version !== 1 || !Array.isArray(state.log)) {
    throw new SearchConfigError('statePath', `${path} is not an rxgrad-search version 1 state file`);
  }
  for (const key of new Set([...Object.keys(settings), ...Object.keys(state.settings ?? {})])) {
    if (JSON.stringify(settings[key]) !== JSON.stringify(state.settings?.[key])) {
      throw new SearchConfigError('statePath', `${path} was written by a search with another ${key} (${JSON.stringify(state.settings?.[key])}, now ${JSON.stringify(settings[key])})`);
    }
  }
  return state;
}

/**
 * Writes the state as it goes: one write at a time, the latest state wins, each write atomic (a temp file,
 * fsync, rename), so a kill at any moment leaves the previous or the new state, never a torn one.
 */
export class StateWriter {
  private writing: Promise<void> | null = null;
  private dirty = false;
  private failure: Error | null = null;
  constructor(private readonly path: string, private readonly snapshot: () => SearchState) {}

  /** Asks for a write of the current state (coalesced with others while one is in progress). */
  request(): void {
    this.dirty = true;
    if (!this.writing) this.writing = this.drain();
  }

  /** Resolves when the latest requested state is on disk; rejects with a write's error. */
  async flush(): Promise<void> {
    while (this.writing) await this.writing;
    if (this.failure) throw this.failure;
  }

  private async drain(): Promise<void> {
    try {
      while (this.dirty) {
        this.dirty = false;
        await writeAtomic(dirname(this.path), basename(this.path), `${JSON.stringify(this.snapshot())}\n`);
      }
    } catch (error) {
      this.failure = error as Error;
    } finally {
      this.writing = null;
    }
  }
}

