export type { Dataset } from './dataset.ts';
export { exampleSize } from './dataset.ts';
export { loadEmbeddedMnist, EMBEDDED_MNIST_SIZE } from './mnist.ts';
export type { EmbeddedMnistOptions } from './mnist.ts';
export { readIdx, readIdxFile, loadFashionMnist, IdxFormatError, FASHION_MNIST_DIR } from './idx.ts';
export type { IdxDtype, IdxData, IdxTensor, FashionMnistOptions } from './idx.ts';
