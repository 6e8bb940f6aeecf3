/**
 * The ONNX error type on its own: the public API (and so the shipped .d.ts) names it without reaching
 * onnx-proto's declarations, which need protobufjs's global `Long` type that consumers do not have.
 */

/** A file that is not an ONNX model rxgrad can read; names the node, tensor or field at fault. */
export class OnnxError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'OnnxError';
  }
}
