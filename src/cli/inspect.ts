/** `rxgrad inspect`: what a checkpoint holds, after loading (and so verifying) it. */
import { readFile, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Command } from 'commander';
import { loadModel, manifestPath, type CheckpointManifest } from '../index.ts';
import type { CliIO } from './common.ts';

/** Registers `inspect` on the program. */
export function inspectCommand(program: Command, io: CliIO): void {
  program
    .command('inspect')
    .description('Summary of a checkpoint: layers and shapes, parameters, step, optimizer, files (the weights are verified by loading).')
    .argument('<checkpoint>', 'a checkpoint directory or base path')
    .option('--json', 'print one JSON object')
    .action(async (checkpoint: string, options: { json?: boolean }) => {
      const { model, optimizer } = await loadModel(checkpoint);
      try {
        const json = await manifestPath(checkpoint);
        const manifest = JSON.parse(await readFile(json, 'utf8')) as CheckpointManifest;
        const weightsBytes = (await stat(join(dirname(json), manifest.weights.file))).size;
        const parameters = model.parameters().reduce((n, p) => n + p.size, 0);
        const summary = {
          checkpoint: json, model: model.name, inputShape: model.inputShape, outputShape: model.outputShape, layers: manifest.model.layers.map((l) => `${l.name} (${l.kind})`),
          parameters, step: model.stepCount, optimizer: manifest.optimizer ? { name: manifest.optimizer.name, iterations: manifest.optimizer.iterations, config: manifest.optimizer.config } : null,
          weights: { file: manifest.weights.file, bytes: weightsBytes, sha256: manifest.weights.sha256 }, savedAt: (manifest as { savedAt?: string }).savedAt ?? null,
          streamOffsets: (manifest as { streamOffsets?: unknown }).streamOffsets ?? {},
        };
        if (options.json) return io.out(JSON.stringify(summary));
        io.out(model.summary(false));
        io.out(`step ${summary.step}; optimizer ${optimizer ? `${summary.optimizer!.name} ${JSON.stringify(summary.optimizer!.config)} after ${summary.optimizer!.iterations} iterations` : 'none (never trained)'}`);
        io.out(`files: ${json} → ${manifest.weights.file} (${weightsBytes} bytes, sha256 ${manifest.weights.sha256.slice(0, 16)}…, verified)${summary.savedAt ? `; saved ${summary.savedAt}` : ''}`);
      } finally {
        model.dispose();
      }
    });
}
