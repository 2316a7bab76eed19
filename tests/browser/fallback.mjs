// The fallback transport in real Chromium: with WebSocket removed from the
// pages (as behind a proxy that blocks it), the widget and the console
// fall back to the event stream by themselves, say so in their
// diagnostics, chat (long messages typed at once included: they go in
// POSTs the edge takes), and resume after their edge is killed and
// restarted with no message lost and none shown twice.
//
// Environment: as harness.mjs. The edge restart is asked of the test
// runner: this script prints `SB_RESTART_EDGE` and waits for `restarted`
// on its standard input.

import readline from 'node:readline';
import { BASE, LOGIN, PASSWORD, TIMEOUT, report, fail, step, watch, waitFor, launch, runScenario } from './harness.mjs';

const OVERALL_MS = 240000;
const TEXTS = {
  visitorBefore: 'Hello over the event stream',
  agentBefore: 'Hi! I read you fine.',
  visitorAfter: 'Still there after the restart?',
  agentAfter: 'Yes, nothing was lost.',
};

const LONG = Array.from({ length: 7 }, (_, i) => `${i + 1} ${'长'.repeat(3990)}`);

const stdin = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();

async function restartEdge() {
  console.log('SB_RESTART_EDGE');
  const { value } = await stdin.next();
  if (value !== 'restarted') throw new Error(`the runner answered ${value} to the restart`);
}

const widgetTexts = (page, cls) => page.evaluate(
  (c) => [...document.querySelector('switchboard-chat').shadowRoot.querySelectorAll(`#sb-messages .sb-msg.${c} .sb-text`)]
    .map((n) => n.textContent),
  cls,
);

async function main() {
  const errors = [];
  await runScenario(OVERALL_MS, async (browser) => {
    const agentCtx = await browser.newContext();
    const visitorCtx = await browser.newContext();
    for (const ctx of [agentCtx, visitorCtx]) {
      await ctx.addInitScript(() => {
        delete window.WebSocket;
      });
    }
    const agent = await agentCtx.newPage();
    const visitor = await visitorCtx.newPage();
    agent.setDefaultTimeout(TIMEOUT);
    visitor.setDefaultTimeout(TIMEOUT);
    watch(agent, 'agent');
    watch(visitor, 'visitor');
    for (const [page, who] of [[agent, 'agent'], [visitor, 'visitor']]) {
      // Requests refused while the edge is down are expected; nothing else.
      page.on('console', (m) => {
        if (m.type() === 'error' && !/Failed to load resource|net::ERR_/.test(m.text())) errors.push(`[${who}] ${m.text()}`);
      });
      page.on('pageerror', (e) => errors.push(`[${who}] ${e.message}`));
    }

    await step('the console logs in over the event stream and says so', async () => {
      await agent.goto(`${BASE}/console`);
      const missing = await agent.evaluate(() => typeof window.WebSocket);
      if (missing !== 'undefined') throw new Error('WebSocket was not removed: the test proves nothing');
      await agent.locator('#login').fill(LOGIN);
      await agent.locator('#password').fill(PASSWORD);
      await agent.locator('#login-submit').click();
      await waitFor(agent, 'the console to be connected', () => {
        const app = document.querySelector('#app');
        return !app.hidden && app.dataset.connection === 'open';
      });
      const transport = await agent.locator('#app').getAttribute('data-transport');
      if (transport !== 'sse') throw new Error(`the console is on ${transport}`);
      const label = await agent.locator('#connection').textContent();
      if (!/event stream/.test(label)) throw new Error(`the console's diagnostics say ${label}`);
      await agent.locator('#status').selectOption('online');
    });

    let conversationId = '';
    await step('the widget chats over the event stream and says so', async () => {
      await visitor.goto(`${BASE}/`);
      await visitor.locator('#sb-launcher').click();
      await visitor.locator('#sb-panel').waitFor({ state: 'visible' });
      await visitor.locator('#sb-input').fill(TEXTS.visitorBefore);
      await visitor.locator('#sb-send').click();
      await waitFor(visitor, 'the conversation to be created', () =>
        !!document.querySelector('switchboard-chat').shadowRoot.querySelector('#sb-panel').dataset.conversationId);
      conversationId = await visitor.locator('#sb-panel').getAttribute('data-conversation-id');
      const transport = await visitor.locator('#sb-panel').getAttribute('data-transport');
      if (transport !== 'sse') throw new Error(`the widget is on ${transport}`);
      const diag = await visitor.locator('#sb-diag').textContent();
      if (!/event stream/.test(diag)) throw new Error(`the widget's diagnostics say ${diag}`);
    });

    await step('the agent answers over the event stream', async () => {
      const item = agent.locator(`#conversations .conv-item[data-conversation-id="${conversationId}"]`);
      await item.waitFor({ state: 'visible' });
      await item.click();
      await waitFor(agent, 'the visitor message in the console',
        (t) => [...document.querySelectorAll('#messages .msg.theirs .text')].some((n) => n.textContent === t),
        TEXTS.visitorBefore);
      await agent.locator('#composer-input').fill(TEXTS.agentBefore);
      await agent.locator('#composer-send').click();
      await waitFor(visitor, 'the agent reply in the widget',
        (t) => [...document.querySelector('switchboard-chat').shadowRoot.querySelectorAll('#sb-messages .sb-msg.sb-theirs .sb-text')]
          .some((n) => n.textContent === t),
        TEXTS.agentBefore);
    });

    // Seven messages of 4,000 Chinese characters (12 KB each) typed at
    // once: one POST carries the first, the six others wait and would
    // make a 72 KB POST, over the 64 KiB the edge takes: they must go in
    // POSTs the edge takes, none lost.
    await step('long messages sent at once all arrive over the event stream', async () => {
      await visitor.evaluate((texts) => {
        const root = document.querySelector('switchboard-chat').shadowRoot;
        const input = root.querySelector('#sb-input');
        for (const text of texts) {
          input.value = text;
          input.dispatchEvent(new Event('input', { bubbles: true }));
          root.querySelector('#sb-send').click();
        }
      }, LONG);
      for (const text of LONG) {
        await waitFor(visitor, 'each long message stored (with its seq)',
          (t) => [...document.querySelector('switchboard-chat').shadowRoot.querySelectorAll('#sb-messages .sb-msg.sb-mine')]
            .some((n) => n.dataset.seq && n.querySelector('.sb-text').textContent === t),
          text);
      }
    });

    await step('the edge is killed and restarted; both reconnect by themselves', async () => {
      await restartEdge();
      await waitFor(agent, 'the console to be connected again', () => document.querySelector('#app').dataset.connection === 'open');
      await agent.locator('#composer-input').fill(TEXTS.agentAfter);
      await agent.locator('#composer-send').click();
      await visitor.locator('#sb-input').fill(TEXTS.visitorAfter);
      await visitor.locator('#sb-send').click();
      await waitFor(visitor, "the agent's message after the restart",
        (t) => [...document.querySelector('switchboard-chat').shadowRoot.querySelectorAll('#sb-messages .sb-msg.sb-theirs .sb-text')]
          .some((n) => n.textContent === t),
        TEXTS.agentAfter);
      await waitFor(agent, "the visitor's message after the restart",
        (t) => [...document.querySelectorAll('#messages .msg.theirs .text')].some((n) => n.textContent === t),
        TEXTS.visitorAfter);
      await waitFor(visitor, "the visitor's message stored (with its seq)",
        (t) => [...document.querySelector('switchboard-chat').shadowRoot.querySelectorAll('#sb-messages .sb-msg.sb-mine')]
          .some((n) => n.dataset.seq && n.querySelector('.sb-text').textContent === t),
        TEXTS.visitorAfter);
    });

    await step('no message lost or shown twice, no error', async () => {
      const mine = await widgetTexts(visitor, 'sb-mine');
      const theirs = await widgetTexts(visitor, 'sb-theirs');
      const expect = (list, texts, who) => {
        if (list.length !== texts.length || texts.some((t) => list.filter((x) => x === t).length !== 1)) {
          throw new Error(`${who} shows ${JSON.stringify(list)}, expected ${JSON.stringify(texts)}`);
        }
      };
      expect(mine, [TEXTS.visitorBefore, ...LONG, TEXTS.visitorAfter], "the widget's own messages");
      expect(theirs, [TEXTS.agentBefore, TEXTS.agentAfter], "the widget's agent messages");
      const seqs = await agent.evaluate(() => [...document.querySelectorAll('#messages [data-seq]')].map((n) => Number(n.dataset.seq)));
      if (new Set(seqs).size !== seqs.length) throw new Error(`the console shows a seq twice: ${seqs.join(',')}`);
      const sorted = [...seqs].sort((a, b) => a - b);
      if (sorted.length && sorted[sorted.length - 1] - sorted[0] + 1 !== sorted.length) {
        throw new Error(`the console's records have a gap: ${sorted.join(',')}`);
      }
      const stillSse = await visitor.locator('#sb-panel').getAttribute('data-transport');
      if (stillSse !== 'sse') throw new Error(`the widget is on ${stillSse} after the restart`);
      if (errors.length) throw new Error(`errors: ${errors.join(' | ')}`);
    });
  });
}

main().catch((err) => fail(err && err.message ? err.message : String(err)));
