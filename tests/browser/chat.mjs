// End-to-end browser test: a visitor (widget on /) chats with an agent
// (console on /console) through a running Switchboard server, in real
// headless Chromium driven by playwright-core (no bundled browser).
//
// Environment:
//   SB_URL              base URL of the server, e.g. http://127.0.0.1:8080
//   SB_AGENT_LOGIN      agent login
//   SB_AGENT_PASSWORD   agent password
//   CHROMIUM            browser binary (default /usr/bin/chromium)
//   SB_TIMEOUT_MS       per-step wait limit (default 20000)
//
// Prints `browser: 1 passed, 0 failed` and exits 0 on success; prints the
// failing step and exits 1 otherwise.

import { BASE, LOGIN, TIMEOUT, report, fail, step, watch, waitFor, launch, shoot, openPage, signIn, assertNoPageErrors, runScenario } from './harness.mjs';

const OVERALL_MS = 180000;

const VISITOR_TEXT = 'Hello from the visitor <b>not bold</b>';
const AGENT_TEXT = 'Hi, how can I help?';

// Number of widget messages (mine/theirs) whose text is exactly `text`.
function countWidgetMessages(page, text) {
  return page.evaluate(
    (t) => [...document.querySelector('switchboard-chat').shadowRoot.querySelectorAll('#sb-messages .sb-msg .sb-text')].filter((n) => n.textContent === t).length,
    text,
  );
}

async function main() {
  await runScenario(OVERALL_MS, async (browser) => {
    const agent = await openPage(browser, 'agent');
    const visitor = await openPage(browser, 'visitor');

    await step('agent logs in to the console', async () => {
      await signIn(agent, LOGIN);
    });

    await step('agent goes online', async () => {
      await agent.locator('#status').selectOption('online');
      const value = await agent.locator('#status').inputValue();
      if (value !== 'online') throw new Error(`status select shows ${value}`);
    });

    let conversationId = '';
    await step('visitor opens the widget and sends a message', async () => {
      await visitor.goto(`${BASE}/`);
      await visitor.locator('#sb-launcher').waitFor({ state: 'visible' });
      await shoot(visitor, 'widget-closed');
      await visitor.locator('#sb-launcher').click();
      await visitor.locator('#sb-panel').waitFor({ state: 'visible' });
      await visitor.locator('#sb-input').fill(VISITOR_TEXT);
      await visitor.locator('#sb-send').click();
      await waitFor(
        visitor,
        'the visitor message to appear in the widget',
        (t) => [...document.querySelector('switchboard-chat').shadowRoot.querySelectorAll('#sb-messages .sb-msg.sb-mine .sb-text')].some((n) => n.textContent === t),
        VISITOR_TEXT,
      );
      await waitFor(visitor, 'the conversation to be created', () => !!document.querySelector('switchboard-chat').shadowRoot.querySelector('#sb-panel').dataset.conversationId);
      conversationId = await visitor.locator('#sb-panel').getAttribute('data-conversation-id');
    });

    await step('agent sees the conversation and the exact visitor text', async () => {
      const item = agent.locator(`#conversations .conv-item[data-conversation-id="${conversationId}"]`);
      await item.waitFor({ state: 'visible' });
      await item.click();
      await waitFor(
        agent,
        'the visitor message in the agent chat pane',
        (t) => [...document.querySelectorAll('#messages .msg.theirs .text')].some((n) => n.textContent === t),
        VISITOR_TEXT,
      );
      const injected = await agent.evaluate(() => document.querySelectorAll('#messages b, #conversations b').length);
      if (injected !== 0) throw new Error('message text was rendered as HTML (found a <b> element)');
    });

    await step('agent replies', async () => {
      await agent.locator('#composer-input').fill(AGENT_TEXT);
      await agent.locator('#composer-send').click();
      await waitFor(
        agent,
        'the agent reply to be acknowledged',
        (t) => [...document.querySelectorAll('#messages .msg.mine')].some((n) => n.dataset.seq && n.querySelector('.text').textContent === t),
        AGENT_TEXT,
      );
    });

    await step('visitor sees the reply and their message as sent', async () => {
      await waitFor(
        visitor,
        'the agent reply in the widget',
        (t) => [...document.querySelector('switchboard-chat').shadowRoot.querySelectorAll('#sb-messages .sb-msg.sb-theirs .sb-text')].some((n) => n.textContent === t),
        AGENT_TEXT,
      );
      // Stored, and maybe already delivered or read: receipts can arrive
      // right after the ack.
      await waitFor(
        visitor,
        'the visitor message to show data-state="sent", "delivered" or "read"',
        (t) =>
          [...document.querySelector('switchboard-chat').shadowRoot.querySelectorAll('#sb-messages .sb-msg.sb-mine')].some(
            (n) => ['sent', 'delivered', 'read'].includes(n.dataset.state) && n.querySelector('.sb-text').textContent === t,
          ),
        VISITOR_TEXT,
      );
      await shoot(visitor, 'widget-chatting');
      await shoot(agent, 'console');
      const injected = await visitor.evaluate(() => document.querySelector('switchboard-chat').shadowRoot.querySelectorAll('#sb-messages b').length);
      if (injected !== 0) throw new Error('message text was rendered as HTML in the widget');
    });

    await step("a second tab of the agent's console is signed in already", async () => {
      const second = await agent.context().newPage();
      second.setDefaultTimeout(TIMEOUT);
      watch(second, 'agent tab 2');
      await second.goto(`${BASE}/console`);
      await waitFor(second, 'the second tab connected without signing in', () => {
        const app = document.querySelector('#app');
        return !app.hidden && app.dataset.connection === 'open';
      });
      await second.locator(`#conversations .conv-item[data-conversation-id="${conversationId}"]`).waitFor({ state: 'visible' });
      await second.close();
    });

    await step('visitor reloads and resumes the conversation', async () => {
      await visitor.reload();
      await visitor.locator('#sb-launcher').click();
      await visitor.locator('#sb-panel').waitFor({ state: 'visible' });
      await waitFor(
        visitor,
        'both messages after reload (with their seq)',
        ([a, b]) => {
          const msgs = [...document.querySelector('switchboard-chat').shadowRoot.querySelectorAll('#sb-messages .sb-msg')];
          const has = (t, cls) => msgs.some((n) => n.classList.contains(cls) && n.dataset.seq && n.querySelector('.sb-text').textContent === t);
          return has(a, 'sb-mine') && has(b, 'sb-theirs');
        },
        [VISITOR_TEXT, AGENT_TEXT],
      );
      const pid = await visitor.locator('#sb-panel').getAttribute('data-conversation-id');
      if (pid !== conversationId) throw new Error(`resumed conversation ${pid}, expected ${conversationId}`);
      for (const text of [VISITOR_TEXT, AGENT_TEXT]) {
        const n = await countWidgetMessages(visitor, text);
        if (n !== 1) throw new Error(`"${text}" is shown ${n} times after reload`);
      }
    });

    await step('agent closes the conversation; visitor sees it closed', async () => {
      await agent.locator('#close-conversation').click();
      await waitFor(visitor, 'the closed status in the widget', () => /closed/i.test(document.querySelector('switchboard-chat').shadowRoot.querySelector('#sb-status').textContent));
      await waitFor(
        agent,
        'the conversation to be greyed out in the console',
        (id) => {
          const n = document.querySelector(`#conversations .conv-item[data-conversation-id="${id}"]`);
          return n && n.classList.contains('closed');
        },
        conversationId,
      );
      // Still no duplicates once everything has settled.
      for (const text of [VISITOR_TEXT, AGENT_TEXT]) {
        const n = await countWidgetMessages(visitor, text);
        if (n !== 1) throw new Error(`"${text}" is shown ${n} times in the widget`);
      }
      const seqs = await agent.evaluate(() => [...document.querySelectorAll('#messages [data-seq]')].map((n) => n.dataset.seq));
      if (new Set(seqs).size !== seqs.length) throw new Error(`the console shows a seq twice: ${seqs.join(',')}`);
      assertNoPageErrors();
    });
  });
}

main().then(
  () => process.exit(0),
  (err) => fail(err && err.message ? err.message : String(err)),
);
