// Browser test of the dashboard served by the gateway at /ui.
//
// Loads the page in headless Chromium, submits a task through the HTTP API (from this process,
// not from the page), and checks that the task's row appears and reaches SUCCESS through live
// updates alone, without the page navigating or reloading. Saves a screenshot.
//
//   GATEWAY_URL     base URL of a running gateway (default http://127.0.0.1:8080)
//   CHROMIUM        Chromium executable (default /usr/bin/chromium)
//   SCREENSHOT_DIR  where ui.png goes (default ../../target relative to this file)
//
// Prints "1 passed, 0 failed" or "0 passed, 1 failed" as its last line; exits non-zero on failure.

import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const BASE = (process.env.GATEWAY_URL || 'http://127.0.0.1:8080').replace(/\/+$/, '');
const SCREENSHOT_DIR = process.env.SCREENSHOT_DIR || path.resolve(here, '../../target');
const DEADLINE_MS = 30_000;

const log = (...args) => console.log('[ui.test]', ...args);

async function submitTask() {
  const headers = { 'content-type': 'application/json' };
  if (process.env.API_TOKEN) headers.authorization = `Bearer ${process.env.API_TOKEN}`;
  const res = await fetch(`${BASE}/generate_sn`, {
    method: 'POST',
    headers,
    body: JSON.stringify({ code_model: 'UI1', count: 1000 }),
  });
  const text = await res.text();
  if (res.status !== 202) throw new Error(`POST /generate_sn answered ${res.status}: ${text}`);
  const body = JSON.parse(text);
  if (typeof body.id !== 'string') throw new Error(`POST /generate_sn gave no id: ${text}`);
  return body.id;
}

async function run(browser) {
  const started = Date.now();
  const remaining = () => Math.max(1, DEADLINE_MS - (Date.now() - started));

  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error') log('console error:', m.text()); });

  // Every main-frame navigation after the first load would mean a reload or a redirect.
  let navigations = 0;
  page.on('framenavigated', (frame) => { if (frame === page.mainFrame()) navigations += 1; });

  const response = await page.goto(`${BASE}/ui`, { waitUntil: 'load', timeout: remaining() });
  if (!response || !response.ok()) throw new Error(`GET /ui answered ${response && response.status()}`);
  await page.waitForSelector('#tasks tbody', { state: 'attached', timeout: remaining() });
  for (const sel of ['#submit-form', '#code_model', '#count', '#number', '#submit']) {
    if (!(await page.$(sel))) throw new Error(`missing ${sel}`);
  }
  // A marker that a reload would erase.
  await page.evaluate(() => { window.__uiTestMarker = 'still-here'; });
  const navigationsBefore = navigations;

  const id = await submitTask();
  log('submitted task', id);

  // Poll the DOM until the row exists and shows SUCCESS, or the deadline passes.
  const row = `#tasks tr[data-task-id="${id}"]`;
  try {
    await page.waitForFunction(
      (sel) => document.querySelector(sel)?.querySelector('.state')?.textContent.trim() === 'SUCCESS',
      row,
      { polling: 100, timeout: remaining() },
    );
  } catch (e) {
    const seen = await page.$eval(row, (tr) => tr.querySelector('.state')?.textContent.trim()).catch(() => 'no row');
    await screenshot(page).catch(() => {});
    throw new Error(`row of ${id} did not reach SUCCESS within ${DEADLINE_MS / 1000} s (last seen: ${seen})`);
  }
  log(`row reached SUCCESS after ${Date.now() - started} ms`);

  const marker = await page.evaluate(() => window.__uiTestMarker);
  if (navigations !== navigationsBefore || marker !== 'still-here') {
    throw new Error(`the page navigated (${navigations - navigationsBefore} navigations) instead of updating live`);
  }
  const progress = await page.$eval(row, (tr) => tr.querySelector('.progress')?.textContent.trim());
  if ((progress || '').replace(/[^\d/]/g, '') !== '1000/1000') throw new Error(`row progress is ${JSON.stringify(progress)}, want 1000/1000`);
  if (pageErrors.length) throw new Error(`page errors: ${pageErrors.join('; ')}`);

  const file = await screenshot(page);
  log('screenshot', file);
  await context.close();
}

async function screenshot(page) {
  await mkdir(SCREENSHOT_DIR, { recursive: true });
  const file = path.join(SCREENSHOT_DIR, 'ui.png');
  await page.screenshot({ path: file, fullPage: false });
  return file;
}

let browser;
let ok = false;
try {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  await run(browser);
  ok = true;
  log('ok: live row update without reload');
} catch (e) {
  console.error('[ui.test] FAIL:', e && e.message ? e.message : e);
} finally {
  if (browser) await browser.close().catch(() => {});
}
console.log(ok ? '1 passed, 0 failed' : '0 passed, 1 failed');
process.exitCode = ok ? 0 : 1;
