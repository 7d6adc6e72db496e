// One cold run of what `leakscope pools PID` does, in a fresh process (spawned by pools.ts):
// the census with its chunk list, then the pool analysis, each timed once, JIT and symbol
// tables cold. Prints one JSON line: { censusMs, poolsMs }.
import { Symbolizer } from '../src/symbols/index.js';
import { LiveProcess } from '../src/target/index.js';
import { censusWithChunks } from '../src/nginx/census-chunks.js';
import { analyzePools } from '../src/nginx/pools.js';

const space = LiveProcess.open(Number(process.argv[2]));
const symbolizer = new Symbolizer(space.modules());
let t = performance.now();
const c = censusWithChunks(space, { symbolizer });
const censusMs = performance.now() - t;
t = performance.now();
analyzePools(space, { chunks: c.chunks, symbolizer, histogram: c.census.histogram });
const poolsMs = performance.now() - t;
space.close();
console.log(JSON.stringify({ censusMs, poolsMs }));
