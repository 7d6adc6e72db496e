// Reading a saved document whose command is known from its `schema` field (a file given to
// a command, a watch snapshot): one entry point over the per-command parsers.

import { LeakscopeError } from '../model/errors.js';
import { parseAnalyze } from './analyze.js';
import type { AnalyzeDocument } from './analyze.js';
import { parseHeap } from './heap.js';
import type { HeapDocument } from './heap.js';
import { fail } from './json-check.js';
import { parseLeaks } from './leaks.js';
import type { LeaksDocument } from './leaks.js';
import { parseLua } from './lua.js';
import type { LuaDocument } from './lua.js';
import { parseMem } from './mem.js';
import type { MemDocument } from './mem.js';
import { parsePools } from './pools.js';
import type { PoolsDocument } from './pools.js';
import { parseWatch } from './watch.js';
import type { WatchDocument } from './watch.js';

export type LeakscopeDocument =
  | MemDocument
  | HeapDocument
  | PoolsDocument
  | LeaksDocument
  | AnalyzeDocument
  | LuaDocument
  | WatchDocument;

const PARSERS: Record<string, (doc: unknown) => LeakscopeDocument> = {
  'leakscope.mem/1': parseMem,
  'leakscope.heap/1': parseHeap,
  'leakscope.pools/1': parsePools,
  'leakscope.leaks/1': parseLeaks,
  'leakscope.analyze/1': parseAnalyze,
  'leakscope.lua/1': parseLua,
  'leakscope.watch/1': parseWatch,
};

/** Any leakscope document, told apart by its `schema`; throws `malformed` naming the first problem. */
export function parseDocument(doc: unknown): LeakscopeDocument {
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc))
    return fail('$', 'a leakscope document (a JSON object)', doc);
  const s = (doc as { schema?: unknown }).schema;
  const parse = typeof s === 'string' && Object.hasOwn(PARSERS, s) ? PARSERS[s] : undefined;
  if (!parse) return fail('$.schema', `one of ${Object.keys(PARSERS).join(', ')}`, s);
  return parse(doc);
}

/** JSON text to a value; a syntax error is `malformed` with the parser's position. */
export function parseJsonText(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new LeakscopeError('malformed', `not JSON: ${(e as Error).message}`);
  }
}
