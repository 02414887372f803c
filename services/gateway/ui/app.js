// Dashboard of the serial-number service: live task counters, a throughput chart,
// a task table with detail panel, a submit form, the ledger and a serial lookup.
// Plain browser JavaScript, no dependencies; everything comes from the gateway's own API.
'use strict';

// ---- Helpers -------------------------------------------------------------------------------

const $ = (sel) => document.querySelector(sel);
const STATES = ['PENDING', 'STARTED', 'SUCCESS', 'FAILURE'];
const RANK = { PENDING: 0, STARTED: 1, SUCCESS: 2, FAILURE: 2 };
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const TOKEN_KEY = 'serials.apiToken';
const PAGE_SIZE = 50;

/** Builds an element: h('a', {href, class: 'x'}, 'text', child...). Text is never parsed as HTML. */
function h(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) e.append(c);
  return e;
}

const shortId = (id) => id.slice(0, 8);
function debounce(fn, ms) {
  let t;
  return (...args) => { clearTimeout(t); t = setTimeout(() => fn(...args), ms); };
}
const pct = (v) => (v.count > 0 ? Math.min(100, (100 * v.generated) / v.count) : 0);
const isTerminal = (v) => v.state === 'SUCCESS' || v.state === 'FAILURE';

function fmtTime(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  const sameDay = d.toDateString() === new Date().toDateString();
  return sameDay ? d.toLocaleTimeString() : d.toLocaleString();
}

const timeEl = (iso) => iso && h('time', { datetime: iso, title: iso }, fmtTime(iso));

const apiError = (status, code, message, field) => Object.assign(new Error(message), { status, code, field });

/** fetch() against the gateway: sends the saved token, parses JSON, throws apiError() on non-2xx. */
async function api(path, { method = 'GET', body } = {}) {
  const headers = { Accept: 'application/json' };
  const token = localStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(path, { method, headers, body, cache: 'no-store' }).catch((e) => {
    throw apiError(0, 'network', `gateway unreachable (${e.message})`);
  });
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  if (!res.ok) {
    const err = (data && data.error) || {};
    throw apiError(res.status, err.code || `http_${res.status}`, err.message || text || res.statusText, err.field);
  }
  return data;
}

const errorText = (e) => (e.status ? `${e.status} ${e.code}: ${e.message}${e.field ? ` (${e.field})` : ''}` : e.message);

// ---- Task store: one merged view per task, fed by lists, lookups and SSE ----------------------

const tasks = new Map(); // id -> latest TaskView
const counts = { PENDING: 0, STARTED: 0, SUCCESS: 0, FAILURE: 0 };

/** True when `b` is at least as far along as `a` (states and progress only move forward). */
const isNewer = (a, b) => (RANK[b.state] !== RANK[a.state]
  ? RANK[b.state] > RANK[a.state] : (b.generated ?? 0) >= (a.generated ?? 0));

/** Merges one TaskView into the store and schedules every view that shows it. */
function ingest(v, live = false) {
  if (!v || !v.id || !(v.state in RANK)) return;
  const old = tasks.get(v.id);
  if (old && !isNewer(old, v)) return;
  if (!old) counts[v.state] += 1;
  else if (old.state !== v.state) { counts[old.state] -= 1; counts[v.state] += 1; }
  if (live) {
    const delta = (v.generated ?? 0) - (old ? old.generated ?? 0 : 0);
    if (delta > 0) recordRate(delta);
    if (isTerminal(v) && (!old || !isTerminal(old))) ledgerChanged();
  }
  if (!old || old.code_model !== v.code_model) noteModel(v.code_model);
  tasks.set(v.id, v);
  dirty.add(v.id);
  scheduleFlush();
}

// Coalesces DOM work: bursts of progress events repaint at most ~10 times per second.
const dirty = new Set();
let flushTimer = null;
const scheduleFlush = () => { flushTimer ||= setTimeout(flush, 100); };
function flush() {
  flushTimer = null;
  for (const id of dirty) syncRow(id);
  if (detailId && dirty.has(detailId)) renderDetail();
  dirty.clear();
  renderCounters();
  updateEmpty();
}

// ---- Header: counters per state ---------------------------------------------------------------

let countsPartial = false;

function renderCounters() {
  for (const s of STATES) $(`#count-${s}`).textContent = counts[s].toLocaleString() + (countsPartial ? '+' : '');
}

/** Counts every task: newest pages of /tasks until exhausted (bounded). */
async function loadCounts() {
  let cursor = null;
  for (let page = 0; page < 10; page += 1) {
    const q = new URLSearchParams({ limit: '1000' });
    if (cursor) q.set('cursor', cursor);
    const res = await api(`/tasks?${q}`);
    res.items.forEach((v) => ingest(v));
    cursor = res.next_cursor;
    if (!cursor) break;
  }
  countsPartial = Boolean(cursor);
  scheduleFlush();
}

// ---- Header: serials issued per second, last 5 minutes --------------------------------------

const WINDOW = 300; // seconds
const buckets = new Map(); // epoch second -> serials generated

function recordRate(n) {
  const sec = Math.floor(Date.now() / 1000);
  buckets.set(sec, (buckets.get(sec) || 0) + n);
}

function drawRate() {
  const canvas = $('#rate-chart');
  const now = Math.floor(Date.now() / 1000);
  for (const k of buckets.keys()) if (k <= now - WINDOW) buckets.delete(k);
  const series = Array.from({ length: WINDOW }, (_, i) => buckets.get(now - WINDOW + 1 + i) || 0);
  const peak = Math.max(0, ...series);
  const recent = series.slice(-6, -1).reduce((a, b) => a + b, 0) / 5; // last 5 complete seconds
  $('#rate-now').textContent = recent >= 10 ? Math.round(recent).toLocaleString() : recent.toFixed(1);
  $('#rate-peak').textContent = `peak ${peak.toLocaleString()} · last 5 min`;

  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, hgt = canvas.clientHeight;
  if (!w || !hgt) return;
  if (canvas.width !== Math.round(w * dpr)) canvas.width = Math.round(w * dpr);
  if (canvas.height !== Math.round(hgt * dpr)) canvas.height = Math.round(hgt * dpr);
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, hgt);
  const css = getComputedStyle(document.documentElement);
  const accent = css.getPropertyValue('--accent').trim() || '#3b82f6';
  // Minute grid lines, newest on the right.
  ctx.strokeStyle = css.getPropertyValue('--border').trim() || '#8884';
  ctx.lineWidth = 1;
  for (let m = 1; m < 5; m += 1) {
    const x = Math.round(w - (m * 60 * w) / WINDOW) + 0.5;
    ctx.beginPath(); ctx.moveTo(x, 0); ctx.lineTo(x, hgt); ctx.stroke();
  }
  if (peak === 0) return;
  // The curve, then the same curve closed along the bottom and filled.
  const step = w / (WINDOW - 1), y = (n) => hgt - 1 - (n * (hgt - 5)) / peak;
  const line = new Path2D();
  series.forEach((n, i) => (i ? line.lineTo(i * step, y(n)) : line.moveTo(0, y(n))));
  const area = new Path2D(line);
  area.lineTo(w, hgt); area.lineTo(0, hgt); area.closePath();
  ctx.globalAlpha = 0.25; ctx.fillStyle = accent; ctx.fill(area);
  ctx.globalAlpha = 1; ctx.strokeStyle = accent; ctx.lineWidth = 1.5; ctx.stroke(line);
}

// ---- Task table: filters, paging, live rows --------------------------------------------------

const tbody = $('#tasks tbody');
const rows = new Map(); // id -> <tr> currently in the table
const filters = { state: '', model: '', search: '' };
let nextCursor = null;
let listGen = 0; // discards answers to superseded list requests
let tableLoading = false; // while a list loads, new rows wait in `deferred`
const deferred = new Set();
let detailId = null;

function listPath(cursor) {
  const p = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if (filters.state) p.set('state', filters.state);
  if (filters.model) p.set('code_model', filters.model);
  if (cursor) p.set('cursor', cursor);
  return `/tasks?${p}`;
}

function matches(v) {
  return (!filters.state || v.state === filters.state)
    && (!filters.model || v.code_model === filters.model)
    && (!filters.search || v.id.toLowerCase().startsWith(filters.search));
}

/** Newest first: by created_at, an unknown creation time counts as newest. */
function newerFirst(a, b) {
  const ta = a.created_at ? Date.parse(a.created_at) : Infinity;
  const tb = b.created_at ? Date.parse(b.created_at) : Infinity;
  return (tb - ta) || 0;
}

const stateBadge = (state) => h('span', { class: `badge s-${state.toLowerCase()}` }, state);

function progressBar(v) {
  const bar = h('span', { class: 'bar', role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': v.count, 'aria-valuenow': v.generated },
    h('span', { class: 'fill' }));
  bar.firstChild.style.width = `${pct(v)}%`;
  return bar;
}

function rowCells(v) {
  return [
    h('td', { class: 'id' }, h('code', { title: v.id }, shortId(v.id))),
    h('td', { class: 'model' }, h('code', {}, v.code_model)),
    h('td', { class: 'state', 'data-state': v.state }, stateBadge(v.state)),
    h('td', { class: `progress s-${v.state.toLowerCase()}` }, h('div', { class: 'prog' }, progressBar(v),
      h('span', { class: 'num' }, `${(v.generated ?? 0).toLocaleString()}/${v.count.toLocaleString()}`))),
    h('td', { class: 'created', title: v.created_at || '' }, fmtTime(v.created_at)),
  ];
}

function buildRow(v) {
  const tr = h('tr', { tabindex: 0, dataset: { taskId: v.id, state: v.state } });
  tr.append(...rowCells(v));
  if (v.id === detailId) tr.classList.add('selected');
  rows.set(v.id, tr);
  return tr;
}

/** Places a task's row where it belongs: updated in place, inserted by age, or removed. */
function syncRow(id) {
  const v = tasks.get(id);
  const tr = rows.get(id);
  if (!v) return;
  if (!matches(v)) {
    if (tr) { tr.remove(); rows.delete(id); }
    return;
  }
  if (tr) {
    tr.dataset.state = v.state;
    tr.replaceChildren(...rowCells(v));
    return;
  }
  if (tableLoading) { deferred.add(id); return; }
  const last = tbody.rows[tbody.rows.length - 1];
  if (nextCursor && last && newerFirst(v, tasks.get(last.dataset.taskId)) > 0) return; // a later page's
  for (const other of tbody.rows) {
    const o = tasks.get(other.dataset.taskId);
    if (o && newerFirst(v, o) < 0) { tbody.insertBefore(buildRow(v), other); return; }
  }
  if (!nextCursor) tbody.append(buildRow(v)); // otherwise it belongs to a later page
}

const clearTable = () => { tbody.replaceChildren(); rows.clear(); };

function updateEmpty() {
  $('#tasks-empty').hidden = tableLoading || tbody.rows.length > 0;
  $('#load-more').hidden = !nextCursor;
}
const showListError = (e) => { $('#tasks-error').hidden = !e; $('#tasks-error').textContent = e ? errorText(e) : ''; };

/** Refills the table for the current filters (from the server, or from a task id search). */
async function reloadTable() {
  const gen = ++listGen;
  nextCursor = null;
  tableLoading = true;
  showListError(null);
  const q = filters.search;
  try {
    if (UUID_RE.test(q)) {
      // A full id: ask for exactly that task.
      let v = null;
      try { v = await api(`/tasks/${q}`); } catch (e) { if (e.status !== 404) throw e; }
      if (gen !== listGen) return;
      clearTable();
      if (v) { ingest(v); syncRow(v.id); }
      $('#tasks-empty').textContent = v ? 'No tasks.' : `No task ${q}.`;
    } else if (q) {
      // A prefix: search among every task this page knows about.
      clearTable();
      const found = [...tasks.values()].filter(matches).sort(newerFirst).slice(0, 500);
      found.forEach((v) => tbody.append(buildRow(v)));
      $('#tasks-empty').textContent = 'No known task id starts with that.';
    } else {
      const res = await api(listPath());
      if (gen !== listGen) return;
      clearTable();
      res.items.forEach((v) => ingest(v));
      // Render the merged (possibly fresher) views, in the server's order.
      res.items.forEach((v) => { const m = tasks.get(v.id); if (matches(m)) tbody.append(buildRow(m)); });
      nextCursor = res.next_cursor;
      $('#tasks-empty').textContent = 'No tasks.';
    }
  } catch (e) {
    if (gen === listGen) showListError(e);
  }
  if (gen !== listGen) return;
  tableLoading = false;
  // Tasks that changed while the list was in flight: place them now.
  for (const id of deferred) syncRow(id);
  deferred.clear();
  updateEmpty();
}

async function loadMore() {
  if (!nextCursor) return;
  const gen = listGen;
  $('#load-more').disabled = true;
  try {
    const res = await api(listPath(nextCursor));
    if (gen !== listGen) return;
    res.items.forEach((v) => ingest(v));
    res.items.forEach((v) => {
      const m = tasks.get(v.id);
      if (!rows.has(v.id) && matches(m)) tbody.append(buildRow(m));
    });
    nextCursor = res.next_cursor;
  } catch (e) {
    showListError(e);
  } finally {
    $('#load-more').disabled = false;
    updateEmpty();
  }
}

const knownModels = new Set();
function noteModel(m) {
  if (!m || knownModels.has(m)) return;
  knownModels.add(m);
  $('#models').append(h('option', { value: m }));
}

function setStateFilter(state) {
  $('#filter-state').value = state;
  filters.state = state;
  document.querySelectorAll('.counter').forEach((b) => b.classList.toggle('active', b.dataset.state === state));
  reloadTable();
}

// ---- Task detail panel ------------------------------------------------------------------------

const field = (label, value) => [h('dt', {}, label), h('dd', {}, value ?? '—')];

function renderDetail() {
  const body = $('#detail-body');
  const v = tasks.get(detailId);
  if (!v) { body.replaceChildren(h('p', { class: 'muted' }, 'Loading…')); return; }
  const secs = v.started_at && v.finished_at ? (Date.parse(v.finished_at) - Date.parse(v.started_at)) / 1000 : null;
  const fmt = v.format || {};
  const parts = [
    h('p', { class: 'detail-state' }, stateBadge(v.state), ' ', h('code', { class: 'full-id' }, v.id)),
  ];
  if (v.state === 'STARTED' || v.state === 'PENDING') {
    parts.push(h('div', { class: `detail-progress s-${v.state.toLowerCase()}` }, progressBar(v),
      h('span', { class: 'num' }, `${(v.generated ?? 0).toLocaleString()} / ${v.count.toLocaleString()} (${pct(v).toFixed(1)}%)`)));
  }
  if (v.state === 'FAILURE' && v.error) {
    parts.push(h('div', { class: 'error-box', role: 'alert' }, h('strong', {}, v.error.code), h('p', {}, v.error.message)));
  }
  if (v.state === 'SUCCESS') {
    const url = `/tasks/${encodeURIComponent(v.id)}/serials`;
    parts.push(h('p', { class: 'downloads' },
      h('a', { class: 'button primary', href: url, download: `${v.code_model}-${shortId(v.id)}.txt` }, 'Download .txt'),
      h('a', { class: 'button', href: `${url}?format=csv`, download: `${v.code_model}-${shortId(v.id)}.csv` }, 'Download .csv')));
  }
  parts.push(h('dl', { class: 'fields' },
    field('Code model', v.code_model),
    field('First number', v.number != null ? String(v.number) : null),
    field('Count', v.count.toLocaleString()),
    field('Generated', (v.generated ?? 0).toLocaleString()),
    field('First serial', v.first_serial && h('code', {}, v.first_serial)),
    field('Last serial', v.last_serial && h('code', {}, v.last_serial)),
    field('Width', fmt.width != null ? String(fmt.width) : null),
    field('Check digit', fmt.check_digit),
    field('Created', timeEl(v.created_at)),
    field('Started', timeEl(v.started_at)),
    field('Finished', timeEl(v.finished_at)),
    field('Duration', secs != null ? `${secs.toFixed(secs < 10 ? 2 : 1)} s` : null),
    field('Throughput', secs > 0 ? `${Math.round(v.generated / secs).toLocaleString()} serials/s` : null),
    v.error ? field('Error', `${v.error.code}: ${v.error.message}`) : [],
  ));
  body.replaceChildren(...parts);
}

async function openDetail(id) {
  if (detailId) rows.get(detailId)?.classList.remove('selected');
  detailId = id;
  rows.get(id)?.classList.add('selected');
  $('#detail').hidden = false;
  document.body.classList.add('detail-open');
  renderDetail();
  try {
    ingest(await api(`/tasks/${encodeURIComponent(id)}`));
  } catch (e) {
    if (detailId === id && !tasks.has(id)) $('#detail-body').replaceChildren(h('p', { class: 'error' }, errorText(e)));
  }
}

function closeDetail() {
  if (detailId) rows.get(detailId)?.classList.remove('selected');
  detailId = null;
  $('#detail').hidden = true;
  document.body.classList.remove('detail-open');
}

// ---- Submit form and API token ----------------------------------------------------------------

/** A digits-only string goes into the JSON as a raw integer (full u64 precision); anything else
 *  goes as a string so the API explains what is wrong with it. */
const jsonInt = (s) => (/^\d+$/.test(s) ? s : JSON.stringify(s));

function requestBody() {
  const val = (id) => $(`#${id}`).value.trim();
  const parts = [`"code_model":${JSON.stringify(val('code_model'))}`];
  if (val('count')) parts.push(`"count":${jsonInt(val('count'))}`);
  if (val('number')) parts.push(`"number":${jsonInt(val('number'))}`);
  const width = val('width'), check = $('#check_digit').value;
  if (width || check !== 'none') {
    parts.push(`"format":{"width":${width ? jsonInt(width) : 8},"check_digit":${JSON.stringify(check)}}`);
  }
  return `{${parts.join(',')}}`;
}

async function submitTask(ev) {
  ev.preventDefault();
  const out = $('#submit-result');
  const btn = $('#submit');
  btn.disabled = true;
  out.className = 'result';
  out.textContent = 'Submitting…';
  try {
    const res = await api('/generate_sn', { method: 'POST', body: requestBody() });
    out.className = 'result ok';
    out.replaceChildren('Accepted: ', h('a', { href: '#', onclick: (e) => { e.preventDefault(); openDetail(res.id); } },
      h('code', { title: res.id }, shortId(res.id))), ` (${res.state})`);
    if (!tasks.has(res.id)) api(`/tasks/${res.id}`).then((v) => ingest(v)).catch(() => {});
  } catch (e) {
    out.className = 'result error';
    out.textContent = errorText(e);
    if (e.status === 401) { $('#auth').open = true; $('#token').focus(); }
    else if (e.field && document.getElementById(e.field)) document.getElementById(e.field).focus();
  } finally {
    btn.disabled = false;
  }
}

function renderToken() {
  const set = Boolean(localStorage.getItem(TOKEN_KEY));
  Object.assign($('#token-state'), { textContent: set ? 'set' : 'not set', className: set ? 'ok' : 'muted' });
  $('#token').value = '';
}

// ---- Ledger view --------------------------------------------------------------------------------

let ledgerStale = true;
const refreshLedgerSoon = debounce(() => loadLedger(), 500);

function ledgerChanged() {
  ledgerStale = true;
  if (!$('#view-ledger').hidden) refreshLedgerSoon();
}

function taskLink(id) {
  return h('a', { href: '#', title: id, onclick: (e) => { e.preventDefault(); openDetail(id); } }, h('code', {}, shortId(id)));
}

function renderLedgerModel(model, ranges) {
  const sorted = [...ranges].sort((a, b) => a.first - b.first);
  const total = sorted.reduce((n, r) => n + (r.last - r.first + 1), 0);
  const lo = sorted[0].first, hi = sorted[sorted.length - 1].last, span = Math.max(1, hi - lo + 1);
  let gaps = 0;
  sorted.forEach((r, i) => { if (i && r.first > sorted[i - 1].last + 1) gaps += 1; });
  const strip = h('div', { class: 'strip', title: `${lo} … ${hi}` });
  for (const r of sorted.slice(0, 2000)) {
    const seg = h('span', {});
    seg.style.left = `${((r.first - lo) / span) * 100}%`;
    seg.style.width = `max(1px, ${((r.last - r.first + 1) / span) * 100}%)`;
    strip.append(seg);
  }
  const shown = sorted.slice(-200).reverse(); // highest ranges first
  return h('article', { class: 'card ledger-model', dataset: { model } },
    h('header', {}, h('h3', {}, model),
      h('span', { class: 'muted' }, `${total.toLocaleString()} issued · ${sorted.length} range${sorted.length === 1 ? '' : 's'}`
        + ` · ${lo}–${hi}${gaps ? ` · ${gaps} gap${gaps === 1 ? '' : 's'}` : ''}`)),
    strip,
    h('div', { class: 'table-wrap' }, h('table', { class: 'ranges' },
      h('thead', {}, h('tr', {}, h('th', {}, 'First'), h('th', {}, 'Last'), h('th', {}, 'Count'), h('th', {}, 'Task'))),
      h('tbody', {}, shown.map((r) => h('tr', {},
        h('td', {}, String(r.first)), h('td', {}, String(r.last)),
        h('td', {}, (r.last - r.first + 1).toLocaleString()), h('td', {}, taskLink(r.task_id))))))),
    sorted.length > shown.length ? h('p', { class: 'muted small' }, `…and ${sorted.length - shown.length} lower ranges`) : null);
}

async function loadLedger() {
  const box = $('#ledger');
  ledgerStale = false;
  try {
    const res = await api('/ledger');
    const models = Object.entries(res.models || {}).filter(([, r]) => r.length).sort(([a], [b]) => a.localeCompare(b));
    models.forEach(([m]) => noteModel(m));
    box.replaceChildren(...(models.length
      ? models.map(([m, r]) => renderLedgerModel(m, r))
      : [h('p', { class: 'empty' }, 'Nothing issued yet.')]));
  } catch (e) {
    ledgerStale = true;
    box.replaceChildren(h('p', { class: 'error' }, errorText(e)));
  }
}

function showView(name) {
  for (const tab of document.querySelectorAll('[role=tab]')) {
    const on = tab.dataset.view === name;
    tab.setAttribute('aria-selected', String(on));
    $(`#view-${tab.dataset.view}`).hidden = !on;
  }
  if (name === 'ledger' && ledgerStale) loadLedger();
}

// ---- Serial lookup ------------------------------------------------------------------------------

async function lookupSerial(ev) {
  ev.preventDefault();
  const serial = $('#serial').value.trim();
  const out = $('#lookup-result');
  if (!serial) return;
  out.className = 'result';
  out.textContent = 'Looking up…';
  try {
    const r = await api(`/serials/${encodeURIComponent(serial)}`);
    out.replaceChildren(h('dl', { class: 'fields compact' },
      field('Serial', h('code', {}, r.serial)),
      field('Model', r.code_model),
      field('Number', String(r.number)),
      field('Task', taskLink(r.task_id)),
      field('Issued', timeEl(r.issued_at))));
  } catch (e) {
    out.className = 'result error';
    out.textContent = e.status === 404 ? `${serial} was never issued (${e.message})` : errorText(e);
  }
}

// ---- Live updates (Server-Sent Events) ----------------------------------------------------------

let hadError = false;
const setLive = (status) => { $('#live').dataset.status = status; $('#live').textContent = status; };

function connectEvents() {
  const es = new EventSource('/events');
  const onTask = (e) => {
    try { ingest(JSON.parse(e.data), true); } catch { /* ignore malformed event */ }
  };
  es.addEventListener('task', onTask);
  es.onmessage = onTask; // tolerate unnamed events too
  es.onopen = () => {
    setLive('live');
    // Events may have been missed while disconnected: catch up once.
    if (hadError) { hadError = false; loadCounts().catch(() => {}); reloadTable(); }
  };
  es.onerror = () => {
    hadError = true;
    const closed = es.readyState === EventSource.CLOSED; // the browser gave up: retry by hand
    setLive(closed ? 'offline' : 'reconnecting');
    if (closed) setTimeout(connectEvents, 5000);
  };
}

// ---- Wiring -------------------------------------------------------------------------------------

function init() {
  connectEvents(); // first, so nothing is missed while the lists load
  $('#submit-form').addEventListener('submit', submitTask);
  $('#lookup-form').addEventListener('submit', lookupSerial);
  $('#token-save').addEventListener('click', () => {
    const t = $('#token').value.trim();
    if (t) localStorage.setItem(TOKEN_KEY, t);
    renderToken();
  });
  $('#token-clear').addEventListener('click', () => { localStorage.removeItem(TOKEN_KEY); renderToken(); });
  renderToken();

  $('#filters').addEventListener('submit', (e) => e.preventDefault());
  $('#filter-state').addEventListener('change', (e) => setStateFilter(e.target.value));
  const onText = debounce(() => {
    filters.model = $('#filter-model').value.trim();
    filters.search = $('#search-id').value.trim().toLowerCase();
    reloadTable();
  }, 300);
  $('#filter-model').addEventListener('input', onText);
  $('#search-id').addEventListener('input', onText);
  document.querySelectorAll('.counter').forEach((b) => b.addEventListener('click', () => {
    setStateFilter(filters.state === b.dataset.state ? '' : b.dataset.state);
    showView('tasks');
  }));
  $('#load-more').addEventListener('click', loadMore);

  const rowOf = (e) => e.target.closest('tr[data-task-id]');
  tbody.addEventListener('click', (e) => rowOf(e) && openDetail(rowOf(e).dataset.taskId));
  tbody.addEventListener('keydown', (e) => {
    if (rowOf(e) && (e.key === 'Enter' || e.key === ' ')) { e.preventDefault(); openDetail(rowOf(e).dataset.taskId); }
  });
  $('#detail-close').addEventListener('click', closeDetail);
  document.addEventListener('keydown', (e) => { if (e.key === 'Escape' && detailId) closeDetail(); });

  document.querySelectorAll('[role=tab]').forEach((t) => t.addEventListener('click', () => showView(t.dataset.view)));
  $('#ledger-refresh').addEventListener('click', loadLedger);

  drawRate();
  setInterval(drawRate, 1000);
  window.addEventListener('resize', debounce(drawRate, 100));
  matchMedia('(prefers-color-scheme: dark)').addEventListener('change', drawRate);

  reloadTable();
  loadCounts().catch((e) => showListError(e));
}

init();
