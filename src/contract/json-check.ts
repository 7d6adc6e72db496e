// Validating reads of untrusted JSON documents (a `--baseline` file, a saved analysis, a watch
// snapshot). A check either returns the value as its contract type or throws
// LeakscopeError('malformed') naming the JSON path of the first problem: `$.totals.inUseChunks:
// expected a count (a non-negative integer), got "12"`.
//
// Objects keep only the fields their shape names (unknown fields, added by a later /1 writer, are
// dropped); open-ended maps (`record`) are built without a prototype, so a key like `__proto__`
// in the input stays a plain key.

import { LeakscopeError } from '../model/errors.js';

/** Checks `v` found at `path` ('$', '$.arenas[2].heaps') and returns it typed, or throws `malformed`. */
export type Check<T> = (v: unknown, path: string) => T;

/** The type a check returns. */
export type Checked<C> = C extends Check<infer T> ? T : never;

/** A short, one-line description of a bad value for messages. */
function shown(v: unknown): string {
  if (v === undefined) return 'nothing (field missing)';
  if (Array.isArray(v)) return `an array of ${v.length}`;
  if (v !== null && typeof v === 'object') return 'an object';
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 40 ? `${s.slice(0, 40)}…` : s;
}

export function fail(path: string, expected: string, got: unknown): never {
  throw new LeakscopeError('malformed', `${path}: expected ${expected}, got ${shown(got)}`);
}

export const finite: Check<number> = (v, p) =>
  typeof v === 'number' && Number.isFinite(v) ? v : fail(p, 'a number', v);

/** A count or byte size: a non-negative safe integer. */
export const count: Check<number> = (v, p) =>
  typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : fail(p, 'a count (a non-negative integer)', v);

/** A signed difference of counts or bytes (growth). */
export const integer: Check<number> = (v, p) =>
  typeof v === 'number' && Number.isSafeInteger(v) ? v : fail(p, 'an integer', v);

/** A user-space address: a non-negative safe integer. */
export const address: Check<number> = count;

/** A non-negative finite number (seconds, estimated bytes of a sampled trace). */
export const amount: Check<number> = (v, p) =>
  typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : fail(p, 'a non-negative number', v);

/** A share in [0, 1]. */
export const ratio: Check<number> = (v, p) =>
  typeof v === 'number' && Number.isFinite(v) && v >= 0 && v <= 1 ? v : fail(p, 'a ratio in [0, 1]', v);

export const string: Check<string> = (v, p) => (typeof v === 'string' ? v : fail(p, 'a string', v));

export const boolean: Check<boolean> = (v, p) => (typeof v === 'boolean' ? v : fail(p, 'true or false', v));

export function literal<T extends string>(...values: T[]): Check<T> {
  return (v, p) =>
    (values as unknown[]).includes(v) ? (v as T) : fail(p, values.map((x) => JSON.stringify(x)).join(' or '), v);
}

export function nullable<T>(c: Check<T>): Check<T | null> {
  return (v, p) => (v === null ? null : c(v, p));
}

/** A field that may be absent (a later additive field, or one written only sometimes). */
export function optional<T>(c: Check<T>): Check<T | undefined> {
  return (v, p) => (v === undefined ? undefined : c(v, p));
}

export function array<T>(c: Check<T>): Check<T[]> {
  return (v, p) => {
    if (!Array.isArray(v)) return fail(p, 'an array', v);
    const out = new Array<T>(v.length);
    for (let i = 0; i < v.length; i++) out[i] = c(v[i], `${p}[${i}]`);
    return out;
  };
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** A map with keys chosen by the writer (`sources`, `probeHits`): a prototype-less object. */
export function record<T>(c: Check<T>): Check<Record<string, T>> {
  return (v, p) => {
    if (!isPlainObject(v)) return fail(p, 'an object', v);
    const out = Object.create(null) as Record<string, T>;
    for (const k of Object.keys(v)) out[k] = c(v[k], `${p}[${JSON.stringify(k)}]`);
    return out;
  };
}

type Shape = Record<string, Check<unknown>>;
type ShapeType<S extends Shape> = { [K in keyof S]: Checked<S[K]> };

/** An object with the fields of `shape`, checked in order; other fields are dropped. */
export function object<S extends Shape>(shape: S): Check<ShapeType<S>> {
  const keys = Object.keys(shape);
  return (v, p) => {
    if (!isPlainObject(v)) return fail(p, 'an object', v);
    const out: Record<string, unknown> = {};
    for (const k of keys) {
      const r = shape[k]!(Object.hasOwn(v, k) ? v[k] : undefined, `${p}.${k}`);
      if (r !== undefined) out[k] = r;
    }
    return out as ShapeType<S>;
  };
}

/**
 * The `schema` field of a document: exactly `expected` ('leakscope.heap/1'). A later version of
 * the same command (`leakscope.heap/2`) is named as such, so the message says what to upgrade.
 */
export function schema<T extends string>(expected: T): Check<T> {
  return (v, p) => {
    if (v === expected) return expected;
    const family = expected.replace(/\/\d+$/, '/');
    if (typeof v === 'string' && v.startsWith(family))
      return fail(p, `${JSON.stringify(expected)} (this leakscope reads version ${expected.slice(family.length)})`, v);
    return fail(p, JSON.stringify(expected), v);
  };
}

/** Runs a document check from the root (`$`). */
export function parseWith<T>(check: Check<T>, doc: unknown): T {
  return check(doc, '$');
}
