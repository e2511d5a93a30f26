// The command line's argument parser: options declared once (type, placeholder, help), parsed with
// one-line errors that name the flag and the accepted values (negative numbers are values, not flags;
// unknown flags get a suggestion), typed numbers with ranges, and per-command help built from the table.
import * as fs from "node:fs";
import * as path from "node:path";
import { ConfigError } from "../engine/errors.ts";

/** A misuse of the command line (exit status 2): a flag, value or combination the command does not accept. */
export class UsageError extends ConfigError {
  override name = "UsageError";
}

/** One option of a command. */
export interface OptSpec {
  type: "string" | "boolean";
  /** may be given several times (values collected in order) */
  multiple?: boolean;
  /** placeholder shown in help, e.g. "DIR", "N" */
  arg?: string;
  help: string;
}

export type OptTable = Record<string, OptSpec>;
export type Values = Record<string, string | boolean | string[] | undefined>;

const NUMBER_LIKE = /^-(\d|\.\d|inf|nan)/i;

/** Edit distance, for "did you mean". */
function distance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
  }
  return d[a.length]![b.length]!;
}

/** The closest of `names` to `name`, when close enough to be a likely typo. */
export function suggest(name: string, names: readonly string[]): string | null {
  let best: string | null = null,
    bd = Infinity;
  for (const n of names) {
    const d = distance(name, n);
    if (d < bd) [best, bd] = [n, d];
  }
  const prefix = names.filter((n) => n.startsWith(name) || name.startsWith(n));
  if (prefix.length === 1) return prefix[0]!;
  return best !== null && bd <= Math.max(2, Math.floor(name.length / 3)) ? best : null;
}

/**
 * Parses `argv` against `table`. `--name value`, `--name=value` and `--flag`; a value may start with a
 * dash when it reads as a number (`--seed -1` is refused by the range check, not by the parser).
 * Throws UsageError (one line) for an unknown flag (with a suggestion), a missing value, a value
 * given to a boolean, a repeated single flag, or a stray positional argument. `-h`/`--help` sets `help`.
 */
export function parseOptions(cmd: string, argv: readonly string[], table: OptTable): { values: Values; help: boolean } {
  const values: Values = {};
  let help = false;
  const names = Object.keys(table);
  for (let i = 0; i < argv.length; i++) {
    const tok = argv[i]!;
    if (tok === "-h" || tok === "--help") {
      help = true;
      continue;
    }
    if (!tok.startsWith("--") || tok === "--") {
      const hint =
        tok.startsWith("-") && !NUMBER_LIKE.test(tok)
          ? ` (options start with two dashes: --${tok.replace(/^-+/, "")})`
          : "";
      throw new UsageError(`unexpected argument "${tok}"${hint}; see cdiff ${cmd} --help`);
    }
    const eq = tok.indexOf("=");
    const name = tok.slice(2, eq < 0 ? undefined : eq);
    const spec = table[name];
    if (!spec) {
      const s = suggest(name, names);
      throw new UsageError(
        `unknown option --${name} for ${cmd}${s ? `; did you mean --${s}?` : ""} (see cdiff ${cmd} --help)`,
      );
    }
    let value: string | boolean;
    if (spec.type === "boolean") {
      if (eq >= 0) throw new UsageError(`--${name} is a switch and takes no value, got "${tok.slice(eq + 1)}"`);
      value = true;
    } else if (eq >= 0) {
      value = tok.slice(eq + 1);
    } else {
      const next = argv[i + 1];
      if (next === undefined)
        throw new UsageError(`--${name} needs a value (${spec.arg ?? "VALUE"}), and none follows it`);
      if (next.startsWith("-") && next !== "-" && !NUMBER_LIKE.test(next))
        throw new UsageError(`--${name} needs a value (${spec.arg ?? "VALUE"}), got the option ${next}`);
      value = next;
      i++;
    }
    if (spec.multiple) {
      const cur = values[name];
      values[name] = [...(Array.isArray(cur) ? cur : []), value as string];
    } else {
      if (values[name] !== undefined)
        throw new UsageError(
          `--${name} is given twice (${JSON.stringify(values[name])} and ${JSON.stringify(value)}); give it once`,
        );
      values[name] = value;
    }
  }
  return { values, help };
}

/** Help text of one command: its usage line, description and options (from the table). */
export function commandHelp(cmd: string, usage: string, about: string, table: OptTable): string {
  const rows = Object.entries(table).map(
    ([n, s]) =>
      [`--${n}${s.type === "string" ? ` ${s.arg ?? "VALUE"}` : ""}${s.multiple ? " ..." : ""}`, s.help] as const,
  );
  const w = Math.min(30, Math.max(...rows.map(([a]) => a.length)) + 2);
  return `usage: cdiff ${cmd} ${usage}\n\n${about}\n\noptions:\n${rows.map(([a, h]) => `  ${a.padEnd(w)}${a.length >= w ? `\n  ${" ".repeat(w)}` : ""}${h}`).join("\n")}\n  --help${" ".repeat(Math.max(1, w - 6))}this help\n`;
}

function str(v: string | boolean | string[] | undefined): string | undefined {
  return typeof v === "string" ? v : undefined;
}

/** A number flag in [min, max] (`exclusiveMin` makes min open); `def` when absent. */
export function num(
  v: string | boolean | string[] | undefined,
  name: string,
  def: number,
  range: { min?: number; max?: number; exclusiveMin?: boolean } = {},
): number {
  const s = str(v);
  if (s === undefined) return def;
  const n = s.trim() === "" ? NaN : Number(s);
  const { min = -Infinity, max = Infinity, exclusiveMin = false } = range;
  const want = rangeText(min, max, exclusiveMin, "a number");
  if (!Number.isFinite(n)) throw new UsageError(`--${name} must be ${want}, got "${s}"`);
  if (n < min || (exclusiveMin && n === min) || n > max) throw new UsageError(`--${name} must be ${want}, got ${s}`);
  return n;
}

/** An integer flag in [min, max] (default range: 0 and up); `def` when absent. */
export function int(
  v: string | boolean | string[] | undefined,
  name: string,
  def: number,
  range: { min?: number; max?: number } = {},
): number {
  const s = str(v);
  if (s === undefined) return def;
  const { min = 0, max = Number.MAX_SAFE_INTEGER } = range;
  const n = s.trim() === "" ? NaN : Number(s);
  if (!Number.isSafeInteger(n) || n < min || n > max)
    throw new UsageError(`--${name} must be ${rangeText(min, max, false, "an integer")}, got ${JSON.stringify(s)}`);
  return n;
}

function rangeText(min: number, max: number, exclusiveMin: boolean, what: string): string {
  const lo = Number.isFinite(min),
    hi = Number.isFinite(max) && max < Number.MAX_SAFE_INTEGER;
  if (lo && hi) return `${what} from ${min}${exclusiveMin ? " (exclusive)" : ""} to ${max}`;
  if (lo)
    return exclusiveMin
      ? `${what} above ${min}`
      : min === 0 && what === "an integer"
        ? "a non-negative integer"
        : `${what} of at least ${min}`;
  if (hi) return `${what} of at most ${max}`;
  return what;
}

/** One of `choices`; `def` when absent. */
export function choice<T extends string>(
  v: string | boolean | string[] | undefined,
  name: string,
  def: T,
  choices: readonly T[],
): T {
  const s = str(v);
  if (s === undefined) return def;
  if (!(choices as readonly string[]).includes(s)) {
    const g = suggest(s, choices);
    throw new UsageError(
      `--${name} must be one of ${choices.join(", ")}, got "${s}"${g ? ` (did you mean ${g}?)` : ""}`,
    );
  }
  return s as T;
}

/** A string flag's value, or a UsageError naming what the command needs. */
export function required(v: string | boolean | string[] | undefined, name: string, cmd: string, what: string): string {
  const s = str(v);
  if (s === undefined || s === "") throw new UsageError(`${cmd} needs --${name} ${what}`);
  return s;
}

/** The values of a repeatable flag. */
export function list(v: string | boolean | (string | boolean)[] | undefined): string[] {
  if (v === undefined) return [];
  return (Array.isArray(v) ? v : [v]).filter((x): x is string => typeof x === "string");
}

/** Refuses the same folder given twice to a repeatable flag (compared by real path). */
export function distinctPaths(dirs: readonly string[], name: string, why: string): void {
  const seen = new Map<string, string>();
  for (const d of dirs) {
    let key = path.resolve(d);
    try {
      key = fs.realpathSync(d);
    } catch {
      // missing: reported when it is read
    }
    const prev = seen.get(key);
    if (prev !== undefined)
      throw new UsageError(`--${name} ${d} is given twice${prev !== d ? ` (also as ${prev})` : ""}; ${why}`);
    seen.set(key, d);
  }
}
