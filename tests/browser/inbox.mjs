// A day in the inbox, in real Chromium: a visitor waits while both agents
// are away; Ann takes the conversation from the queue, answers with a
// canned response (`/thanks` + Tab), writes a private note the visitor
// never sees, and transfers the conversation to Bob by picking his name;
// Bob's console gets it with the note.
//
// Environment: as harness.mjs, plus SB_AGENT2_LOGIN (Bob; same password).
// The runner saved the canned response `thanks` (CANNED below).

import { BASE, LOGIN, TIMEOUT, report, fail, step, waitFor, launch, shoot, openPage, signIn, assertNoPageErrors, runScenario } from './harness.mjs';

const OVERALL_MS = 180000;
const BOB = process.env.SB_AGENT2_LOGIN || '';
const CANNED = 'Thanks for waiting! How can I help?';
const NOTE = 'VIP customer, be nice';
const QUESTION = 'Where is my parcel?';

const widgetHas = (page, text) => page.evaluate(
  (t) => [...document.querySelector('switchboard-chat').shadowRoot.querySelectorAll('#sb-messages *')].some((n) => n.textContent.includes(t)),
  text,
);

async function main() {
  if (!BOB) fail('SB_AGENT2_LOGIN is not set');
  await runScenario(OVERALL_MS, async (browser) => {
    const ann = await openPage(browser, 'ann');
    const bob = await openPage(browser, 'bob');
    const visitor = await openPage(browser, 'visitor');

    await step('both agents log in, away', async () => {
      await signIn(ann, LOGIN, { status: 'away' });
      await signIn(bob, BOB, { status: 'away' });
    });

    let conversationId = '';
    await step('a visitor waits in the queue', async () => {
      await visitor.goto(`${BASE}/`);
      await visitor.locator('#sb-launcher').click();
      await visitor.locator('#sb-input').fill(QUESTION);
      await visitor.locator('#sb-send').click();
      await waitFor(visitor, 'the conversation to be created', () =>
        !!document.querySelector('switchboard-chat').shadowRoot.querySelector('#sb-panel').dataset.conversationId);
      conversationId = await visitor.locator('#sb-panel').getAttribute('data-conversation-id');
      await ann.locator('#filter-queue').click();
      await ann.locator(`#queue .queue-item[data-conversation-id="${conversationId}"]`).waitFor({ state: 'visible' });
    });

    await step('Ann takes it from the queue', async () => {
      await ann.locator(`#queue .queue-item[data-conversation-id="${conversationId}"] .queue-take`).click();
      await ann.locator('#status').selectOption('online');
      const item = ann.locator(`#conversations .conv-item[data-conversation-id="${conversationId}"]`);
      await item.waitFor({ state: 'visible' });
      await item.click();
      await waitFor(ann, 'the question in the console',
        (t) => [...document.querySelectorAll('#messages .msg.theirs .text')].some((n) => n.textContent === t), QUESTION);
    });

    await step('Ann answers with a canned response', async () => {
      await ann.locator('#composer-input').fill('/thanks');
      await waitFor(ann, 'the canned hint', () => !document.querySelector('#composer-hint').hidden);
      await ann.locator('#composer-input').press('Tab');
      const value = await ann.locator('#composer-input').inputValue();
      if (value !== CANNED) throw new Error(`/thanks + Tab gave ${JSON.stringify(value)}`);
      await ann.locator('#composer-input').press('Enter');
      await waitFor(visitor, 'the canned response in the widget',
        (t) => [...document.querySelector('switchboard-chat').shadowRoot.querySelectorAll('#sb-messages .sb-msg.sb-theirs .sb-text')]
          .some((n) => n.textContent === t), CANNED);
    });

    await step('Ann writes a private note the visitor never sees', async () => {
      await ann.locator('#composer-private').check();
      await ann.locator('#composer-input').fill(NOTE);
      await ann.locator('#composer-input').press('Enter');
      await waitFor(ann, 'the note in the console',
        (t) => [...document.querySelectorAll('#messages .event.note')].some((n) => n.textContent.includes(t)), NOTE);
      await shoot(ann, 'console-inbox');
    });

    await step('Ann transfers it to Bob by name', async () => {
      await bob.locator('#status').selectOption('online');
      await ann.locator('#transfer-toggle').click();
      await waitFor(ann, "Bob's name in the transfer list",
        () => [...document.querySelectorAll('#transfer-target option')].some((o) => o.textContent.startsWith('Agent ') && o.value));
      const labels = await ann.locator('#transfer-target option').allTextContents();
      const bobLabel = labels.find((l) => l.includes(process.env.SB_AGENT2_LOGIN));
      if (!bobLabel) throw new Error(`Bob is not offered: ${labels.join(' | ')}`);
      if (!/online/.test(bobLabel)) throw new Error(`Bob's status is not shown: ${bobLabel}`);
      await ann.locator('#transfer-target').selectOption({ label: bobLabel });
      await ann.locator('#transfer-submit').click();
      const item = bob.locator(`#conversations .conv-item[data-conversation-id="${conversationId}"]`);
      await item.waitFor({ state: 'visible' });
      await waitFor(bob, "the new conversation in Bob's tab title", () => /^\(1\) /.test(document.title));
      await item.click();
      await waitFor(bob, 'the title without the badge once read', () => !/^\(\d+\) /.test(document.title));
      await waitFor(bob, 'the note for Bob',
        (t) => [...document.querySelectorAll('#messages .event.note')].some((n) => n.textContent.includes(t)), NOTE);
      await waitFor(visitor, 'the transfer in the widget', () =>
        [...document.querySelector('switchboard-chat').shadowRoot.querySelectorAll('#sb-messages .sb-event')].some((n) => n.dataset.event === 'transferred'));
      if (await widgetHas(visitor, NOTE)) throw new Error('the visitor sees the private note');
    });

    await step("Bob sees who the visitor is, and finds the chat by a word of it", async () => {
      await bob.locator('#details-toggle').click();
      await waitFor(bob, "the visitor's page in the details",
        (url) => [...document.querySelectorAll('#details-profile dd')].some((n) => n.textContent === url), `${BASE}/`);
      const browserLine = await bob.locator('#details-profile').textContent();
      if (!/Chrome/.test(browserLine)) throw new Error(`no browser in the details: ${browserLine}`);
      // The archive catches up within moments: search until it has it.
      const until = Date.now() + TIMEOUT;
      for (;;) {
        await bob.locator('#search-input').fill('parcel');
        await bob.locator('#search-form button[type=submit]').click();
        await waitFor(bob, 'the search to answer', () => document.querySelector('#search-status').textContent !== 'Searching…');
        const found = await bob.locator(`#search-results .past-item[data-conversation-id="${conversationId}"]`).count();
        if (found === 1) break;
        if (Date.now() > until) throw new Error('the search never found the conversation');
        await bob.waitForTimeout(250);
      }
    });

    await step("Bob's console is usable at 390 px", async () => {
      await bob.setViewportSize({ width: 390, height: 844 });
      const overflow = await bob.evaluate(() => document.documentElement.scrollWidth);
      if (overflow > 390) throw new Error(`the console is ${overflow} px wide at 390 px`);
      const close = await bob.locator('#close-conversation').boundingBox();
      if (!close || close.x < 0 || close.x + close.width > 390) throw new Error(`"Close conversation" is cut off: ${JSON.stringify(close)}`);
      const bar = await bob.locator('.topbar').boundingBox();
      if (!bar || bar.height > 60) throw new Error(`the top bar wraps: ${JSON.stringify(bar)}`);
      await bob.locator('#filter-queue').click();
      await bob.locator('#queue-heading').scrollIntoViewIfNeeded();
      if (!(await bob.locator('#queue-heading').isVisible())) throw new Error('the queue cannot be reached');
      await bob.locator('#filter-mine').click();
      await bob.locator('#messages').scrollIntoViewIfNeeded();
      await shoot(bob, 'console-mobile');
      assertNoPageErrors();
    });
  });
}

main().catch((err) => fail(err && err.message ? err.message : String(err)));
