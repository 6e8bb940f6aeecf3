// Type-checked (not run) by test/package.test.ts against the .d.ts files shipped in the tarball.
import { adam, dense, loadDataFile, relu, sequential, softmaxCrossEntropy, serve, type Model, type PredictionServer, type StepReport, type TabularDataset } from 'rxgrad';

const model: Model = sequential([dense(8), relu(), dense(3)], { inputShape: [4], seed: 1 });
const fit = model.fit({ loss: softmaxCrossEntropy(), optimizer: adam({ learningRate: 1e-3 }) });
export const report = (r: StepReport): string => `${r.step}: ${r.loss.toFixed(3)}`;
export async function load(path: string): Promise<TabularDataset> {
  return loadDataFile(path, { label: 'species' });
}
export async function start(): Promise<string> {
  const server: PredictionServer = await serve(model, { port: 0, maxBatch: 32, maxWaitMs: 2 });
  await server.close();
  return server.url;
}
// @ts-expect-error: the shipped types reject a string where a shape is expected.
sequential([dense(1)], { inputShape: '4' });
export { fit };
