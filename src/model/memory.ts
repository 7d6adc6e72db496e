// Plain types for address spaces: mappings and modules. No imports.

/** One line of /proc/PID/maps (or one PT_LOAD / NT_FILE entry of a core file). Addresses are runtime addresses. */
export interface Mapping {
  start: number;       // runtime address, inclusive
  end: number;         // runtime address, exclusive
  perms: string;       // e.g. "r-xp"
  offset: number;      // file offset of `start` (0 for anonymous)
  dev: string;         // "fd:01"
  inode: number;
  path: string;        // "" for anonymous; "[heap]", "[stack]", "/usr/lib/...", "/dev/zero (deleted)", ...
}

/** Per-mapping memory accounting from /proc/PID/smaps (bytes). */
export interface MappingUsage {
  rss: number;
  pss: number;
  swap: number;
  anonymous: number;
  privateDirty: number;
}

export type MappingWithUsage = Mapping & { usage?: MappingUsage };

/** A loaded ELF object (executable or shared library) in a target. */
export interface Module {
  path: string;        // path as the target sees it (from maps / NT_FILE)
  hostPath: string;    // path to open from leakscope (through /proc/PID/root for containers)
  base: number;        // lowest mapped runtime address of the object
  loadBias: number;    // runtime address = ELF virtual address + loadBias
  mappings: Mapping[];
  buildId?: string;    // hex
}
