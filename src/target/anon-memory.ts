// Private anonymous memory owned by leakscope (mmap through libc), for large copies of a
// target's memory whose parts can be handed back to the kernel while the rest is in use:
// `discard` is madvise(MADV_DONTNEED) (the pages read as zeros afterwards and cost no RSS);
// a Buffer freed by the GC would instead stay in malloc's heap. `free` unmaps: every view
// handed out must be dropped before (the owner guarantees it; reading after free crashes).

import koffi from 'koffi';
import { LeakscopeError } from '../model/errors.js';

const PROT_READ = 1,
  PROT_WRITE = 2,
  MAP_PRIVATE = 0x02,
  MAP_ANONYMOUS = 0x20,
  MADV_DONTNEED = 4,
  MADV_HUGEPAGE = 14,
  HUGE = 2 << 20,
  PAGE = 4096;
const MAP_FAILED = 0xffffffffffffffffn;

type KoffiFn = ReturnType<ReturnType<typeof koffi.load>['func']>;
let libc: { mmap: KoffiFn; munmap: KoffiFn; madvise: KoffiFn } | undefined;
function fns() {
  if (!libc) {
    const lib = koffi.load('libc.so.6');
    libc = {
      mmap: lib.func('void *mmap(void *addr, size_t length, int prot, int flags, int fd, int64_t offset)'),
      munmap: lib.func('int munmap(void *addr, size_t length)'),
      madvise: lib.func('int madvise(void *addr, size_t length, int advice)'),
    };
  }
  return libc;
}

export class AnonMemory {
  /** The whole mapping (length rounded up to pages); zero-filled, pages committed on first write. */
  readonly buffer: ArrayBuffer;
  private addr: bigint;
  private readonly mapped: number;

  constructor(readonly length: number) {
    this.mapped = Math.max(PAGE, Math.ceil(length / PAGE) * PAGE);
    const a = fns().mmap(null, this.mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) as bigint;
    if (a === MAP_FAILED || a === 0n)
      throw new LeakscopeError('io', `cannot map ${this.mapped} bytes of memory (errno ${koffi.errno()})`);
    this.addr = a;
    // Transparent huge pages where the system allows them on request: random reads over a copy
    // of hundreds of MB otherwise miss the TLB on almost every access. Advisory; failure is fine.
    if (this.mapped >= HUGE) fns().madvise(a, this.mapped, MADV_HUGEPAGE);
    this.buffer = koffi.view(a, this.mapped) as ArrayBuffer;
  }

  /** Hands the whole pages inside [off, off+len) back to the kernel (they read as zeros after). */
  discard(off: number, len: number): number {
    const a = Math.ceil(off / PAGE) * PAGE,
      b = Math.min(this.mapped, Math.floor((off + len) / PAGE) * PAGE);
    if (b <= a || this.addr === 0n) return 0;
    fns().madvise(this.addr + BigInt(a), b - a, MADV_DONTNEED);
    return b - a;
  }

  /** Unmaps (idempotent). No view of `buffer` may be used afterwards. */
  free(): void {
    if (this.addr === 0n) return;
    fns().munmap(this.addr, this.mapped);
    this.addr = 0n;
  }
}
