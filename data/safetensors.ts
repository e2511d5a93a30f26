// safetensors reader and writer at the typed-array level: validates the header before any large
// allocation, reads F32/F16/BF16/F64 into Float32Array (all at once or one tensor at a time), writes
// F32, F16 or BF16 atomically.
// The parts live in data/safetensors/: format (types, limits, header validation), read, write;
// the float16 and bfloat16 scalar conversions in data/half.ts.
export type {
  SafeDType,
  SafeTensorEntry,
  SafeTensorsHeader,
  SafeTensorData,
  SafeTensorsFile,
  ReadSafetensorsOptions,
  SafeTensorInput,
  WritableDType,
  WriteSafetensorsOptions,
} from "./safetensors/format.ts";
export {
  SAFE_DTYPE_SIZE,
  READABLE_DTYPES,
  MAX_HEADER_BYTES,
  MAX_TENSORS,
  parseSafetensorsHeader,
} from "./safetensors/format.ts";
export { f32ToF16, f16ToF32, bf16ToF32 } from "./half.ts";
export {
  readSafetensors,
  readSafetensorsEach,
  readSafetensorsFloat64,
  readSafetensorsHeader,
} from "./safetensors/read.ts";
export { serializeSafetensors, writeSafetensors, safetensorsWriter } from "./safetensors/write.ts";
