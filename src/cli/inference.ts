/** `rxgrad evaluate` and `rxgrad predict`: a checkpoint on a data file. */
import { writeFile } from 'node:fs/promises';
import { extname } from 'node:path';
import { Command, Option } from 'commander';
import { tableToIPC, Table } from 'apache-arrow';
import { lastValueFrom, from, toArray } from 'rxjs';
import { batchesFromArrays, floatColumn, loadModel, softmaxCrossEntropy, sizeOf, type Batch } from '../index.ts';
import { addDataOptions, checkFits, CliError, loadData, positiveInt, type CliIO, type DataOptions } from './common.ts';

interface InferenceCliOptions extends DataOptions {
  batchSize: number;
  json?: boolean;
  out?: string;
  outFormat?: 'csv' | 'arrow';
}

/** Registers `evaluate` on the program. */
export function evaluateCommand(program: Command, io: CliIO): void {
  const command = program
    .command('evaluate')
    .description('Loss and accuracy of a checkpoint on a labelled data file.')
    .argument('<checkpoint>', 'a checkpoint directory or base path');
  addDataOptions(command, 'labelled data')
    .option('--batch-size <n>', 'rows per forward pass', positiveInt('--batch-size'), 256)
    .option('--json', 'print one JSON object')
    .action(async (checkpoint: string, options: InferenceCliOptions) => {
      const data = await loadData(options);
      const { model } = await loadModel(checkpoint);
      try {
        checkFits(data, model, true);
        const result = await model.evaluate(batchesFromArrays({ features: data.features, shape: data.shape, labels: data.labels! }, options.batchSize), { loss: softmaxCrossEntropy() });
        if (options.json) io.out(JSON.stringify({ checkpoint, step: model.stepCount, data: data.name, ...result }));
        else io.out(`${model.name} at step ${model.stepCount} on ${data.name}: loss ${result.loss.toFixed(4)}, accuracy ${((result.accuracy ?? NaN) * 100).toFixed(2)}% (${result.examples} examples)`);
      } finally {
        model.dispose();
      }
    });
}

/** CSV of the outputs: `prediction` (classifiers), `output_0…`, and `label` when the data had labels. */
function toCsv(batches: readonly Batch[], labels: Int32Array | null): string {
  const first = floatColumn(batches[0]!, 'output');
  const width = sizeOf(first.shape);
  const classify = batches[0]!.schema.fields.some((f) => f.name === 'prediction');
  const header = [...(classify ? ['prediction'] : []), ...Array.from({ length: width }, (_, i) => `output_${i}`), ...(labels ? ['label'] : [])];
  const lines = [header.join(',')];
  let row = 0;
  for (const batch of batches) {
    const { values, rows } = floatColumn(batch, 'output');
    const prediction = classify ? (batch.getChild('prediction')!.toArray() as Int32Array) : null;
    for (let r = 0; r < rows; r++, row++) {
      const cells: (number | string)[] = prediction ? [prediction[r]!] : [];
      for (let c = 0; c < width; c++) cells.push(values[r * width + c]!);
      if (labels) cells.push(labels[row]!);
      lines.push(cells.join(','));
    }
  }
  return `${lines.join('\n')}\n`;
}

/** Registers `predict` on the program. */
export function predictCommand(program: Command, io: CliIO): void {
  const command = program
    .command('predict')
    .description('Predictions of a checkpoint for every row of a data file, written as Arrow IPC or CSV.')
    .argument('<checkpoint>', 'a checkpoint directory or base path');
  addDataOptions(command, 'data to predict (labels optional: passed through)')
    .requiredOption('--out <file>', 'output file: .arrow/.feather (Arrow IPC file), .arrows (IPC stream) or .csv')
    .addOption(new Option('--out-format <format>', 'output format (default: from the extension of --out)').choices(['csv', 'arrow']))
    .option('--batch-size <n>', 'rows per forward pass', positiveInt('--batch-size'), 256)
    .action(async (checkpoint: string, options: InferenceCliOptions) => {
      const out = options.out!;
      const ext = extname(out).toLowerCase();
      const format = options.outFormat ?? (ext === '.csv' ? 'csv' : ['.arrow', '.arrows', '.feather', '.ipc'].includes(ext) ? 'arrow' : null);
      if (format === null) throw new CliError(`--out ${out}: say the format with a .csv/.arrow/.arrows extension or --out-format`);
      const data = await loadData(options);
      const { model } = await loadModel(checkpoint);
      try {
        checkFits(data, model, false);
        const batches = await lastValueFrom(from(batchesFromArrays({ features: data.features, shape: data.shape }, options.batchSize)).pipe(model.predict(), toArray()));
        if (format === 'csv') await writeFile(out, toCsv(batches, data.labels));
        else await writeFile(out, tableToIPC(new Table(batches), ext === '.arrows' ? 'stream' : 'file'));
        io.out(`${data.length} predictions of ${model.name} at step ${model.stepCount} written to ${out}`);
      } finally {
        model.dispose();
      }
    });
}
