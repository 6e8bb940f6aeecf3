/** `rxgrad train`: a model from a JSON spec or a checkpoint, data from a file, a progress bar, checkpoints. */
import { Command } from 'commander';
import { lastValueFrom, tap } from 'rxjs';
import { loadModel, logProgress, saveModel, softmaxCrossEntropy, type Model, type Optimizer, type SavedCheckpoint, type TabularDataset } from '../index.ts';
import { addDataOptions, checkFits, CliError, loadData, modelFromSpecFile, optimizerFromSpec, positiveInt, positiveNumber, type CliIO, type DataOptions } from './common.ts';

interface TrainCliOptions extends DataOptions {
  model?: string;
  from?: string;
  out?: string;
  epochs: number;
  batchSize: number;
  optimizer?: string;
  learningRate?: number;
  checkpointEvery?: number;
  validation?: string;
  validationLabels?: string;
  shuffle: boolean;
  progress: boolean;
}

const asBatchArrays = (data: TabularDataset) => ({ features: data.features, shape: data.shape, labels: data.labels! });

/** Registers `train` on the program. */
export function trainCommand(program: Command, io: CliIO): void {
  const command = program
    .command('train')
    .description('Train a model (from a JSON spec or a checkpoint) on a data file, with a progress bar and checkpoints.')
    .option('--model <spec.json>', 'model spec: {"inputShape"?, "seed"?, "layers": [{"kind", "config"}], "optimizer"?: {"name", …}}')
    .option('--from <checkpoint>', 'continue training a checkpoint (its weights, optimizer state and step count)');
  addDataOptions(command, 'training data')
    .option('--validation <file>', 'validation data, same format and columns (evaluated after each epoch)')
    .option('--validation-labels <file>', 'IDX only: the validation labels file')
    .option('--out <checkpoint>', 'where to save: a directory or a base path (default: --from, else ./checkpoints)')
    .option('--epochs <n>', 'epochs', positiveInt('--epochs'), 5)
    .option('--batch-size <n>', 'batch size', positiveInt('--batch-size'), 32)
    .option('--optimizer <name>', "adam, adamw or sgd (default: the spec's, the checkpoint's, else adam)")
    .option('--learning-rate <lr>', 'learning rate (default: the optimizer\'s)', positiveNumber('--learning-rate'))
    .option('--checkpoint-every <steps>', 'also save every n steps (always at the end)', positiveInt('--checkpoint-every'))
    .option('--no-shuffle', 'keep the row order')
    .option('--no-progress', 'no progress bar, one line per epoch')
    .addHelpText('after', '\nThe loss is softmax cross-entropy on integer class labels.\nExample:\n  rxgrad train --model mlp.json --data iris.csv --label species --epochs 20 --out runs/iris')
    .action(async (options: TrainCliOptions) => {
      if ((options.model === undefined) === (options.from === undefined)) throw new CliError('train: give exactly one of --model <spec.json> or --from <checkpoint>');
      const data = await loadData(options);
      const validation = options.validation !== undefined ? await loadData(options, options.validation, options.validationLabels) : undefined;
      let model: Model;
      let optimizer: Optimizer | null = null;
      if (options.from !== undefined) {
        const loaded = await loadModel(options.from);
        model = loaded.model;
        optimizer = loaded.optimizer;
      } else {
        const built = await modelFromSpecFile(options.model!, data.shape);
        model = built.model;
        if (built.spec.optimizer) optimizer = optimizerFromSpec(built.spec.optimizer, options.model!);
      }
      try {
        checkFits(data, model, true);
        if (validation) checkFits(validation, model, true);
        if (options.optimizer !== undefined || options.learningRate !== undefined || optimizer === null) {
          optimizer = optimizerFromSpec({ name: options.optimizer ?? 'adam', ...(options.learningRate !== undefined ? { learningRate: options.learningRate } : {}) }, '--optimizer');
        }
        const out = options.out ?? options.from ?? 'checkpoints';
        io.out(`${model.name}: ${data.length} examples from ${data.name}${validation ? `, validation ${validation.length} from ${validation.name}` : ''}; saving to ${out}`);
        const saves: Promise<SavedCheckpoint>[] = [];
        await lastValueFrom(
          model
            .train(asBatchArrays(data), {
              epochs: options.epochs, batchSize: options.batchSize, loss: softmaxCrossEntropy(), optimizer, metrics: ['accuracy'], shuffle: options.shuffle,
              ...(validation ? { validation: asBatchArrays(validation) } : {}),
            })
            .pipe(
              // saveModel copies the state synchronously at this step boundary, then writes in the background.
              tap((event) => {
                if (event.kind === 'step' && options.checkpointEvery && event.step % options.checkpointEvery === 0) saves.push(saveModel(model, out));
              }),
              logProgress({ bar: options.progress && io.interactive ? true : false, log: io.out }),
            ),
        );
        saves.push(saveModel(model, out));
        const last = (await Promise.all(saves)).at(-1)!;
        io.out(`saved step ${last.stepCount} to ${last.json}`);
      } finally {
        model.dispose();
      }
    });
  void command;
}
