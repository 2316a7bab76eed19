// The inbox's filters in real Chromium: Mine, the team Queue, Missed and
// Closed. An agent chats with a visitor and closes the conversation: it
// leaves Mine for Closed. The agent logs out and in again: Closed still
// lists it (from the archive) and opens its transcript, read-only. A
// second visitor waits while the agent is away: the Queue filter shows
// them, with a count on the filter.
//
// Environment: as harness.mjs.

import {
  BASE, LOGIN, TIMEOUT, step, waitFor, shoot, openPage, signIn, inWidget, runScenario, assertNoPageErrors,
} from './harness.mjs';

const QUESTION = 'Can I change my delivery address?';
const ANSWER = 'Yes, until the parcel ships.';

const shown = (page, selector) => page.locator(selector).isVisible();

async function startChat(visitor, text) {
  await visitor.goto(`${BASE}/`);
  await inWidget(visitor, '#sb-launcher').click();
  await inWidget(visitor, '#sb-input').fill(text);
  await inWidget(visitor, '#sb-send').click();
  await waitFor(visitor, 'the conversation to be created', () =>
    !!document.querySelector('switchboard-chat').shadowRoot.querySelector('#sb-panel').dataset.conversationId);
  return inWidget(visitor, '#sb-panel').getAttribute('data-conversation-id');
}

await runScenario(180000, async (browser) => {
  const agent = await openPage(browser, 'agent');
  const visitor = await openPage(browser, 'visitor');
  const waiting = await openPage(browser, 'second visitor');
  const item = (id) => agent.locator(`#conversations .conv-item[data-conversation-id="${id}"]`);

  await step('the agent signs in: the Mine filter is chosen', async () => {
    await signIn(agent, LOGIN, { status: 'online' });
    const pressed = await agent.locator('.filter[aria-pressed="true"]').getAttribute('data-filter');
    if (pressed !== 'mine') throw new Error(`the chosen filter is ${pressed}`);
    if (!(await shown(agent, '#no-conversations'))) throw new Error('no hint in an empty Mine list');
  });

  let id = '';
  await step('a chat in Mine: the visitor asks, the agent answers', async () => {
    id = await startChat(visitor, QUESTION);
    await item(id).waitFor({ state: 'visible' });
    await waitFor(agent, 'the count on Mine', () => document.querySelector('#mine-count').textContent === '1');
    await item(id).click();
    await agent.locator('#composer-input').fill(ANSWER);
    await agent.locator('#composer-input').press('Enter');
    await waitFor(agent, 'the answer acknowledged',
      (t) => [...document.querySelectorAll('#messages .msg.mine')].some((n) => n.dataset.seq && n.textContent.includes(t)), ANSWER);
  });

  await step('closed, it leaves Mine for Closed', async () => {
    await agent.locator('#close-conversation').click();
    await item(id).waitFor({ state: 'hidden' });
    await agent.locator('#filter-closed').click();
    await item(id).waitFor({ state: 'visible' });
    const heading = await agent.locator('#conversations-heading').textContent();
    if (heading !== 'Closed conversations') throw new Error(`the heading says ${heading}`);
  });

  await step('after logging in again, Closed lists it from the archive', async () => {
    await agent.locator('#logout').click();
    await signIn(agent, LOGIN, { status: 'away' });
    if (await item(id).count()) throw new Error('the closed conversation is listed under Mine');
    await agent.locator('#filter-closed').click();
    // The archive catches up within moments: refresh until it has it.
    const until = Date.now() + TIMEOUT;
    while (!(await item(id).isVisible())) {
      if (Date.now() > until) throw new Error('Closed never listed the conversation');
      await agent.waitForTimeout(300);
      if (await agent.locator('#closed-refresh').isEnabled()) await agent.locator('#closed-refresh').click();
    }
  });

  await step('its transcript opens, read-only', async () => {
    await item(id).click();
    for (const text of [QUESTION, ANSWER]) {
      await waitFor(agent, `"${text}" in the transcript`,
        (t) => [...document.querySelectorAll('#messages .msg .text')].some((n) => n.textContent === t), text);
    }
    const subtitle = await agent.locator('#chat-subtitle').textContent();
    if (!subtitle.startsWith('Closed')) throw new Error(`the header says ${subtitle}`);
    if (await agent.locator('#composer-input').isEnabled()) throw new Error('the composer of a closed conversation is enabled');
    if (await agent.locator('#close-conversation').isEnabled()) throw new Error('a closed conversation can be closed');
    await shoot(agent, 'console-closed');
  });

  await step('the Queue filter shows who waits, Missed its own list', async () => {
    const queued = await startChat(waiting, 'Is anyone there?');
    await waitFor(agent, 'the count on Queue', () => document.querySelector('#queue-count').textContent === '1');
    await agent.locator('#filter-queue').click();
    await agent.locator(`#queue .queue-item[data-conversation-id="${queued}"]`).waitFor({ state: 'visible' });
    if (await shown(agent, '#conversations')) throw new Error('the conversation list shows under Queue');
    await agent.locator('#filter-missed').click();
    await agent.locator('#missed-heading').waitFor({ state: 'visible' });
    if (await shown(agent, '#queue')) throw new Error('the queue shows under Missed');
    await agent.locator('#filter-mine').click();
    await agent.locator('#no-conversations').waitFor({ state: 'visible' });
    assertNoPageErrors();
  });
});
