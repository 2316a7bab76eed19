// Languages in real Chromium: a browser whose language is Simplified
// Chinese gets the widget in Chinese, and its header tells the truth (no
// agent is online: it says so, and offers to leave a message); an English
// browser gets English, unless the tag asks for Chinese (`data-lang`).
// The console and the admin pages speak Chinese to a Chinese browser too,
// and an English one switches to Chinese with the page's language menu.
// With SB_SCREENSHOTS set, the Chinese widget and console are saved as
// docs/screenshots/widget-zh.png and console-zh.png (fonts-noto-cjk, which
// scripts/setup installs, draws the characters).
//
// Environment: as harness.mjs.

import { BASE, LOGIN, TIMEOUT, report, fail, step, watch, waitFor, launch, shoot, openPage, signIn, pageErrors, runScenario } from './harness.mjs';

const OVERALL_MS = 120000;
const inWidget = (selector) => `switchboard-chat >> ${selector}`;

async function main() {
  const errors = [];
  await runScenario(OVERALL_MS, async (browser) => {
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
      await page.evaluate(() => Promise.all(document.querySelector('switchboard-chat').shadowRoot.getAnimations().map((a) => a.finished)));
      await shoot(page, 'widget-zh');
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

    const text = (page, selector) => page.locator(selector).first().textContent();
    const expect = async (page, selector, wanted) => {
      const got = (await text(page, selector)).trim();
      if (got !== wanted) throw new Error(`${selector} says ${JSON.stringify(got)}, not ${JSON.stringify(wanted)}`);
    };

    await step('a Chinese browser gets the console in Chinese', async () => {
      const agent = await openPage(browser, 'zh console', { locale: 'zh-CN' });
      await agent.goto(`${BASE}/console`);
      await expect(agent, '#login-submit', '登录');
      const lang = await agent.locator('html').getAttribute('lang');
      if (lang !== 'zh-CN') throw new Error(`the console's lang is ${lang}`);
      if ((await agent.title()) !== 'Switchboard — 客服工作台') throw new Error(`the title is ${await agent.title()}`);
      await signIn(agent, LOGIN, { status: 'away' });
      await expect(agent, '#filter-mine [data-i18n]', '我的');
      await expect(agent, '#filter-queue [data-i18n]', '排队');
      await expect(agent, '#filter-missed [data-i18n]', '留言');
      await expect(agent, '#filter-closed [data-i18n]', '已结束');
      await expect(agent, '#conversations-heading', '我的会话');
      await expect(agent, '#no-conversations', '暂无会话。分配给您的新会话会显示在这里。');
      await expect(agent, '#status option[value="online"]', '在线');
      await expect(agent, '#logout', '退出登录');
      await waitFor(agent, 'the connection in Chinese', () => document.querySelector('#connection').textContent === '已连接');
      await agent.locator('#filter-closed').click();
      await expect(agent, '#conversations-heading', '已结束的会话');
      // Online, the agent gets the Chinese visitor above, who waits.
      await agent.locator('#filter-mine').click();
      await agent.locator('#status').selectOption('online');
      const item = agent.locator('#conversations .conv-item').first();
      await item.waitFor({ state: 'visible' });
      await item.click();
      await waitFor(agent, "the visitor's message", () =>
        [...document.querySelectorAll('#messages .msg.theirs .text')].some((n) => n.textContent === '你好，请问有人吗？'));
      await agent.locator('#composer-input').fill('您好，请问有什么可以帮您？');
      await agent.locator('#composer-send').click();
      await waitFor(agent, 'the reply stored', () => [...document.querySelectorAll('#messages .msg.mine')].some((n) => n.dataset.seq));
      await shoot(agent, 'console-zh');
    });

    await step("an English browser switches the console to Chinese with the language menu", async () => {
      const agent = await openPage(browser, 'en console', { locale: 'en-US' });
      await agent.goto(`${BASE}/console`);
      await expect(agent, '#login-submit', 'Sign in');
      await agent.locator('#login-language').selectOption('zh-CN');
      await waitFor(agent, 'the console in Chinese', () => document.querySelector('#login-submit').textContent === '登录');
      await agent.reload();
      await expect(agent, '#login-submit', '登录');
    });

    await step('a Chinese browser gets the admin pages in Chinese', async () => {
      const admin = await openPage(browser, 'zh admin', { locale: 'zh-CN' });
      await admin.goto(`${BASE}/admin`);
      await expect(admin, '#login-submit', '登录');
      await expect(admin, '.login-card h1', 'Switchboard 管理后台');
      await expect(admin, '#dash-title', '实时');
      await expect(admin, '#add-agent h3', '添加客服');
      await expect(admin, 'label[for="login"]', '账号');
      if (pageErrors.length) throw new Error(`errors: ${pageErrors.join(' | ')}`);
    });
  });
}

main().catch((err) => fail(err && err.message ? err.message : String(err)));
