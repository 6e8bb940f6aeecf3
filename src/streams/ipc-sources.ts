/**
 * Arrow IPC sources (file path, byte array, Node readable stream, TCP socket) as pull sources.
 * The bytes go through our verified framing and decoding (ipc-framing.ts, ipc-decode.ts, which
 * say why) before a batch is handed on; malformed or truncated input rejects with an
 * {@link IpcFormatError} through the iterator (or the Observable).
 */
import { open } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import type { Readable } from 'node:stream';
import type { Observable } from 'rxjs';
import type { Batch } from '../batch.ts';
import { decodeIpc } from './ipc-decode.ts';
import type { IpcFormatError, IpcSourceOptions } from './ipc-framing.ts';
import { cancellable, observePull, type PullSource } from './pull.ts';

/** What {@link ipcSource} reads: a file path, bytes, a Node readable stream, or chunks of bytes. */
export type IpcInput = string | URL | Uint8Array | Readable | NodeJS.ReadableStream | AsyncIterable<Uint8Array> | Iterable<Uint8Array>;

/**
 * Batches of an Arrow IPC stream or file, read at the consumer's pace (a pull source for
 * `model.fitFrom`). A path is re-read on each iteration; a stream can be iterated once. Malformed
 * or truncated input rejects with an {@link IpcFormatError}; `return()` closes the file or stream.
 *
 * Usage: `model.fitFrom(ipcSource('/data/train.arrows'), { loss: softmaxCrossEntropy(), optimizer: adam() })`
 */
export function ipcSource(input: IpcInput, options: IpcSourceOptions = {}): PullSource<Batch> {
  let used = false;
  return cancellable<Batch>(() => {
    if (typeof input === 'string' || input instanceof URL) {
      let handle: Awaited<ReturnType<typeof open>> | null = null;
      let cancelled = false;
      async function* fileBytes(): AsyncGenerator<Uint8Array> {
        handle = await open(input as string | URL, 'r');
        if (cancelled) return void (await handle.close());
        try {
          const buffer = new Uint8Array(1 << 16);
          for (;;) {
            const { bytesRead } = await handle.read(buffer, 0, buffer.length, null);
            if (bytesRead === 0 || cancelled) return;
            yield buffer.slice(0, bytesRead);
          }
        } finally {
          await handle.close().catch(() => {});
        }
      }
      return {
        iterator: decodeIpc(fileBytes(), options),
        cancel: () => {
          cancelled = true;
        },
      };
    }
    if (input instanceof Uint8Array) return { iterator: decodeIpc([input], options), cancel: () => {} };
    if (used) throw new Error('ipcSource: a stream can be iterated only once');
    used = true;
    const destroyable = input as { destroy?: () => void; destroyed?: boolean };
    return {
      iterator: decodeIpc(input as AsyncIterable<Uint8Array> | Iterable<Uint8Array>, options),
      cancel: () => {
        if (typeof destroyable.destroy === 'function' && !destroyable.destroyed) destroyable.destroy();
      },
    };
  }, options.signal ? { signal: options.signal } : {});
}

/**
 * Batches of an Arrow IPC stream read from a TCP connection, opened on each iteration and closed
 * when the iteration ends, fails or is cancelled. A connection that ends before the
 * end-of-stream marker is an error; `idleTimeoutMs` bounds silence from the peer.
 *
 * Usage: `model.fitFrom(tcpIpcSource({ host: '127.0.0.1', port: 9000 }), fit).subscribe(console.log)`
 */
export function tcpIpcSource(options: IpcSourceOptions & { port: number; host?: string; idleTimeoutMs?: number }): PullSource<Batch> {
  return cancellable<Batch>(() => {
    const socket: Socket = connect({ port: options.port, host: options.host ?? '127.0.0.1' });
    if (options.idleTimeoutMs !== undefined) {
      socket.setTimeout(options.idleTimeoutMs, () => socket.destroy(new Error(`tcpIpcSource: no data for ${options.idleTimeoutMs} ms from ${options.host ?? '127.0.0.1'}:${options.port}`)));
    }
    return { iterator: decodeIpc(socket, options), cancel: () => void socket.destroy() };
  }, options.signal ? { signal: options.signal } : {});
}

/**
 * The Observable form of {@link ipcSource}: emits as fast as the subscriber takes batches;
 * unsubscribing closes the input.
 *
 * Usage: `ipcSource$('/data/test.arrows').pipe(model.predict()).subscribe(show)`
 */
export function ipcSource$(input: IpcInput, options: IpcSourceOptions = {}): Observable<Batch> {
  return observePull(ipcSource(input, options));
}
