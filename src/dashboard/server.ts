/**
 * The dashboard's HTTP server: the page and its assets (uPlot from the package: no CDN, works
 * offline), the state as JSON, and Server-Sent Events to live viewers.
 *
 * Viewers cost the trainer a bounded amount whatever their number: changes are collected only
 * while someone watches, serialised once per flush (every `flushIntervalMs`), and the same bytes
 * are written to every viewer. A viewer whose unsent bytes pass `maxViewerBufferBytes` (it reads
 * slower than the run writes, or not at all) is disconnected; its browser reconnects by itself
 * and gets a fresh snapshot. The flush timer exists only while a viewer is connected.
 */
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import type { DashboardState } from './state.ts';

/** Options of the HTTP side of a dashboard. */
export interface ServerOptions {
  /** TCP port (0: any free port). */
  port: number;
  /** Interface to bind; '127.0.0.1' by default. */
  host: string;
  /** How often changes are sent to viewers (default 500 ms). */
  flushIntervalMs: number;
  /** Unsent bytes a viewer may have before it is disconnected (default 4 MiB). */
  maxViewerBufferBytes: number;
  /** Viewers at once (default 32); more get 503. */
  maxViewers: number;
  /** A comment line is sent to idle viewers this often, so dead connections are noticed (default 15 s). */
  heartbeatMs: number;
  /** Where the warning about a non-loopback address goes (default `console.warn`). */
  warn: (message: string) => void;
}

interface Viewer {
  response: ServerResponse;
  id: number;
}

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);
const isLoopback = (host: string): boolean => LOOPBACK.has(host) || host.startsWith('127.');

interface Asset {
  type: string;
  body: Buffer;
}

let assetCache: Map<string, Asset> | null = null;
/** The page's files, read once per process. */
function assets(): Map<string, Asset> {
  if (assetCache) return assetCache;
  const page = (name: string) => readFileSync(new URL(`./page/${name}`, import.meta.url));
  const require = createRequire(import.meta.url);
  const uplot = (name: string) => readFileSync(require.resolve(`uplot/dist/${name}`));
  assetCache = new Map([
    ['/', { type: 'text/html; charset=utf-8', body: page('index.html') }],
    ...['dashboard.js', 'store.js', 'charts.js', 'tables.js', 'format.js'].map((name): [string, Asset] => [`/${name}`, { type: 'text/javascript; charset=utf-8', body: page(name) }]),
    ['/dashboard.css', { type: 'text/css; charset=utf-8', body: page('dashboard.css') }],
    ['/uPlot.iife.min.js', { type: 'text/javascript; charset=utf-8', body: uplot('uPlot.iife.min.js') }],
    ['/uPlot.min.css', { type: 'text/css; charset=utf-8', body: uplot('uPlot.min.css') }],
  ]);
  return assetCache;
}

const SECURITY_HEADERS = {
  'X-Content-Type-Options': 'nosniff',
  'Content-Security-Policy': "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:",
  'Referrer-Policy': 'no-referrer',
};

/** What {@link DashboardServer.diagnostics} reports (tests check that disconnects leave nothing behind). */
export interface ServerDiagnostics {
  viewers: number;
  /** Whether the flush timer exists (only while viewers are connected). */
  flushTimer: boolean;
  /** Points collected for the next flush. */
  pendingPoints: number;
  /** Viewers disconnected for not keeping up. */
  droppedViewers: number;
  /** Open TCP connections. */
  connections: number;
  /** Bytes written to viewers so far, and flushes sent. */
  bytesSent: number;
  flushes: number;
  /** Milliseconds the server spent serialising and writing to viewers (snapshots and flushes): its cost to the run's thread. */
  busyMs: number;
}

/**
 * The HTTP/SSE server of a dashboard (see the module comment).
 *
 * Usage: `const server = await DashboardServer.listen(state, options); console.log(server.url);`
 */
export class DashboardServer {
  private readonly viewers = new Set<Viewer>();
  private flushTimer: NodeJS.Timeout | null = null;
  private lastWrite = 0;
  private nextId = 1;
  private snapshotCache: { version: number; payload: string } | null = null;
  private droppedViewers = 0;
  private bytesSent = 0;
  private flushes = 0;
  private busyMs = 0;
  private closing = false;

  private constructor(private readonly server: Server, private readonly state: DashboardState, private readonly options: ServerOptions) {}

  /** Starts listening; rejects with a clear error if the port is taken or invalid. */
  static async listen(state: DashboardState, options: ServerOptions): Promise<DashboardServer> {
    if (!Number.isInteger(options.port) || options.port < 0 || options.port > 65535) throw new RangeError(`dashboard: port must be an integer in [0, 65535], got ${options.port}`);
    assets();
    const server = createServer();
    const dashboard = new DashboardServer(server, state, options);
    server.on('request', (request: IncomingMessage, response: ServerResponse) => dashboard.handle(request, response));
    await new Promise<void>((resolve, reject) => {
      const onError = (error: NodeJS.ErrnoException) => {
        const why = error.code === 'EADDRINUSE' ? 'is in use' : error.code === 'EACCES' ? 'needs privileges' : `failed (${error.message})`;
        reject(new Error(`dashboard: listening on ${options.host}:${options.port} ${why}`, { cause: error }));
      };
      server.once('error', onError);
      server.listen(options.port, options.host, () => {
        server.off('error', onError);
        resolve();
      });
    });
    if (!isLoopback(options.host)) {
      options.warn(`dashboard: listening on ${options.host}:${dashboard.port}, reachable from other machines (the page has no authentication); the default is 127.0.0.1`);
    }
    return dashboard;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  get url(): string {
    const host = this.options.host.includes(':') ? `[${this.options.host}]` : this.options.host === '0.0.0.0' ? '127.0.0.1' : this.options.host;
    return `http://${host}:${this.port}/`;
  }

  get viewerCount(): number {
    return this.viewers.size;
  }

  private handle(request: IncomingMessage, response: ServerResponse): void {
    // Bound to loopback, a page from another site must not read the run through DNS rebinding.
    const hostHeader = (request.headers.host ?? '').replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
    if (isLoopback(this.options.host) && !isLoopback(hostHeader)) return this.reply(response, 403, 'text/plain', `dashboard: Host '${hostHeader}' refused`);
    if (request.method !== 'GET' && request.method !== 'HEAD') return this.reply(response, 405, 'text/plain', `dashboard: ${request.method} not allowed`);
    const path = (request.url ?? '/').split('?')[0]!;
    if (path === '/events') return request.method === 'GET' ? this.subscribe(request, response) : this.reply(response, 405, 'text/plain', 'dashboard: /events is GET only');
    if (path === '/state') return this.reply(response, 200, 'application/json', this.snapshotJSON());
    const asset = assets().get(path === '/index.html' ? '/' : path);
    if (!asset) return this.reply(response, 404, 'text/plain', `dashboard: no ${path}`);
    response.writeHead(200, { 'Content-Type': asset.type, 'Content-Length': asset.body.length, 'Cache-Control': 'no-cache', ...SECURITY_HEADERS });
    response.end(request.method === 'HEAD' ? undefined : asset.body);
  }

  private reply(response: ServerResponse, status: number, type: string, body: string): void {
    response.writeHead(status, { 'Content-Type': `${type}; charset=utf-8`, 'Cache-Control': 'no-cache', ...SECURITY_HEADERS });
    response.end(body);
  }

  /** The state as JSON, serialised once per change however many viewers ask. */
  private snapshotJSON(): string {
    if (this.snapshotCache?.version !== this.state.version) {
      this.snapshotCache = { version: this.state.version, payload: JSON.stringify(this.state.snapshot()) };
    }
    return this.snapshotCache.payload;
  }

  private subscribe(request: IncomingMessage, response: ServerResponse): void {
    if (this.closing) return this.reply(response, 503, 'text/plain', 'dashboard: closing');
    if (this.viewers.size >= this.options.maxViewers) return this.reply(response, 503, 'text/plain', `dashboard: ${this.options.maxViewers} viewers already`);
    response.writeHead(200, { 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-cache', Connection: 'keep-alive', 'X-Accel-Buffering': 'no', ...SECURITY_HEADERS });
    request.socket.setNoDelay(true);
    const viewer: Viewer = { response, id: this.nextId++ };
    if (this.viewers.size === 0) {
      // From now on changes are collected for deltas; everything before is in the snapshot.
      this.state.clearDelta();
      this.state.tracking = true;
      this.flushTimer = setInterval(() => this.flush(), this.options.flushIntervalMs);
    }
    this.viewers.add(viewer);
    this.setViewerStatus();
    response.on('close', () => this.remove(viewer));
    const started = performance.now();
    this.write(viewer, `retry: 2000\nevent: snapshot\ndata: ${this.snapshotJSON()}\n\n`);
    this.busyMs += performance.now() - started;
  }

  private setViewerStatus(): void {
    Object.assign(this.state.status, { viewers: this.viewers.size, droppedViewers: this.droppedViewers });
    this.state.touchStatus();
  }

  private remove(viewer: Viewer): void {
    if (!this.viewers.delete(viewer)) return;
    if (this.viewers.size === 0) {
      if (this.flushTimer) clearInterval(this.flushTimer);
      this.flushTimer = null;
      this.state.tracking = false;
      this.state.clearDelta();
    }
    this.setViewerStatus();
  }

  private write(viewer: Viewer, payload: string): void {
    const response = viewer.response;
    // Destroyed but its 'close' not yet emitted: nothing to write to.
    if (response.destroyed || response.writableEnded) return this.remove(viewer);
    if (response.writableLength + payload.length > this.options.maxViewerBufferBytes) {
      // Not keeping up (or not reading): cut it off rather than buffer without bound.
      this.droppedViewers++;
      this.remove(viewer);
      response.destroy();
      return;
    }
    response.write(payload);
    this.bytesSent += payload.length;
  }

  /** Sends the changes since the last flush to every viewer (one serialisation for all). */
  flush(): void {
    if (this.viewers.size === 0) return;
    const now = performance.now();
    const delta = this.state.takeDelta();
    let payload: string;
    if (delta) payload = `event: update\ndata: ${JSON.stringify(delta)}\n\n`;
    else if (now - this.lastWrite >= this.options.heartbeatMs) payload = ':\n\n';
    else return;
    this.lastWrite = now;
    this.flushes++;
    for (const viewer of [...this.viewers]) this.write(viewer, payload);
    this.busyMs += performance.now() - now;
  }

  async diagnostics(): Promise<ServerDiagnostics> {
    const connections = await new Promise<number>((resolve) => this.server.getConnections((error, n) => resolve(error ? -1 : n)));
    return {
      viewers: this.viewers.size,
      flushTimer: this.flushTimer !== null,
      pendingPoints: this.state.pendingPoints,
      droppedViewers: this.droppedViewers,
      connections,
      bytesSent: this.bytesSent,
      flushes: this.flushes,
      busyMs: this.busyMs,
    };
  }

  /** Sends what is pending, ends every viewer's stream and stops listening. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.flush();
    for (const viewer of [...this.viewers]) {
      this.remove(viewer);
      viewer.response.end('event: end\ndata: {}\n\n');
    }
    // Connections that do not end by themselves (a viewer that stopped reading) are cut after a second.
    const cut = setTimeout(() => this.server.closeAllConnections(), 1000);
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeIdleConnections();
    });
    clearTimeout(cut);
  }
}
