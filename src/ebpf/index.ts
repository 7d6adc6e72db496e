// eBPF runtime in TypeScript: no libbpf, bcc or bpftrace at run time.
export * as asm from './asm.js';
export { assemble, disassemble } from './asm.js';
export * from './cleanup.js';
export * from './features.js';
export * from './maps.js';
export * from './prog.js';
export * from './ringbuf.js';
export * from './uprobe.js';
export { SyscallError, parseCpuList } from './syscalls.js';
