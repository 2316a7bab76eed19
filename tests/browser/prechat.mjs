// The widget's pre-chat form, in real Chromium: the team `vip` asks for a
// name and an email first (its `prechat` setting). A new visitor opening
// the widget gets the form instead of the composer; an empty name and a
// bad email are refused; once they are given the visitor chats, and the
// agent sees the visitor by that name, with the email in the details. The
// visitor then gives another name (POST /api/v1/visitors/profile, as a site
// would): the agent's open console shows it at once, in the header, the
// list and the transcript. A reload does not ask the form again.
//
// Environment: as harness.mjs; the agent is of team `vip`.

import {
  BASE, LOGIN, step, waitFor, shoot, openPage, signIn, inWidget, runScenario, assertNoPageErrors,
} from './harness.mjs';

const NAME = 'Mei Lin';
const EMAIL = 'mei@example.com';
const QUESTION = 'Can I upgrade my plan?';
const NEW_NAME = 'Mei Lin-Chen';

await runScenario(180000, async (browser) => {
  const agent = await openPage(browser, 'agent');
  const visitor = await openPage(browser, 'visitor');
  const shown = (selector) => inWidget(visitor, selector).isVisible();

  await step('the agent signs in', async () => {
    await signIn(agent, LOGIN, { status: 'online' });
  });

  await step('a new visitor gets the pre-chat form, not the composer', async () => {
    await visitor.goto(`${BASE}/?team=vip`);
    await inWidget(visitor, '#sb-launcher').click();
    await inWidget(visitor, '#sb-prechat').waitFor({ state: 'visible' });
    if (await shown('#sb-form')) throw new Error('the composer shows beside the pre-chat form');
    const title = await inWidget(visitor, '#sb-prechat-title').textContent();
    if (title !== 'Before we start') throw new Error(`the form's title is ${title}`);
    // The panel's opening animation ends before the picture.
    await visitor.evaluate(() => Promise.all(document.querySelector('switchboard-chat').shadowRoot.getAnimations().map((a) => a.finished)));
    await shoot(visitor, 'widget-prechat');
  });

  await step('an empty name and a bad email are refused', async () => {
    await inWidget(visitor, '#sb-prechat-submit').click();
    await waitFor(visitor, 'the name asked for', () =>
      document.querySelector('switchboard-chat').shadowRoot.querySelector('#sb-prechat-error').textContent === 'Please tell us your name.');
    await inWidget(visitor, '#sb-prechat-name').fill(NAME);
    await inWidget(visitor, '#sb-prechat-email').fill('mei@nowhere');
    await inWidget(visitor, '#sb-prechat-submit').click();
    await waitFor(visitor, 'the email refused', () =>
      document.querySelector('switchboard-chat').shadowRoot.querySelector('#sb-prechat-error').textContent === 'Please check your email address.');
    if (!(await shown('#sb-prechat'))) throw new Error('the form went away with a bad email');
  });

  let id = '';
  await step('with a name and an email the visitor chats', async () => {
    await inWidget(visitor, '#sb-prechat-email').fill(EMAIL);
    await inWidget(visitor, '#sb-prechat-submit').click();
    await inWidget(visitor, '#sb-prechat').waitFor({ state: 'hidden' });
    await inWidget(visitor, '#sb-input').fill(QUESTION);
    await inWidget(visitor, '#sb-send').click();
    await waitFor(visitor, 'the conversation to be created', () =>
      !!document.querySelector('switchboard-chat').shadowRoot.querySelector('#sb-panel').dataset.conversationId);
    id = await inWidget(visitor, '#sb-panel').getAttribute('data-conversation-id');
  });

  await step('the agent sees the visitor by name, with the email', async () => {
    const item = agent.locator(`#conversations .conv-item[data-conversation-id="${id}"]`);
    await item.waitFor({ state: 'visible' });
    const name = await item.locator('.conv-name').textContent();
    if (name !== NAME) throw new Error(`the list names the visitor ${name}`);
    await item.click();
    await waitFor(agent, 'the name in the header', (n) => document.querySelector('#chat-title').textContent === n, NAME);
    await agent.locator('#details-toggle').click();
    await waitFor(agent, 'the email in the details',
      (e) => [...document.querySelectorAll('#details-profile dd')].some((n) => n.textContent === e), EMAIL);
  });

  await step("the visitor's new name shows in the open console at once", async () => {
    const status = await visitor.evaluate(async (name) => {
      const { token } = JSON.parse(localStorage.getItem(`switchboard.visitor@${location.origin}`));
      const res = await fetch('/api/v1/visitors/profile', {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ name }),
      });
      return res.status;
    }, NEW_NAME);
    if (status !== 200) throw new Error(`the profile answered ${status}`);
    await waitFor(agent, 'the new name in the header', (n) => document.querySelector('#chat-title').textContent === n, NEW_NAME);
    await waitFor(agent, 'the new name in the list',
      ([cid, n]) => document.querySelector(`#conversations .conv-item[data-conversation-id="${cid}"] .conv-name`).textContent === n, [id, NEW_NAME]);
    await waitFor(agent, 'the rename in the transcript',
      ([old, n]) => [...document.querySelectorAll('#messages .event[data-event="renamed"]')].some((e) => e.textContent.startsWith(`${old} is now called ${n}`)),
      [NAME, NEW_NAME]);
    assertNoPageErrors();
  });

  await step('after a reload the form is not asked again', async () => {
    await visitor.reload();
    await inWidget(visitor, '#sb-launcher').click();
    await waitFor(visitor, 'the conversation again',
      (q) => [...document.querySelector('switchboard-chat').shadowRoot.querySelectorAll('#sb-messages .sb-text')].some((n) => n.textContent === q), QUESTION);
    if (await shown('#sb-prechat')) throw new Error('the pre-chat form is asked again');
    if (!(await shown('#sb-form'))) throw new Error('no composer after a reload');
    assertNoPageErrors();
  });
});
