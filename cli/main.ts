// cdiff: the command line - customise, sample (with one or several deltas), merge, compress, stack,
// analyze, eval, convert; thin over tune/ and models/, one file per command in cli/commands/. Every error
// is one line naming the flag, file or value at fault; exit status 2 for a misuse of the command line,
// 1 for a failure. The global option --backend NAME (before or after the command word) picks the
// engine's backend for the run.
import { backendNames, setDefaultBackend } from "../engine/index.ts";
import type { OptSpec, Values } from "./args.ts";
import { UsageError, choice, commandHelp, parseOptions, suggest } from "./args.ts";
import type { Command } from "./common.ts";
import { customiseCmd } from "./commands/customise.ts";
import { sampleCmd } from "./commands/sample.ts";
import { mergeCmd } from "./commands/merge.ts";
import { compressCmd } from "./commands/compress.ts";
import { convertCmd } from "./commands/convert.ts";
import { stackCmd } from "./commands/stack.ts";
import { analyzeCmd } from "./commands/analyze.ts";
import { evalCmd } from "./commands/eval.ts";

/** --backend: accepted by every command, before or after the command word. */
const BACKEND_OPTION: OptSpec = {
  type: "string",
  arg: "NAME",
  help: "the engine's backend for this run: cpu | gpujs (cpu, or CDIFF_BACKEND)",
};

const COMMANDS: Record<string, Command> = {
  customise: customiseCmd,
  customize: customiseCmd,
  sample: sampleCmd,
  merge: mergeCmd,
  compress: compressCmd,
  stack: stackCmd,
  analyze: analyzeCmd,
  eval: evalCmd,
  convert: convertCmd,
};

const HELP = `cdiff - Custom Diffusion on a pure-TypeScript engine

usage: cdiff <command> [options]      cdiff <command> --help lists a command's options

commands:
  customise   fine-tune a model on a concept (folder of images + prompt) and write a delta
  sample      generate images from a model, optionally with one or more deltas applied
  merge       merge several deltas into one in closed form (constrained least squares)
  compress    store a delta in low-rank form (truncated SVD of W - W0)
  stack       add several deltas' changes onto the base (W0 + sum_i (W_i - W0))
  analyze     per-layer weight change ||W' - W|| / ||W|| between a base and a fine-tuned model (JSON, CSV, PNG)
  eval        text-alignment, image-alignment and KID of generated images with a CLIP model
  convert     read a delta from PyTorch files (diffusers .bin, the authors' delta.bin / .ckpt) without executing them

${Object.entries(COMMANDS)
  .filter(([n]) => n !== "customize")
  .map(([n, c]) => `cdiff ${n} ${c.usage}`)
  .join("\n")}

Global option (every command, before or after the command word): --backend NAME, the engine's backend (cpu | gpujs).

Exit status: 0 done, 1 failed (a file, the data or the training), 2 misuse of the command line.
`;

/** The help text of `cmd`, or the overview. */
export function helpText(cmd?: string): string {
  const c = cmd ? COMMANDS[cmd] : undefined;
  return c ? commandHelp(cmd!, c.usage, c.about, { ...c.options, backend: BACKEND_OPTION }) : HELP;
}

/** One line: a message's lines joined. */
function oneLine(s: string): string {
  return s
    .split(/\s*\n\s*/)
    .filter(Boolean)
    .join("; ");
}

/** Leading global options (before the command word): `--backend NAME` or `--backend=NAME`. */
function globalOptions(argv: readonly string[]): { backend?: string; rest: string[] } {
  let backend: string | undefined;
  let i = 0;
  for (; i < argv.length; i++) {
    const tok = argv[i]!;
    let value: string;
    if (tok.startsWith("--backend=")) value = tok.slice("--backend=".length);
    else if (tok === "--backend") {
      const next = argv[i + 1];
      if (next === undefined || next.startsWith("-"))
        throw new UsageError(
          `--backend needs a value (${BACKEND_OPTION.arg}), ${next === undefined ? "and none follows it" : `got the option ${next}`}`,
        );
      value = next;
      i++;
    } else break;
    if (backend !== undefined)
      throw new UsageError(
        `--backend is given twice (${JSON.stringify(backend)} and ${JSON.stringify(value)}); give it once`,
      );
    backend = value;
  }
  return { ...(backend !== undefined ? { backend } : {}), rest: argv.slice(i) };
}

/** Sets the engine's default backend; an unknown name is a usage error, an unavailable backend a failure. */
function useBackend(name: Values[string]): void {
  setDefaultBackend(choice(name, "backend", "cpu", backendNames()));
}

export function main(argv: string[]): number {
  let global: { backend?: string; rest: string[] };
  try {
    global = globalOptions(argv);
    if (global.backend !== undefined && global.rest.length === 0) useBackend(global.backend);
  } catch (e) {
    console.error(`cdiff: ${e instanceof UsageError ? "" : `${(e as Error).name}: `}${oneLine((e as Error).message)}`);
    return e instanceof UsageError ? 2 : 1;
  }
  const [cmd, ...rest] = global.rest;
  if (!cmd || cmd === "help" || cmd === "--help" || cmd === "-h") {
    const about = cmd === "help" ? rest[0] : undefined;
    if (about !== undefined && !COMMANDS[about]) {
      console.error(`cdiff help: unknown command "${about}" (commands: ${Object.keys(COMMANDS).join(", ")})`);
      return 2;
    }
    console.log(helpText(about));
    return 0;
  }
  const c = COMMANDS[cmd];
  if (!c) {
    const s = suggest(cmd, Object.keys(COMMANDS));
    console.error(
      `cdiff: unknown command "${cmd}"${s ? `; did you mean ${s}?` : ""} (commands: ${Object.keys(COMMANDS)
        .filter((n) => n !== "customize")
        .join(", ")}; cdiff --help)`,
    );
    return 2;
  }
  try {
    const { values, help } = parseOptions(cmd, rest, { ...c.options, backend: BACKEND_OPTION });
    if (help) {
      console.log(helpText(cmd));
      return 0;
    }
    if (global.backend !== undefined && values.backend !== undefined)
      throw new UsageError(
        `--backend is given twice (${JSON.stringify(global.backend)} before the command and ${JSON.stringify(values.backend)} after it); give it once`,
      );
    const backend = global.backend ?? values.backend;
    if (backend !== undefined) useBackend(backend);
    c.run(values, cmd);
    return 0;
  } catch (e) {
    const err = e instanceof Error ? e : new Error(String(e));
    const usage = err instanceof UsageError;
    const named = !usage && err.name && err.name !== "Error" ? `${err.name}: ` : "";
    console.error(`cdiff ${cmd}: ${named}${oneLine(err.message)}`);
    if (process.env.CDIFF_DEBUG) console.error(err.stack);
    return usage ? 2 : 1;
  }
}

// run directly (`tsx cli/main.ts`); the cdiff bin imports main() and calls it
if (process.argv[1] && /cli[\\/]main\.[jt]s$/.test(process.argv[1])) process.exitCode = main(process.argv.slice(2));
