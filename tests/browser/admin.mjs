// The admin pages in real Chromium: an admin signs in at /admin, adds an
// agent with the form, and watches the dashboard move: the new agent
// comes online in the console, a visitor chats with them, and the last
// hours' figures and chart count the conversation. No CSP violation and
// no console error anywhere.
//
// Environment: as harness.mjs, plus SB_ADMIN_LOGIN (an admin; same
// password as the agent).

import { BASE, PASSWORD, report, fail, step, waitFor, launch, shoot, openPage, assertNoPageErrors, runScenario } from './harness.mjs';

const OVERALL_MS = 180000;
const ADMIN = process.env.SB_ADMIN_LOGIN || '';
const NEW_LOGIN = 'dana@test';

async function main() {
  if (!ADMIN) fail('SB_ADMIN_LOGIN is not set');
  await runScenario(OVERALL_MS, async (browser) => {
    const admin = await openPage(browser, 'admin');
    const agent = await openPage(browser, 'agent');
    const visitor = await openPage(browser, 'visitor');

    await step('the admin signs in at /admin', async () => {
      const response = await admin.goto(`${BASE}/admin`);
      const csp = response.headers()['content-security-policy'] || '';
      if (!csp.includes("frame-ancestors 'none'") || !csp.includes("script-src 'self'")) throw new Error(`no strict CSP: ${csp}`);
      await admin.locator('#login').fill(ADMIN);
      await admin.locator('#password').fill(PASSWORD);
      await admin.locator('#login-submit').click();
      await admin.locator('#app').waitFor({ state: 'visible' });
      await waitFor(admin, 'the dashboard figures', () => document.querySelector('#kpi-online').textContent !== '–');
      await waitFor(admin, 'the statistics', () => document.querySelector('#stat-started').textContent !== '–');
      const started = await admin.locator('#stat-started').textContent();
      if (started !== '0') throw new Error(`a fresh system shows ${started} conversations`);
    });

    await step('the admin adds an agent', async () => {
      await admin.locator('#new-name').fill('Dana Diaz');
      await admin.locator('#new-login').fill(NEW_LOGIN);
      await admin.locator('#new-password').fill(PASSWORD);
      await admin.locator('#new-capacity').fill('2');
      await admin.locator('#add-agent button[type=submit]').click();
      await admin.locator(`#agents tr[data-login="${NEW_LOGIN}"]`).waitFor({ state: 'visible' });
      const online = await admin.locator('#kpi-online').textContent();
      if (online !== '0') throw new Error(`${online} agents online before anyone signed in`);
    });

    await step('the new agent comes online; the dashboard shows it', async () => {
      await agent.goto(`${BASE}/console`);
      await agent.locator('#login').fill(NEW_LOGIN);
      await agent.locator('#password').fill(PASSWORD);
      await agent.locator('#login-submit').click();
      await waitFor(agent, 'the console to be connected', () => document.querySelector('#app').dataset.connection === 'open');
      await waitFor(admin, 'one agent online on the dashboard', () => document.querySelector('#kpi-online').textContent === '1');
      await waitFor(admin, "the agent's status in the table",
        (login) => document.querySelector(`#agents tr[data-login="${login}"] .status-online`) !== null, NEW_LOGIN);
    });

    await step('a visitor chats; the open conversations and the chart count it', async () => {
      await visitor.goto(`${BASE}/`);
      await visitor.locator('#sb-launcher').click();
      await visitor.locator('#sb-input').fill('Hello admin dashboard');
      await visitor.locator('#sb-send').click();
      await waitFor(admin, 'an open conversation on the dashboard', () => document.querySelector('#kpi-assigned').textContent === '1');
      await waitFor(admin, 'the conversation in the last 24 hours', () => document.querySelector('#stat-started').textContent === '1');
      await waitFor(admin, 'a bar in the chart', () => document.querySelectorAll('#chart rect.bar-started').length === 1);
      await shoot(admin, 'admin-dashboard', true);
      assertNoPageErrors();
    });
  });
}

main().catch((err) => fail(err && err.message ? err.message : String(err)));
