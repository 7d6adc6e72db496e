// Symbol demangling for frames: C++ (Itanium C++ ABI, https://itanium-cxx-abi.github.io/cxx-abi/abi.html#mangling)
// printed as GNU c++filt prints it (libiberty cp-demangle.c with DMGL_PARAMS | DMGL_ANSI | DMGL_VERBOSE:
// std::string spelled out in full, "> >" between closing template brackets, " [clone .cold]"),
// and Rust: legacy (_ZN...17h<hash>E, printed without the hash as rustc-demangle's "{:#}") and
// v0 (_R..., RFC 2603, paths and common types).
// Checked against c++filt on libstdc++'s and node's exported symbols (demangle.test.ts).
// Anything not understood is returned unchanged: a frame never shows a half-demangled name.

/** The demangled form of `name`, or `name` itself when it is not a mangled C++ / Rust symbol. */
export function demangle(name: string): string {
  if (name.startsWith('_R')) return demangleRustV0(name) ?? name;
  if (!name.startsWith('_Z')) return name;
  const legacy = demangleRustLegacy(name);
  if (legacy !== undefined) return legacy;
  try {
    return new ItaniumParser(name).parseTop() ?? name;
  } catch {
    return name;
  }
}

// ---------------------------------------------------------------- Itanium C++

type Type =
  | { k: 'n'; s: string } // a printed name / builtin
  | { k: 'q'; inner: Type; q: string } // " const", " volatile", " restrict"
  | { k: 'p'; inner: Type; op: '*' | '&' | '&&' }
  | { k: 'f'; ret: Type | null; params: Type[]; quals: string }
  | { k: 'a'; inner: Type; dim: string }
  | { k: 'm'; cls: Type; inner: Type };

const BUILTIN: Record<string, string> = {
  v: 'void',
  w: 'wchar_t',
  b: 'bool',
  c: 'char',
  a: 'signed char',
  h: 'unsigned char',
  s: 'short',
  t: 'unsigned short',
  i: 'int',
  j: 'unsigned int',
  l: 'long',
  m: 'unsigned long',
  x: 'long long',
  y: 'unsigned long long',
  n: '__int128',
  o: 'unsigned __int128',
  f: 'float',
  d: 'double',
  e: 'long double',
  g: '__float128',
  z: '...',
};
const BUILTIN_D: Record<string, string> = {
  n: 'decltype(nullptr)',
  u: 'char8_t',
  s: 'char16_t',
  i: 'char32_t',
  a: 'auto',
  c: 'decltype(auto)',
  d: 'decimal64',
  e: 'decimal128',
  f: 'decimal32',
  h: 'half',
};
const STD_SUBS: Record<string, { full: string; last?: string }> = {
  t: { full: 'std' },
  a: { full: 'std::allocator', last: 'allocator' },
  b: { full: 'std::basic_string', last: 'basic_string' },
  s: { full: 'std::basic_string<char, std::char_traits<char>, std::allocator<char> >', last: 'basic_string' },
  i: { full: 'std::basic_istream<char, std::char_traits<char> >', last: 'basic_istream' },
  o: { full: 'std::basic_ostream<char, std::char_traits<char> >', last: 'basic_ostream' },
  d: { full: 'std::basic_iostream<char, std::char_traits<char> >', last: 'basic_iostream' },
};
const OPERATORS: Record<string, string> = {
  nw: 'new',
  na: 'new[]',
  dl: 'delete',
  da: 'delete[]',
  ps: '+',
  ng: '-',
  ad: '&',
  de: '*',
  co: '~',
  pl: '+',
  mi: '-',
  ml: '*',
  dv: '/',
  rm: '%',
  an: '&',
  or: '|',
  eo: '^',
  aS: '=',
  pL: '+=',
  mI: '-=',
  mL: '*=',
  dV: '/=',
  rM: '%=',
  aN: '&=',
  oR: '|=',
  eO: '^=',
  ls: '<<',
  rs: '>>',
  lS: '<<=',
  rS: '>>=',
  eq: '==',
  ne: '!=',
  lt: '<',
  gt: '>',
  le: '<=',
  ge: '>=',
  ss: '<=>',
  nt: '!',
  aa: '&&',
  oo: '||',
  pp: '++',
  mm: '--',
  cm: ',',
  pm: '->*',
  pt: '->',
  cl: '()',
  ix: '[]',
  qu: '?',
  st: 'sizeof ',
  sz: 'sizeof ',
  aw: 'co_await ',
};

const n = (s: string): Type => ({ k: 'n', s });
/** An empty template argument pack (J E): printed as nothing, not as an empty argument. */
const EMPTY_PACK: Type = { k: 'n', s: '' };

/** The last unqualified name of a printed name, without template arguments ("std::vector<int>" -> "vector"). */
function baseName(s: string): string {
  let depth = 0,
    cut = s.length,
    start = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === '<' || c === '(') {
      if (depth === 0 && c === '<') cut = i;
      depth++;
    } else if (c === '>' || c === ')') depth--;
    else if (depth === 0 && c === ':' && s[i + 1] === ':') {
      start = i + 2;
      cut = s.length;
      i++;
    }
  }
  return s.slice(start, cut);
}

function closeTemplate(s: string): string {
  // "operator<< <T>": c++filt separates an operator ending in '<' from the '<' of its arguments.
  const open = s.replace(/(operator<<?)<(?!<)/, '$1 <');
  return open.endsWith('>') ? `${open} >` : `${open}>`;
}

function printParams(params: Type[]): string {
  if (params.length === 1 && params[0]!.k === 'n' && params[0]!.s === 'void') return '()';
  return `(${params.map(print).join(', ')})`;
}

/** A type as c++filt prints it (declarators for pointers to functions / arrays). */
function print(t: Type): string {
  switch (t.k) {
    case 'n':
      return t.s;
    case 'q':
      return `${print(t.inner)}${t.q}`;
    case 'f':
      return `${t.ret ? `${print(t.ret)} ` : ''}${printParams(t.params)}${t.quals}`;
    case 'a':
      return `${print(t.inner)} [${t.dim}]`;
    case 'm': {
      if (t.inner.k === 'f')
        return `${t.inner.ret ? `${print(t.inner.ret)} ` : ''}(${print(t.cls)}::*)${printParams(t.inner.params)}${t.inner.quals}`;
      return `${print(t.inner)} ${print(t.cls)}::*`;
    }
    case 'p': {
      // Collect a chain of pointer / reference / cv declarators down to a function or array.
      let ops = '';
      let cur: Type = t;
      while (cur.k === 'p' || (cur.k === 'q' && ops)) {
        ops = cur.k === 'p' ? cur.op + ops : ops + cur.q;
        cur = cur.inner;
      }
      if (cur.k === 'f') return `${cur.ret ? `${print(cur.ret)} ` : ''}(${ops})${printParams(cur.params)}${cur.quals}`;
      if (cur.k === 'a') return `${print(cur.inner)} (${ops}) [${cur.dim}]`;
      return `${print(t.inner)}${t.op}`;
    }
  }
}

class ItaniumParser {
  private i = 0;
  private subs: Type[] = [];
  private tmpl: Type[] | null = null;
  constructor(private readonly s: string) {}

  private peek(o = 0): string {
    return this.s[this.i + o] ?? '';
  }
  private eat(c: string): boolean {
    if (this.s.startsWith(c, this.i)) {
      this.i += c.length;
      return true;
    }
    return false;
  }
  private expect(c: string): void {
    if (!this.eat(c)) throw new Error(`expected ${c} at ${this.i}`);
  }
  private num(): number {
    const m = /^n?\d+/.exec(this.s.slice(this.i));
    if (!m) throw new Error('number');
    this.i += m[0].length;
    return m[0][0] === 'n' ? -Number(m[0].slice(1)) : Number(m[0]);
  }
  private seqId(): number {
    // <seq-id> is base 36 with digits then upper-case letters; "_" alone is 0, "<seq>_" is seq + 1.
    if (this.eat('_')) return 0;
    const m = /^[0-9A-Z]+/.exec(this.s.slice(this.i));
    if (!m) throw new Error('seq-id');
    this.i += m[0].length;
    this.expect('_');
    return parseInt(m[0], 36) + 1;
  }

  parseTop(): string | undefined {
    this.expect('_Z');
    let out = this.encoding();
    // GCC clone suffixes: .cold, .isra.0, .constprop.0, .part.0, .lto_priv.0 ...
    while (this.i < this.s.length) {
      const m = /^\.[A-Za-z_]+(\.\d+)*|^\.\d+/.exec(this.s.slice(this.i));
      if (!m) return undefined;
      out += ` [clone ${m[0]}]`;
      this.i += m[0].length;
    }
    return out;
  }

  private encoding(): string {
    const c = this.peek();
    if (c === 'T' || (c === 'G' && this.peek(1) !== '')) {
      const special = this.specialName();
      if (special !== undefined) return special;
    }
    const saved = this.tmpl;
    const name = this.name();
    if (this.i >= this.s.length || this.peek() === 'E' || this.peek() === '.') {
      this.tmpl = saved;
      return name.text;
    }
    let ret: Type | null = null;
    if (name.templated && !name.ctorDtorConv) ret = this.type();
    const params: Type[] = [];
    while (this.i < this.s.length && this.peek() !== 'E' && this.peek() !== '.') params.push(this.type());
    if (!params.length) throw new Error('no parameters');
    const text = `${ret ? `${print(ret)} ` : ''}${name.text}${printParams(params)}${name.quals}`;
    this.tmpl = saved;
    return text;
  }

  private specialName(): string | undefined {
    const two = this.s.slice(this.i, this.i + 2);
    const simple: Record<string, string> = {
      TV: 'vtable for ',
      TT: 'VTT for ',
      TI: 'typeinfo for ',
      TS: 'typeinfo name for ',
    };
    if (simple[two]) {
      this.i += 2;
      return simple[two] + print(this.type());
    }
    if (two === 'Th') {
      this.i += 2;
      this.num();
      this.expect('_');
      return `non-virtual thunk to ${this.encoding()}`;
    }
    if (two === 'Tv') {
      this.i += 2;
      this.num();
      this.expect('_');
      this.num();
      this.expect('_');
      return `virtual thunk to ${this.encoding()}`;
    }
    if (two === 'Tc') {
      this.i += 2;
      this.callOffset();
      this.callOffset();
      return `covariant return thunk to ${this.encoding()}`;
    }
    if (two === 'TW') {
      this.i += 2;
      return `TLS wrapper function for ${this.name().text}`;
    }
    if (two === 'TH') {
      this.i += 2;
      return `TLS init function for ${this.name().text}`;
    }
    if (two === 'GV') {
      this.i += 2;
      return `guard variable for ${this.name().text}`;
    }
    if (two === 'GR') {
      this.i += 2;
      const nm = this.name().text;
      if (this.peek() !== 'E' && this.peek() !== '') this.seqIdOpt();
      return `reference temporary #0 for ${nm}`;
    }
    if (this.s.startsWith('GTt', this.i)) {
      this.i += 3;
      return `transaction clone for ${this.encoding()}`;
    }
    if (this.s.startsWith('GTn', this.i)) {
      this.i += 3;
      return `non-transaction clone for ${this.encoding()}`;
    }
    return undefined;
  }
  private seqIdOpt(): void {
    while (/[0-9A-Z]/.test(this.peek())) this.i++;
    this.eat('_');
  }
  private callOffset(): void {
    if (this.eat('h')) {
      this.num();
      this.expect('_');
    } else {
      this.expect('v');
      this.num();
      this.expect('_');
      this.num();
      this.expect('_');
    }
  }

  /** <name>: text, whether it ends in template args, ctor/dtor/conversion, and trailing method qualifiers. */
  private name(): { text: string; templated: boolean; ctorDtorConv: boolean; quals: string } {
    const c = this.peek();
    if (c === 'N') return this.nestedName();
    if (c === 'Z') return this.localName();
    // <unscoped-name> | <unscoped-template-name> <template-args> | <substitution> <template-args>
    let text: string;
    let ctorDtorConv = false;
    if (c === 'S' && this.peek(1) !== 't') {
      text = print(this.substitution());
      if (this.peek() !== 'I') throw new Error('substitution as a name needs template args');
    } else {
      const std = this.eat('St');
      const u = this.unqualifiedName(std ? 'std' : '');
      text = (std ? 'std::' : '') + u.text;
      ctorDtorConv = u.ctorDtorConv;
      if (this.peek() === 'I') this.subs.push(n(text));
    }
    if (this.peek() === 'I') {
      const args = this.templateArgs();
      text = closeTemplate(`${text}<${args.map(print).join(', ')}`);
      this.tmpl = args;
      return { text, templated: true, ctorDtorConv, quals: '' };
    }
    return { text, templated: false, ctorDtorConv, quals: '' };
  }

  private nestedName(): { text: string; templated: boolean; ctorDtorConv: boolean; quals: string } {
    this.expect('N');
    let quals = '';
    const cv: string[] = [];
    while (/[rVK]/.test(this.peek())) cv.push({ r: ' restrict', V: ' volatile', K: ' const' }[this.s[this.i++]!]!);
    quals = cv.reverse().join('');
    if (this.eat('R')) quals += ' &';
    else if (this.eat('O')) quals += ' &&';
    let text = '';
    let last = '';
    let templated = false;
    let ctorDtorConv = false;
    for (;;) {
      const c = this.peek();
      if (c === 'E') {
        this.i++;
        break;
      }
      if (c === '') throw new Error('unterminated nested name');
      templated = false;
      if (c === 'S' && !text) {
        if (this.peek(1) === 't') {
          this.i += 2;
          text = 'std';
          last = 'std';
          continue;
        }
        const sub = this.substitution(true);
        text = print(sub);
        last = this.lastName ?? baseName(text);
        continue; // a substitution is not added again
      } else if (c === 'I') {
        if (!text) throw new Error('template args first');
        const args = this.templateArgs();
        text = closeTemplate(`${text}<${args.map(print).join(', ')}`);
        this.tmpl = args;
        templated = true;
      } else if (c === 'T') {
        text = print(this.templateParam());
        last = baseName(text);
        ctorDtorConv = false;
      } else if (c === 'D' && (this.peek(1) === 't' || this.peek(1) === 'T')) {
        throw new Error('decltype prefix');
      } else if (c === 'B') {
        text += this.abiTags();
        if (this.peek() !== 'E') this.subs.push(n(text));
        continue;
      } else {
        const u = this.unqualifiedName(last);
        ctorDtorConv = u.ctorDtorConv;
        if (c === 'T') ctorDtorConv = false;
        text = text ? `${text}::${u.text}` : u.text;
        last = u.base;
      }
      if (this.peek() !== 'E') this.subs.push(n(text));
    }
    return { text, templated, ctorDtorConv, quals };
  }
  private lastName?: string;

  private localName(): { text: string; templated: boolean; ctorDtorConv: boolean; quals: string } {
    this.expect('Z');
    const saved = this.subs.length;
    void saved;
    const fn = this.encoding();
    this.expect('E');
    if (this.eat('s')) {
      this.discriminator();
      return { text: `${fn}::string literal`, templated: false, ctorDtorConv: false, quals: '' };
    }
    if (this.eat('d')) {
      if (this.peek() !== '_') this.num();
      this.expect('_');
    }
    const inner = this.name();
    this.discriminator();
    return { ...inner, text: `${fn}::${inner.text}` };
  }
  private discriminator(): void {
    if (this.peek() !== '_') return;
    this.i++;
    if (this.eat('_')) {
      this.num();
      this.expect('_');
    } else this.num();
  }

  private abiTags(): string {
    let out = '';
    while (this.eat('B')) {
      const len = this.num();
      out += `[abi:${this.s.slice(this.i, this.i + len)}]`;
      this.i += len;
    }
    return out;
  }

  /** <unqualified-name>; `enclosing` is the class name (for constructors / destructors). */
  private unqualifiedName(enclosing: string): { text: string; base: string; ctorDtorConv: boolean } {
    const c = this.peek();
    let text: string,
      base: string,
      ctorDtorConv = false;
    if (/[0-9]/.test(c)) {
      text = this.sourceName();
      base = text;
    } else if (c === 'C' && /[1-5I]/.test(this.peek(1))) {
      this.i++;
      if (this.eat('I')) {
        this.i++;
        this.type();
      } else this.i++;
      text = enclosing;
      base = enclosing;
      ctorDtorConv = true;
    } else if (c === 'D' && /[0-5]/.test(this.peek(1))) {
      this.i += 2;
      text = `~${enclosing}`;
      base = enclosing;
      ctorDtorConv = true;
    } else if (c === 'U' && this.peek(1) === 't') {
      this.i += 2;
      const id = this.peek() === '_' ? 1 : this.num() + 2;
      this.expect('_');
      text = `{unnamed type#${id}}`;
      base = text;
    } else if (c === 'U' && this.peek(1) === 'l') {
      this.i += 2;
      const params: Type[] = [];
      while (this.peek() !== 'E') params.push(this.type());
      this.i++;
      const id = this.peek() === '_' ? 1 : this.num() + 2;
      this.expect('_');
      text = `{lambda${printParams(params)}#${id}}`;
      base = text;
    } else if (c === 'L') {
      this.i++;
      text = this.sourceName();
      base = text;
      this.discriminator();
    } else {
      const two = this.s.slice(this.i, this.i + 2);
      if (two === 'cv') {
        this.i += 2;
        const saved = this.tmpl;
        const t = this.type();
        this.tmpl = saved;
        text = `operator ${print(t)}`;
        base = text;
        ctorDtorConv = true;
      } else if (two === 'li') {
        this.i += 2;
        text = `operator"" ${this.sourceName()}`;
        base = text;
      } else if (/^v[0-9]/.test(two)) {
        this.i += 2;
        text = `operator ${this.sourceName()}`;
        base = text;
      } else if (OPERATORS[two] !== undefined) {
        this.i += 2;
        const op = OPERATORS[two]!;
        text = /^[a-z]/.test(op) ? `operator ${op}` : `operator${op}`;
        base = text;
      } else throw new Error(`unqualified name at ${this.i}`);
    }
    if (this.peek() === 'B') {
      const tags = this.abiTags();
      text += tags;
    }
    return { text, base, ctorDtorConv };
  }

  private sourceName(): string {
    const len = this.num();
    if (len <= 0 || this.i + len > this.s.length) throw new Error('source name');
    const id = this.s.slice(this.i, this.i + len);
    this.i += len;
    if (id.startsWith('_GLOBAL__N') || id.startsWith('_GLOBAL_.N') || id.startsWith('_GLOBAL_$N'))
      return '(anonymous namespace)';
    return id;
  }

  private substitution(prefix = false): Type {
    this.expect('S');
    this.lastName = undefined;
    const c = this.peek();
    if (/[a-z]/.test(c)) {
      const sub = STD_SUBS[c];
      if (!sub) throw new Error('std substitution');
      this.i++;
      this.lastName = sub.last;
      void prefix;
      return n(sub.full);
    }
    const id = this.seqId();
    const t = this.subs[id];
    if (!t) throw new Error(`substitution ${id} of ${this.subs.length}`);
    return t;
  }

  private templateParam(): Type {
    this.expect('T');
    const id = this.seqId();
    const t = this.tmpl?.[id];
    if (!t) throw new Error('template parameter');
    return t;
  }

  private templateArgs(): Type[] {
    this.expect('I');
    const args: Type[] = [];
    while (!this.eat('E')) {
      const a = this.templateArg();
      if (a !== EMPTY_PACK) args.push(a);
    }
    return args;
  }

  private templateArg(): Type {
    const c = this.peek();
    if (c === 'L') return this.exprPrimary();
    if (c === 'J') {
      this.i++;
      const items: Type[] = [];
      while (!this.eat('E')) {
        const a = this.templateArg();
        if (a !== EMPTY_PACK) items.push(a);
      }
      return items.length ? n(items.map(print).join(', ')) : EMPTY_PACK;
    }
    if (c === 'X') throw new Error('expression template argument');
    return this.type();
  }

  private exprPrimary(): Type {
    this.expect('L');
    if (this.eat('_Z')) {
      const e = this.encoding();
      this.expect('E');
      return n(e);
    }
    const t = this.type();
    const m = /^n?[0-9]+/.exec(this.s.slice(this.i));
    let v = '';
    if (m) {
      v = m[0].replace(/^n/, '-');
      this.i += m[0].length;
    }
    this.expect('E');
    const name = print(t);
    if (name === 'bool') return n(v === '0' ? 'false' : v === '1' ? 'true' : `(bool)${v}`);
    const suffix: Record<string, string> = {
      int: '',
      'unsigned int': 'u',
      long: 'l',
      'unsigned long': 'ul',
      'long long': 'll',
      'unsigned long long': 'ull',
    };
    if (suffix[name] !== undefined) return n(v + suffix[name]);
    return n(`(${name})${v}`);
  }

  private type(): Type {
    const c = this.peek();
    const start = this.i;
    void start;
    if (BUILTIN[c] !== undefined) {
      this.i++;
      return n(BUILTIN[c]!);
    }
    if (c === 'D' && BUILTIN_D[this.peek(1)] !== undefined) {
      const t = n(BUILTIN_D[this.peek(1)]!);
      this.i += 2;
      return t;
    }
    if (c === 'u') {
      this.i++;
      const t = n(this.sourceName());
      this.subs.push(t);
      return t;
    }
    if (c === 'r' || c === 'V' || c === 'K') {
      const qs: string[] = [];
      while (/[rVK]/.test(this.peek())) qs.push({ r: ' restrict', V: ' volatile', K: ' const' }[this.s[this.i++]!]!);
      const inner = this.type();
      let t: Type;
      if (inner.k === 'f') t = { ...inner, quals: inner.quals + qs.reverse().join('') };
      else {
        t = inner;
        // A qualifier the (substituted) type already has is not repeated: "T const" with T = "short const".
        for (const q of qs.reverse()) if (!(t.k === 'q' && t.q === q)) t = { k: 'q', inner: t, q };
      }
      this.subs.push(t);
      return t;
    }
    if (c === 'P' || c === 'R' || c === 'O') {
      this.i++;
      const inner = this.type();
      let t: Type = { k: 'p', inner, op: c === 'P' ? '*' : c === 'R' ? '&' : '&&' };
      // Reference collapsing (a template parameter that is already a reference): & & -> &, && & -> &, && && -> &&.
      if (c !== 'P' && inner.k === 'p' && inner.op !== '*')
        t = { k: 'p', inner: inner.inner, op: c === 'R' || inner.op === '&' ? '&' : '&&' };
      this.subs.push(t);
      return t;
    }
    if (c === 'F') {
      this.i++;
      this.eat('Y');
      const ret = this.type();
      const params: Type[] = [];
      let quals = '';
      for (;;) {
        if (this.eat('E')) break;
        if (this.eat('RE')) {
          quals = ' &';
          break;
        }
        if (this.eat('OE')) {
          quals = ' &&';
          break;
        }
        params.push(this.type());
      }
      const t: Type = { k: 'f', ret, params, quals };
      this.subs.push(t);
      return t;
    }
    if (c === 'A') {
      this.i++;
      let dim = '';
      if (/[0-9]/.test(this.peek())) dim = String(this.num());
      else if (this.peek() !== '_') throw new Error('array dimension expression');
      this.expect('_');
      const t: Type = { k: 'a', inner: this.type(), dim };
      this.subs.push(t);
      return t;
    }
    if (c === 'M') {
      this.i++;
      const cls = this.type();
      const inner = this.type();
      const t: Type = { k: 'm', cls, inner };
      this.subs.push(t);
      return t;
    }
    if (c === 'T') {
      const t = this.templateParam();
      this.subs.push(t);
      if (this.peek() === 'I') {
        const args = this.templateArgs();
        const tt = n(closeTemplate(`${print(t)}<${args.map(print).join(', ')}`));
        this.subs.push(tt);
        return tt;
      }
      return t;
    }
    if (c === 'D' && this.peek(1) === 'p') {
      this.i += 2;
      const t = this.type();
      return t;
    }
    if (c === 'S') {
      if (this.peek(1) === 't') {
        const saved = this.tmpl;
        const nm = this.name();
        this.tmpl = saved;
        const t = n(nm.text);
        this.subs.push(t);
        return t;
      }
      const sub = this.substitution();
      if (this.peek() === 'I') {
        const args = this.templateArgs();
        const t = n(closeTemplate(`${print(sub)}<${args.map(print).join(', ')}`));
        this.subs.push(t);
        return t;
      }
      return sub;
    }
    if (c === 'N' || /[0-9]/.test(c) || c === 'Z') {
      const saved = this.tmpl;
      const nm = this.name();
      this.tmpl = saved;
      const t = n(nm.text);
      this.subs.push(t);
      return t;
    }
    throw new Error(`type at ${this.i}: ${c}`);
  }
}

// ---------------------------------------------------------------- Rust legacy

const RUST_ESCAPES: Record<string, string> = {
  SP: '@',
  BP: '*',
  RF: '&',
  LT: '<',
  GT: '>',
  LP: '(',
  RP: ')',
  C: ',',
};

/** Rust's legacy mangling: _ZN <len><ident>... 17h<16 hex>E, printed without the hash. */
export function demangleRustLegacy(name: string): string | undefined {
  const m = /17h([0-9a-f]{16})E(\.[\s\S]*)?$/.exec(name);
  if (!m || !name.startsWith('_ZN')) return undefined;
  const parts: string[] = [];
  let i = 3;
  const s = name;
  const end = s.length - (m[2]?.length ?? 0) - 20; // before "17h<hash>E"
  while (i < end) {
    const len = /^\d+/.exec(s.slice(i));
    if (!len) return undefined;
    i += len[0].length;
    const n = Number(len[0]);
    if (i + n > end) return undefined;
    parts.push(s.slice(i, i + n));
    i += n;
  }
  if (i !== end || !parts.length) return undefined;
  const ident = (p: string): string | undefined => {
    let out = '';
    let rest = p.startsWith('_$') ? p.slice(1) : p;
    while (rest.length) {
      if (rest.startsWith('..')) {
        out += '::';
        rest = rest.slice(2);
        continue;
      }
      if (rest[0] === '$') {
        const e = /^\$([A-Za-z0-9]+)\$/.exec(rest);
        if (!e) return undefined;
        const code = e[1]!;
        if (RUST_ESCAPES[code] !== undefined) out += RUST_ESCAPES[code];
        else if (code[0] === 'u' && /^[0-9a-f]+$/.test(code.slice(1)))
          out += String.fromCodePoint(parseInt(code.slice(1), 16));
        else return undefined;
        rest = rest.slice(e[0].length);
        continue;
      }
      if (rest[0] === '.') {
        out += '.';
        rest = rest.slice(1);
        continue;
      }
      out += rest[0];
      rest = rest.slice(1);
    }
    return out;
  };
  const shown = parts.map(ident);
  if (shown.some((x) => x === undefined)) return undefined;
  return shown.join('::');
}

// ---------------------------------------------------------------- Rust v0

const RUST_V0_BASIC: Record<string, string> = {
  a: 'i8',
  b: 'bool',
  c: 'char',
  d: 'f64',
  e: 'str',
  f: 'f32',
  h: 'u8',
  i: 'isize',
  j: 'usize',
  l: 'i32',
  m: 'u32',
  n: 'i128',
  o: 'u128',
  s: 'i16',
  t: 'u16',
  u: '()',
  v: '...',
  x: 'i64',
  y: 'u64',
  z: '!',
  p: '_',
};

/** Rust v0 mangling (RFC 2603): paths, generic arguments, the common types; crate hashes dropped. */
export function demangleRustV0(name: string): string | undefined {
  const s = name.replace(/\.[\s\S]*$/, '');
  let i = 2;
  const peek = () => s[i] ?? '';
  const b62 = (): number => {
    if (s[i] === '_') {
      i++;
      return 0;
    }
    let v = 0;
    while (i < s.length && s[i] !== '_') {
      const ch = s[i++]!;
      const d = /[0-9]/.test(ch)
        ? ch.charCodeAt(0) - 48
        : /[a-z]/.test(ch)
          ? ch.charCodeAt(0) - 87
          : /[A-Z]/.test(ch)
            ? ch.charCodeAt(0) - 29
            : -1;
      if (d < 0) throw new Error('base62');
      v = v * 62 + d;
    }
    i++;
    return v + 1;
  };
  const optDisamb = () => {
    if (peek() === 's') {
      i++;
      b62();
    }
  };
  const ident = (): string => {
    const punycode = s[i] === 'u';
    if (punycode) i++;
    const m = /^\d+/.exec(s.slice(i));
    if (!m) throw new Error('ident');
    i += m[0].length;
    if (s[i] === '_') i++;
    const len = Number(m[0]);
    const id = s.slice(i, i + len);
    i += len;
    if (punycode) throw new Error('punycode identifier');
    return id;
  };
  const backref = <T>(f: () => T): T => {
    const at = i - 1;
    const pos = b62() + 2; // offset from the first character after "_R"
    if (pos >= at) throw new Error('backref');
    const saved = i;
    i = pos;
    const r = f();
    i = saved;
    return r;
  };
  const path = (): string => {
    const c = s[i++];
    switch (c) {
      case 'C': {
        optDisamb();
        return ident();
      }
      case 'N': {
        const ns = s[i++]!;
        const parent = path();
        optDisamb();
        const id = ident();
        if (/[A-Z]/.test(ns))
          return `${parent}::{${ns === 'C' ? 'closure' : ns === 'S' ? 'shim' : ns}${id ? `:${id}` : ''}#0}`;
        return id ? `${parent}::${id}` : parent;
      }
      case 'M': {
        optDisamb();
        path();
        return `<${type()}>`;
      }
      case 'X': {
        optDisamb();
        path();
        const t = type();
        return `<${t} as ${path()}>`;
      }
      case 'Y': {
        const t = type();
        return `<${t} as ${path()}>`;
      }
      case 'I': {
        const p = path();
        const args: string[] = [];
        while (peek() !== 'E') args.push(genericArg());
        i++;
        return `${p}::<${args.join(', ')}>`;
      }
      case 'B':
        return backref(path);
      default:
        throw new Error('path');
    }
  };
  const genericArg = (): string => {
    if (peek() === 'L') {
      i++;
      b62();
      return "'_";
    }
    if (peek() === 'K') {
      i++;
      return constant();
    }
    return type();
  };
  const constant = (): string => {
    if (peek() === 'B') {
      i++;
      return backref(constant);
    }
    const t = type();
    if (peek() === 'p') {
      i++;
      return '_';
    }
    const neg = peek() === 'n';
    if (neg) i++;
    const m = /^[0-9a-f]*_/.exec(s.slice(i));
    if (!m) throw new Error('const');
    i += m[0].length;
    const hex = m[0].slice(0, -1);
    const v = hex ? BigInt(`0x${hex}`) : 0n;
    if (t === 'bool') return v ? 'true' : 'false';
    if (t === 'char') return `'${String.fromCodePoint(Number(v))}'`;
    return `${neg ? '-' : ''}${v}`;
  };
  const type = (): string => {
    const c = peek();
    if (RUST_V0_BASIC[c] !== undefined) {
      i++;
      return RUST_V0_BASIC[c]!;
    }
    i++;
    switch (c) {
      case 'R':
      case 'Q': {
        if (peek() === 'L') {
          i++;
          b62();
        }
        return `&${c === 'Q' ? 'mut ' : ''}${type()}`;
      }
      case 'P':
        return `*const ${type()}`;
      case 'O':
        return `*mut ${type()}`;
      case 'A': {
        const t = type();
        return `[${t}; ${constant()}]`;
      }
      case 'S':
        return `[${type()}]`;
      case 'T': {
        const ts: string[] = [];
        while (peek() !== 'E') ts.push(type());
        i++;
        return ts.length === 1 ? `(${ts[0]},)` : `(${ts.join(', ')})`;
      }
      case 'B':
        return backref(type);
      case 'F': {
        if (peek() === 'G') {
          i++;
          b62();
        }
        let unsafe = '',
          abi = '';
        if (peek() === 'U') {
          i++;
          unsafe = 'unsafe ';
        }
        if (peek() === 'K') {
          i++;
          if (peek() === 'C') {
            i++;
            abi = 'extern "C" ';
          } else abi = `extern "${ident().replace(/_/g, '-')}" `;
        }
        const ps: string[] = [];
        while (peek() !== 'E') ps.push(type());
        i++;
        const ret = type();
        return `${unsafe}${abi}fn(${ps.join(', ')})${ret === '()' ? '' : ` -> ${ret}`}`;
      }
      case 'D': {
        if (peek() === 'G') {
          i++;
          b62();
        }
        const traits: string[] = [];
        while (peek() !== 'E') {
          let t = path();
          const assoc: string[] = [];
          while (peek() === 'p') {
            i++;
            const id = ident();
            assoc.push(`${id} = ${type()}`);
          }
          if (assoc.length)
            t = t.endsWith('>') ? `${t.slice(0, -1)}, ${assoc.join(', ')}>` : `${t}<${assoc.join(', ')}>`;
          traits.push(t);
        }
        i++;
        if (peek() === 'L') {
          i++;
          b62();
        }
        return `dyn ${traits.join(' + ')}`;
      }
      default:
        i--;
        return path();
    }
  };
  try {
    if (/[0-9]/.test(peek())) {
      const m = /^\d+/.exec(s.slice(i))!;
      i += m[0].length;
    } // encoding version
    const p = path();
    return p.replace(/::<([\s\S]*)>$/, (_m, a: string) => `::<${a}>`);
  } catch {
    return undefined;
  }
}
