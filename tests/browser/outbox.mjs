// The client core's outbox (edge/web/core/outbox.js), the code the widget
// and the console share, run in Node with its own clock: sends refused as
// busy are sent again once per retry, however many refusals came, and a
// `rate_limited` without a `ref` (a frame the server dropped unread) has
// every unacknowledged send sent again.
//
// Prints "browser: 1 passed, 0 failed" like the browser scenarios.

import { Outbox, sendFrame, RETRY_LATER_MS } from '../../edge/web/core/outbox.js';

function check(ok, what) {
  if (!ok) {
    console.error(`outbox: ${what}`);
    process.exit(1);
  }
}

// A clock the test advances: what was scheduled runs when asked.
const scheduled = [];
const schedule = (fn, ms) => scheduled.push({ fn, ms });
function runScheduled() {
  const due = scheduled.splice(0);
  for (const { fn } of due) fn();
  return due.length;
}

const outbox = new Outbox(schedule);
const sent = [];
const send = (frame) => {
  sent.push(frame);
  return true;
};
const frameOf = (clientId, entry) => sendFrame('c_1', clientId, entry);
const flush = (all) => outbox.flush(all, frameOf, send);
const ids = ['one', 'two', 'three'].map((text) => outbox.add(text, { dataset: {} }));

flush(false);
check(sent.length === 3, `three new sends go out once: ${sent.length}`);

// The server is busy: each of the three refused as `unavailable`.
sent.length = 0;
for (const ref of ids) {
  const handled = outbox.refused({ type: 'error', code: 'unavailable', ref }, () => flush(false), () => {});
  check(handled, `an unavailable send is the outbox's (${ref})`);
}
check(scheduled.length === 1, `one retry for three refusals, not ${scheduled.length}`);
check(scheduled[0].ms === RETRY_LATER_MS, `the retry waits ${RETRY_LATER_MS} ms`);
runScheduled();
check(sent.length === 3, `each refused send is sent again once: ${sent.length} frames`);
check(sent.every((f) => f.retry === true), 'a re-send says retry: true');
check(new Set(sent.map((f) => f.client_id)).size === 3, 'with its own client_id');

// Acknowledged meanwhile: nothing is due, a new flush sends nothing.
sent.length = 0;
flush(false);
check(sent.length === 0, `sent and not refused: not sent again by a flush (${sent.length})`);

// A frame dropped by the rate limit, `ref` unknown: what is unacknowledged
// goes again, once.
outbox.take(ids[0]);
const handled = outbox.refused({ type: 'error', code: 'rate_limited', ref: null }, () => flush(false), () => {});
check(handled, 'a rate_limited without ref concerns the unacknowledged sends');
outbox.refused({ type: 'error', code: 'rate_limited', ref: null }, () => flush(false), () => {});
check(scheduled.length === 1, `one retry for two refusals, not ${scheduled.length}`);
runScheduled();
check(sent.length === 2, `the two unacknowledged sends go again: ${sent.length}`);

// Another refusal: taken out and reported.
let failed = null;
outbox.refused({ type: 'error', code: 'bad_request', ref: ids[1] }, () => {}, (entry) => {
  failed = entry;
});
check(failed && failed.text === 'two' && !outbox.has(ids[1]), 'a refused send is taken out and reported');

// A retry pending when the outbox is cleared (a new conversation) does
// nothing, and does not hold up the next one.
let retries = 0;
outbox.refused({ type: 'error', code: 'unavailable', ref: ids[2] }, () => (retries += 1), () => {});
outbox.clear();
const fresh = outbox.add('four', { dataset: {} });
flush(false);
outbox.refused({ type: 'error', code: 'unavailable', ref: fresh }, () => (retries += 1), () => {});
check(scheduled.length === 2, `the new refusal has its own retry: ${scheduled.length} scheduled`);
runScheduled();
check(retries === 1, `only the retry scheduled after clear() ran: ${retries}`);

console.log('browser: 1 passed, 0 failed');
