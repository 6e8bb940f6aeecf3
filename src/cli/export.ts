/** `rxgrad export`: a checkpoint to another format (ONNX). */
import type { Command } from 'commander';
import { exportOnnx, loadModel } from '../index.ts';
import { CliError, positiveInt, type CliIO } from './common.ts';

/** Registers `export` on the program. */
export function exportCommand(program: Command, io: CliIO): void {
  program
    .command('export')
    .description('Export a checkpoint to ONNX (inference graph; dropout and augmentation drop out).')
    .argument('<checkpoint>', 'a checkpoint directory or base path')
    .requiredOption('--onnx <file>', 'write an ONNX model here')
    .option('--opset <n>', 'ONNX opset of the default domain, 13–21', positiveInt('--opset'), 17)
    .action(async (checkpoint: string, options: { onnx: string; opset: number }) => {
      if (options.opset < 13 || options.opset > 21) throw new CliError(`--opset must be 13–21, got ${options.opset}`);
      const { model } = await loadModel(checkpoint);
      try {
        await exportOnnx(model, options.onnx, { opset: options.opset });
        io.out(`${model.name} at step ${model.stepCount} exported to ${options.onnx} (ONNX opset ${options.opset})`);
      } finally {
        model.dispose();
      }
    });
}
