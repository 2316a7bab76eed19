// End-to-end browser test of a bot-first team: the demo site loads the widget
// for team `sales` (`/?team=sales`, under the edge's strict CSP); the
// team's FAQ bot answers the visitor, the widget offers "Talk to a person"
// while the bot has the conversation, and the click hands it to the agent,
// whose console shows what the bot said and why it was handed over.
//
// Environment: as chat.mjs (SB_URL, SB_AGENT_LOGIN: an agent of team
// `sales`, SB_AGENT_PASSWORD, CHROMIUM, SB_TIMEOUT_MS). The bot runs.
//
// Prints `browser: 1 passed, 0 failed` and exits 0 on success.

import { BASE, LOGIN, report, fail, step, waitFor, launch, shoot, openPage, signIn, assertNoPageErrors, runScenario } from './harness.mjs';

const OVERALL_MS = 180000;
const QUESTION = 'How long does shipping take?';
const ANSWER_PART = '2 working days';

async function main() {
  await runScenario(OVERALL_MS, async (browser) => {
    const agent = await openPage(browser, 'agent');
    const visitor = await openPage(browser, 'visitor');

    await step('agent logs in and goes online', async () => {
      await signIn(agent, LOGIN, { status: 'online' });
    });

    await step('the demo site embeds the widget for team sales (/?team=sales)', async () => {
      // Any CSP violation (an inline style or script) is recorded (openPage).
      const page = await visitor.goto(`${BASE}/?team=sales`);
      const csp = page.headers()['content-security-policy'] || '';
      if (!csp.includes("script-src 'self'") || !csp.includes("style-src 'self'")) throw new Error(`no strict CSP: ${csp}`);
      await visitor.locator('#sb-launcher').click();
      await visitor.locator('#sb-panel').waitFor({ state: 'visible' });
    });

    let conversationId = '';
    await step('the bot answers the question, and the widget offers a person', async () => {
      await visitor.locator('#sb-input').fill(QUESTION);
      await visitor.locator('#sb-send').click();
      await waitFor(
        visitor,
        "the bot's answer",
        (t) => [...document.querySelector('switchboard-chat').shadowRoot.querySelectorAll('#sb-messages .sb-msg.sb-theirs .sb-text')].some((n) => n.textContent.includes(t)),
        ANSWER_PART,
      );
      await waitFor(visitor, 'the "Talk to a person" offer', () => !document.querySelector('switchboard-chat').shadowRoot.querySelector('#sb-person').hidden);
      await shoot(visitor, 'widget-bot');
      const status = await visitor.locator('#sb-status').textContent();
      if (!status.includes('FAQ bot') || !status.includes('(a bot)')) throw new Error(`status says ${JSON.stringify(status)}`);
      conversationId = await visitor.locator('#sb-panel').getAttribute('data-conversation-id');
    });

    await step('the visitor asks for a person: the agent gets the conversation', async () => {
      await visitor.locator('#sb-person-button').click();
      await waitFor(visitor, 'the handoff line', () =>
        [...document.querySelector('switchboard-chat').shadowRoot.querySelectorAll('#sb-messages .sb-event')].some((n) => n.dataset.event === 'handed_off'));
      await waitFor(visitor, 'the offer to go away', () => document.querySelector('switchboard-chat').shadowRoot.querySelector('#sb-person').hidden);
      const item = agent.locator(`#conversations .conv-item[data-conversation-id="${conversationId}"]`);
      await item.waitFor({ state: 'visible' });
      await item.click();
      await waitFor(
        agent,
        "the bot's answer in the agent's pane",
        (t) => [...document.querySelectorAll('#messages .msg .text')].some((n) => n.textContent.includes(t)),
        ANSWER_PART,
      );
      await waitFor(agent, 'why it was handed over', () =>
        [...document.querySelectorAll('#messages .event')].some((n) => n.textContent.includes('the visitor asked for a person')));
      await waitFor(visitor, 'the agent in the widget status', () => !/\(a bot\)/.test(document.querySelector('switchboard-chat').shadowRoot.querySelector('#sb-status').textContent)
        && /chatting with/.test(document.querySelector('switchboard-chat').shadowRoot.querySelector('#sb-status').textContent));
    });

    await step('nothing broke the CSP, and no page had an error', async () => {
      assertNoPageErrors();
    });
  });
}

main().then(
  () => process.exit(0),
  (err) => fail(err && err.message ? err.message : String(err)),
);
