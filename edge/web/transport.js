// Switchboard's client transports, shared by the widget and the console.
//
// Both carry the same JSON frames (docs/protocol.md): a WebSocket on /ws,
// or, when the WebSocket cannot connect or the browser has none, the event
// stream: Server-Sent Events from GET /api/v1/sse for the server's frames,
// POSTs to /api/v1/sse/<connection> for the client's. Either is used
// through the same small interface as a WebSocket: `readyState` (1 = open),
// `send(text)`, `close()`, and the events `open`, `message` (`data`: one
// frame's text) and `close` (`code`: the WebSocket close code).
//
// `Connector` chooses: the WebSocket while it works, the event stream for
// the rest of the page's life once a WebSocket failed to open twice in a
// row (or at once when there is no WebSocket).

const OPEN = 1;
const CLOSED = 3;
// Frames one POST may carry (the server's limit).
const MAX_FRAMES = 32;
// The body size the server takes for one POST (edge/src/transport/sse.rs).
const MAX_POST_BYTES = 64 * 1024;
// A sign of life on the event stream, which has no WebSocket pings.
const PING_MS = 20000;
const RETRY_POST_MS = 1000;
// WebSockets that never opened, in a row, before the event stream is used.
const WS_FAILURES = 2;

function closeEvent(code) {
  const event = new Event('close');
  event.code = code;
  return event;
}

/// The event-stream transport. `token()` gives the bearer token of the
/// connection's identity (it may change when the token is refreshed).
export class EventStreamSocket extends EventTarget {
  constructor(server, token) {
    super();
    this.server = server;
    this.token = token;
    this.readyState = 0;
    this.queue = [];
    this.posting = false;
    this.connection = null;
    this.pinger = null;
    this.source = new EventSource(`${server}/api/v1/sse`);
    this.source.addEventListener('connection', (ev) => {
      let named = null;
      try {
        named = JSON.parse(ev.data);
      } catch {
        named = null;
      }
      if (!named || typeof named.connection !== 'string' || this.readyState !== 0) {
        this.finish(1002);
        return;
      }
      this.connection = named.connection;
      this.readyState = OPEN;
      this.pinger = setInterval(() => this.send('{"type":"ping"}'), PING_MS);
      this.dispatchEvent(new Event('open'));
    });
    this.source.addEventListener('message', (ev) => {
      if (this.readyState === OPEN) this.dispatchEvent(new MessageEvent('message', { data: ev.data }));
    });
    this.source.addEventListener('close', (ev) => {
      let code = 1006;
      try {
        code = Number(JSON.parse(ev.data).code) || 1006;
      } catch {
        code = 1006;
      }
      this.finish(code);
    });
    // The browser would reconnect by itself, without `hello` and `resume`:
    // the caller reconnects instead.
    this.source.addEventListener('error', () => this.finish(1006));
  }

  send(text) {
    if (this.readyState !== OPEN) return;
    this.queue.push(text);
    this.flush();
  }

  // POSTs the queued frames, one POST at a time so their order holds. A
  // POST that failed is sent again (`send`s keep their `client_id`, so the
  // server stores them once).
  async flush() {
    if (this.posting || this.readyState !== OPEN || !this.queue.length) return;
    this.posting = true;
    const batch = this.queue.splice(0, this.batchLength());
    let retry = false;
    try {
      const res = await fetch(`${this.server}/api/v1/sse/${encodeURIComponent(this.connection)}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${this.token()}`, 'content-type': 'application/json' },
        body: `[${batch.join(',')}]`,
      });
      if (res.status === 401) this.finish(4401);
      else if (res.status === 404 || res.status === 403) this.finish(1006);
      else if (!res.ok && res.status !== 400 && res.status !== 413) retry = true;
    } catch {
      retry = true;
    }
    this.posting = false;
    if (retry && this.readyState === OPEN) {
      this.queue.unshift(...batch);
      setTimeout(() => this.flush(), RETRY_POST_MS);
    } else {
      this.flush();
    }
  }

  // How many queued frames one POST takes: at most MAX_FRAMES and, with the
  // brackets and commas, MAX_POST_BYTES (the server refuses a larger body
  // with 413, and the frames would be lost), but always the first.
  batchLength() {
    const encoder = new TextEncoder();
    let bytes = 2;
    let n = 0;
    while (n < this.queue.length && n < MAX_FRAMES) {
      bytes += encoder.encode(this.queue[n]).length + (n ? 1 : 0);
      if (n && bytes > MAX_POST_BYTES) break;
      n += 1;
    }
    return n;
  }

  close() {
    this.finish(1000);
  }

  finish(code) {
    if (this.readyState === CLOSED) return;
    this.readyState = CLOSED;
    clearInterval(this.pinger);
    this.source.close();
    this.queue = [];
    this.dispatchEvent(closeEvent(code));
  }
}

/// Opens connections to one server, choosing the transport.
export class Connector {
  constructor(server) {
    this.server = server;
    this.wsFailures = 0;
    this.fallback = typeof globalThis.WebSocket !== 'function';
  }

  /// `websocket` or `event stream`: what the next connection uses.
  get transport() {
    return this.fallback ? 'event stream' : 'websocket';
  }

  /// A new connection; `token()` as for `EventStreamSocket`.
  open(token) {
    if (this.fallback) return new EventStreamSocket(this.server, token);
    let ws;
    try {
      ws = new WebSocket(`${this.server.replace(/^http/, 'ws')}/ws`);
    } catch {
      this.fallback = true;
      return new EventStreamSocket(this.server, token);
    }
    let opened = false;
    ws.addEventListener('open', () => {
      opened = true;
      this.wsFailures = 0;
    });
    ws.addEventListener('close', () => {
      if (opened) return;
      this.wsFailures += 1;
      if (this.wsFailures >= WS_FAILURES) this.fallback = true;
    });
    return ws;
  }
}
