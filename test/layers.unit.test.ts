// The layer order of DESIGN.md, enforced on the import graph of src/: each folder imports only
// from folders below it (or itself); report/ from contract/, model/ and binary/ alone; the pure
// halves of analysis/ (evidence, verdict) import no runtime code of the layers that read the
// target. Tests (`*.test.ts`) are exempt: a system test may drive a higher layer to check a lower one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const SRC = join(REPO, 'src');

/** DESIGN.md "Layers", bottom first. */
export const LAYERS = [
  'model',
  'binary',
  'formats',
  'target',
  'symbols',
  'glibc',
  'nginx',
  'luajit',
  'ebpf',
  'unwind',
  'trace',
  'contract',
  'analysis',
  'report',
  'cli',
] as const;
/** Layers a layer may import besides itself, when not simply "everything below". */
const ONLY: Partial<Record<string, readonly string[]>> = { report: ['contract', 'model', 'binary'] };
/** Pure modules of analysis/: runtime imports only from these (type imports from any lower layer). */
// growth-rate (least squares), pool-suspects (two-read agreement) and lua-evidence (two Lua snapshots
// diffed by luajit/compare.ts, itself a pure function of two table lists) are pure helpers of evidence.
const PURE = /^analysis\/(evidence|verdict|growth-rate|pool-suspects|lua-evidence)[^/]*\.ts$/;
const PURE_RUNTIME = [
  /^model\//,
  /^contract\//,
  /^analysis\/(evidence|verdict|growth-rate|pool-suspects|lua-evidence)[^/]*\.ts$/,
  /^luajit\/compare\.ts$/,
  /^node:path$/,
];

/** `to`: a src-relative path, or for a package / node: import (external) the specifier as written. */
interface Edge {
  from: string;
  to: string;
  external: boolean;
  typeOnly: boolean;
  line: number;
}

function sources(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) sources(p, out);
    else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

/** Import and re-export edges of one file (src-relative paths; node: and package imports as written). */
function edges(file: string): Edge[] {
  const text = readFileSync(file, 'utf8');
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, false, ts.ScriptKind.TS);
  const from = relative(SRC, file).split(sep).join('/');
  const out: Edge[] = [];
  const add = (spec: string, typeOnly: boolean, node: ts.Node) => {
    const external = !spec.startsWith('.');
    const to = external
      ? spec
      : relative(SRC, resolve(dirname(file), spec))
          .split(sep)
          .join('/')
          .replace(/\.js$/, '.ts');
    out.push({ from, to, external, typeOnly, line: sf.getLineAndCharacterOfPosition(node.getStart(sf)).line + 1 });
  };
  const visit = (node: ts.Node) => {
    if (ts.isImportDeclaration(node) && ts.isStringLiteral(node.moduleSpecifier)) {
      const c = node.importClause;
      const typeOnly =
        !!c &&
        (c.isTypeOnly ||
          (!c.name &&
            !!c.namedBindings &&
            ts.isNamedImports(c.namedBindings) &&
            c.namedBindings.elements.length > 0 &&
            c.namedBindings.elements.every((e) => e.isTypeOnly)));
      add(node.moduleSpecifier.text, typeOnly, node);
    } else if (ts.isExportDeclaration(node) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      add(node.moduleSpecifier.text, node.isTypeOnly, node);
    } else if (
      ts.isCallExpression(node) &&
      node.expression.kind === ts.SyntaxKind.ImportKeyword &&
      node.arguments[0] &&
      ts.isStringLiteral(node.arguments[0])
    ) {
      add(node.arguments[0].text, false, node);
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return out;
}

const layerOf = (path: string) => path.split('/')[0]!;
const rank = (layer: string) => (LAYERS as readonly string[]).indexOf(layer);

/** Problems of one edge, or null when it respects the order. */
export function violation(e: Edge): string | null {
  const at = `src/${e.from}:${e.line} imports ${e.to}`;
  if (e.external) {
    if (PURE.test(e.from) && !e.typeOnly && !PURE_RUNTIME.some((r) => r.test(e.to)))
      return `${at}: evidence and verdict are pure (no I/O)`;
    return null;
  }
  // Test support modules (`test-*.ts`: children and samples the tests run) may use the test helpers.
  if (e.to.startsWith('..'))
    return e.to.startsWith('../test/') && !/(^|\/)test-[^/]*\.ts$/.test(e.from)
      ? `${at}: a module of src/ imports a test helper`
      : null;
  const a = layerOf(e.from),
    b = layerOf(e.to);
  if (rank(a) < 0) return `src/${e.from}: folder ${a}/ is not in the layer list of DESIGN.md`;
  if (rank(b) < 0) return `${at}: folder ${b}/ is not in the layer list of DESIGN.md`;
  if (a !== b) {
    const only = ONLY[a];
    if (only ? !only.includes(b) : rank(b) > rank(a))
      return `${at}: ${a}/ may not import ${b}/ (${only ? `only ${only.join(', ')}` : 'a higher layer'})`;
  }
  if (PURE.test(e.from) && !e.typeOnly && !PURE_RUNTIME.some((r) => r.test(e.to)))
    return `${at}: evidence and verdict are pure: type imports only from ${b}/`;
  return null;
}

test('layers: no module of src/ imports up the DESIGN.md layer order', () => {
  const files = sources(SRC).filter((f) => !f.endsWith('.test.ts'));
  assert.ok(files.length > 50, `${files.length} modules found under ${SRC}`);
  const problems = files
    .flatMap(edges)
    .map(violation)
    .filter((v): v is string => v !== null);
  assert.deepEqual(problems, []);
});

test('layers: the checker catches what it should', () => {
  const e = (from: string, to: string, typeOnly = false): Edge => ({
    from,
    to,
    external: /^(node:|@|[a-z-]+$)/.test(to),
    typeOnly,
    line: 1,
  });
  assert.equal(violation(e('nginx/pools.ts', 'glibc/census.ts')), null, 'nginx may use glibc');
  assert.match(violation(e('glibc/census.ts', 'nginx/chunks.ts'))!, /glibc\/ may not import nginx\//);
  assert.match(violation(e('glibc/census.ts', 'nginx/chunks.ts', true))!, /may not import/, 'types count too');
  assert.match(violation(e('analysis/analyze.ts', 'report/heap-table.ts'))!, /analysis\/ may not import report\//);
  assert.match(violation(e('report/pools-table.ts', 'nginx/pools.ts', true))!, /only contract, model, binary/);
  assert.equal(violation(e('report/pools-table.ts', 'contract/pools.ts')), null);
  assert.equal(violation(e('cli/main.ts', 'report/heap-table.ts')), null);
  assert.match(violation(e('analysis/verdict.ts', 'trace/leak-tracer.ts'))!, /pure/);
  assert.equal(violation(e('analysis/evidence.ts', 'nginx/pools.ts', true)), null);
  assert.match(violation(e('analysis/evidence.ts', 'node:fs'))!, /pure/);
  assert.match(violation(e('lua/vm.ts', 'model/index.ts'))!, /not in the layer list/);
});
