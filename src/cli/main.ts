#!/usr/bin/env node
/**
 * The `rxgrad` command line (commander): train, evaluate, predict, inspect, serve. Bad arguments
 * and bad files print one line and exit with status 2; `--help` works on every command.
 *
 * Usage: `rxgrad train --model mlp.json --data train.csv --out runs/mlp` (see `rxgrad --help`)
 */
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError } from 'commander';
import { closeDefaultEngine } from '../index.ts';
import type { CliIO } from './common.ts';
import { evaluateCommand, predictCommand } from './inference.ts';
import { inspectCommand } from './inspect.ts';
import { serveCommand } from './serve.ts';
import { trainCommand } from './train.ts';

/** The commands, in help order. `rxgrad export --onnx` (model interchange) registers here the same way. */
const COMMANDS = [trainCommand, evaluateCommand, predictCommand, inspectCommand, serveCommand];

const defaultIO: CliIO = {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
  interactive: process.stdout.isTTY === true,
};

/** One line for an error: the message without the stack (RXGRAD_DEBUG=1 shows the stack). */
function describe(error: unknown): string {
  if (process.env['RXGRAD_DEBUG']) return (error as Error).stack ?? String(error);
  const e = error as NodeJS.ErrnoException;
  if (e.code === 'ENOENT' && e.path) return `${e.path}: no such file or directory`;
  if (e.code === 'EACCES' && e.path) return `${e.path}: permission denied`;
  if (e.code === 'EISDIR' && e.path) return `${e.path}: is a directory, expected a file`;
  return (e.message ?? String(error)).split('\n')[0]!;
}

/**
 * Runs the command line on `argv` (without `node` and the script) and resolves the exit status:
 * 0 done, 2 bad arguments or input. Does not exit the process or close the engine.
 *
 * Usage: `process.exitCode = await runCli(process.argv.slice(2));`
 */
export async function runCli(argv: readonly string[], io: CliIO = defaultIO): Promise<number> {
  const program = new Command()
    .name('rxgrad')
    .description('Train, evaluate, inspect and serve rxgrad models from the command line.')
    .exitOverride()
    .showSuggestionAfterError(true)
    .configureOutput({ writeOut: (s) => io.out(s.replace(/\n$/, '')), writeErr: (s) => io.err(s.replace(/\n$/, '')) });
  for (const register of COMMANDS) register(program, io);
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) {
      // --help and --version are not errors; otherwise commander has printed its one-line message
      // (or, for a missing command, the usage).
      return error.code === 'commander.helpDisplayed' || error.code === 'commander.version' ? 0 : 2;
    }
    io.err(`rxgrad: ${describe(error)}`);
    return 2;
  }
}

const isMain = (() => {
  try {
    return process.argv[1] !== undefined && realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
})();
if (isMain) {
  process.exitCode = await runCli(process.argv.slice(2));
  await closeDefaultEngine();
}
