/**
 * A redis-server for tests: started on a free loopback port (with an append-only file in a temp
 * directory, so a restart keeps its data), stopped by the test, also on failure.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { freePort } from '../examples/common.ts';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const hasRedis = spawnSync('redis-server', ['--version']).status === 0;

export { freePort };

/** ‖a − b‖ / ‖b‖: the relative error of whole weight tensors. */
export function relativeError(a: readonly number[], b: readonly number[]): number {
  let d = 0;
  let n = 0;
  for (let i = 0; i < a.length; i++) {
    d += (a[i]! - b[i]!) ** 2;
    n += b[i]! ** 2;
  }
  return Math.sqrt(d / n);
}

/** A redis-server child process; `restart()` stops it and starts it again on the same port and data. */
export class TestRedis {
  private process: ChildProcess | null = null;
  readonly dir = mkdtempSync(join(tmpdir(), 'rxgrad-redis-'));
  /** `extra`: more redis-server arguments (later ones win), e.g. cluster mode. */
  constructor(readonly port: number, private readonly extra: string[] = []) {}

  static async start(): Promise<TestRedis> {
    const redis = new TestRedis(await freePort());
    await redis.launch();
    return redis;
  }

  async launch(): Promise<void> {
    const server = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--dir', this.dir, '--save', '', '--appendonly', 'yes', '--appendfsync', 'always', '--daemonize', 'no', ...this.extra], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.process = server;
    await new Promise<void>((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => reject(new Error(`redis-server did not start:\n${out}`)), 10_000);
      server.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('Ready to accept connections')) {
          clearTimeout(timer);
          resolve();
        }
      });
      server.on('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`redis-server exited with ${code}:\n${out}`));
      });
    });
  }

  async stop(): Promise<void> {
    const server = this.process;
    this.process = null;
    if (!server || server.exitCode !== null) return;
    const exited = new Promise((resolve) => server.on('exit', resolve));
    server.kill('SIGTERM');
    await exited;
  }

  async restart(downMs = 0): Promise<void> {
    await this.stop();
    if (downMs > 0) await new Promise((resolve) => setTimeout(resolve, downMs));
    await this.launch();
  }

  async close(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * A local Redis Cluster of `masters` nodes on loopback (no replicas, no persistence), its slots
 * assigned by `redis-cli --cluster create`; `close()` stops every node (call it in a finally).
 */
export async function startRedisCluster(masters = 3): Promise<{ ports: number[]; close: () => Promise<void> }> {
  const nodes: TestRedis[] = [];
  const close = async () => void (await Promise.all(nodes.map((n) => n.close())));
  try {
    for (let i = 0; i < masters; i++) {
      const port = await freePort();
      const node = new TestRedis(port, ['--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${port}.conf`, '--appendonly', 'no', '--cluster-node-timeout', '5000']);
      nodes.push(node);
      await node.launch();
    }
    const ports = nodes.map((n) => n.port);
    const create = spawnSync('redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes'], { timeout: 30_000, encoding: 'utf8' });
    if (create.status !== 0) throw new Error(`redis-cli --cluster create failed: ${create.stdout}${create.stderr}`);
    // Every node must agree that all slots are served before clients use it (bounded: 20 s).
    for (let attempt = 0; ; attempt++) {
      const states = ports.map((p) => spawnSync('redis-cli', ['-p', String(p), 'cluster', 'info'], { timeout: 5000, encoding: 'utf8' }).stdout);
      if (states.every((info) => info.includes('cluster_state:ok'))) break;
      if (attempt >= 200) throw new Error(`the cluster did not reach cluster_state:ok:\n${states.join('\n')}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    return { ports, close };
  } catch (error) {
    await close();
    throw error;
  }
}
