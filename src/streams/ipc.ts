/**
 * Arrow IPC input, split by job: framing and IpcFormatError (ipc-framing.ts), the flatbuffer
 * metadata verifier (ipc-verify.ts), decoding into batches (ipc-decode.ts) and the file, stream
 * and TCP sources (ipc-sources.ts). This module re-exports the public names so existing imports
 * of './streams/ipc.ts' keep working.
 *
 * Usage: `import { ipcSource, batchesFromIpc, IpcFormatError } from './ipc.ts';`
 */
export { IpcFormatError } from './ipc-framing.ts';
export type { IpcSourceOptions } from './ipc-framing.ts';
export { batchesFromIpc, validateBatch } from './ipc-decode.ts';
export { ipcSource, ipcSource$, tcpIpcSource } from './ipc-sources.ts';
export type { IpcInput } from './ipc-sources.ts';
