// One side's unacknowledged sends, shared by the widget and the console.
//
// A message typed is shown at once ("Sending…") and waits here under its
// own `client_id` until the server's `ack` (or the echoed `message`)
// gives it a seq. After a reconnect, or an `unavailable` error, it is sent
// again with the same `client_id` and `retry: true`, so the server stores
// it once (docs/protocol.md, "Sending").

import { uuid } from './dom.js';

// How long a send refused as `rate_limited` or `unavailable` waits before
// it is tried again.
export const RETRY_LATER_MS = 2000;

export class Outbox {
  // `schedule(fn, ms)` runs `fn` after `ms` (a test gives its own clock).
  constructor(schedule = (fn, ms) => setTimeout(fn, ms)) {
    // client_id -> {text, node, sent, due, …}: in send order. `due`: sent,
    // refused as busy, to be sent again.
    this.entries = new Map();
    this.schedule = schedule;
    // The pending retry (one, however many refusals asked for it), or
    // null; one scheduled before `clear()` finds itself replaced and does
    // nothing.
    this.pending = null;
  }

  // Queues `text`, shown as `node`, under a new client_id (returned, and
  // set on the node as `data-client-id`). `extra` fields stay on the entry.
  add(text, node, extra = {}) {
    const clientId = uuid();
    node.dataset.clientId = clientId;
    this.entries.set(clientId, { text, node, ...extra });
    return clientId;
  }

  has(clientId) {
    return this.entries.has(clientId);
  }

  // The entry of `clientId`, taken out (its seq is known now), or null.
  take(clientId) {
    const entry = this.entries.get(clientId);
    if (!entry) return null;
    this.entries.delete(clientId);
    return entry;
  }

  clear() {
    this.entries.clear();
    this.pending = null;
  }

  values() {
    return this.entries.values();
  }

  [Symbol.iterator]() {
    return this.entries[Symbol.iterator]();
  }

  // Sends what waits (never sent, or refused as busy): with `all`, also
  // what was sent but not acknowledged yet (after a reconnect).
  // `frameOf(clientId, entry)` gives the entry's frame, or null while it
  // must wait; `send(frame)` is true when the frame went out.
  flush(all, frameOf, send) {
    for (const [clientId, entry] of this.entries) {
      if (entry.sent && !entry.due && !all) continue;
      const frame = frameOf(clientId, entry);
      if (frame && send(frame)) {
        entry.sent = true;
        entry.due = false;
      }
    }
  }

  // An `error` frame about these sends: the one its `ref` names (a
  // client_id), or, for `rate_limited` without a `ref` (the server dropped
  // a frame it did not read), any sent and not acknowledged. Refused as
  // busy (`rate_limited`, `unavailable`), they are sent again once, after
  // RETRY_LATER_MS, by one `retry()` however many refusals came (each
  // retry of them all would multiply the frames and feed the limit);
  // refused otherwise, taken out and given to `failed(entry)`. Whether the
  // error was about these.
  refused(f, retry, failed) {
    const busy = f.code === 'rate_limited' || f.code === 'unavailable';
    if (busy && !f.ref) {
      const waiting = [...this.entries.values()].filter((e) => e.sent);
      for (const entry of waiting) entry.due = true;
      if (waiting.length) this.later(retry);
      return waiting.length > 0;
    }
    const entry = f.ref ? this.entries.get(f.ref) : null;
    if (!entry) return false;
    if (busy) {
      entry.due = true;
      this.later(retry);
    } else {
      this.entries.delete(f.ref);
      failed(entry);
    }
    return true;
  }

  // Runs `retry` after RETRY_LATER_MS, unless a retry is already pending.
  later(retry) {
    if (this.pending) return;
    const pending = {};
    this.pending = pending;
    this.schedule(() => {
      if (this.pending !== pending) return;
      this.pending = null;
      retry();
    }, RETRY_LATER_MS);
  }
}

// The `send` frame of an outbox entry in conversation `conversationId`. A
// re-send says so: the server then finds the original even after its
// dedupe window, instead of storing the message twice.
export function sendFrame(conversationId, clientId, entry) {
  return { type: 'send', conversation_id: conversationId, client_id: clientId, text: entry.text, retry: !!entry.sent };
}
