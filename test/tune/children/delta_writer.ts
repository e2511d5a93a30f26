// child process of delta_atomic.test.ts: writes delta "A" or "B" into a folder (CDIFF_CRASH_AT may kill it mid-write)
import { deltaOf } from "./deltas.ts";
import { saveDelta } from "../../../tune/delta.ts";

if (process.env.CDIFF_TEST_CHILD === "delta-writer") {
  const [dir, which] = process.argv.slice(2) as [string, "A" | "B"];
  const { delta, config } = deltaOf(which);
  saveDelta(dir, delta, {}, { json: { "custom_diffusion_config.json": config } });
  process.stdout.write("written\n");
}
