/** Recommendation: models from public layers, top-k, ranking metrics, baselines, data. */
export { biasedMatrixFactorization, neuralRecommender } from './models.ts';
export type { RecommenderOptions, NeuralRecommenderOptions } from './models.ts';
export { Recommender, rankingMetrics, itemsByUser } from './recommend.ts';
export type { RecommendOptions, Recommendation, Interactions, RankingMetrics } from './recommend.ts';
export { fitBiases, truncatedSvd, regressionErrors, symmetricEigen } from './svd.ts';
export type { BiasModel, TruncatedSvd, TruncatedSvdOptions } from './svd.ts';
export { syntheticRatings } from './synthetic.ts';
export type { SyntheticRatings, SyntheticRatingsOptions } from './synthetic.ts';
export { parseMovieLens, readMovieLens, MovieLensFormatError } from './movielens.ts';
export type { MovieLensRatings, MovieLensFormat } from './movielens.ts';
export { RatingAccumulator, ratingBatches, interactionBatches } from './ratings.ts';
export type { RatingRecord, RatingBatchOptions } from './ratings.ts';
