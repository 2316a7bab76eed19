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
