// What the widget's and the console's connections share beside the
// transports (transport.js): how long to wait before reconnecting, how a
// connection's frames and close reach the page, and the order the
// receipts of one's own messages advance in.

// The longest wait between reconnection attempts.
export const MAX_BACKOFF_MS = 10000;

// The wait before attempt `attempt` (0, 1, …): doubling from half a
// second up to MAX_BACKOFF_MS, with jitter so that many clients cut off
// together do not come back together.
export function backoff(attempt) {
  const base = Math.min(MAX_BACKOFF_MS, 500 * 2 ** attempt);
  return base / 2 + Math.random() * (base / 2);
}

// Receipt states of one's own messages, in the order they advance.
export const STATE_RANK = { sending: 0, sent: 1, delivered: 2, read: 3 };

// Whether a message shown in state `have` should move to `want`.
export function advances(have, want) {
  return !(have in STATE_RANK) || STATE_RANK[want] > STATE_RANK[have];
}

// Feeds each JSON frame that `ws` brings to `onFrame(frame)`, and its
// close code to `onClosed(code)`, while `current()` says `ws` is still the
// connection in use (a replaced one may still deliver late events).
export function listen(ws, current, onFrame, onClosed) {
  ws.addEventListener('message', (ev) => {
    if (!current() || typeof ev.data !== 'string') return;
    let frame;
    try {
      frame = JSON.parse(ev.data);
    } catch {
      return;
    }
    if (frame && typeof frame.type === 'string') onFrame(frame);
  });
  ws.addEventListener('close', (ev) => {
    if (current()) onClosed(ev.code);
  });
}
