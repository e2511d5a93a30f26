// named error classes of the project; messages read "<op or module>: <what is wrong>, got <values>"

/** A tensor shape does not fit an op (names the op and the shapes involved). */
export class ShapeError extends Error {
  override name = "ShapeError";
}
/** Tensors of different dtypes were mixed, or a dtype is not supported. */
export class DTypeError extends Error {
  override name = "DTypeError";
}
/** Tensors on different backends were mixed (names the op and the backends). */
export class BackendError extends Error {
  override name = "BackendError";
}
/** A backend lacks a kernel. */
export class UnsupportedKernelError extends Error {
  override name = "UnsupportedKernelError";
  constructor(kernel: string, backend: string) {
    super(`${kernel}: no kernel on backend "${backend}"`);
  }
}
/** A state dict does not match a model: missing, unexpected or mis-shaped keys. */
export class StateDictError extends Error {
  override name = "StateDictError";
}
/** A configuration value is missing, unknown or out of range. */
export class ConfigError extends Error {
  override name = "ConfigError";
}
/** A file is malformed, truncated or hostile (names the file and what is wrong). */
export class FormatError extends Error {
  override name = "FormatError";
}
/** Numerical failure: a singular or ill-conditioned system, a non-finite value. */
export class NumericalError extends Error {
  override name = "NumericalError";
}

/** Throws `Err(msg())` when `cond` is false; the message is built lazily. */
export function assert(cond: unknown, msg: () => string, Err: new (m: string) => Error = ShapeError): asserts cond {
  if (!cond) throw new Err(msg());
}
