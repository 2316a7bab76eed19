// Languages in real Chromium: a browser whose language is Simplified
// Chinese gets the widget in Chinese, and its header tells the truth (no
// agent is online: it says so, and offers to leave a message); an English
// browser gets English, unless the tag asks for Chinese (`data-lang`).
//
// Environment: as harness.mjs (the agent never signs in).

import { BASE, TIMEOUT, report, fail, step, watch, waitFor, launch, shoot } from './harness.mjs';

const OVERALL_MS = 120000;
const inWidget = (selector) => `switchboard-chat >> ${selector}`;

async function main() {
  const browser = await launch(OVERALL_MS);
  const errors = [];
  let failure = null;
  try {
    const pages = {};
    for (const [who, locale] of [['zh', 'zh-CN'], ['en', 'en-US'], ['tag', 'en-US']]) {
      const ctx = await browser.newContext({ locale });
      await ctx.addInitScript(() => {
        document.addEventListener('securitypolicyviolation', (e) => console.error(`CSP violation: ${e.violatedDirective}`));
      });
      const page = await ctx.newPage();
      page.setDefaultTimeout(TIMEOUT);
      watch(page, who);
      page.on('console', (m) => {
        if (m.type() === 'error') errors.push(`[${who}] ${m.text()}`);
      });
      page.on('pageerror', (e) => errors.push(`[${who}] ${e.message}`));
      pages[who] = page;
    }

    await step('a Chinese browser gets the widget in Chinese', async () => {
      const page = pages.zh;
      await page.goto(`${BASE}/`);
      const label = await page.locator(inWidget('.sb-launcher-label')).textContent();
      if (label !== '在线咨询') throw new Error(`the launcher says ${label}`);
      const lang = await page.locator(inWidget('#sb-root')).getAttribute('lang');
      if (lang !== 'zh-CN') throw new Error(`the widget's lang is ${lang}`);
      await page.locator(inWidget('#sb-launcher')).click();
      const intro = await page.locator(inWidget('.sb-intro-title')).textContent();
      if (intro !== '有问题，随时问我们') throw new Error(`the intro says ${intro}`);
      await waitFor(page, 'the header saying nobody is online',
        () => document.querySelector('switchboard-chat').shadowRoot.querySelector('#sb-subtitle').textContent === '当前暂无客服在线');
      const offer = await page.locator(inWidget('#sb-leave-open')).textContent();
      if (offer !== '留言') throw new Error(`the leave-a-message button says ${offer}`);
      await page.locator(inWidget('#sb-input')).fill('你好，请问有人吗？');
      await page.locator(inWidget('#sb-send')).click();
      await waitFor(page, 'the offer to leave a message, in Chinese',
        () => document.querySelector('switchboard-chat').shadowRoot.querySelector('#sb-offer-text').textContent === '当前暂无客服在线，请给我们留言');
    });

    await step('an English browser gets English; data-lang asks for Chinese', async () => {
      await pages.en.goto(`${BASE}/`);
      const en = await pages.en.locator(inWidget('.sb-launcher-label')).textContent();
      if (en !== 'Chat with us') throw new Error(`the English launcher says ${en}`);
      await pages.en.setViewportSize({ width: 390, height: 844 });
      await pages.en.locator(inWidget('#sb-launcher')).click();
      await waitFor(pages.en, 'the header saying nobody is online',
        () => document.querySelector('switchboard-chat').shadowRoot.querySelector('#sb-subtitle').textContent === 'No one is available right now');
      await shoot(pages.en, 'widget-mobile');
      await pages.tag.goto(`${BASE}/?lang=zh-CN`);
      const zh = await pages.tag.locator(inWidget('.sb-launcher-label')).textContent();
      if (zh !== '在线咨询') throw new Error(`data-lang="zh-CN" launcher says ${zh}`);
      if (errors.length) throw new Error(`errors: ${errors.join(' | ')}`);
    });
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

main().catch((err) => fail(err && err.message ? err.message : String(err)));
