// The Prometheus text exposition format, version 0.0.4
// (https://prometheus.io/docs/instrumenting/exposition_formats/): `# HELP`, `# TYPE`, then one
// `name{label="value",...} value` line per sample. Label values are escaped (\\, \", \n); HELP
// text escapes \\ and \n. Names are ours (checked against the format's name grammar); label
// values may come from the target (module names) and are escaped, never trusted.

export type MetricType = 'gauge' | 'counter';
export type Labels = Record<string, string | number>;

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** Content-Type of a scrape answer in this format. */
export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

export function escapeLabelValue(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function escapeHelp(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

/** A sample value as the format writes it (Go's ParseFloat reads it back): NaN, +Inf, -Inf or a decimal. */
export function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

/** Collects metric families in order, then writes them once (`text()`). A family without samples is left out. */
export class PrometheusText {
  private families: Array<{ name: string; type: MetricType; help: string; lines: string[] }> = [];
  private byName = new Map<string, { lines: string[]; labelNames?: string }>();

  /** Declares a family (idempotent for the same name and type) and returns a function adding one sample. */
  family(name: string, type: MetricType, help: string): (labels: Labels, value: number) => void {
    if (!METRIC_NAME.test(name)) throw new Error(`bad metric name ${JSON.stringify(name)}`);
    if (type === 'counter' && !name.endsWith('_total')) throw new Error(`counter ${name} must end in _total`);
    let f = this.byName.get(name);
    if (!f) {
      const fam = { name, type, help, lines: [] as string[] };
      this.families.push(fam);
      f = { lines: fam.lines };
      this.byName.set(name, f);
    }
    const lines = f.lines;
    return (labels: Labels, value: number) => {
      const parts: string[] = [];
      for (const k of Object.keys(labels)) {
        if (!LABEL_NAME.test(k) || k.startsWith('__')) throw new Error(`bad label name ${JSON.stringify(k)}`);
        parts.push(`${k}="${escapeLabelValue(String(labels[k]))}"`);
      }
      lines.push(`${name}${parts.length ? `{${parts.join(',')}}` : ''} ${formatValue(value)}`);
    };
  }

  text(): string {
    let out = '';
    for (const f of this.families) {
      if (!f.lines.length) continue;
      out += `# HELP ${f.name} ${escapeHelp(f.help)}\n# TYPE ${f.name} ${f.type}\n${f.lines.join('\n')}\n`;
    }
    return out;
  }
}
