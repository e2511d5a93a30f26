// the list of differentiable ops the engine exports; the gradient-check test fails if one lacks a check
export const DIFFERENTIABLE_OPS = [
  // elementwise primitives
  "neg", "exp", "log", "sqrt", "rsqrt", "abs", "square", "reciprocal", "tanh", "sigmoid", "relu", "silu",
  "gelu", "geluTanh", "erf", "sin", "cos", "add", "sub", "mul", "div", "pow", "maximum", "minimum", "where",
  "clamp", "cast",
  // reductions
  "sum", "mean", "max", "min", "variance",
  // movement
  "reshape", "permute", "transpose", "expand", "squeeze", "unsqueeze", "flatten", "slice", "narrowSlice", "pad",
  "concat", "stack", "split", "chunk", "indexSelect", "indexAdd", "contiguousCopy",
  // linear algebra and nn
  "mm", "matmul", "linear", "conv2d", "upsampleNearest2d", "poolSum", "avgPool2d", "softmax", "logSoftmax",
  "scaledDotProductAttention", "layerNorm", "groupNorm", "groupNormSilu", "geglu",
  // composites
  "quickGelu", "dropout", "mseLoss", "embedding", "crossEntropy",
] as const;
