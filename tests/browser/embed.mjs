// The widget on another site with one tag: a shop served by a second local
// HTTP server (another origin) adds `<script src="EDGE/widget.js" async
// data-…>`, with CSS that would break any widget sharing its styles
// (`* { all: unset }`, `button { display: none !important }`), globals
// named like the widget's own (`SETTINGS`, `uuid`, `init`) and an address
// longer than the server keeps. The widget
// shows in its shadow root with the tag's settings, calls the edge (never
// the shop), and the visitor chats with the agent in the console. The
// same tag as a module (`type="module"`) works too: the widget loads the
// client core it shares with the console from the edge either way. A page
// of the same site with another deployment's widget does not take the
// visitor's token of the first: back on the first, the chat is there.
//
// Environment: as harness.mjs, plus SB_HOST_PORT (the shop's port, an
// origin in the edge's `edge.allowed_origins`) and SB_OTHER_URL (an edge of
// another deployment, with its own signing key, that allows the shop too).

import http from 'node:http';
import { BASE, LOGIN, PASSWORD, TIMEOUT, report, step, watch, waitFor, launch, fail, shoot } from './harness.mjs';

const OVERALL_MS = 180000;
const PORT = Number(process.env.SB_HOST_PORT);
const SHOP = `http://127.0.0.1:${PORT}`;
const GREETING = 'Questions about an order? Ask us here.';
const VISITOR_TEXT = 'Is the Widget Pro in stock?';
const AGENT_TEXT = 'Yes, 12 left.';

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Another shop</title>
<link rel="icon" href="data:,">
<style>
  * { all: unset; }
  button { display: none !important; }
  div, p, span { color: red !important; font-size: 40px !important; }
</style>
</head>
<body onload="init()">
<h1>Another shop</h1>
<button id="buy" type="button">Buy</button>
<script>
  // The shop's own globals, named like the widget's.
  var SETTINGS = 'the shop';
  var uuid = { v4: function () { return 'shop-uuid'; } };
  function init() { window.shopStarted = (window.shopStarted || 0) + 1; }
</script>
<script src="${BASE}/widget.js" async data-greeting="${GREETING}" data-position="left" data-color="#0a7d55"></script>
</body>
</html>`;

// Another page of the same site, with the widget of another Switchboard
// deployment (its own server and signing key).
const OTHER = process.env.SB_OTHER_URL;
const OTHER_PAGE = `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Another shop, other desk</title><link rel="icon" href="data:,"></head>
<body>
<h1>Other desk</h1>
<script src="${OTHER}/widget.js" async data-greeting="Other desk"></script>
</body>
</html>`;

// The same tag as a module.
const MODULE_PAGE = PAGE.replace('<script src=', '<script type="module" src=').replace('data-greeting="', 'data-greeting="Module: ');

// Every path the shop was asked for.
const asked = [];

function serveShop() {
  return new Promise((resolve, reject) => {
    const server = http.createServer((req, res) => {
      asked.push(`${req.method} ${req.url}`);
      if (req.url === '/' || req.url.startsWith('/?')) {
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
        res.end(PAGE);
      } else if (req.url === '/other') {
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
        res.end(OTHER_PAGE);
      } else if (req.url === '/module') {
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
        res.end(MODULE_PAGE);
      } else {
        res.writeHead(404, { 'content-type': 'text/plain' });
        res.end('not here');
      }
    });
    server.on('error', reject);
    server.listen(PORT, '127.0.0.1', () => resolve(server));
  });
}

// The widget's node matching `selector`, in its shadow root.
const inWidget = (selector) => `switchboard-chat >> ${selector}`;

async function main() {
  if (!PORT) fail('SB_HOST_PORT is not set');
  const shop = await serveShop();
  const browser = await launch(OVERALL_MS);
  const errors = [];
  let failure = null;
  try {
    const agent = await (await browser.newContext()).newPage();
    const visitor = await (await browser.newContext()).newPage();
    agent.setDefaultTimeout(TIMEOUT);
    visitor.setDefaultTimeout(TIMEOUT);
    watch(agent, 'agent');
    watch(visitor, 'visitor');
    for (const [page, who] of [[agent, 'agent'], [visitor, 'visitor']]) {
      page.on('console', (m) => {
        if (m.type() === 'error') errors.push(`[${who}] ${m.text()}`);
      });
      page.on('pageerror', (e) => errors.push(`[${who}] ${e.message}`));
    }

    await step('agent logs in and goes online', async () => {
      await agent.goto(`${BASE}/console`);
      await agent.locator('#login').fill(LOGIN);
      await agent.locator('#password').fill(PASSWORD);
      await agent.locator('#login-submit').click();
      await waitFor(agent, 'the console WebSocket to be connected', () => {
        const app = document.querySelector('#app');
        return !app.hidden && app.dataset.connection === 'open';
      });
      await agent.locator('#status').selectOption('online');
    });

    await step('the shop shows the widget in spite of its CSS and globals', async () => {
      // An address longer than the server keeps (2048 bytes), with a
      // fragment: the visitor can still chat.
      await visitor.goto(`${SHOP}/?campaign=${'a'.repeat(2100)}#access_token=secret`);
      const launcher = visitor.locator(inWidget('#sb-launcher'));
      await launcher.waitFor({ state: 'visible' });
      await waitFor(visitor, "the shop's own init on load", () => window.shopStarted === 1);
      const globals = await visitor.evaluate(() => [SETTINGS, uuid.v4(), window.shopStarted]);
      if (JSON.stringify(globals) !== JSON.stringify(['the shop', 'shop-uuid', 1])) {
        throw new Error(`the widget changed the shop's globals: ${JSON.stringify(globals)}`);
      }
      if (await visitor.locator('#buy').isVisible()) throw new Error("the shop's own CSS is not applied: the test proves nothing");
      const sheets = await visitor.evaluate(() => document.styleSheets.length);
      if (sheets !== 1) throw new Error(`the widget added styles to the shop's page (${sheets} style sheets)`);
      const box = await launcher.boundingBox();
      const width = visitor.viewportSize().width;
      if (!box || box.x > width / 2) throw new Error(`data-position="left" ignored: launcher at x=${box && box.x}`);
      const background = await launcher.evaluate((n) => getComputedStyle(n).backgroundColor);
      if (background !== 'rgb(10, 125, 85)') throw new Error(`data-color ignored: the launcher is ${background}`);
      const size = await launcher.evaluate((n) => getComputedStyle(n).fontSize);
      if (size === '40px') throw new Error("the shop's CSS reached into the widget");
    });

    let conversationId = '';
    await step('the visitor chats from the shop', async () => {
      await visitor.locator(inWidget('#sb-launcher')).click();
      await visitor.locator(inWidget('#sb-panel')).waitFor({ state: 'visible' });
      const intro = await visitor.locator(inWidget('.sb-intro-text')).textContent();
      if (intro !== GREETING) throw new Error(`data-greeting ignored: ${intro}`);
      await visitor.locator(inWidget('#sb-input')).fill(VISITOR_TEXT);
      await visitor.locator(inWidget('#sb-send')).click();
      await waitFor(visitor, 'the conversation to be created', () =>
        !!document.querySelector('switchboard-chat').shadowRoot.querySelector('#sb-panel').dataset.conversationId);
      conversationId = await visitor.locator(inWidget('#sb-panel')).getAttribute('data-conversation-id');
    });

    await step('the agent answers in the console, the visitor reads it on the shop', async () => {
      const item = agent.locator(`#conversations .conv-item[data-conversation-id="${conversationId}"]`);
      await item.waitFor({ state: 'visible' });
      await item.click();
      await waitFor(
        agent,
        'the visitor message in the console',
        (t) => [...document.querySelectorAll('#messages .msg.theirs .text')].some((n) => n.textContent === t),
        VISITOR_TEXT,
      );
      await agent.locator('#composer-input').fill(AGENT_TEXT);
      await agent.locator('#composer-send').click();
      await waitFor(
        visitor,
        'the agent reply in the widget',
        (t) => [...document.querySelector('switchboard-chat').shadowRoot.querySelectorAll('#sb-messages .sb-msg.sb-theirs .sb-text')]
          .some((n) => n.textContent === t),
        AGENT_TEXT,
      );
      await shoot(visitor, 'widget-embedded');
    });

    await step("another deployment's widget on the same site keeps its own visitor", async () => {
      await visitor.goto(`${SHOP}/other`);
      await visitor.locator(inWidget('#sb-launcher')).click();
      await waitFor(visitor, 'the other desk connected', () =>
        !!document.querySelector('switchboard-chat').shadowRoot.querySelector('#sb-panel').dataset.transport);
      // Back on the first desk's pages: the conversation is still there.
      await visitor.goto(`${SHOP}/?back`);
      await waitFor(
        visitor,
        'the conversation with the agent, after visiting the other desk',
        (t) => [...document.querySelector('switchboard-chat').shadowRoot.querySelectorAll('#sb-messages .sb-msg.sb-theirs .sb-text')]
          .some((n) => n.textContent === t),
        AGENT_TEXT,
      );
    });

    await step('the tag as a module shows the widget too', async () => {
      const page = await (await browser.newContext()).newPage();
      page.setDefaultTimeout(TIMEOUT);
      watch(page, 'module visitor');
      page.on('console', (m) => {
        if (m.type() === 'error') errors.push(`[module visitor] ${m.text()}`);
      });
      page.on('pageerror', (e) => errors.push(`[module visitor] ${e.message}`));
      await page.goto(`${SHOP}/module`);
      await page.locator(inWidget('#sb-launcher')).click();
      const intro = await page.locator(inWidget('.sb-intro-text')).textContent();
      if (intro !== `Module: ${GREETING}`) throw new Error(`the module tag's greeting is ${intro}`);
    });

    await step('the widget called the edge, never the shop, and nothing failed', async () => {
      const wrong = asked.filter((line) => !/^GET \/(module|other|\?.*)?$/.test(line));
      if (wrong.length) throw new Error(`the shop was asked for ${wrong.join(', ')}`);
      if (errors.length) throw new Error(`console errors: ${errors.join(' | ')}`);
    });
  } catch (err) {
    failure = err;
  } finally {
    await browser.close().catch(() => {});
    shop.close();
  }
  if (failure) {
    report(failure.message);
    process.exit(1);
  }
  console.log('browser: 1 passed, 0 failed');
}

main();
