// The few error kinds leakscope raises. Each has a stable `code` a caller can match and
// an exit status the CLI uses; messages say what was expected, what was found, and where.

export type ErrorCode =
  | 'usage' // bad command line
  | 'no-such-process'
  | 'kernel-thread' // a PID with no user address space
  | 'permission' // needs root or CAP_SYS_PTRACE / CAP_BPF / CAP_PERFMON
  | 'not-elf'
  | 'truncated' // a file or memory image shorter than its headers say
  | 'malformed' // a structure that fails validation
  | 'unreadable' // memory that cannot be read (unmapped, gone)
  | 'not-found' // a symbol, mapping or structure that is not there
  | 'not-supported' // a kernel / glibc / nginx feature missing or too old
  | 'io';

/** Exit status per error code (0 = success, 1 = unexpected internal error). */
export const EXIT_CODES: Record<ErrorCode, number> = {
  usage: 2,
  'no-such-process': 3,
  'kernel-thread': 4,
  permission: 5,
  'not-elf': 6,
  truncated: 7,
  malformed: 8,
  unreadable: 9,
  'not-found': 10,
  'not-supported': 11,
  io: 12,
};

export class LeakscopeError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'LeakscopeError';
  }
  /** Same error with context prepended: `"load libc.so.6: <message>"`. */
  wrap(context: string): LeakscopeError {
    return new LeakscopeError(this.code, `${context}: ${this.message}`, { cause: this });
  }
}

export function isLeakscopeError(e: unknown): e is LeakscopeError {
  return e instanceof LeakscopeError;
}
