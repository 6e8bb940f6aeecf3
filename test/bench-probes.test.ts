/**
 * The bench's host probes must not load the host they read: a probe thread that spins between readings takes a
 * core from whatever the bench measures next.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { CoherenceProbe } from '../bench/coherence-probe.ts';

/** This process's CPU time (ms, every thread) over an idle `ms`. */
async function idleCpuMs(ms: number): Promise<number> {
  const before = process.cpuUsage();
  await new Promise((resolve) => setTimeout(resolve, ms));
  const { user, system } = process.cpuUsage(before);
  return (user + system) / 1000;
}

describe('coherence probe (bench)', () => {
  it('its reader sleeps from the start, not only after the first reading, and between readings', async () => {
    // Before the fix the reader spun until the first reading: the threads suite's quiet PyTorch column, timed
    // between the probe's start and its first reading, ran beside a thread spinning on a core (fifteenth session).
    // A spinning reader uses a core's worth of CPU time over the wait; asleep, nearly none. (Under load the spinner
    // would get less, so this can miss a regression on a busy machine, never fail a sleeping reader.)
    const probe = await CoherenceProbe.start();
    try {
      const waitMs = 300;
      const beforeReading = await idleCpuMs(waitMs);
      assert.ok(beforeReading < 0.5 * waitMs, `before the first reading the process used ${beforeReading.toFixed(0)} ms of CPU in ${waitMs} ms`);
      const ratio = probe.measure();
      assert.ok(ratio > 0 && Number.isFinite(ratio), `a reading: ${ratio}`);
      const afterReading = await idleCpuMs(waitMs);
      assert.ok(afterReading < 0.5 * waitMs, `between readings the process used ${afterReading.toFixed(0)} ms of CPU in ${waitMs} ms`);
    } finally {
      await probe.close();
    }
  });
});
