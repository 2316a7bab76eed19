// What the browser scenarios share: their environment, step reporting,
// the browser console capture, waiting for a condition in a page, and
// launching Debian's Chromium through playwright-core.
//
// Environment: SB_URL, SB_AGENT_LOGIN, SB_AGENT_PASSWORD, CHROMIUM
// (default /usr/bin/chromium), SB_TIMEOUT_MS (per step, default 20000).

import { chromium } from 'playwright-core';

export const BASE = (process.env.SB_URL || '').replace(/\/+$/, '');
export const LOGIN = process.env.SB_AGENT_LOGIN || '';
export const PASSWORD = process.env.SB_AGENT_PASSWORD || '';
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
export const TIMEOUT = Number(process.env.SB_TIMEOUT_MS) || 20000;

let currentStep = 'start-up';
const browserLog = [];

export function report(message) {
  console.error(`FAIL [${currentStep}]: ${message}`);
  if (browserLog.length) {
    console.error('--- browser console (last 40 lines) ---');
    for (const line of browserLog.slice(-40)) console.error(line);
  }
  console.log('browser: 0 passed, 1 failed');
}

// Only for failures while no browser is running.
export function fail(message) {
  report(message);
  process.exit(1);
}

// With SB_SCREENSHOTS set, saves the page as docs/screenshots/<name>.png
// (the README shows them); otherwise does nothing.
export async function shoot(page, name, fullPage = false) {
  if (!process.env.SB_SCREENSHOTS) return;
  await page.screenshot({ path: new URL(`../../docs/screenshots/${name}.png`, import.meta.url).pathname, fullPage });
}

export async function step(name, fn) {
  currentStep = name;
  console.log(`- ${name}`);
  await fn();
}

export function watch(page, who) {
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') browserLog.push(`[${who}] ${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => browserLog.push(`[${who}] page error: ${e.message}`));
}

// Waits until `fn(arg)` is truthy in the page; fails the step with `what`.
export async function waitFor(page, what, fn, arg) {
  try {
    await page.waitForFunction(fn, arg, { timeout: TIMEOUT, polling: 100 });
  } catch (err) {
    throw new Error(`timed out after ${TIMEOUT} ms waiting for ${what}`);
  }
}

// Checks the environment, arms a watchdog for the whole scenario and
// launches headless Chromium (flags for a root user on a closed network).
export async function launch(overallMs) {
  if (!BASE) fail('SB_URL is not set');
  if (!LOGIN || !PASSWORD) fail('SB_AGENT_LOGIN / SB_AGENT_PASSWORD are not set');
  let browser;
  setTimeout(async () => {
    report(`the whole test took longer than ${overallMs} ms`);
    if (browser) await browser.close().catch(() => {});
    process.exit(1);
  }, overallMs).unref();
  try {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
  } catch (err) {
    fail(`cannot launch Chromium at ${CHROMIUM}: ${err.message}`);
  }
  return browser;
}

// ------------------------------------------------ what the scenarios share

// Errors seen in any page opened with `openPage`: console errors, uncaught
// exceptions and Content-Security-Policy violations.
export const pageErrors = [];

// A page in a context of its own (a browser profile: its own storage),
// watched: console errors, page errors and CSP violations are collected
// into `pageErrors`. `options` go to newContext (locale, viewport, …);
// `init` is a script run before the page's own (e.g. removing WebSocket);
// `ignore` a pattern of console errors expected on purpose.
export async function openPage(browser, who, { init = null, ignore = null, ...options } = {}) {
  const ctx = await browser.newContext(options);
  await ctx.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => console.error(`CSP violation: ${e.violatedDirective} ${e.blockedURI}`));
  });
  if (init) await ctx.addInitScript(init);
  const page = await ctx.newPage();
  page.setDefaultTimeout(TIMEOUT);
  watch(page, who);
  page.on('console', (m) => {
    if (m.type() === 'error' && !(ignore && ignore.test(m.text()))) pageErrors.push(`[${who}] ${m.text()}`);
  });
  page.on('pageerror', (e) => pageErrors.push(`[${who}] ${e.message}`));
  return page;
}

// Fails the step when any watched page had an error.
export function assertNoPageErrors() {
  if (pageErrors.length) throw new Error(`errors in the pages: ${pageErrors.join(' | ')}`);
}

// Signs in to the console (or the admin pages: `path`), and waits until
// it is connected; `status` is then chosen if given.
export async function signIn(page, login, { path = '/console', status = null } = {}) {
  await page.goto(`${BASE}${path}`);
  await page.locator('#login').fill(login);
  await page.locator('#password').fill(PASSWORD);
  await page.locator('#login-submit').click();
  await waitFor(page, 'the console to open after login', () => {
    const err = document.querySelector('#login-error');
    return (err && !err.hidden && err.textContent) || !document.querySelector('#app').hidden;
  });
  const error = await page.locator('#login-error').evaluate((n) => (n.hidden ? '' : n.textContent));
  if (error) throw new Error(`login rejected: ${error}`);
  if (path === '/console') {
    await waitFor(page, 'the console to be connected', () => document.querySelector('#app').dataset.connection === 'open');
  }
  if (status) await page.locator('#status').selectOption(status);
}

// A locator inside the widget's shadow root.
export const inWidget = (page, selector) => page.locator(`switchboard-chat >> ${selector}`);

// Texts of the widget's messages (`.sb-text`).
export function widgetTexts(page) {
  return page.evaluate(() => [...document.querySelector('switchboard-chat').shadowRoot.querySelectorAll('#sb-messages .sb-msg .sb-text')].map((n) => n.textContent));
}

// Runs a scenario: launches Chromium, gives it to `body`, closes it, and
// reports the result the runner looks for.
export async function runScenario(overallMs, body) {
  const browser = await launch(overallMs);
  let failure = null;
  try {
    await body(browser);
  } catch (err) {
    failure = err && err.message ? err.message : String(err);
  } finally {
    await browser.close().catch(() => {});
  }
  if (failure) {
    report(failure);
    process.exit(1);
  }
  console.log('browser: 1 passed, 0 failed');
  process.exit(0);
}
