/**
 * The busy host of the threads and placement suites: a child process spinning on one core (`node -e 'for(;;){}'`)
 * until stopped, killed with this process too. Given a CPU, it is pinned there with `taskset` (Linux).
 *
 * Usage: `const busy = new BusyCore(); await busy.start(); …; await busy.stop();` (`new BusyCore(1)`: on CPU 1)
 */
import { spawn, type ChildProcess } from 'node:child_process';

export class BusyCore {
  private child: ChildProcess | undefined;
  private readonly onExit = () => this.child?.kill('SIGKILL');

  constructor(private readonly cpu?: number) {}

  async start(): Promise<void> {
    const loop = [process.execPath, '-e', 'for(;;){}'];
    this.child = this.cpu === undefined
      ? spawn(loop[0]!, loop.slice(1), { stdio: 'ignore' })
      : spawn('taskset', ['-c', String(this.cpu), ...loop], { stdio: 'ignore' });
    process.once('exit', this.onExit);
    // Let it get scheduled and reach its loop before anything is timed.
    await new Promise((resolve) => setTimeout(resolve, 200));
    if (this.child.exitCode !== null) throw new Error(`the busy-loop child exited with code ${this.child.exitCode}`);
  }

  async stop(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    process.removeListener('exit', this.onExit);
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
  }
}
