// Interactive API documentation: reads the service's OpenAPI 3.1 document from /openapi.json and
// renders every operation (parameters, bodies, responses, schemas) with a "Try it" panel.
// Plain browser JavaScript, no dependencies; nothing is fetched but /openapi.json and the API.
'use strict';

// ---- Helpers -------------------------------------------------------------------------------------

const $ = (sel) => document.querySelector(sel);
const TOKEN_KEY = 'docs.apiToken';
const PREVIEW_BYTES = 64 * 1024;
const MAX_EVENTS = 500;
const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];
const FORMAT_SAMPLES = { uuid: '3fa85f64-5717-4562-b3fc-2c963f66afa6', 'date-time': '2025-01-01T12:00:00Z',
  date: '2025-01-01', email: 'user@example.com', uri: 'https://example.com/', ipv4: '192.0.2.1' };
let spec = {};
let base = '';

/** Builds an element: h('a', {href, class: 'x'}, 'text', child...). Text is never parsed as HTML. */
function h(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'dataset') Object.assign(e.dataset, v);
    else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? '' : v);
  }
  e.append(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
  return e;
}

const slug = (s) => String(s).replace(/[^A-Za-z0-9_]+/g, '-').replace(/^-+|-+$/g, '') || 'x';
const pretty = (v) => JSON.stringify(v, null, 2);
const show = (v) => (typeof v === 'string' ? v : JSON.stringify(v));
/** JSON text indented, other text as it is. */
function prettyText(text) {
  try { return pretty(JSON.parse(text)); } catch { return text || '(empty body)'; }
}
const statusClass = (code) => `s${String(code)[0]}xx`;

/** Inline markdown: `code`, **bold** and [links](url) to http(s), this site or a #fragment; the rest is text. */
const inline = (s) => s.split(/(`[^`]+`|\*\*[^*]+\*\*|\[[^\]]+\]\([^)\s]+\))/).map((part, i) => {
  if (i % 2 === 0) return part;
  if (part[0] === '`') return h('code', {}, part.slice(1, -1));
  if (part[0] === '*') return h('strong', {}, part.slice(2, -2));
  const [, label, href] = part.match(/^\[([^\]]+)\]\(([^)\s]+)\)$/);
  return /^(https?:|\/|#)/.test(href) ? h('a', { href }, label) : label;
});
/** The CommonMark subset descriptions use: paragraphs and "- " lists of inline markdown. */
function md(text) {
  if (!text) return null;
  return h('div', { class: 'md' }, String(text).trim().split(/\n\s*\n/).map((block) => {
    const lines = block.split('\n');
    return lines.every((l) => /^\s*[-*] /.test(l))
      ? h('ul', {}, lines.map((l) => h('li', {}, inline(l.replace(/^\s*[-*] /, '')))))
      : h('p', {}, inline(block));
  }));
}

// ---- Schemas: $ref resolution, types, constraints ------------------------------------------------

const refName = (ref) => ref.split('/').pop();
const schemaAnchor = (name) => `schema-${slug(name)}`;

/** Follows a local JSON pointer ("#/components/schemas/X"); an unknown target gives {}. */
const resolve = (ref) => ref.replace(/^#\/?/, '').split('/').filter(Boolean)
  .reduce((o, k) => (o || {})[decodeURIComponent(k).replace(/~1/g, '/').replace(/~0/g, '~')], spec) || {};

/** The object with its $ref chain followed; as in 3.1, keywords beside a $ref win. */
function deref(s, seen = new Set()) {
  if (!s || !s.$ref || seen.has(s.$ref)) return s || {};
  const { $ref, ...rest } = s;
  return deref({ ...resolve($ref), ...rest }, seen.add($ref));
}

/** A schema with refs followed and allOf folded into one (properties and required merged). */
function flatten(raw, depth = 0) {
  const { allOf, ...out } = deref(raw);
  if (!allOf || depth > 8) return out;
  out.properties = { ...out.properties };
  out.required = [...(out.required || [])];
  for (const part of allOf.map((p) => flatten(p, depth + 1))) {
    Object.assign(out.properties, part.properties);
    out.required.push(...(part.required || []));
    for (const [k, v] of Object.entries(part)) if (!(k in out)) out[k] = v;
  }
  return out;
}

/** The schema's types ("null" included, from 3.1 type arrays or 3.0 nullable). */
function types(s) {
  const t = s.type ?? (s.properties ? 'object' : s.items ? 'array' : undefined);
  return [...(Array.isArray(t) ? t : t ? [t] : []), ...(s.nullable ? ['null'] : [])];
}

/** The oneOf/anyOf alternatives other than a bare null (`Option<T>` is `oneOf: [null, T]`). */
const variants = (s) => (s.oneOf || s.anyOf || []).filter((v) => types(flatten(v)).join() !== 'null');

/** A short type label: "string (uuid)", "array<Task>", "ErrorBody", "integer | null". */
function typeLabel(raw) {
  if (raw && raw.$ref) return refName(raw.$ref);
  const s = flatten(raw);
  if (s.oneOf || s.anyOf) return (s.oneOf || s.anyOf).map(typeLabel).sort((a, b) => (a === 'null') - (b === 'null')).join(' | ');
  const label = types(s).map((t) => (t === 'array' ? `array<${s.items ? typeLabel(s.items) : 'any'}>` : t)).join(' | ');
  return (label || 'any') + (s.format ? ` (${s.format})` : '');
}

/** The type label, linked to its entry under Schemas when it names one. */
function typeNode(raw) {
  const one = variants(deref(raw)).length === 1 ? variants(deref(raw))[0] : {};
  const ref = (raw && raw.$ref) || (deref(raw).items || {}).$ref || one.$ref || '';
  return ref.startsWith('#/components/schemas/')
    ? h('a', { class: 'type', href: `#${schemaAnchor(refName(ref))}` }, typeLabel(raw))
    : h('span', { class: 'type' }, typeLabel(raw));
}

const CONSTRAINTS = { minimum: '≥ ', exclusiveMinimum: '> ', maximum: '≤ ', exclusiveMaximum: '< ', minLength: 'min length ',
  maxLength: 'max length ', minItems: 'min items ', maxItems: 'max items ', uniqueItems: 'unique items', multipleOf: 'multiple of ',
  pattern: 'pattern ', const: 'always ', default: 'default ', readOnly: 'read-only', writeOnly: 'write-only', deprecated: 'deprecated' };

/** Chips for bounds, pattern, default and flags, and the allowed values of an enum. */
function constraints(s) {
  const chips = Object.entries(CONSTRAINTS).filter(([k]) => s[k] !== undefined && s[k] !== false).map(([k, label]) =>
    h('span', { class: `chip c-${k}` }, s[k] === true ? label : label + (k === 'pattern' ? s[k] : JSON.stringify(s[k]))));
  if (s.enum) chips.push(h('span', { class: 'chip enum' }, 'one of ', s.enum.map((v) => h('code', {}, show(v)))));
  return chips;
}

// ---- Schemas: nested field lists and examples ----------------------------------------------------

/** A field (or parameter, or header) as a list item: name, type, required, constraints, description, children. */
function field(name, raw, required, seen, extra = {}) {
  const outer = flatten(raw);
  const only = variants(outer).length === 1 ? variants(outer)[0] : null; // `oneOf: [T]` or `[null, T]` describes T
  const s = only ? { ...flatten(only), ...outer } : outer;
  return h('li', { class: 'field', dataset: { field: name } },
    h('div', { class: 'field-head' }, h('code', { class: 'name' }, name), extra.badge, typeNode(raw),
      required && h('span', { class: 'req' }, 'required'), constraints(s)),
    md(extra.description ?? s.description), extra.badge ? null : fields(raw, seen));
}

/** The children of a schema as a nested <ul> (properties, map values, variants, array items), or null. */
function fields(raw, seen = new Set()) {
  if (!raw || (raw.$ref && seen.has(raw.$ref)) || seen.size > 12) return null;
  const inner = raw.$ref ? new Set([...seen, raw.$ref]) : seen;
  const s = flatten(raw);
  const req = new Set(s.required || []);
  const items = Object.entries(s.properties || {}).map(([k, v]) => field(k, v, req.has(k), inner));
  const more = s.additionalProperties;
  if (more && typeof more === 'object') items.push(field('{key}', more, false, inner, { description: 'any other key' }));
  const alts = variants(s);
  if (alts.length > 1) alts.forEach((v, i) => items.push(field(`${s.oneOf ? 'one' : 'any'} of #${i + 1}`, v, false, inner)));
  if (!items.length && (s.items || alts.length === 1)) return fields(s.items || alts[0], inner);
  return items.length ? h('ul', { class: 'fields' }, items) : null;
}

/** An example value from a schema: its own example(s), else one built from type, format and bounds. */
function sample(raw, skip = 'readOnly', seen = new Set()) {
  if (!raw || (raw.$ref && seen.has(raw.$ref)) || seen.size > 8) return null;
  const inner = raw.$ref ? new Set([...seen, raw.$ref]) : seen;
  const s = flatten(raw);
  const own = schemaExample(s) ?? s.const ?? s.default ?? (s.enum || [])[0];
  if (own !== undefined) return own;
  if (s.oneOf || s.anyOf) return sample(variants(s)[0], skip, inner);
  const t = types(s);
  switch (t.find((x) => x !== 'null') || (t.length ? 'null' : 'object')) {
    case 'object': return Object.fromEntries(Object.entries(s.properties || {})
      .filter(([, v]) => !deref(v)[skip]).map(([k, v]) => [k, sample(v, skip, inner)]));
    case 'array': return [sample(s.items, skip, inner)].filter((v) => v !== null); // [] when the items recurse
    case 'integer': case 'number':
      return Math.min(s.minimum ?? (typeof s.exclusiveMinimum === 'number' ? s.exclusiveMinimum + 1 : 1), s.maximum ?? Infinity);
    case 'boolean': return true;
    case 'string': return FORMAT_SAMPLES[s.format] ?? 'string';
    default: return null;
  }
}

// Examples: a schema's `example` or first of its `examples` array; a parameter's or media type's `example` or
// first of its `examples` map; else one synthesised from the schema.
const schemaExample = (s) => s.example ?? (Array.isArray(s.examples) ? s.examples[0] : undefined);
const ownExample = (o) => o.example ?? deref(Object.values(o.examples || {})[0]).value;
function exampleOf(o, skip) {
  const built = o.schema && sample(o.schema, skip); // only a built object or array says more than the type does
  return ownExample(o) ?? (o.schema && schemaExample(flatten(o.schema))) ?? (typeof built === 'object' && built ? built : undefined);
}
/** An example as text: strings of non-JSON media types as they are, anything else as indented JSON. */
const exampleText = (v, type = 'application/json') => (v === undefined || v === null ? undefined : typeof v === 'string' && !/json/.test(type) ? v : pretty(v));

/** A schema block: its type (linked), then its fields and example text, each collapsible (closed for errors). */
function schemaBlock(raw, { open = true, example, label = raw } = {}) {
  const list = fields(raw);
  return h('div', { class: 'schema' }, h('div', { class: 'schema-type' }, 'Schema: ', typeNode(label)),
    list && h('details', { class: 'schema-fields', open }, h('summary', {}, 'Fields'), list),
    example !== undefined && h('details', { class: 'example', open }, h('summary', {}, 'Example'), h('pre', { class: 'code', tabindex: '0' }, example)));
}

// ---- Operations: grouping and documentation ------------------------------------------------------

/** Operations grouped by their first tag (declared tags first), else by first path segment. */
function collectOperations() {
  const groups = new Map((spec.tags || []).map((t) => [t.name, { tag: t, ops: [] }]));
  const used = new Set();
  for (const [path, item] of Object.entries(spec.paths || {})) {
    const pathItem = deref(item);
    for (const method of METHODS.filter((m) => pathItem[m])) {
      const op = pathItem[method];
      const tag = (op.tags || [])[0] || path.split('/').filter(Boolean)[0] || 'default';
      const id = op.operationId || `${method} ${path}`;
      let dom = `op-${slug(id)}`;
      while (used.has(dom)) dom += '_'; // ids must stay unique even when two slugs collide
      used.add(dom);
      const params = new Map([...(pathItem.parameters || []), ...(op.parameters || [])].map((p) => deref(p)).map((p) => [`${p.in}:${p.name}`, p]));
      if (!groups.has(tag)) groups.set(tag, { tag: { name: tag }, ops: [] });
      groups.get(tag).ops.push({ id, dom, method, path, op, params: [...params.values()].filter((p) => p.in !== 'cookie') });
    }
  }
  return [...groups.values()].filter((g) => g.ops.length);
}

/** "auth", "auth optional" (an empty requirement is listed too) or null, from the operation's or document's security. */
function authLabel(op) {
  const reqs = op.security || spec.security || [];
  return reqs.some((r) => Object.keys(r).length) ? (reqs.some((r) => !Object.keys(r).length) ? 'auth optional' : 'auth') : null;
}
const badge = (where) => h('span', { class: `in in-${where}` }, where);
const mediaList = (content, skip, open) => Object.entries(content || {}).map(([type, m]) => h('div', { class: 'media', dataset: { mediaType: type } },
  h('code', { class: 'media-type' }, type), m.schema && schemaBlock(m.schema, { open, example: exampleText(exampleOf(m, skip), type) })));

function renderOperation(o) {
  const { op, method, path, dom } = o;
  const rb = deref(op.requestBody);
  const docs = h('div', { class: 'op-docs' }, md(op.description),
    o.params.length > 0 && h('section', { class: 'block params' }, h('h4', {}, 'Parameters'),
      h('ul', { class: 'fields' }, o.params.map((p) => field(p.name, p.schema || {}, p.required, new Set(),
        { badge: badge(p.in), description: p.description ?? deref(p.schema).description })))),
    rb.content && h('section', { class: 'block request-body' },
      h('h4', {}, 'Request body ', h('span', { class: rb.required ? 'req' : 'muted' }, rb.required ? 'required' : 'optional')),
      md(rb.description), mediaList(rb.content, 'readOnly', true)));
  const responses = h('section', { class: 'block responses' }, h('h4', {}, 'Responses'),
    Object.entries(op.responses || {}).map(([code, r]) => renderResponse(code, deref(r))));
  // Try it comes before the responses: beside the docs on wide screens, between them on narrow ones.
  const body = h('div', { class: 'op-body', id: `${dom}-body`, hidden: true }, docs, tryPanel(o, rb), responses);
  const toggle = h('button', { type: 'button', class: 'op-toggle', id: `${dom}-toggle`, 'aria-expanded': 'false', 'aria-controls': body.id },
    h('span', { class: `method m-${method}` }, method.toUpperCase()), h('code', { class: 'path' }, path),
    h('span', { class: 'summary' }, inline(op.summary || '')), op.deprecated && h('span', { class: 'chip' }, 'deprecated'),
    authLabel(op) && h('span', { class: 'chip auth', title: 'the bearer token field is sent as Authorization' }, authLabel(op)));
  const section = h('section', { class: `op op-${method}`, id: dom, dataset: { operationId: o.id, method, path } },
    h('h3', { class: 'op-head' }, toggle), body);
  toggle.addEventListener('click', () => setOpen(section, body.hidden));
  return section;
}

/** One documented response: status, description, headers, and a schema block per media type. */
function renderResponse(code, r) {
  return h('div', { class: `response ${statusClass(code)}`, dataset: { status: code } },
    h('div', { class: 'response-head' }, h('span', { class: 'status' }, code), md(r.description)),
    r.headers && h('ul', { class: 'fields headers' }, Object.entries(r.headers).map(([name, raw]) => {
      const hd = deref(raw);
      return field(name, hd.schema || {}, hd.required, new Set(), { badge: badge('header'), description: hd.description });
    })),
    mediaList(r.content, 'writeOnly', code.startsWith('2')));
}

function setOpen(section, open) {
  section.querySelector('.op-body').hidden = !open;
  section.querySelector('.op-toggle').setAttribute('aria-expanded', String(open));
  section.classList.toggle('open', open);
}

// ---- Try it: the form ----------------------------------------------------------------------------

const row = (id, label, input) => h('div', { class: 'try-row' }, h('label', { for: id }, label), input);

/** A form per operation: one input per path/query/header parameter, the body, Accept, Send and Stop. */
function tryPanel(o, rb) {
  const { dom, method } = o;
  const inputs = o.params.map((p) => {
    const s = flatten(p.schema);
    const id = `${dom}-${p.in}-${slug(p.name)}`;
    const value = ownExample(p) ?? schemaExample(s) ?? s.default ?? (p.required ? sample(p.schema) : undefined);
    const choices = s.enum || (types(s).includes('boolean') ? [true, false] : null);
    const input = choices
      ? h('select', { id }, !p.required && h('option', { value: '' }, '(none)'), choices.map((c) => h('option', {}, show(c))))
      : h('input', { id, type: 'text', spellcheck: 'false', autocomplete: 'off', required: p.in === 'path',
        inputmode: /integer|number/.test(types(s)) ? 'numeric' : undefined, placeholder: show(sample(p.schema) ?? '') });
    input.value = value === undefined || value === null ? '' : Array.isArray(value) ? value.join(',') : show(value);
    Object.assign(input.dataset, { in: p.in, name: p.name, array: types(s).includes('array') ? '1' : '' });
    return row(id, [h('code', {}, p.name), badge(p.in), p.required && h('span', { class: 'req' }, 'required')], input);
  });
  // The body: JSON preferred when the operation accepts several media types.
  const bodyTypes = Object.keys(rb.content || {});
  const bodyType = bodyTypes.find((t) => /json/.test(t)) || bodyTypes[0];
  let bodyArea = null;
  if (bodyType) {
    const text = exampleText(exampleOf(rb.content[bodyType], 'readOnly') ?? sample(rb.content[bodyType].schema), bodyType) ?? '';
    bodyArea = h('textarea', { id: `${dom}-body-input`, class: 'code', spellcheck: 'false', rows: Math.min(18, Math.max(4, text.split('\n').length + 1)) });
    bodyArea.value = text;
  }
  // Accept: the media types of the success responses, a choice when there are several.
  const accepts = [...new Set(Object.entries(o.op.responses || {}).filter(([c]) => /^2/.test(c))
    .flatMap(([, r]) => Object.keys(deref(r).content || {})))];
  const accept = accepts.length > 1 ? h('select', { id: `${dom}-accept` }, accepts.map((t) => h('option', {}, t))) : null;

  const ui = { inputs: inputs.map((r) => r.lastChild), bodyArea, bodyType, accept, accepts, controller: null,
    stop: h('button', { type: 'button', id: `${dom}-stop`, hidden: true }, 'Stop'),
    result: h('div', { class: 'result', id: `${dom}-result`, hidden: true }) };
  ui.stop.addEventListener('click', () => ui.controller?.abort());
  const form = h('form', { class: 'try', id: `${dom}-try`, 'aria-label': `Try ${method.toUpperCase()} ${o.path}`, autocomplete: 'off' },
    h('h4', {}, 'Try it'), inputs,
    bodyArea && row(bodyArea.id, ['Body ', h('span', { class: 'muted' }, bodyType)], bodyArea),
    accept && row(accept.id, 'Accept', accept),
    h('div', { class: 'try-actions' }, h('button', { type: 'submit', class: 'primary', id: `${dom}-send` }, 'Send'), ui.stop),
    ui.result);
  form.addEventListener('submit', (e) => { e.preventDefault(); execute(o, ui); });
  return form;
}

// ---- Try it: sending and showing the response ----------------------------------------------------

/** Builds the request from the form, sends it and shows status, headers and body. */
async function execute(o, ui) {
  ui.controller?.abort();
  const controller = (ui.controller = new AbortController());
  let path = o.path;
  const query = new URLSearchParams();
  const headers = { Accept: ui.accept ? ui.accept.value : ui.accepts[0] || '*/*' };
  for (const input of ui.inputs) {
    const { in: where, name, array } = input.dataset;
    const v = input.value.trim();
    if (where === 'path') path = path.replaceAll(`{${name}}`, encodeURIComponent(v));
    else if (v && where === 'query') (array ? v.split(',') : [v]).forEach((x) => query.append(name, x.trim()));
    else if (v) headers[name] = v;
  }
  const url = base + path + (query.toString() ? `?${query}` : '');
  const token = localStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  let body;
  let warning = null;
  if (ui.bodyArea && !['get', 'head'].includes(o.method) && ui.bodyArea.value.trim()) {
    body = ui.bodyArea.value;
    headers['Content-Type'] = ui.bodyType;
    try { if (/json/.test(ui.bodyType)) JSON.parse(body); } catch { warning = h('p', { class: 'warn' }, 'The body is not valid JSON; it was sent as typed.'); }
  }
  const status = h('p', { class: 'res-status', id: `${o.dom}-status`, role: 'status' }, 'Sending…');
  const out = h('div', { class: 'res-body', id: `${o.dom}-response` });
  ui.result.replaceChildren(h('p', { class: 'res-request' },
    h('span', { class: `method m-${o.method}` }, o.method.toUpperCase()), ' ', h('code', {}, url)), warning || '', status, out);
  ui.result.hidden = ui.stop.hidden = false;
  const started = performance.now();
  try {
    const res = await fetch(url, { method: o.method.toUpperCase(), headers, body, signal: controller.signal, cache: 'no-store' });
    const documented = o.op.responses || {};
    const doc = deref(documented[res.status] || documented[`${String(res.status)[0]}XX`] || documented.default);
    status.replaceChildren(h('span', { class: `status ${statusClass(res.status)}` }, String(res.status)),
      ` ${res.statusText || (doc.description || '').split('\n')[0]} · ${Math.round(performance.now() - started)} ms`);
    status.dataset.status = res.status;
    out.before(h('details', { class: 'res-headers', id: `${o.dom}-headers` }, h('summary', {}, 'Response headers'),
      h('dl', {}, [...res.headers].map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]))));
    const type = (res.headers.get('content-type') || '').toLowerCase();
    if (type.startsWith('text/event-stream')) await showEvents(res, out);
    else if (/^application\/([\w.-]+\+)?json\b/.test(type)) out.append(h('pre', { class: 'code', tabindex: '0' }, prettyText(await res.text())));
    else await showPreview(res, out);
  } catch (e) {
    if (e.name === 'AbortError') out.append(h('p', { class: 'muted note' }, 'Stopped.'));
    else status.replaceChildren(h('span', { class: 'status s0xx' }, 'error'), ` ${e.message} (network failure)`);
  } finally {
    if (ui.controller === controller) { ui.controller = null; ui.stop.hidden = true; }
  }
}

/** Text, CSV, NDJSON and other streams: the first 64 KiB, shown as they arrive. */
async function showPreview(res, out) {
  const pre = h('pre', { class: 'code', tabindex: '0' });
  const note = h('p', { class: 'muted note' }, 'Reading…');
  out.append(pre, note);
  const [reader, decoder] = [res.body.getReader(), new TextDecoder()];
  let [size, state] = [0, 'stopped'];
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) { state = 'complete'; break; }
      pre.append(decoder.decode(value.subarray(0, PREVIEW_BYTES - size), { stream: true }));
      size += value.length;
      if (size >= PREVIEW_BYTES) { state = 'cut'; reader.cancel().catch(() => {}); break; }
    }
  } finally {
    pre.append(decoder.decode());
    if (!size) pre.textContent = '(empty body)';
    note.textContent = state === 'cut' ? 'Showing the first 64 KiB; reading stopped there.'
      : `${size.toLocaleString()} bytes${state === 'stopped' ? ' read before stopping' : ''}.`;
  }
}

/** text/event-stream: each event as it arrives, until the stream ends or Stop is pressed. */
async function showEvents(res, out) {
  const count = h('p', { class: 'muted note' }, 'Waiting for events… (Stop ends the stream)');
  const list = h('ol', { class: 'events', id: `${out.id}-events`, tabindex: '0', 'aria-label': 'Received events' });
  out.append(count, list);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let [buf, n] = ['', 0];
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    const blocks = (buf + value).split(/\r?\n\r?\n/);
    buf = blocks.pop();
    for (const ev of blocks.map(parseEvent).filter(Boolean)) {
      const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 8;
      list.append(h('li', { class: 'event' }, h('div', { class: 'event-head' }, h('code', { class: 'event-name' }, ev.event),
        ev.id !== undefined && h('span', { class: 'muted' }, `id ${ev.id}`), h('time', { class: 'muted' }, new Date().toLocaleTimeString())),
      h('pre', { class: 'code' }, prettyText(ev.data))));
      if (list.children.length > MAX_EVENTS) list.firstChild.remove();
      if (atBottom) list.scrollTop = list.scrollHeight;
      count.textContent = `${++n} event${n === 1 ? '' : 's'} received${n > MAX_EVENTS ? ` (last ${MAX_EVENTS} shown)` : ''}.`;
    }
  }
  count.textContent += ' Stream ended.';
}

/** One SSE block as {event, data, id}: "field: value" lines (":" comments never match); null without data. */
function parseEvent(block) {
  const ev = { event: 'message', data: [], id: undefined };
  for (const [, key, val] of block.matchAll(/^([^:\r\n]+):? ?(.*)$/gm)) {
    if (key === 'data') ev.data.push(val);
    else if (key === 'event' || key === 'id') ev[key] = val;
  }
  return ev.data.length ? { ...ev, data: ev.data.join('\n') } : null;
}

// ---- Page: header, contents, operations, schemas -------------------------------------------------

function renderPage() {
  const info = spec.info || {};
  document.title = `${info.title || 'API'} · API documentation`;
  $('#api-title').textContent = info.title || 'API documentation';
  if (info.version) Object.assign($('#api-version'), { textContent: `v${info.version}`, hidden: false });
  $('#api-description').replaceChildren(md(info.description) || '');
  // Requests go to the first server when it is on this origin (relative URLs are), else here.
  const server = (spec.servers || [])[0];
  if (server) {
    const url = new URL(server.url.replace(/\{(\w+)\}/g, (_, k) => server.variables?.[k]?.default ?? ''), location.href);
    base = url.origin === location.origin ? url.pathname.replace(/\/$/, '') : '';
  }
  for (const { tag, ops } of collectOperations()) {
    const id = `tag-${slug(tag.name)}`;
    $('#operations').append(h('section', { class: 'tag', id, dataset: { tag: tag.name }, 'aria-labelledby': `${id}-title` },
      h('h2', { id: `${id}-title` }, tag.name), md(tag.description), ops.map(renderOperation)));
    $('#toc-list').append(h('li', {}, h('a', { href: `#${id}`, class: 'toc-tag' }, tag.name),
      h('ol', {}, ops.map((o) => h('li', {}, h('a', { href: `#${o.dom}` },
        h('span', { class: `method m-${o.method}` }, o.method.toUpperCase()), h('span', { class: 'toc-path' }, o.path)))))));
  }
  const schemas = Object.entries((spec.components || {}).schemas || {});
  $('#schemas').hidden = !schemas.length;
  $('#schema-list').append(...schemas.map(([name, s]) => {
    const ref = { $ref: `#/components/schemas/${name.replace(/~/g, '~0').replace(/\//g, '~1')}` }; // so self-references stop at once
    return h('section', { class: 'schema-entry', id: schemaAnchor(name), dataset: { schema: name } },
      h('h3', {}, name), md(s.description), schemaBlock(ref, { label: s, example: exampleText(sample(ref, null)) }));
  }));
  if (schemas.length) $('#toc-list').append(h('li', {}, h('a', { href: '#schemas', class: 'toc-tag' }, 'Schemas')));
}

/** Opens the operation the URL fragment names (or lies in) and scrolls to it. */
function followHash() {
  const target = location.hash && document.getElementById(decodeURIComponent(location.hash.slice(1)));
  if (!target) return;
  if (target.closest('.op')) setOpen(target.closest('.op'), true);
  target.scrollIntoView();
}

// ---- Page: controls and start ----------------------------------------------------------------------

function wireControls() {
  const token = $('#api-token');
  const narrow = () => matchMedia('(max-width: 900px)').matches;
  token.value = localStorage.getItem(TOKEN_KEY) || '';
  token.addEventListener('input', () => (token.value ? localStorage.setItem(TOKEN_KEY, token.value) : localStorage.removeItem(TOKEN_KEY)));
  $('#token-form').addEventListener('submit', (e) => e.preventDefault());
  $('#api-token-clear').addEventListener('click', () => { token.value = ''; localStorage.removeItem(TOKEN_KEY); });
  $('#api-token-toggle').addEventListener('click', (e) => {
    token.type = token.type === 'password' ? 'text' : 'password';
    e.currentTarget.setAttribute('aria-pressed', String(token.type === 'text'));
  });
  // A contents link opens its operation even when the fragment is already in the URL.
  $('#toc-list').addEventListener('click', (e) => {
    const a = e.target.closest('a');
    const op = a && document.getElementById(a.getAttribute('href').slice(1));
    if (op && op.classList.contains('op')) setOpen(op, true);
    if (a && narrow()) $('#toc-details').open = false;
  });
  window.addEventListener('hashchange', followHash);
  if (narrow()) $('#toc-details').open = false;
}

async function main() {
  wireControls();
  try {
    const res = await fetch('/openapi.json', { headers: { Accept: 'application/json' }, cache: 'no-store' });
    if (!res.ok) throw new Error(`/openapi.json answered ${res.status}`);
    spec = await res.json();
    renderPage();
    $('#docs-status').hidden = true;
    document.body.dataset.state = 'ready';
    followHash();
  } catch (e) {
    const retry = h('button', { type: 'button', id: 'docs-retry' }, 'Retry');
    retry.addEventListener('click', () => location.reload());
    $('#docs-status').replaceChildren(h('span', { class: 'warn' }, `Could not load the API description: ${e.message}. `), retry);
    document.body.dataset.state = 'error';
  }
}

main();
