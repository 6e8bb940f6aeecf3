/**
 * A link between two adjacent pipeline stages: one TCP connection carrying frames both ways.
 * A frame is `u32 length, u8 type, bytes`: type 0 is an Arrow IPC stream holding one record batch
 * (activations forward, gradients back: `features` with the per-example shape in its metadata,
 * `labels` riding along to the last stage), decoded through the verified IPC framing
 * (`batchesFromIpc`); type 1 is a JSON control message (`{ step, micro, … }` headers, stats,
 * checkpoint, end, abort).
 */
import { once } from 'node:events';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { Table, tableToIPC } from 'apache-arrow';
import type { Batch } from '../batch.ts';
import { batchesFromIpc } from '../streams/ipc.ts';

/** One frame: a control message, with a batch for activations and gradients. */
export interface Frame {
  header: Record<string, unknown> & { type: string };
  batch?: Batch;
}

const MAX_FRAME = 1 << 30;

/** A connected link; `frames` yields what the peer sends, `send` writes a frame. */
export class StageLink {
  private buffered: Buffer[] = [];
  private bufferedBytes = 0;
  private waiting: ((frame: Frame | Error) => void) | null = null;
  private readonly queue: (Frame | Error)[] = [];
  private closedWith: Error | null = null;
  bytesSent = 0;
  bytesReceived = 0;

  constructor(private readonly socket: Socket, readonly peer: string) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    const closed = (error?: Error) => this.fail(new Error(`${peer} closed the connection${error ? ` (${error.message})` : ''}`));
    socket.on('error', closed);
    socket.on('close', () => closed());
  }

  private fail(error: Error): void {
    if (this.closedWith) return;
    this.closedWith = error;
    this.push(error);
  }

  private push(item: Frame | Error): void {
    if (this.waiting) {
      const w = this.waiting;
      this.waiting = null;
      w(item);
    } else this.queue.push(item);
  }

  private onData(chunk: Buffer): void {
    this.bytesReceived += chunk.length;
    this.buffered.push(chunk);
    this.bufferedBytes += chunk.length;
    for (;;) {
      if (this.bufferedBytes < 5) return;
      // Join the chunks only once a whole frame is there (joining on every chunk is quadratic in the frame size).
      if (this.buffered[0]!.length < 5) this.buffered = [Buffer.concat(this.buffered)];
      const length = this.buffered[0]!.readUInt32LE(0);
      if (length > MAX_FRAME) return void this.socket.destroy(new Error(`frame of ${length} bytes from ${this.peer} exceeds ${MAX_FRAME}`));
      if (this.bufferedBytes < 5 + length) return;
      let all = this.buffered.length === 1 ? this.buffered[0]! : Buffer.concat(this.buffered);
      const type = all[4];
      const body = all.subarray(5, 5 + length);
      all = all.subarray(5 + length);
      this.buffered = all.length > 0 ? [all] : [];
      this.bufferedBytes = all.length;
      try {
        if (type === 1) this.push({ header: JSON.parse(body.toString('utf8')) as Frame['header'] });
        else if (type === 0) {
          // A batch frame: JSON header length (u32), header, then the Arrow IPC stream.
          const headerLength = body.readUInt32LE(0);
          const header = JSON.parse(body.subarray(4, 4 + headerLength).toString('utf8')) as Frame['header'];
          const batches = batchesFromIpc(body.subarray(4 + headerLength));
          if (batches.length !== 1) throw new Error(`expected one record batch, got ${batches.length}`);
          this.push({ header, batch: batches[0]! });
        } else throw new Error(`unknown frame type ${type}`);
      } catch (error) {
        return void this.socket.destroy(new Error(`bad frame from ${this.peer}: ${(error as Error).message}`));
      }
    }
  }

  /** The next frame from the peer; rejects when the link closed or broke. */
  next(): Promise<Frame> {
    const item = this.queue.shift();
    if (item) return item instanceof Error ? Promise.reject(item) : Promise.resolve(item);
    if (this.closedWith) return Promise.reject(this.closedWith);
    return new Promise((resolve, reject) => {
      this.waiting = (f) => (f instanceof Error ? reject(f) : resolve(f));
    });
  }

  /** Sends a control message, or a batch with its header. */
  send(header: Frame['header'], batch?: Batch): void {
    if (this.closedWith) throw this.closedWith;
    const head = Buffer.from(JSON.stringify(header), 'utf8');
    if (!batch) {
      const prefix = Buffer.alloc(5);
      prefix.writeUInt32LE(head.length, 0);
      prefix[4] = 1;
      this.write([prefix, head]);
      return;
    }
    const ipc = tableToIPC(new Table(batch), 'stream');
    const prefix = Buffer.alloc(9);
    prefix.writeUInt32LE(4 + head.length + ipc.length, 0);
    prefix[4] = 0;
    prefix.writeUInt32LE(head.length, 5);
    // The IPC bytes go to the socket as they are (no copy into one frame buffer).
    this.write([prefix, head, ipc]);
  }

  private write(parts: Uint8Array[]): void {
    this.socket.cork();
    for (const part of parts) {
      this.bytesSent += part.length;
      this.socket.write(part);
    }
    this.socket.uncork();
  }

  close(): void {
    this.closedWith ??= new Error(`link to ${this.peer} closed`);
    this.socket.end();
    this.socket.destroy();
  }
}

/**
 * Listens for the previous stage and resolves its link (the server stops listening after one connection).
 *
 * Usage: `const upstream = await acceptLink(9001, '127.0.0.1', 'stage 0', 30_000);`
 */
export async function acceptLink(port: number, host: string, peer: string, timeoutMs: number): Promise<StageLink> {
  const server: Server = createServer();
  server.listen(port, host);
  await once(server, 'listening');
  try {
    const socket = await new Promise<Socket>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${peer} did not connect to ${host}:${port} within ${timeoutMs} ms`)), timeoutMs);
      server.once('connection', (s: Socket) => {
        clearTimeout(timer);
        resolve(s);
      });
    });
    return new StageLink(socket, peer);
  } finally {
    server.close();
  }
}

/**
 * Connects to the next stage, retrying while it is not listening yet (for up to `timeoutMs`).
 *
 * Usage: `const downstream = await connectLink(9001, '127.0.0.1', 'stage 1', 30_000);`
 */
export async function connectLink(port: number, host: string, peer: string, timeoutMs: number): Promise<StageLink> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    try {
      const socket = connect({ port, host });
      await once(socket, 'connect');
      return new StageLink(socket, peer);
    } catch (error) {
      if (performance.now() > deadline) throw new Error(`cannot reach ${peer} at ${host}:${port}: ${(error as Error).message}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}
