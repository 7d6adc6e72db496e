// Growable typed-array columns: the census's, the pool analysis's and the reachability scan's
// per-chunk lists grow by copying into a longer array of the same kind.

type Column = Float64Array | Int32Array | Uint32Array | Uint16Array | Uint8Array;

/** A typed array of a's kind, `length` elements long (>= a.length), holding a's elements first, zeros after. */
export function grownTo<T extends Column>(a: T, length: number): T {
  const b = new (a.constructor as new (n: number) => T)(length);
  b.set(a);
  return b;
}
