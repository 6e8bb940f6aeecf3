/** `rxgrad serve DIR`: the prediction server on a checkpoint, hot-reloading new commits. */
import type { Command } from 'commander';
import { serve } from '../index.ts';
import { InvalidArgumentError } from 'commander';
import { nonNegativeNumber, positiveInt, positiveNumber, type CliIO } from './common.ts';

const portNumber = (value: string): number => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError(`--port must be an integer in 0…65535, got '${value}'`);
  return n;
};

interface ServeCliOptions {
  port: number;
  host: string;
  maxBatch: number;
  maxWaitMs: number;
  maxQueue: number;
  maxBodyBytes: number;
  batching: boolean;
  watch: boolean;
  pollMs: number;
}

/** Registers `serve` on the program; the action resolves when the server has closed (SIGINT/SIGTERM). */
export function serveCommand(program: Command, io: CliIO): void {
  program
    .command('serve')
    .description('Serve predictions over HTTP (POST /predict JSON or Arrow IPC, GET /health, GET /metrics), reloading each new checkpoint committed to the path.')
    .argument('<checkpoint>', 'a checkpoint directory or base path (watched for new commits)')
    .option('--port <n>', 'TCP port (0: any free port)', portNumber, 8080)
    .option('--host <address>', 'interface to listen on', '127.0.0.1')
    .option('--max-batch <rows>', 'largest model batch (and request)', positiveInt('--max-batch'), 64)
    .option('--max-wait-ms <ms>', 'longest a request waits for others to share its batch', nonNegativeNumber('--max-wait-ms'), 2)
    .option('--max-queue <n>', 'requests waiting before new ones get 503', positiveInt('--max-queue'), 256)
    .option('--max-body-bytes <n>', 'largest request body', positiveInt('--max-body-bytes'), 8 << 20)
    .option('--no-batching', 'run every request alone')
    .option('--no-watch', 'do not reload new checkpoints')
    .option('--poll-ms <ms>', 'stat poll interval of the watch', positiveNumber('--poll-ms'), 500)
    .addHelpText('after', '\nExample:\n  rxgrad serve runs/live --port 8080\n  curl -s localhost:8080/predict -H content-type:application/json -d \'{"instances": [[5.1, 3.5, 1.4, 0.2]]}\'')
    .action(async (checkpoint: string, options: ServeCliOptions) => {
      const server = await serve(checkpoint, {
        port: options.port, host: options.host, maxBatch: options.maxBatch, maxWaitMs: options.maxWaitMs, maxQueue: options.maxQueue,
        maxBodyBytes: options.maxBodyBytes, batching: options.batching, watch: options.watch, pollMs: options.pollMs, log: io.err,
      });
      io.out(`serving ${checkpoint} (${server.model.name}, step ${server.model.stepCount}) on ${server.url}`);
      await new Promise<void>((resolve) => {
        const stop = () => {
          process.off('SIGINT', stop);
          process.off('SIGTERM', stop);
          resolve();
        };
        process.on('SIGINT', stop);
        process.on('SIGTERM', stop);
      });
      await server.close();
      io.out('server closed');
    });
}
