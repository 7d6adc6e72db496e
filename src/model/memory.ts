// Plain types for address spaces: mappings and modules. No imports.

/** One line of /proc/PID/maps (or one PT_LOAD / NT_FILE entry of a core file). Addresses are runtime addresses. */
export interface Mapping {
  start: number; // runtime address, inclusive
  end: number; // runtime address, exclusive
  perms: string; // e.g. "r-xp"
  offset: number; // file offset of `start` (0 for anonymous)
  dev: string; // "fd:01"
  inode: number;
  path: string; // "" for anonymous; "[heap]", "[stack]", "/usr/lib/...", "/dev/zero (deleted)", ...
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

/** A regular file opened for reading (fd, and the size fstat gave at open: reads never go past it). */
export interface OpenedFile {
  fd: number;
  size: number;
  /** dev:ino:size:mtime: a cache key that names the file, whatever path reached it. */
  identity: string;
  /** How the file is named in messages. */
  label: string;
}

/** What a file is for: each kind has its own size cap (target/target-files.ts). */
export type TargetFileKind = 'object' | 'debug-file' | 'perf-map' | 'core' | 'executable' | 'baseline';

/** Opens files a target names (debug files, perf maps, a core's NT_FILE entries) inside the target's root. */
export interface TargetFiles {
  /** A regular file of at most the kind's size cap, resolved inside the target's root; the caller closes `fd`.
   *  Throws LeakscopeError: not-found (absent, or a path escaping the root), malformed (not a regular file, too large). */
  openTargetFile(targetPath: string, kind: TargetFileKind): OpenedFile;
}

/** A loaded ELF object (executable or shared library) in a target. */
export interface Module {
  path: string; // path as the target sees it (from maps / NT_FILE)
  hostPath: string; // path leakscope opens: exactly the mapped inode (/proc/PID/map_files/START-END, or
  // /proc/self/fd/N of the file opened inside the target's root, valid until close())
  /** Opens other files the target names (this module's debug files), inside the target's root. */
  files?: TargetFiles;
  base: number; // lowest mapped runtime address of the object
  loadBias: number; // runtime address = ELF virtual address + loadBias
  mappings: Mapping[];
  buildId?: string; // hex
}
