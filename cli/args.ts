// small helpers over node:util parseArgs: typed numbers, lists, and readable errors
import { ConfigError } from "../engine/errors.ts";

export function num(v: string | boolean | undefined, name: string, def: number): number {
  if (v === undefined) return def;
  const n = Number(v);
  if (typeof v !== "string" || !Number.isFinite(n)) throw new ConfigError(`--${name} must be a number, got ${JSON.stringify(v)}`);
  return n;
}

export function int(v: string | boolean | undefined, name: string, def: number): number {
  const n = num(v, name, def);
  if (!Number.isInteger(n) || n < 0) throw new ConfigError(`--${name} must be a non-negative integer, got ${JSON.stringify(v)}`);
  return n;
}

export function list(v: string | boolean | (string | boolean)[] | undefined): string[] {
  if (v === undefined) return [];
  return (Array.isArray(v) ? v : [v]).filter((x): x is string => typeof x === "string");
}
