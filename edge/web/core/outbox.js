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
  constructor() {
    // client_id -> {text, node, sent, …}: in send order.
    this.entries = new Map();
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
  }

  values() {
    return this.entries.values();
  }

  [Symbol.iterator]() {
    return this.entries[Symbol.iterator]();
  }

  // Sends what waits: with `all`, also what was sent but not acknowledged
  // yet. `frameOf(clientId, entry)` gives the entry's frame, or null while
  // it must wait; `send(frame)` is true when the frame went out.
  flush(all, frameOf, send) {
    for (const [clientId, entry] of this.entries) {
      if (entry.sent && !all) continue;
      const frame = frameOf(clientId, entry);
      if (frame && send(frame)) entry.sent = true;
    }
  }

  // An `error` frame about one of these sends (`ref` is its client_id):
  // kept and tried again after RETRY_LATER_MS (`retry()`) when the server
  // was busy, else taken out and given to `failed(entry)`. Whether the
  // error was about one of these.
  refused(f, retry, failed) {
    const entry = f.ref ? this.entries.get(f.ref) : null;
    if (!entry) return false;
    if (f.code === 'rate_limited' || f.code === 'unavailable') {
      setTimeout(retry, RETRY_LATER_MS);
    } else {
      this.entries.delete(f.ref);
      failed(entry);
    }
    return true;
  }
}

// The `send` frame of an outbox entry in conversation `conversationId`. A
// re-send says so: the server then finds the original even after its
// dedupe window, instead of storing the message twice.
export function sendFrame(conversationId, clientId, entry) {
  return { type: 'send', conversation_id: conversationId, client_id: clientId, text: entry.text, retry: !!entry.sent };
}
