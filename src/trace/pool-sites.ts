// Where pool mode probes: at the call sites of ngx_create_pool (in nginx and in every dynamic
// module that imports it), after the call where rax holds the new pool, leaving out the sites
// whose pools nginx owns and destroys itself (nginx/pool-site-owners.ts). A request then costs no
// probe hit unless a module creates a pool of its own.
//
// Falls back to one probe inside ngx_create_pool (every pool, today's cost) when a module's
// references to ngx_create_pool are not all proven call sites (trace/callee-sites.ts), or when asked
// (`--all-pool-sites`).

import { basename } from 'node:path';
import type { ElfFile, ElfSymbol } from '../formats/elf/index.js';
import type { Module, PoolSiteEntry, PoolSiteReport } from '../model/index.js';
import { type OwnedSiteRule, ownedSiteRule } from '../nginx/pool-site-owners.js';
import type { Symbolizer } from '../symbols/index.js';
import { type CalleeSite, findCalleeSites } from './callee-sites.js';

export const POOL_CREATE = 'ngx_create_pool';

export interface PlannedSite extends PoolSiteEntry {
  /** The module's mapping (for the probe's binary path). */
  mod: Module;
}

export interface PoolSitePlan {
  report: PoolSiteReport;
  /** Sites to probe (placement 'call-sites'). */
  probes: PlannedSite[];
}

/**
 * Plans pool mode's probes over the target's modules. `nginx` is the module defining ngx_create_pool.
 * Pure apart from reading the modules' ELF files (through the symbolizer's cache).
 */
export function planPoolSites(symbolizer: Symbolizer, nginx: Module): PoolSitePlan {
  const probed: PlannedSite[] = [],
    skipped: PlannedSite[] = [];
  const body = (reason: string): PoolSitePlan => ({
    report: { placement: 'body', reason, probed: [], skipped: [] },
    probes: [],
  });
  const seen = new Set<string>();
  for (const mod of symbolizer.modules) {
    if (seen.has(mod.path)) continue;
    seen.add(mod.path);
    const syms = symbolizer.symbolsOf(mod);
    if (!syms) {
      if (mod.path === nginx.path) return body(`${nginx.path} unreadable`);
      continue;
    }
    const elf = syms.elf;
    // Only objects that define or import ngx_create_pool can call it directly.
    if (!elf.symbols().some((s) => s.name.split('@')[0] === POOL_CREATE)) continue;
    const found = findCalleeSites(elf, POOL_CREATE);
    if (!found.trusted) return body(`${basename(mod.path)}: ${found.problems[0] ?? 'call sites not proven'}`);
    const isNginx = mod.path === nginx.path;
    const names = functionNames(elf, syms.debug?.elf);
    const byRule = new Map<OwnedSiteRule, PlannedSite[]>();
    for (const site of found.sites) {
      const ctx = names(site);
      const entry: PlannedSite = {
        mod,
        module: mod.path,
        function: ctx.function ?? `${basename(mod.path)}+0x${site.functionStart.toString(16)}`,
        callVaddr: site.callVaddr,
        via: site.via,
        probeVaddr: site.probeVaddr,
        emulated: site.probeEmulated,
      };
      // Only nginx's own code is recognized; dynamic modules' sites are always probed.
      const rule = isNginx ? ownedSiteRule(ctx) : undefined;
      if (!rule) {
        probed.push(entry);
        continue;
      }
      let list = byRule.get(rule);
      if (!list) byRule.set(rule, (list = []));
      list.push({ ...entry, owner: rule.owner, source: rule.source });
    }
    for (const [rule, list] of byRule) {
      if (list.length <= rule.maxSites) skipped.push(...list);
      // More sites than nginx has there: something else lies in that range; probe them all.
      else probed.push(...list.map(({ owner: _o, source: _s, ...e }) => e));
    }
  }
  const strip = ({ mod: _m, ...e }: PlannedSite): PoolSiteEntry => e;
  return {
    report: { placement: 'call-sites', probed: probed.map(strip), skipped: skipped.map(strip) },
    probes: probed,
  };
}

/** Names a site's function: a symbol starting at its FDE, else the named functions around it. */
function functionNames(
  elf: ElfFile,
  debugElf: ElfFile | undefined,
): (s: CalleeSite) => { function?: string; before?: string; after?: string } {
  const funcs = (e: ElfFile) => e.sortedSymbols().filter((s) => s.type === 'func' && s.size > 0);
  const sorted: ElfSymbol[] = funcs(elf);
  const debugSorted = debugElf ? funcs(debugElf) : [];
  const at = (list: ElfSymbol[], v: number) => list.find((s) => v >= s.value && v < s.value + s.size);
  return (site) => {
    const own = at(sorted, site.callVaddr) ?? at(debugSorted, site.callVaddr);
    // A named symbol covering the call names the function, provided it is the FDE's function.
    if (own && own.value >= site.functionStart && own.value < site.functionEnd) return { function: clean(own.name) };
    if (own) return {}; // a symbol that starts before the FDE: not a function this table knows
    let before: ElfSymbol | undefined, after: ElfSymbol | undefined;
    for (const s of sorted) {
      if (s.value + s.size <= site.functionStart) before = s;
      else if (s.value >= site.functionEnd) {
        after = s;
        break;
      }
    }
    return { before: before && clean(before.name), after: after && clean(after.name) };
  };
}

function clean(name: string): string {
  return name.split('@')[0]!;
}
