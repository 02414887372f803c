// Interactive API documentation: reads the service's OpenAPI 3.1 document from /openapi.json and
// renders every operation (parameters, bodies, responses, schemas) with a "Try it" panel.
// Plain browser JavaScript, no dependencies; nothing is fetched but /openapi.json and the API.
'use strict';

// ---- Helpers -------------------------------------------------------------------------------

const $ = (sel) => document.querySelector(sel);
const TOKEN_KEY = 'docs.apiToken';
const PREVIEW_BYTES = 64 * 1024;
const MAX_EVENTS = 500;
const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];
const FORMAT_SAMPLES = {
  uuid: '3fa85f64-5717-4562-b3fc-2c963f66afa6', 'date-time': '2025-01-01T12:00:00Z', date: '2025-01-01',
  time: '12:00:00Z', email: 'user@example.com', uri: 'https://example.com/', hostname: 'example.com',
  ipv4: '192.0.2.1', ipv6: '2001:db8::1', byte: 'U3dhZ2dlcg==', duration: 'PT1M',
};
let spec = {};
let base = '';

/** Builds an element: h('a', {href, class: 'x'}, 'text', child...). Text is never parsed as HTML. */
function h(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat(Infinity)) if (c !== null && c !== undefined && c !== false) e.append(c);
  return e;
}

const slug = (s) => String(s).replace(/[^A-Za-z0-9_]+/g, '-').replace(/^-+|-+$/g, '') || 'x';
const pretty = (v) => JSON.stringify(v, null, 2);
const show = (v) => (typeof v === 'string' ? v : JSON.stringify(v));

/** The CommonMark subset descriptions use: paragraphs, "- " lists, `code`, **bold**, [links](url). */
function md(text) {
  if (!text) return null;
  const box = h('div', { class: 'md' });
  for (const block of String(text).trim().split(/\n\s*\n/)) {
    const lines = block.split('\n');
    if (lines.every((l) => /^\s*[-*] /.test(l))) {
      box.append(h('ul', {}, lines.map((l) => h('li', {}, inline(l.replace(/^\s*[-*] /, ''))))));
    } else box.append(h('p', {}, inline(block)));
  }
  return box;
}
function inline(s) {
  return s.split(/(`[^`]+`|\*\*[^*]+\*\*|\[[^\]]+\]\([^)\s]+\))/).map((part, i) => {
    if (i % 2 === 0) return part;
    if (part[0] === '`') return h('code', {}, part.slice(1, -1));
    if (part[0] === '*') return h('strong', {}, part.slice(2, -2));
    const [, label, href] = part.match(/^\[([^\]]+)\]\(([^)\s]+)\)$/);
    return /^(https?:|\/|#)/.test(href) ? h('a', { href }, label) : label;
  });
}

// ---- Schemas: $ref resolution, type labels, constraints ---------------------------------------

const refName = (ref) => ref.split('/').pop();
const schemaAnchor = (name) => `schema-${slug(name)}`;

/** Follows a local JSON pointer ("#/components/schemas/X"); unknown targets give {}. */
function resolve(ref) {
  const keys = ref.replace(/^#\/?/, '').split('/').filter(Boolean);
  return keys.reduce((o, k) => (o || {})[decodeURIComponent(k).replace(/~1/g, '/').replace(/~0/g, '~')], spec) || {};
}

/** The object with its $ref chain followed; as in 3.1, keywords beside a $ref win. */
function deref(s) {
  const seen = new Set();
  while (s && s.$ref && !seen.has(s.$ref)) {
    seen.add(s.$ref);
    const { $ref, ...rest } = s;
    s = { ...resolve($ref), ...rest };
  }
  return s || {};
}

/** A schema with refs followed and allOf folded into one object (properties, required merged). */
function flatten(raw, depth = 0) {
  const s = deref(raw);
  if (!s.allOf || depth > 8) return s;
  const out = { ...s, properties: { ...s.properties }, required: [...(s.required || [])] };
  delete out.allOf;
  for (const part of s.allOf.map((p) => flatten(p, depth + 1))) {
    for (const [k, v] of Object.entries(part)) {
      if (k === 'properties') Object.assign(out.properties, v);
      else if (k === 'required') out.required.push(...v);
      else if (!(k in out)) out[k] = v;
    }
  }
  return out;
}

/** The schema's types as a list ("null" included for 3.1 type arrays and 3.0 nullable). */
function types(s) {
  const t = s.type ?? (s.properties ? 'object' : s.items ? 'array' : undefined);
  const list = Array.isArray(t) ? [...t] : t ? [t] : [];
  if (s.nullable) list.push('null');
  return list;
}

/** A short type label: "string (uuid)", "array<Task>", "ErrorBody", "integer | null". */
function typeLabel(raw) {
  if (raw && raw.$ref) return refName(raw.$ref);
  const s = flatten(raw);
  const alts = s.oneOf || s.anyOf;
  if (alts) return alts.map(typeLabel).join(' | ');
  const label = types(s).map((t) => (t === 'array' ? `array<${s.items ? typeLabel(s.items) : 'any'}>` : t)).join(' | ');
  return (label || 'any') + (s.format ? ` (${s.format})` : '');
}

/** The type label, linked to its entry in the Schemas section when it names one. */
function typeNode(raw) {
  const ref = (raw && raw.$ref) || (deref(raw).items || {}).$ref;
  const label = typeLabel(raw);
  return ref && ref.startsWith('#/components/schemas/')
    ? h('a', { class: 'type', href: `#${schemaAnchor(refName(ref))}` }, label)
    : h('span', { class: 'type' }, label);
}

const CONSTRAINTS = [
  ['minimum', '≥ '], ['exclusiveMinimum', '> '], ['maximum', '≤ '], ['exclusiveMaximum', '< '],
  ['minLength', 'min length '], ['maxLength', 'max length '], ['minItems', 'min items '],
  ['maxItems', 'max items '], ['uniqueItems', 'unique items'], ['multipleOf', 'multiple of '],
  ['pattern', 'pattern '], ['const', 'always '], ['default', 'default '],
  ['readOnly', 'read-only'], ['writeOnly', 'write-only'], ['deprecated', 'deprecated'],
];

/** Chips for bounds, pattern, default, flags and the allowed values of an enum. */
function constraints(s) {
  const chips = [];
  for (const [key, label] of CONSTRAINTS) {
    const v = s[key];
    if (v === undefined || v === false) continue;
    const text = v === true ? label : label + (key === 'pattern' ? v : JSON.stringify(v));
    chips.push(h('span', { class: `chip c-${key}` }, text));
  }
  if (s.enum) chips.push(h('span', { class: 'chip enum' }, 'one of ', s.enum.map((v) => h('code', {}, show(v)))));
  return chips;
}

// ---- Schemas: nested field lists and examples -------------------------------------------------

/** One field (or parameter) as a list item: name, type, required, constraints, description, children. */
function field(name, raw, required, seen, extra = {}) {
  const s = flatten(raw);
  return h('li', { class: 'field', dataset: { field: name } },
    h('div', { class: 'field-head' }, h('code', { class: 'name' }, name), extra.badge, typeNode(raw),
      required && h('span', { class: 'req', title: 'required' }, 'required'), constraints(s)),
    md(extra.description ?? s.description), extra.badge ? null : fields(raw, seen));
}

/** The children of a schema as a nested <ul> (object properties, array items, variants), or null. */
function fields(raw, seen = new Set()) {
  if (!raw || (raw.$ref && seen.has(raw.$ref)) || seen.size > 12) return null;
  const inner = new Set(seen);
  if (raw.$ref) inner.add(raw.$ref);
  const s = flatten(raw);
  const items = [];
  const req = new Set(s.required || []);
  for (const [k, v] of Object.entries(s.properties || {})) items.push(field(k, v, req.has(k), inner));
  if (s.additionalProperties && typeof s.additionalProperties === 'object') {
    items.push(field('{key}', s.additionalProperties, false, inner, { description: 'any other key' }));
  }
  const alts = s.oneOf || s.anyOf;
  if (alts) alts.forEach((v, i) => items.push(field(s.oneOf ? `one of #${i + 1}` : `any of #${i + 1}`, v, false, inner)));
  if (s.items && !items.length) return fields(s.items, inner);
  return items.length ? h('ul', { class: 'fields' }, items) : null;
}

/** An example value: the schema's own example(s), else one built from its type, format and bounds. */
function sample(raw, skip = 'readOnly', seen = new Set()) {
  if (!raw || (raw.$ref && seen.has(raw.$ref)) || seen.size > 8) return null;
  const inner = raw.$ref ? new Set([...seen, raw.$ref]) : seen;
  const s = flatten(raw);
  if (s.example !== undefined) return s.example;
  if (Array.isArray(s.examples) && s.examples.length) return s.examples[0];
  if (s.const !== undefined) return s.const;
  if (s.default !== undefined) return s.default;
  if (s.enum) return s.enum[0];
  const alt = (s.oneOf || s.anyOf || [])[0];
  if (alt) return sample(alt, skip, inner);
  switch (types(s).find((t) => t !== 'null') || (types(s).length ? 'null' : 'object')) {
    case 'object': {
      const o = {};
      for (const [k, v] of Object.entries(s.properties || {})) if (!deref(v)[skip]) o[k] = sample(v, skip, inner);
      return o;
    }
    case 'array': return s.items ? [sample(s.items, skip, inner)] : [];
    case 'integer': case 'number': {
      const low = s.minimum ?? (typeof s.exclusiveMinimum === 'number' ? s.exclusiveMinimum + 1 : 1);
      return Math.min(low, s.maximum ?? Infinity);
    }
    case 'boolean': return true;
    case 'string': return FORMAT_SAMPLES[s.format] ?? 'string';
    default: return null;
  }
}

/** Example of a media type: its example, the first of its examples, else one from its schema. */
function mediaExample(media, skip) {
  if (!media) return undefined;
  if (media.example !== undefined) return media.example;
  const first = Object.values(media.examples || {})[0];
  if (first) return deref(first).value;
  return media.schema ? sample(media.schema, skip) : undefined;
}

/** Explicit example of a parameter (its own or its schema's), or undefined. */
function paramExample(p) {
  if (p.example !== undefined) return p.example;
  const first = Object.values(p.examples || {})[0];
  if (first) return deref(first).value;
  const s = flatten(p.schema);
  return s.example ?? (Array.isArray(s.examples) ? s.examples[0] : undefined) ?? s.default;
}

/** A schema as type line, description, field list and an example (collapsible). */
function schemaBlock(raw, { open = true, example, skip } = {}) {
  const value = example !== undefined ? example : sample(raw, skip);
  return h('div', { class: 'schema' },
    h('div', { class: 'schema-type' }, 'Schema: ', typeNode(raw)),
    raw.$ref ? null : md(deref(raw).description),
    fields(raw),
    value !== undefined && value !== null &&
      h('details', { class: 'example', open }, h('summary', {}, 'Example'), h('pre', { class: 'code' }, pretty(value))));
}

// ---- Operations: grouping and documentation -----------------------------------------------------

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
      while (used.has(dom)) dom += '-';
      used.add(dom);
      const params = new Map();
      for (const p of [...(pathItem.parameters || []), ...(op.parameters || [])].map(deref)) params.set(`${p.in}:${p.name}`, p);
      if (!groups.has(tag)) groups.set(tag, { tag: { name: tag }, ops: [] });
      groups.get(tag).ops.push({ id, dom, method, path, op, params: [...params.values()] });
    }
  }
  return [...groups.values()].filter((g) => g.ops.length);
}

/** Whether the operation needs credentials (its own security, else the document's). */
const needsAuth = (op) => (op.security || spec.security || []).some((r) => Object.keys(r).length);
const statusClass = (code) => `s${String(code)[0]}xx`;

function renderOperation(o) {
  const { op, method, path, dom } = o;
  const params = o.params.filter((p) => p.in !== 'cookie');
  const rb = deref(op.requestBody);
  const docs = h('div', { class: 'op-docs' },
    md(op.description),
    params.length > 0 && h('section', { class: 'block params' }, h('h4', {}, 'Parameters'),
      h('ul', { class: 'fields' }, params.map((p) => field(p.name, p.schema || {}, p.required, new Set(),
        { badge: h('span', { class: `in in-${p.in}` }, p.in), description: p.description ?? deref(p.schema).description })))),
    rb.content && h('section', { class: 'block request-body' },
      h('h4', {}, 'Request body ', rb.required ? h('span', { class: 'req' }, 'required') : h('span', { class: 'muted' }, 'optional')),
      md(rb.description),
      Object.entries(rb.content).map(([type, media]) => h('div', { class: 'media', dataset: { mediaType: type } },
        h('code', { class: 'media-type' }, type),
        media.schema && schemaBlock(media.schema, { example: mediaExample(media, 'readOnly') })))),
    h('section', { class: 'block responses' }, h('h4', {}, 'Responses'),
      Object.entries(op.responses || {}).map(([code, r]) => renderResponse(code, deref(r)))));
  const body = h('div', { class: 'op-body', id: `${dom}-body`, hidden: true }, docs, tryPanel(o, rb));
  const toggle = h('button', { type: 'button', class: 'op-toggle', id: `${dom}-toggle`, 'aria-expanded': 'false', 'aria-controls': body.id },
    h('span', { class: `method m-${method}` }, method.toUpperCase()), h('code', { class: 'path' }, path),
    h('span', { class: 'summary' }, op.summary || ''),
    op.deprecated && h('span', { class: 'chip' }, 'deprecated'),
    needsAuth(op) && h('span', { class: 'chip auth', title: 'needs the bearer token' }, 'auth'));
  const section = h('section', { class: `op op-${method}`, id: dom, dataset: { operationId: o.id, method, path } },
    h('h3', { class: 'op-head' }, toggle), body);
  toggle.addEventListener('click', () => setOpen(section, body.hidden));
  return section;
}

function renderResponse(code, r) {
  const content = Object.entries(r.content || {});
  return h('div', { class: `response ${statusClass(code)}`, dataset: { status: code } },
    h('div', { class: 'response-head' }, h('span', { class: 'status' }, code), md(r.description)),
    Object.keys(r.headers || {}).length > 0 && h('ul', { class: 'fields headers' },
      Object.entries(r.headers).map(([name, hd]) => field(name, deref(hd).schema || {}, deref(hd).required, new Set(),
        { badge: h('span', { class: 'in in-header' }, 'header'), description: deref(hd).description }))),
    content.map(([type, media]) => h('div', { class: 'media', dataset: { mediaType: type } },
      h('code', { class: 'media-type' }, type),
      media.schema && schemaBlock(media.schema, { open: code.startsWith('2'), example: mediaExample(media, 'writeOnly'), skip: 'writeOnly' }))));
}

function setOpen(section, open) {
  section.querySelector('.op-body').hidden = !open;
  section.querySelector('.op-toggle').setAttribute('aria-expanded', String(open));
  section.classList.toggle('open', open);
}

// ---- Try it: inputs and request -----------------------------------------------------------------

/** A labelled row for the Try-it form. */
const row = (id, label, input) => h('div', { class: 'try-row' }, h('label', { for: id }, label), input);

function tryPanel(o, rb) {
  const { dom, method } = o;
  const inputs = o.params.filter((p) => ['path', 'query', 'header'].includes(p.in)).map((p) => {
    const s = flatten(p.schema);
    const id = `${dom}-${p.in}-${slug(p.name)}`;
    const example = paramExample(p) ?? (p.required ? sample(p.schema) : undefined);
    const choices = s.enum || (types(s).includes('boolean') ? [true, false] : null);
    const input = choices
      ? h('select', { id }, !p.required && h('option', { value: '' }, '(none)'), choices.map((c) => h('option', { value: show(c) }, show(c))))
      : h('input', { id, type: 'text', spellcheck: 'false', autocomplete: 'off', required: p.in === 'path',
        inputmode: /integer|number/.test(types(s)) ? 'numeric' : undefined, placeholder: show(sample(p.schema) ?? '') });
    input.value = example === undefined || example === null ? '' : Array.isArray(example) ? example.join(',') : show(example);
    Object.assign(input.dataset, { in: p.in, name: p.name, array: types(s).includes('array') ? '1' : '' });
    return row(id, [h('code', {}, p.name), h('span', { class: `in in-${p.in}` }, p.in), p.required && h('span', { class: 'req' }, 'required')], input);
  });
  // Body: a textarea per operation, refilled with the example of the chosen content type.
  const bodyTypes = Object.keys(rb.content || {});
  const bodyArea = bodyTypes.length ? h('textarea', { id: `${dom}-body-input`, class: 'code', rows: 8, spellcheck: 'false' }) : null;
  const ctSelect = bodyTypes.length > 1 ? h('select', { id: `${dom}-content-type` }, bodyTypes.map((t) => h('option', {}, t))) : null;
  const fill = () => {
    const type = ctSelect ? ctSelect.value : bodyTypes[0];
    const ex = mediaExample(rb.content[type], 'readOnly');
    bodyArea.value = ex === undefined ? '' : typeof ex === 'string' && !/json/.test(type) ? ex : pretty(ex);
  };
  if (bodyArea) { fill(); ctSelect?.addEventListener('change', fill); }
  // Accept: the media types of the success responses; a choice when there are several.
  const accepts = [...new Set(Object.entries(o.op.responses || {}).filter(([c]) => /^2/.test(c))
    .flatMap(([, r]) => Object.keys(deref(r).content || {})))];
  const acceptSelect = accepts.length > 1 ? h('select', { id: `${dom}-accept` }, accepts.map((t) => h('option', {}, t))) : null;

  const ui = { inputs: inputs.map((r) => r.lastChild), bodyArea, ctSelect, acceptSelect, accepts, bodyTypes, controller: null };
  ui.send = h('button', { type: 'submit', class: 'primary', id: `${dom}-send` }, 'Send');
  ui.stop = h('button', { type: 'button', id: `${dom}-stop`, hidden: true }, 'Stop');
  ui.result = h('div', { class: 'result', id: `${dom}-result`, hidden: true });
  ui.stop.addEventListener('click', () => ui.controller?.abort());
  const form = h('form', { class: 'try', id: `${dom}-try`, 'aria-label': `Try ${method.toUpperCase()} ${o.path}`, autocomplete: 'off' },
    h('h4', {}, 'Try it'), inputs,
    ctSelect && row(ctSelect.id, 'Content-Type', ctSelect),
    bodyArea && row(bodyArea.id, ['Body ', h('span', { class: 'muted' }, bodyTypes.length === 1 ? bodyTypes[0] : '')], bodyArea),
    acceptSelect && row(acceptSelect.id, 'Accept', acceptSelect),
    h('div', { class: 'try-actions' }, ui.send, ui.stop), ui.result);
  form.addEventListener('submit', (e) => { e.preventDefault(); execute(o, ui); });
  return form;
}

/** Builds the request from the form, sends it and shows status, headers and body. */
async function execute(o, ui) {
  ui.controller?.abort();
  const controller = new AbortController();
  ui.controller = controller;
  let path = o.path;
  const query = new URLSearchParams();
  const headers = {};
  for (const input of ui.inputs) {
    const v = input.value.trim();
    const { in: where, name, array } = input.dataset;
    if (where === 'path') path = path.replace(`{${name}}`, encodeURIComponent(v));
    else if (!v) continue;
    else if (where === 'query') (array ? v.split(',') : [v]).forEach((x) => query.append(name, x.trim()));
    else headers[name] = v;
  }
  const url = base + path + (query.toString() ? `?${query}` : '');
  headers.Accept = ui.acceptSelect ? ui.acceptSelect.value : ui.accepts[0] || '*/*';
  let body;
  const warn = [];
  if (ui.bodyArea && !['get', 'head'].includes(o.method) && ui.bodyArea.value.trim() !== '') {
    body = ui.bodyArea.value;
    headers['Content-Type'] = ui.ctSelect ? ui.ctSelect.value : ui.bodyTypes[0];
    if (/json/.test(headers['Content-Type'])) try { JSON.parse(body); } catch { warn.push('The body is not valid JSON; it was sent as typed.'); }
  }
  const curl = [`curl -X ${o.method.toUpperCase()} '${location.origin}${url}'`,
    ...Object.entries(headers).map(([k, v]) => `-H '${k}: ${v}'`)];
  const token = localStorage.getItem(TOKEN_KEY);
  if (token) { headers.Authorization = `Bearer ${token}`; curl.push(`-H "Authorization: Bearer $API_TOKEN"`); }
  if (body !== undefined) curl.push(`--data-raw '${body.replace(/'/g, `'\\''`)}'`);

  const status = h('p', { class: 'res-status', id: `${o.dom}-status`, role: 'status' }, 'Sending…');
  const out = h('div', { class: 'res-body', id: `${o.dom}-response` });
  ui.result.replaceChildren(
    h('p', { class: 'res-request' }, h('span', { class: `method m-${o.method}` }, o.method.toUpperCase()), ' ', h('code', {}, url)),
    ...warn.map((w) => h('p', { class: 'warn' }, w)), status,
    h('details', { class: 'curl' }, h('summary', {}, 'curl'), h('pre', { class: 'code' }, curl.join(' \\\n  '))), out);
  ui.result.hidden = false;
  ui.stop.hidden = false;
  const started = performance.now();
  try {
    const res = await fetch(url, { method: o.method.toUpperCase(), headers, body, signal: controller.signal, cache: 'no-store' });
    const documented = o.op.responses || {};
    const doc = deref(documented[res.status] || documented[`${String(res.status)[0]}XX`] || documented.default);
    const reason = res.statusText || (doc.description || '').split('\n')[0];
    status.replaceChildren(h('span', { class: `status ${statusClass(res.status)}` }, String(res.status)), ` ${reason} · ${Math.round(performance.now() - started)} ms`);
    status.dataset.status = res.status;
    out.before(h('details', { class: 'res-headers', id: `${o.dom}-headers` }, h('summary', {}, 'Response headers'),
      h('dl', {}, [...res.headers].map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]))));
    const type = (res.headers.get('content-type') || '').toLowerCase();
    if (type.startsWith('text/event-stream')) await showEvents(res, out);
    else if (/^application\/([\w.+-]+\+)?json\b/.test(type)) await showJson(res, out);
    else await showPreview(res, out);
  } catch (e) {
    if (e.name === 'AbortError') out.append(h('p', { class: 'muted note' }, 'Stopped.'));
    else status.replaceChildren(h('span', { class: 'status s0xx' }, 'error'), ` ${e.message} (network or CORS failure)`);
  } finally {
    if (ui.controller === controller) { ui.controller = null; ui.stop.hidden = true; }
  }
}

// ---- Try it: response bodies (JSON, text preview, Server-Sent Events) -----------------------------

async function showJson(res, out) {
  const text = await res.text();
  let shown = text;
  try { shown = pretty(JSON.parse(text)); } catch { /* not valid JSON: shown as sent */ }
  out.append(h('pre', { class: 'code', tabindex: '0' }, shown || '(empty body)'));
}

/** Text, CSV, NDJSON and other streams: the first 64 KiB, shown as they arrive. */
async function showPreview(res, out) {
  const pre = h('pre', { class: 'code', tabindex: '0' });
  const note = h('p', { class: 'muted note' }, 'Reading…');
  out.append(pre, note);
  if (!res.body) { note.textContent = '(empty body)'; return; }
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let size = 0;
  let more = false;
  let complete = false;
  try {
    while (!complete && !more) {
      const { done, value } = await reader.read();
      if (done) { complete = true; break; }
      const room = PREVIEW_BYTES - size;
      pre.append(decoder.decode(value.subarray(0, room), { stream: true }));
      size += Math.min(room, value.length);
      more = value.length > room || (size >= PREVIEW_BYTES && !(complete = (await reader.read()).done));
    }
  } finally {
    if (more) reader.cancel().catch(() => {});
    pre.append(decoder.decode());
    if (!size) pre.textContent = '(empty body)';
    note.textContent = more ? 'Showing the first 64 KiB; the rest was not read.'
      : `${size.toLocaleString()} bytes${complete ? '' : ' read before stopping'}.`;
  }
}

/** text/event-stream: each event as it arrives, until the stream ends or Stop is pressed. */
async function showEvents(res, out) {
  const count = h('p', { class: 'muted note', 'aria-live': 'off' }, 'Waiting for events… (Stop ends the stream)');
  const list = h('ol', { class: 'events', id: `${out.id}-events`, tabindex: '0', 'aria-label': 'Received events' });
  out.append(count, list);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  let n = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    const blocks = (buf + value).split(/\r?\n\r?\n/);
    buf = blocks.pop();
    for (const block of blocks) {
      const ev = parseEvent(block);
      if (!ev) continue;
      const stick = list.scrollTop + list.clientHeight >= list.scrollHeight - 8;
      let data = ev.data;
      try { data = pretty(JSON.parse(data)); } catch { /* plain text data */ }
      list.append(h('li', { class: 'event' },
        h('div', { class: 'event-head' }, h('code', { class: 'event-name' }, ev.event),
          ev.id !== undefined && h('span', { class: 'muted' }, `id ${ev.id}`), h('time', { class: 'muted' }, new Date().toLocaleTimeString())),
        h('pre', { class: 'code' }, data)));
      if (list.children.length > MAX_EVENTS) list.firstChild.remove();
      if (stick) list.scrollTop = list.scrollHeight;
      count.textContent = `${++n} event${n === 1 ? '' : 's'} received${n > MAX_EVENTS ? ` (last ${MAX_EVENTS} shown)` : ''}.`;
    }
  }
  count.textContent += ' Stream ended.';
}

/** One SSE block: "event", "data" (lines joined) and "id"; comments and empty data are skipped. */
function parseEvent(block) {
  const ev = { event: 'message', data: [], id: undefined };
  for (const line of block.split(/\r?\n/)) {
    if (!line || line.startsWith(':')) continue;
    const i = line.indexOf(':');
    const key = i < 0 ? line : line.slice(0, i);
    const val = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
    if (key === 'data') ev.data.push(val);
    else if (key === 'event' || key === 'id') ev[key] = val;
  }
  return ev.data.length ? { ...ev, data: ev.data.join('\n') } : null;
}

// ---- Page: header, contents, schemas, token, navigation -----------------------------------------

function renderPage() {
  const info = spec.info || {};
  document.title = `${info.title || 'API'} · API documentation`;
  $('#api-title').textContent = info.title || 'API documentation';
  if (info.version) Object.assign($('#api-version'), { textContent: `v${info.version}`, hidden: false });
  $('#api-description').replaceChildren(md(info.description) || '');
  const server = (spec.servers || [])[0];
  if (server) {
    const url = new URL(server.url.replace(/\{(\w+)\}/g, (_, k) => server.variables?.[k]?.default ?? ''), location.origin);
    base = url.origin === location.origin ? url.pathname.replace(/\/$/, '') : '';
  }
  const toc = $('#toc-list');
  for (const { tag, ops } of collectOperations()) {
    const id = `tag-${slug(tag.name)}`;
    $('#operations').append(h('section', { class: 'tag', id, dataset: { tag: tag.name }, 'aria-labelledby': `${id}-title` },
      h('h2', { id: `${id}-title` }, tag.name), md(tag.description), ops.map(renderOperation)));
    toc.append(h('li', { dataset: { tag: tag.name } }, h('a', { href: `#${id}`, class: 'toc-tag' }, tag.name),
      h('ol', {}, ops.map((o) => h('li', { dataset: { op: o.dom } }, h('a', { href: `#${o.dom}` },
        h('span', { class: `method m-${o.method}` }, o.method.toUpperCase()), h('span', { class: 'toc-path' }, o.path)))))));
  }
  const schemas = Object.entries((spec.components || {}).schemas || {});
  if (schemas.length) {
    $('#schemas').hidden = false;
    $('#schema-list').append(...schemas.map(([name, s]) => h('section', { class: 'schema-entry', id: schemaAnchor(name), dataset: { schema: name } },
      h('h3', {}, name), md(s.description), schemaBlock(s, { open: false }))));
    toc.append(h('li', {}, h('a', { href: '#schemas', class: 'toc-tag' }, 'Schemas')));
  }
  $('#op-tools').hidden = !document.querySelector('.op');
}

/** Opens the operation named by the URL fragment (or containing its target) and scrolls to it. */
function followHash() {
  const target = location.hash && document.getElementById(decodeURIComponent(location.hash.slice(1)));
  const op = target && target.closest('.op');
  if (op) setOpen(op, true);
  if (target) target.scrollIntoView();
}

function wireControls() {
  const token = $('#api-token');
  token.value = localStorage.getItem(TOKEN_KEY) || '';
  token.addEventListener('input', () => (token.value ? localStorage.setItem(TOKEN_KEY, token.value) : localStorage.removeItem(TOKEN_KEY)));
  $('#token-form').addEventListener('submit', (e) => e.preventDefault());
  $('#api-token-clear').addEventListener('click', () => { token.value = ''; localStorage.removeItem(TOKEN_KEY); });
  $('#api-token-toggle').addEventListener('click', (e) => {
    const visible = token.type === 'password';
    token.type = visible ? 'text' : 'password';
    e.currentTarget.setAttribute('aria-pressed', String(visible));
    e.currentTarget.textContent = visible ? 'Hide' : 'Show';
  });
  $('#expand-all').addEventListener('click', () => document.querySelectorAll('.op').forEach((s) => setOpen(s, true)));
  $('#collapse-all').addEventListener('click', () => document.querySelectorAll('.op').forEach((s) => setOpen(s, false)));
  $('#toc-filter').addEventListener('input', (e) => {
    const q = e.target.value.trim().toLowerCase();
    for (const s of document.querySelectorAll('.op')) {
      s.hidden = q !== '' && !s.querySelector('.op-toggle').textContent.toLowerCase().includes(q) && !s.dataset.operationId.toLowerCase().includes(q);
      const li = document.querySelector(`[data-op="${s.id}"]`);
      if (li) li.hidden = s.hidden;
    }
    document.querySelectorAll('.tag').forEach((t) => { t.hidden = !t.querySelector('.op:not([hidden])'); });
  });
  $('#toc-list').addEventListener('click', (e) => {
    const a = e.target.closest('a[href^="#op-"]');
    const op = a && document.getElementById(a.getAttribute('href').slice(1));
    if (op) setOpen(op, true);
    if (a && matchMedia('(max-width: 900px)').matches) $('#toc-details').open = false;
  });
  window.addEventListener('hashchange', followHash);
  if (matchMedia('(max-width: 900px)').matches) $('#toc-details').open = false;
}

async function main() {
  wireControls();
  try {
    const res = await fetch('/openapi.json', { headers: { Accept: 'application/json' }, cache: 'no-store' });
    if (!res.ok) throw new Error(`/openapi.json answered ${res.status}`);
    spec = await res.json();
    renderPage();
    $('#docs-status').textContent = '';
    $('#docs-status').hidden = true;
    document.body.dataset.state = 'ready';
    followHash();
  } catch (e) {
    $('#docs-status').replaceChildren(h('span', { class: 'warn' }, `Could not load the API description: ${e.message}. `),
      h('button', { type: 'button', id: 'docs-retry', onclick: () => location.reload() }, 'Retry'));
    document.body.dataset.state = 'error';
  }
}

main();
