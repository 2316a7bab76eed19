// End-to-end browser test of missed conversations, receipts, CSAT and
// reopening: a visitor finds nobody online and leaves a message; an agent
// (console on /console) picks it up from the Missed panel and replies; the
// agent closes, the visitor rates the chat, then reopens it with a new
// message and keeps the transcript. Real headless Chromium driven by
// playwright-core (no bundled browser), against a running server.
//
// No agent may be online when it starts (the agent of SB_AGENT_LOGIN logs
// in only after the visitor has left the message).
//
// Environment (as chat.mjs):
//   SB_URL              base URL of the server, e.g. http://127.0.0.1:8080
//   SB_AGENT_LOGIN      agent login
//   SB_AGENT_PASSWORD   agent password
//   CHROMIUM            browser binary (default /usr/bin/chromium)
//   SB_TIMEOUT_MS       per-step wait limit (default 20000)
//
// Prints `browser: 1 passed, 0 failed` and exits 0 on success; prints the
// failing step and exits 1 otherwise.

import { BASE, LOGIN, fail, step, waitFor, shoot, openPage, signIn, assertNoPageErrors, runScenario } from './harness.mjs';

const OVERALL_MS = 240000;

const run = Date.now().toString(36);
const FIRST_TEXT = 'Is anyone there?';
const LEFT_TEXT = `Please call me back about order ${run} <b>not bold</b>`;
const VISITOR_NAME = 'Rita <i>Router</i>';
const EMAIL = `rita.${run}@example.com`;
const AGENT_TEXT = 'Sorry we missed you — how can I help?';
const COMMENT = 'Quick and friendly';
const REOPEN_TEXT = 'One more question';

// Number of widget messages (mine/theirs) whose text is exactly `text`.
function countWidgetMessages(page, text) {
  return page.evaluate(
    (t) => [...document.querySelector('switchboard-chat').shadowRoot.querySelectorAll('#sb-messages .sb-msg .sb-text')].filter((n) => n.textContent === t).length,
    text,
  );
}

async function noInjectedMarkup(page, selector, where) {
  // The widget's nodes are in its shadow root.
  const n = await page.evaluate(
    (s) => (s.startsWith('#sb-') ? document.querySelector('switchboard-chat').shadowRoot : document).querySelectorAll(s).length,
    selector,
  );
  if (n !== 0) throw new Error(`user text was rendered as HTML in ${where} (found ${selector})`);
}

async function main() {
  await runScenario(OVERALL_MS, async (browser) => {
    const visitor = await openPage(browser, 'visitor');
    const agent = await openPage(browser, 'agent');

    let conversationId = '';
    await step('visitor opens the widget: leaving a message is offered', async () => {
      await visitor.goto(`${BASE}/`);
      await visitor.locator('#sb-launcher').click();
      await visitor.locator('#sb-panel').waitFor({ state: 'visible' });
      await visitor.locator('#sb-offer[data-kind="optional"] #sb-leave-open').waitFor({ state: 'visible' });
    });

    await step('visitor writes while nobody is online and is offered to leave a message', async () => {
      await visitor.locator('#sb-input').fill(FIRST_TEXT);
      await visitor.locator('#sb-send').click();
      await waitFor(visitor, 'the conversation to be created', () => !!document.querySelector('switchboard-chat').shadowRoot.querySelector('#sb-panel').dataset.conversationId);
      conversationId = await visitor.locator('#sb-panel').getAttribute('data-conversation-id');
      // The router's `queued` event says agents_online: 0.
      await visitor.locator('#sb-offer[data-kind="offline"]').waitFor({ state: 'visible' });
      await shoot(visitor, 'widget-offline');
      const offer = await visitor.locator('#sb-offer-text').textContent();
      if (!/no one is available/i.test(offer)) throw new Error(`unexpected offer text: ${offer}`);
    });

    await step('visitor leaves a message with an email and sees the confirmation', async () => {
      await visitor.locator('#sb-leave-open').click();
      await visitor.locator('#sb-leave').waitFor({ state: 'visible' });
      await visitor.locator('#sb-leave-name').fill(VISITOR_NAME);
      await visitor.locator('#sb-leave-email').fill(EMAIL);
      await visitor.locator('#sb-leave-text').fill(LEFT_TEXT);
      await visitor.locator('#sb-leave-submit').click();
      await visitor.locator('#sb-leave').waitFor({ state: 'hidden' });
      await waitFor(
        visitor,
        'the confirmation naming the email in the status line',
        (email) => document.querySelector('switchboard-chat').shadowRoot.querySelector('#sb-status').textContent.includes(`we'll get back to you at ${email}`),
        EMAIL,
      );
      await waitFor(
        visitor,
        'the left_message line in the conversation',
        (email) =>
          [...document.querySelector('switchboard-chat').shadowRoot.querySelectorAll('#sb-messages .sb-event[data-event="left_message"]')].some((n) => n.textContent.includes(email)),
        EMAIL,
      );
      await waitFor(
        visitor,
        'the left message to be stored (with its seq)',
        (t) => [...document.querySelector('switchboard-chat').shadowRoot.querySelectorAll('#sb-messages .sb-msg.sb-mine')].some((n) => n.dataset.seq && n.querySelector('.sb-text').textContent === t),
        LEFT_TEXT,
      );
      const pid = await visitor.locator('#sb-panel').getAttribute('data-conversation-id');
      if (pid !== conversationId) throw new Error(`the message went to ${pid}, expected the waiting conversation ${conversationId}`);
      if ((await visitor.locator('#sb-panel').getAttribute('data-state')) !== 'missed') throw new Error('the conversation is not shown as missed');
      if (await visitor.locator('#sb-offer').isVisible()) throw new Error('the offer is still shown after leaving a message');
      await noInjectedMarkup(visitor, '#sb-messages b', 'the widget');
    });

    await step('agent logs in to the console', async () => {
      await signIn(agent, LOGIN, { status: 'online' });
    });

    await step('agent opens Missed and sees the message with the email', async () => {
      await agent.locator('#filter-missed').click();
      await agent.locator('#missed-refresh').click();
      const item = agent.locator(`#missed .missed-item[data-conversation-id="${conversationId}"]`);
      await item.waitFor({ state: 'visible' });
      const text = await item.textContent();
      if (!text.includes(EMAIL)) throw new Error(`the missed entry does not show ${EMAIL}: ${text}`);
      if (!text.includes(LEFT_TEXT)) throw new Error(`the missed entry does not show the message: ${text}`);
      if (!text.includes(VISITOR_NAME)) throw new Error(`the missed entry does not show the name: ${text}`);
      await noInjectedMarkup(agent, '#missed b, #missed i', 'the Missed panel');
    });

    await step('agent picks it up and sees the left message', async () => {
      await agent.locator(`#missed .missed-item[data-conversation-id="${conversationId}"] .pick-up`).click();
      const conv = agent.locator(`#conversations .conv-item[data-conversation-id="${conversationId}"]`);
      await conv.waitFor({ state: 'visible' });
      await agent.locator(`#missed .missed-item[data-conversation-id="${conversationId}"]`).waitFor({ state: 'detached' });
      await conv.click();
      await waitFor(
        agent,
        'the left message in the agent chat pane',
        (t) => [...document.querySelectorAll('#messages .msg.theirs .text')].some((n) => n.textContent === t),
        LEFT_TEXT,
      );
      await waitFor(
        agent,
        'the left_message line with the contact email',
        (email) => [...document.querySelectorAll('#messages .event[data-event="left_message"]')].some((n) => n.textContent.includes(email)),
        EMAIL,
      );
      // The name given with the message is the visitor's in the header.
      await waitFor(agent, 'the left name in the header', (n) => document.querySelector('#chat-title').textContent === n, VISITOR_NAME);
      await agent.locator('#messages .event[data-event="picked_up"]').first().waitFor({ state: 'visible' });
      await waitFor(agent, 'the composer to be enabled', () => !document.querySelector('#composer-input').disabled);
      await noInjectedMarkup(agent, '#messages b, #conversations b', 'the console');
    });

    await step('visitor sees the pick-up', async () => {
      await visitor.locator('#sb-messages .sb-event[data-event="picked_up"]').first().waitFor({ state: 'visible' });
      await waitFor(visitor, 'the chatting status', () => /chatting with/i.test(document.querySelector('switchboard-chat').shadowRoot.querySelector('#sb-status').textContent));
    });

    await step('agent replies; visitor sees the reply; the agent sees it read', async () => {
      await agent.locator('#composer-input').fill(AGENT_TEXT);
      await agent.locator('#composer-send').click();
      await waitFor(
        agent,
        'the agent reply to be acknowledged',
        (t) => [...document.querySelectorAll('#messages .msg.mine')].some((n) => n.dataset.seq && n.querySelector('.text').textContent === t),
        AGENT_TEXT,
      );
      await waitFor(
        visitor,
        'the agent reply in the widget',
        (t) => [...document.querySelector('switchboard-chat').shadowRoot.querySelectorAll('#sb-messages .sb-msg.sb-theirs .sb-text')].some((n) => n.textContent === t),
        AGENT_TEXT,
      );
      // The widget is open, so it sends `read`: the receipt reaches the agent.
      await waitFor(
        agent,
        'the agent reply to show data-state="read"',
        (t) => [...document.querySelectorAll('#messages .msg.mine')].some((n) => n.dataset.state === 'read' && n.querySelector('.text').textContent === t),
        AGENT_TEXT,
      );
      // And the agent has the visitor's messages: at least delivered.
      await waitFor(
        visitor,
        'the left message to show delivered or read',
        (t) =>
          [...document.querySelector('switchboard-chat').shadowRoot.querySelectorAll('#sb-messages .sb-msg.sb-mine')].some(
            (n) => ['delivered', 'read'].includes(n.dataset.state) && n.querySelector('.sb-text').textContent === t,
          ),
        LEFT_TEXT,
      );
    });

    await step('agent closes; visitor rates 5 and sees the thanks', async () => {
      await agent.locator('#close-conversation').click();
      await waitFor(visitor, 'the closed status in the widget', () => /closed/i.test(document.querySelector('switchboard-chat').shadowRoot.querySelector('#sb-status').textContent));
      await visitor.locator('#sb-rating').waitFor({ state: 'visible' });
      await visitor.locator('#sb-rating .sb-star[data-score="5"]').click();
      await visitor.locator('#sb-rating-comment').fill(COMMENT);
      await visitor.locator('#sb-rating-submit').click();
      await visitor.locator('#sb-rating-thanks').waitFor({ state: 'visible' });
      const thanks = await visitor.locator('#sb-rating-thanks').textContent();
      if (!/thanks for your feedback/i.test(thanks)) throw new Error(`unexpected thanks text: ${thanks}`);
      await visitor.locator('#sb-rating').waitFor({ state: 'hidden' });
      await visitor.locator('#sb-messages .sb-event[data-event="rated"]').waitFor({ state: 'visible' });
    });

    await step('agent sees the rating', async () => {
      await waitFor(
        agent,
        'the rated line with the score and comment in the console',
        (c) => [...document.querySelectorAll('#messages .event[data-event="rated"]')].some((n) => n.textContent.includes('5/5') && n.textContent.includes(c)),
        COMMENT,
      );
      await waitFor(
        agent,
        'the conversation to be greyed out in the console',
        (id) => {
          const n = document.querySelector(`#conversations .conv-item[data-conversation-id="${id}"]`);
          return n && n.classList.contains('closed');
        },
        conversationId,
      );
    });

    await step('visitor starts a new chat within the reopen window: same conversation, transcript kept', async () => {
      await visitor.locator('#sb-new-chat').click();
      await visitor.locator('#sb-input').fill(REOPEN_TEXT);
      await visitor.locator('#sb-send').click();
      await visitor.locator('#sb-messages .sb-event[data-event="reopened"]').waitFor({ state: 'visible' });
      await waitFor(
        visitor,
        'the new message to be stored in the reopened conversation',
        (t) => [...document.querySelector('switchboard-chat').shadowRoot.querySelectorAll('#sb-messages .sb-msg.sb-mine')].some((n) => n.dataset.seq && n.querySelector('.sb-text').textContent === t),
        REOPEN_TEXT,
      );
      const pid = await visitor.locator('#sb-panel').getAttribute('data-conversation-id');
      if (pid !== conversationId) throw new Error(`reopened as ${pid}, expected ${conversationId}`);
      for (const text of [FIRST_TEXT, LEFT_TEXT, AGENT_TEXT, REOPEN_TEXT]) {
        const n = await countWidgetMessages(visitor, text);
        if (n !== 1) throw new Error(`"${text}" is shown ${n} times after the reopen`);
      }
      const seqs = await visitor.evaluate(() => [...document.querySelector('switchboard-chat').shadowRoot.querySelectorAll('#sb-messages [data-seq]')].map((n) => n.dataset.seq));
      if (new Set(seqs).size !== seqs.length) throw new Error(`the widget shows a seq twice: ${seqs.join(',')}`);
    });

    await step('the reopened conversation comes back to the agent, who closes it again', async () => {
      await waitFor(
        agent,
        'the reopened message in the console',
        (t) => [...document.querySelectorAll('#messages .msg.theirs .text')].some((n) => n.textContent === t),
        REOPEN_TEXT,
      );
      await waitFor(
        agent,
        'the conversation to be open again in the console',
        (id) => {
          const n = document.querySelector(`#conversations .conv-item[data-conversation-id="${id}"]`);
          return n && !n.classList.contains('closed') && !document.querySelector('#close-conversation').disabled;
        },
        conversationId,
      );
      // Leave nothing open behind (the agent's capacity is shared with later runs).
      await agent.locator('#close-conversation').click();
      await waitFor(visitor, 'the closed status in the widget', () => /closed/i.test(document.querySelector('switchboard-chat').shadowRoot.querySelector('#sb-status').textContent));
      // Rated once already: the widget thanks instead of asking again.
      await visitor.locator('#sb-rating-thanks').waitFor({ state: 'visible' });
      assertNoPageErrors();
    });
  });
}

main().then(
  () => process.exit(0),
  (err) => fail(err && err.message ? err.message : String(err)),
);
