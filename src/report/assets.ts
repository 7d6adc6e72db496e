// The HTML report's assets (style sheet, page script, flame graph script) are real files in
// src/report/assets/, copied by the build (scripts/build.mjs) to dist/src/report/assets/ beside
// this module, which `npm pack` ships with dist/src. Read once per process, on first use; the
// report's CSP hashes are computed from exactly the text read here.

import { readFileSync } from 'node:fs';
import { LeakscopeError } from '../model/errors.js';

const cache = new Map<string, string>();

/** Where an asset is: beside this module (the build copies it there), else in the source tree (a build by tsc alone). */
function candidates(name: string): URL[] {
  return [new URL(`./assets/${name}`, import.meta.url), new URL(`../../../src/report/assets/${name}`, import.meta.url)];
}

/** The text of one asset of the report ('report.css', 'report.js', 'flamegraph.js'). */
export function reportAsset(name: string): string {
  const have = cache.get(name);
  if (have !== undefined) return have;
  for (const url of candidates(name)) {
    let text: string;
    try {
      text = readFileSync(url, 'utf8');
    } catch {
      continue;
    }
    cache.set(name, text);
    return text;
  }
  throw new LeakscopeError(
    'not-found',
    `report asset ${name} missing beside ${new URL('.', import.meta.url).pathname} (run npm run build)`,
  );
}
