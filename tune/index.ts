// the Custom Diffusion method: training, deltas, merge, compression, stacking, analysis, evaluation.
// The public surface is listed by name; helpers the modules share (linear-algebra kernels of the merge,
// chart drawing primitives, file plumbing) stay internal to tune/.

// data and augmentation
export { listImages, loadImages, augmentInstance, prepareClassImage } from "./dataset.ts";
export type { ConceptSpec, AugmentOptions, TrainExample } from "./dataset.ts";
// which parameters train
export { FREEZE_MODELS, isTrained, selectParameters } from "./params.ts";
export type { FreezeModel, Selection } from "./params.ts";
// modifier tokens
export {
  DEFAULT_INITIALIZERS,
  defaultModifierTokens,
  resolveInitializers,
  addModifierTokens,
  tokenRows,
  installTokens,
} from "./tokens.ts";
export type { InstallTokensOptions } from "./tokens.ts";
// training
// the public API spells American (customize, analyze, regularization); the British names stay as aliases
export { customise as customize, latestCheckpoint } from "./train.ts";
export type { CustomiseOptions as CustomizeOptions, CustomiseResult as CustomizeResult } from "./train.ts";
export { customise } from "./train.ts";
export type { CustomiseOptions, CustomiseResult } from "./train.ts";
// deltas
export {
  DELTA_WEIGHTS,
  toDeltaKey,
  fromDeltaKey,
  baseFingerprint,
  extractDelta,
  saveDelta,
  loadDelta,
  applyDeltaToUNet,
  assertFiniteDelta,
  checkSameBase,
  renumberTokens,
  rewritePrompt,
} from "./delta.ts";
export type { Delta, HostTensor, SaveDeltaOptions } from "./delta.ts";
// deltas from PyTorch files (diffusers .bin, the authors' delta.bin / .ckpt), read without executing them
export {
  readTorchDelta,
  deltaFromTorch,
  compvisToDiffusersKey,
  diffusersToCompvisKey,
  freezeModelOf,
} from "./convert.ts";
export type { TorchDelta, TorchDeltaFormat, TorchDeltaOptions } from "./convert.ts";
// closed-form merge (paper eqs. 4-5)
export {
  prepareMerge,
  mergeMatrix,
  tokenFeatures,
  readCaptions,
  mergeDeltas,
  formatMergeReport,
  saveMerged,
} from "./merge.ts";
export type {
  PrepareOptions,
  MergePlan,
  MatrixMerge,
  MergeBase,
  MergeOptions,
  MergeReport,
  MergeResult,
} from "./merge.ts";
// low-rank compression
export {
  COMPRESSED_WEIGHTS,
  rankForRatio,
  compressDelta,
  formatCompression,
  saveCompressed,
  isCompressed,
  loadCompressed,
  loadAnyDelta,
} from "./compress.ts";
export type { CompressedLayer, CompressedDelta, CompressOptions } from "./compress.ts";
// stacking
export { stackDeltas, applyDeltas } from "./stack.ts";
export type { StackResult } from "./stack.ts";
// weight-change analysis (paper Fig. 3) and its chart
export { LAYER_GROUPS, layerGroup, analyzeWeights, analysisCsv, writeAnalysis, formatAnalysis } from "./analyze.ts";
export type { LayerGroup, LayerChange, GroupSummary, WeightAnalysis, AnalysisFiles } from "./analyze.ts";
export { barChart, writeBarChart } from "./chart.ts";
export type { RGB, Bar, BarChartOptions } from "./chart.ts";
// evaluation
export {
  clipPixelValues,
  clipScorer,
  cosine,
  textAlignment,
  imageAlignment,
  polyKernel,
  mmdUnbiased,
  kid,
  scoringPrompt,
  evaluate,
  formatEvaluation,
} from "./evaluate.ts";
export type { FeatureScorer, KidResult, KidSubsets, KidOptions, EvaluateInputs, EvaluateReport } from "./evaluate.ts";
// regularisation images: retrieval from a captioned corpus, or generation
export { readCorpus, retrieveRegularisation as retrieveRegularization, retrieveRegularisation } from "./retrieve.ts";
export type { TextFeatureFn, CorpusEntry, RetrievalOptions, ScoredEntry, RetrievalResult } from "./retrieve.ts";
export {
  DEFAULT_REG_CACHE,
  generateRegularisation as generateRegularization,
  generateRegularisation,
} from "./generate_reg.ts";
export type { GenerateRegOptions, GenerateRegResult } from "./generate_reg.ts";
export { addRegularisation as addRegularization, addRegularisation, pipelineTextFeatures } from "./regularisation.ts";
export type { RegularisationSource } from "./regularisation.ts";
export { TrainingLoop, due, formatDuration, resumeFrom } from "./loop.ts";
export type { Progress } from "./loop.ts";
