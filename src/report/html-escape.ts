// Escaping for every string that comes from the target (function, module and file names read
// from its memory or binaries) before it goes into XML, HTML or an inline <script>.
// Those strings are attacker-controlled: a symbol can be named `</script><script>alert(1)`.

/**
 * Characters XML 1.0 forbids even as character references (XML 1.0 §2.2 `Char`): C0 controls
 * other than TAB/LF/CR, lone surrogates, U+FFFE and U+FFFF. A standalone SVG that holds one
 * fails to parse, so they become U+FFFD. (HTML tolerates most of them; we replace them there too.)
 */
const XML_INVALID = /[^\t\n\r\x20-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/gu;

const XML_ENTITIES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&apos;',
};
const HTML_ENTITIES: Record<string, string> = { ...XML_ENTITIES, "'": '&#39;' };

/** Text or attribute value (either quote style) for XML/SVG. */
export function escapeXml(s: string): string {
  return s.replace(XML_INVALID, '\uFFFD').replace(/[&<>"']/g, (c) => XML_ENTITIES[c]!);
}

/** Text or attribute value (either quote style) for HTML. */
export function escapeHtml(s: string): string {
  return s.replace(XML_INVALID, '\uFFFD').replace(/[&<>"']/g, (c) => HTML_ENTITIES[c]!);
}

/**
 * `JSON.stringify(value)` made safe to paste into an inline <script> of an HTML page, an SVG
 * document, or an SVG inside HTML (within `<![CDATA[ ... ]]>`):
 * - `<`, `>`, `&` become `\u003c` etc., so `</script>`, `<!--`, `]]>` and entities cannot appear;
 * - U+2028 / U+2029 become escapes (line terminators in pre-ES2019 JavaScript);
 * - every other non-ASCII UTF-16 unit is escaped too, so the output is pure printable ASCII and
 *   cannot hold a character XML forbids (lone surrogates, U+FFFE).
 * The result is a JavaScript expression evaluating to a deep copy of `value`.
 */
export function jsonForScript(value: unknown): string {
  const json = JSON.stringify(value);
  if (json === undefined) throw new TypeError('jsonForScript: value is not JSON-serializable');
  return json.replace(/[<>&\u007f-\uffff]/g, (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'));
}
