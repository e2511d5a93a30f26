// Browser stand-in for node:url: file URLs map to their path (the in-memory file system's paths).
export function fileURLToPath(u: string | URL): string {
  return decodeURIComponent(new URL(String(u)).pathname);
}
export function pathToFileURL(p: string): URL {
  return new URL("file://" + encodeURI(p));
}
export default { fileURLToPath, pathToFileURL };
