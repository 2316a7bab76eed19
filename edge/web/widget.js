// Switchboard visitor chat widget.
//
// Plain ES module, no build step, no dependencies. Embed with:
//   <link rel="stylesheet" href="/widget.css">
//   <script type="module" src="/widget.js"></script>
//
// The widget talks to the same origin: POST /api/v1/visitors for a token,
// then a WebSocket on /ws carrying one JSON object per text frame.
//
// SECURITY: every piece of text that comes from users or the server is put
// into the page with textContent / createTextNode only. The only innerHTML
// below is the static skeleton template, which contains no data.

const STORE_KEY = 'switchboard.visitor';
const MAX_LEN = 4000;
const HISTORY_LIMIT = 50;
const MAX_BACKOFF_MS = 10000;
const TYPING_REFRESH_MS = 3000; // resend typing:true at most this often
const TYPING_IDLE_MS = 2500; // send typing:false after this much quiet
const TYPING_SHOW_MS = 8000; // hide the agent's indicator if not refreshed

// ---------------------------------------------------------------- helpers

function uuid() {
  if (globalThis.crypto && typeof crypto.randomUUID === 'function') return crypto.randomUUID();
  // randomUUID needs a secure context; getRandomValues does not.
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function make(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text != null) node.textContent = String(text);
  return node;
}

function timeOf(iso) {
  const d = iso ? new Date(iso) : new Date();
  if (Number.isNaN(d.getTime())) return null;
  return d;
}

function timeElement(iso) {
  const d = timeOf(iso);
  const t = make('time', 'sb-time');
  if (d) {
    t.dateTime = d.toISOString();
    t.textContent = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    t.title = d.toLocaleString();
  }
  return t;
}

function loadStored() {
  try {
    const v = JSON.parse(localStorage.getItem(STORE_KEY) || 'null');
    return v && typeof v.token === 'string' ? v : null;
  } catch {
    return null;
  }
}

function saveStored(v) {
  try {
    localStorage.setItem(STORE_KEY, JSON.stringify({ visitor_id: v.visitor_id, token: v.token }));
  } catch {
    /* storage disabled: the chat still works for this page view */
  }
}

function clearStored() {
  try {
    localStorage.removeItem(STORE_KEY);
  } catch {
    /* ignore */
  }
}

// ------------------------------------------------------------- timeline
// Keeps the elements of one conversation ordered by seq, with at most one
// element per seq. Elements without a seq (messages still "sending",
// notices) stay after the seq'd ones.

class Timeline {
  constructor(root) {
    this.root = root;
    this.bySeq = new Map();
    this.maxSeq = 0;
    this.minSeq = Infinity;
    this.gapAsked = new Set();
  }

  has(seq) {
    return this.bySeq.has(seq);
  }

  insert(node, seq) {
    node.dataset.seq = String(seq);
    this.bySeq.set(seq, node);
    // Walk back from the end to the last element with a smaller seq.
    let prev = this.root.lastElementChild;
    while (prev && (prev === node || prev.dataset.seq === undefined || Number(prev.dataset.seq) > seq)) {
      prev = prev.previousElementSibling;
    }
    this.root.insertBefore(node, prev ? prev.nextElementSibling : this.root.firstElementChild);
    if (seq > this.maxSeq) this.maxSeq = seq;
    if (seq < this.minSeq) this.minSeq = seq;
  }

  // The highest hole between the oldest and newest known seq that has not
  // been asked for yet on this connection, as a history request, or null.
  nextGap() {
    for (let s = this.maxSeq - 1; s > this.minSeq; s--) {
      if (this.bySeq.has(s)) continue;
      const hi = s;
      let lo = s;
      while (lo - 1 > this.minSeq && !this.bySeq.has(lo - 1)) lo--;
      const key = hi + 1;
      if (!this.gapAsked.has(key)) {
        this.gapAsked.add(key);
        return { before_seq: key, limit: Math.min(100, hi - lo + 1) };
      }
      s = lo;
    }
    return null;
  }
}

// ------------------------------------------------------------- skeleton

const SKELETON = `
<button id="sb-launcher" class="sb-launcher" type="button" aria-expanded="false" aria-controls="sb-panel">
  <svg class="sb-launcher-icon" viewBox="0 0 24 24" aria-hidden="true" focusable="false">
    <path d="M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z"/>
  </svg>
  <span class="sb-launcher-label">Chat with us</span>
  <span id="sb-badge" class="sb-badge" hidden></span>
</button>
<div id="sb-panel" class="sb-panel" role="dialog" aria-modal="false" aria-labelledby="sb-title" hidden>
  <div class="sb-header">
    <div class="sb-header-text">
      <h2 id="sb-title" class="sb-title">Chat with us</h2>
      <p class="sb-subtitle">We usually reply within a few minutes</p>
    </div>
    <button id="sb-close" class="sb-icon-button" type="button" aria-label="Close chat">
      <svg viewBox="0 0 24 24" aria-hidden="true" focusable="false"><path d="M6 6l12 12M18 6L6 18"/></svg>
    </button>
  </div>
  <p id="sb-status" class="sb-status" role="status"></p>
  <p id="sb-conn" class="sb-conn" role="status" hidden></p>
  <div id="sb-scroll" class="sb-scroll">
    <div id="sb-intro" class="sb-intro">
      <p class="sb-intro-title">Ask us anything</p>
      <p class="sb-intro-text">Send us a message and a member of our team will answer here.</p>
    </div>
    <button id="sb-earlier" class="sb-earlier" type="button" hidden>Load earlier messages</button>
    <div id="sb-messages" class="sb-messages" role="log" aria-live="polite" aria-relevant="additions" aria-label="Conversation"></div>
  </div>
  <p id="sb-typing" class="sb-typing" aria-live="polite"></p>
  <p id="sb-error" class="sb-error" role="alert" hidden></p>
  <div id="sb-closed" class="sb-closed" hidden>
    <button id="sb-new-chat" class="sb-new-chat" type="button">Start a new chat</button>
  </div>
  <form id="sb-form" class="sb-composer" novalidate>
    <label for="sb-input" class="sb-visually-hidden">Your message</label>
    <textarea id="sb-input" class="sb-input" rows="1" maxlength="${MAX_LEN}" placeholder="Type your message…" aria-describedby="sb-counter"></textarea>
    <button id="sb-send" class="sb-send" type="submit" disabled>Send</button>
    <p id="sb-counter" class="sb-counter" aria-live="polite" hidden></p>
  </form>
</div>`;

// ---------------------------------------------------------------- widget

function init() {
  if (document.getElementById('sb-root')) return; // loaded twice
  const root = make('div', 'sb-root');
  root.id = 'sb-root';
  root.innerHTML = SKELETON; // static markup only, no data
  document.body.appendChild(root);

  const $ = (id) => root.querySelector('#' + id);
  const ui = {
    launcher: $('sb-launcher'),
    badge: $('sb-badge'),
    panel: $('sb-panel'),
    close: $('sb-close'),
    status: $('sb-status'),
    conn: $('sb-conn'),
    scroll: $('sb-scroll'),
    intro: $('sb-intro'),
    earlier: $('sb-earlier'),
    messages: $('sb-messages'),
    typing: $('sb-typing'),
    error: $('sb-error'),
    closed: $('sb-closed'),
    newChat: $('sb-new-chat'),
    form: $('sb-form'),
    input: $('sb-input'),
    send: $('sb-send'),
    counter: $('sb-counter'),
  };

  const S = {
    ws: null,
    connecting: false,
    ready: false, // welcome received on the current socket
    everConnected: false,
    attempt: 0,
    reconnectTimer: null,
    stopped: false,
    me: null, // {id, name}
    conv: null, // {id, state, agent, position, statusSeq}
    tl: new Timeline(ui.messages),
    outbox: new Map(), // client_id -> {text, node}; kept in send order
    startPending: null, // {text, node}: first message, sent with `start`
    startSent: false, // `start` already sent on this socket
    startEcho: null, // {text, node}: start text stored, waiting for its seq
    earliestHasMore: false,
    open: false,
    unread: 0,
    lastReadSent: 0,
    readTimer: null,
    typingOut: { on: false, lastAt: 0, idle: null },
    typingIn: null,
    errorTimer: null,
  };

  // ------------------------------------------------------------ transport

  function send(frame) {
    if (!S.ws || S.ws.readyState !== WebSocket.OPEN) return false;
    S.ws.send(JSON.stringify(frame));
    return true;
  }

  async function ensureVisitor() {
    const stored = loadStored();
    if (stored) return stored;
    const res = await fetch('/api/v1/visitors', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ page_url: location.href }),
    });
    if (!res.ok) throw new Error(`visitor creation failed (${res.status})`);
    const v = await res.json();
    if (!v || typeof v.token !== 'string') throw new Error('visitor creation returned no token');
    saveStored(v);
    return v;
  }

  async function connect() {
    if (S.ws || S.connecting || S.stopped) return;
    clearTimeout(S.reconnectTimer);
    S.reconnectTimer = null;
    S.connecting = true;
    let visitor;
    try {
      visitor = await ensureVisitor();
    } catch (err) {
      S.connecting = false;
      setConn('Cannot reach the chat service. Retrying…');
      scheduleReconnect(S.attempt++);
      return;
    }
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const ws = new WebSocket(`${proto}//${location.host}/ws`);
    S.ws = ws;
    S.connecting = false;
    S.ready = false;
    S.startSent = false;
    S.tl.gapAsked.clear();

    ws.addEventListener('open', () => {
      const hello = { type: 'hello', token: visitor.token };
      if (S.conv && S.tl.maxSeq > 0) hello.resume = { [S.conv.id]: S.tl.maxSeq };
      ws.send(JSON.stringify(hello));
    });
    ws.addEventListener('message', (ev) => {
      if (ws !== S.ws || typeof ev.data !== 'string') return;
      let frame;
      try {
        frame = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (frame && typeof frame.type === 'string') handleFrame(frame);
    });
    ws.addEventListener('close', (ev) => {
      if (ws !== S.ws) return;
      S.ws = null;
      S.ready = false;
      onSocketClosed(ev.code);
    });
  }

  function backoff(attempt) {
    const base = Math.min(MAX_BACKOFF_MS, 500 * 2 ** attempt);
    return base / 2 + Math.random() * (base / 2); // jitter
  }

  function scheduleReconnect(attempt, minDelay = 0) {
    if (S.stopped || S.reconnectTimer) return;
    const delay = Math.max(minDelay, backoff(attempt));
    S.reconnectTimer = setTimeout(() => {
      S.reconnectTimer = null;
      connect();
    }, delay);
  }

  function onSocketClosed(code) {
    clearIncomingTyping();
    S.typingOut.on = false;
    switch (code) {
      case 4401: // token expired or invalid: start over as a new visitor
        clearStored();
        S.me = null;
        if (S.conv) {
          resetConversation();
          showError('Your chat session expired. Please send your message again.');
        }
        setConn('Reconnecting…');
        if (S.attempt === 0) {
          S.attempt++;
          connect();
        } else {
          scheduleReconnect(S.attempt++);
        }
        return;
      case 4403:
        S.stopped = true;
        setConn('Chat is not available right now.');
        return;
      case 1012: // server restarting: reconnect at once (once)
        setConn('Reconnecting…');
        if (S.attempt === 0) {
          S.attempt++;
          connect();
        } else {
          scheduleReconnect(S.attempt++);
        }
        return;
      case 4429:
        setConn('Too many requests. Reconnecting shortly…');
        scheduleReconnect(S.attempt++, 5000);
        return;
      default:
        setConn(S.everConnected ? 'Connection lost. Reconnecting…' : 'Connecting…');
        scheduleReconnect(S.attempt++);
    }
  }

  function setConn(text) {
    ui.conn.textContent = text || '';
    ui.conn.hidden = !text;
  }

  // --------------------------------------------------------------- frames

  function handleFrame(f) {
    switch (f.type) {
      case 'welcome':
        return onWelcome(f);
      case 'started':
        return onStarted(f);
      case 'ack':
        return onAck(f);
      case 'message':
      case 'event':
        return ingest(f, true);
      case 'history':
        return onHistory(f);
      case 'typing':
        return onTyping(f);
      case 'read':
        return onRead(f);
      case 'notice':
        return onNotice(f);
      case 'error':
        return onError(f);
      default:
        return undefined; // unknown frames are ignored
    }
  }

  function onWelcome(f) {
    S.ready = true;
    S.everConnected = true;
    S.attempt = 0;
    setConn('');
    S.me = { id: f.id, name: f.name };
    const convs = Array.isArray(f.conversations) ? f.conversations : [];
    let info = S.conv ? convs.find((c) => c.conversation_id === S.conv.id) : null;
    if (!info && !S.conv) {
      // Resume the most recent conversation that is still open.
      for (const c of convs) if (c.state !== 'closed') info = c;
    }
    if (info) {
      setConversation(info);
      // A `start` whose answer was lost with the old socket: the open
      // conversation is the one it created, text included.
      if (S.startPending) startDelivered();
      requestHistory();
    }
    if (S.startPending && !S.conv) sendStart();
    flushOutbox();
  }

  function onStarted(f) {
    setConversation({ conversation_id: f.conversation_id, state: f.state, last_seq: f.last_seq });
    if (S.startPending) startDelivered();
    requestHistory();
    flushOutbox();
  }

  function onAck(f) {
    const entry = S.outbox.get(f.client_id);
    if (!entry) return; // already confirmed by an echoed `message`
    S.outbox.delete(f.client_id);
    confirmMine(entry.node, f.seq, f.sent_at);
  }

  function onHistory(f) {
    if (!S.conv || f.conversation_id !== S.conv.id) return;
    const items = Array.isArray(f.items) ? f.items : [];
    const wasEmpty = S.tl.bySeq.size === 0;
    let lowest = Infinity;
    for (const item of items) {
      if (!item.conversation_id) item.conversation_id = f.conversation_id;
      if (typeof item.seq === 'number' && item.seq < lowest) lowest = item.seq;
      ingest(item, false);
    }
    if (lowest <= S.tl.minSeq) S.earliestHasMore = !!f.has_more;
    ui.earlier.hidden = !S.earliestHasMore;
    askForGap();
    if (wasEmpty) scrollToBottom();
    markReadSoon();
  }

  function onTyping(f) {
    if (!S.conv || f.conversation_id !== S.conv.id || !f.sender || f.sender.role === 'visitor') return;
    if (f.state) {
      ui.typing.textContent = `${f.sender.name || 'Agent'} is typing…`;
      clearTimeout(S.typingIn);
      S.typingIn = setTimeout(clearIncomingTyping, TYPING_SHOW_MS);
    } else {
      clearIncomingTyping();
    }
  }

  function clearIncomingTyping() {
    clearTimeout(S.typingIn);
    S.typingIn = null;
    ui.typing.textContent = '';
  }

  function onRead(f) {
    if (!S.conv || f.conversation_id !== S.conv.id || !f.reader || f.reader.role === 'visitor') return;
    for (const [seq, node] of S.tl.bySeq) {
      if (seq <= f.seq && node.classList.contains('sb-mine')) {
        const st = node.querySelector('.sb-state');
        if (st) st.textContent = 'Seen';
      }
    }
  }

  function onNotice(f) {
    const line = make('div', 'sb-event sb-notice', f.text || '');
    ui.messages.appendChild(line);
    scrollToBottom();
  }

  function onError(f) {
    const entry = f.ref ? S.outbox.get(f.ref) : null;
    if (entry) {
      if (f.code === 'rate_limited' || f.code === 'unavailable') {
        setTimeout(flushOutbox, 2000); // keep it queued and try again
      } else {
        S.outbox.delete(f.ref);
        markFailed(entry.node, entry.text);
      }
    } else if (S.startPending && S.startSent && !S.conv) {
      // Most likely the answer to our `start`.
      const { text, node } = S.startPending;
      S.startPending = null;
      markFailed(node, text);
    }
    showError(f.message || 'Something went wrong.');
  }

  // ------------------------------------------------------- conversation

  function setConversation(info) {
    if (S.conv && S.conv.id !== info.conversation_id) resetConversation(true);
    if (!S.conv) {
      S.conv = { id: info.conversation_id, state: info.state || 'queued', agent: info.agent || null, position: null, statusSeq: 0 };
      ui.panel.dataset.conversationId = info.conversation_id;
      ui.intro.hidden = true;
    } else {
      if (info.state) S.conv.state = info.state;
      if (info.agent) S.conv.agent = info.agent;
    }
    updateStatus();
  }

  // Forget the current conversation. `keepPending` keeps unsent messages.
  function resetConversation(keepPending = false) {
    S.conv = null;
    delete ui.panel.dataset.conversationId;
    S.tl = new Timeline(ui.messages);
    S.earliestHasMore = false;
    ui.earlier.hidden = true;
    S.lastReadSent = 0;
    clearIncomingTyping();
    for (const child of [...ui.messages.children]) {
      if (keepPending && child.dataset.state === 'sending' && child.dataset.seq === undefined) continue;
      child.remove();
    }
    if (!keepPending) {
      S.outbox.clear();
      S.startPending = null;
    }
    S.startEcho = null;
    ui.intro.hidden = ui.messages.children.length > 0;
    updateStatus();
  }

  function requestHistory(beforeSeq) {
    if (!S.conv) return;
    const frame = { type: 'history', conversation_id: S.conv.id, limit: HISTORY_LIMIT };
    if (beforeSeq) frame.before_seq = beforeSeq;
    send(frame);
  }

  function askForGap() {
    if (!S.conv || !S.ready) return;
    const gap = S.tl.nextGap();
    if (gap) send({ type: 'history', conversation_id: S.conv.id, ...gap });
  }

  // Adds a live or historical `message` / `event` to the list, once per seq.
  function ingest(item, live) {
    if (!S.conv || item.conversation_id !== S.conv.id) return;
    const seq = item.seq;
    if (typeof seq !== 'number') {
      if (item.type === 'event') applyEvent(item, Infinity);
      return;
    }
    if (S.tl.has(seq)) return;
    const stick = isNearBottom();

    if (item.type === 'message') {
      const mine = !!item.sender && item.sender.role === 'visitor';
      let node = null;
      if (mine && item.client_id && S.outbox.has(item.client_id)) {
        node = S.outbox.get(item.client_id).node;
        S.outbox.delete(item.client_id);
      } else if (mine && S.startEcho && S.startEcho.text === item.text) {
        // The text we sent with `start`, as stored by the server.
        node = S.startEcho.node;
        S.startEcho = null;
      }
      if (node) {
        confirmMine(node, seq, item.sent_at);
      } else {
        S.tl.insert(renderMessage(item, mine), seq);
      }
      if (!mine && live) {
        clearIncomingTyping();
        if (!S.open) setUnread(S.unread + 1);
      }
    } else if (item.type === 'event') {
      S.tl.insert(renderEvent(item), seq);
      applyEvent(item, seq);
    } else {
      return;
    }
    ui.intro.hidden = true;
    if (live) {
      askForGap();
      markReadSoon();
    }
    if (stick) scrollToBottom();
  }

  function applyEvent(ev, seq) {
    if (!S.conv) return;
    if (seq !== Infinity) {
      if (seq < S.conv.statusSeq) return; // an older event from history
      S.conv.statusSeq = seq;
    }
    switch (ev.event) {
      case 'queued':
        S.conv.state = 'queued';
        if (typeof ev.position === 'number') S.conv.position = ev.position;
        break;
      case 'assigned':
        S.conv.state = 'assigned';
        if (ev.agent) S.conv.agent = ev.agent;
        break;
      case 'closed':
        S.conv.state = 'closed';
        break;
      default:
        if (typeof ev.position === 'number') S.conv.position = ev.position;
        if (ev.agent) S.conv.agent = ev.agent;
    }
    updateStatus();
  }

  function updateStatus() {
    const c = S.conv;
    let text = '';
    if (c) {
      if (c.state === 'queued') {
        text = typeof c.position === 'number' && c.position > 0
          ? `You are #${c.position} in the queue — an agent will be with you shortly`
          : 'Waiting for an agent — someone will be with you shortly';
      } else if (c.state === 'assigned') {
        text = c.agent && c.agent.name ? `You are chatting with ${c.agent.name}` : 'You are chatting with an agent';
      } else if (c.state === 'closed') {
        text = 'This conversation was closed';
      }
    }
    ui.status.textContent = text;
    ui.status.hidden = !text;
    const closed = !!c && c.state === 'closed';
    ui.panel.dataset.state = c ? c.state : 'new';
    ui.closed.hidden = !closed;
    ui.form.hidden = closed;
    ui.input.disabled = closed;
    if (closed) {
      clearIncomingTyping();
      stopTyping();
    }
    updateSendButton();
  }

  // ------------------------------------------------------------ rendering

  function renderMessage(m, mine) {
    const node = make('div', `sb-msg ${mine ? 'sb-mine' : 'sb-theirs'}`);
    if (m.sender && m.sender.role === 'system') node.classList.add('sb-system');
    node.dataset.state = 'sent';
    if (m.id) node.dataset.id = String(m.id);
    node.appendChild(make('div', 'sb-text', m.text || ''));
    const meta = make('div', 'sb-meta');
    if (!mine && m.sender && m.sender.name) meta.appendChild(make('span', 'sb-who', m.sender.name));
    meta.appendChild(timeElement(m.sent_at));
    if (mine) meta.appendChild(make('span', 'sb-state', 'Sent'));
    node.appendChild(meta);
    return node;
  }

  function renderPending(text) {
    const node = make('div', 'sb-msg sb-mine');
    node.dataset.state = 'sending';
    node.appendChild(make('div', 'sb-text', text));
    const meta = make('div', 'sb-meta');
    meta.appendChild(timeElement(null));
    meta.appendChild(make('span', 'sb-state', 'Sending…'));
    node.appendChild(meta);
    ui.messages.appendChild(node);
    return node;
  }

  function confirmMine(node, seq, sentAt) {
    if (typeof seq !== 'number') return;
    if (S.tl.has(seq)) {
      // Already shown (e.g. from history without client_id): drop the copy.
      if (S.tl.bySeq.get(seq) !== node) node.remove();
      return;
    }
    node.dataset.state = 'sent';
    const st = node.querySelector('.sb-state');
    if (st) st.textContent = 'Sent';
    if (sentAt) node.querySelector('.sb-meta').replaceChild(timeElement(sentAt), node.querySelector('.sb-time'));
    S.tl.insert(node, seq);
  }

  function markFailed(node, text) {
    node.dataset.state = 'failed';
    const st = node.querySelector('.sb-state');
    if (st) st.textContent = 'Not sent';
    const retry = make('button', 'sb-retry', 'Retry');
    retry.type = 'button';
    retry.addEventListener('click', () => {
      retry.remove();
      node.dataset.state = 'sending';
      if (st) st.textContent = 'Sending…';
      queueText(text, node);
    });
    node.querySelector('.sb-meta').appendChild(retry);
  }

  function renderEvent(ev) {
    const node = make('div', 'sb-event');
    node.dataset.event = String(ev.event || '');
    const by = ev.by && ev.by.name ? ev.by.name : null;
    let text;
    switch (ev.event) {
      case 'opened':
        text = 'Conversation started';
        break;
      case 'queued':
        text = typeof ev.position === 'number' ? `Waiting in queue (#${ev.position})` : 'Waiting for an agent';
        break;
      case 'assigned':
        text = ev.agent && ev.agent.name ? `${ev.agent.name} joined the chat` : 'An agent joined the chat';
        break;
      case 'closed':
        text = by ? `Conversation closed by ${by}` : 'Conversation closed';
        break;
      default:
        text = by ? `${String(ev.event || 'update')} (${by})` : String(ev.event || 'update');
    }
    node.appendChild(document.createTextNode(text));
    node.appendChild(document.createTextNode(' · '));
    node.appendChild(timeElement(ev.at));
    return node;
  }

  function isNearBottom() {
    const s = ui.scroll;
    return s.scrollHeight - s.scrollTop - s.clientHeight < 60;
  }

  function scrollToBottom() {
    ui.scroll.scrollTop = ui.scroll.scrollHeight;
  }

  function showError(text) {
    ui.error.textContent = text;
    ui.error.hidden = false;
    clearTimeout(S.errorTimer);
    S.errorTimer = setTimeout(() => {
      ui.error.hidden = true;
      ui.error.textContent = '';
    }, 6000);
  }

  function setUnread(n) {
    S.unread = n;
    ui.badge.textContent = n > 9 ? '9+' : String(n);
    ui.badge.hidden = n === 0;
    ui.launcher.setAttribute('aria-label', n ? `Chat with us (${n} unread)` : 'Chat with us');
  }

  // -------------------------------------------------------------- sending

  function sendStart() {
    if (!S.ready || S.startSent || !S.startPending) return;
    S.startSent = send({ type: 'start', text: S.startPending.text });
  }

  // The conversation exists, so the text sent with `start` is stored: show
  // it as sent; its seq comes with the echoed `message` or the history.
  function startDelivered() {
    const { text, node } = S.startPending;
    S.startPending = null;
    S.startEcho = { text, node };
    node.dataset.state = 'sent';
    const st = node.querySelector('.sb-state');
    if (st) st.textContent = 'Sent';
  }

  // Sends what waits in the outbox: with `all`, also what was sent but not
  // acknowledged yet (after a reconnect, or an `unavailable` error).
  function flushOutbox(all = true) {
    // Messages typed before the conversation exists wait for it.
    if (!S.ready || !S.conv || S.conv.state === 'closed') return;
    for (const [client_id, entry] of S.outbox) {
      if (entry.sent && !all) continue;
      // A re-send says so: the server then finds the original even after
      // its dedupe window, instead of storing the message twice.
      send({ type: 'send', conversation_id: S.conv.id, client_id, text: entry.text, retry: !!entry.sent });
      entry.sent = true;
    }
  }

  function queueText(text, node) {
    ui.intro.hidden = true;
    if (!S.conv && !S.startPending) {
      S.startPending = { text, node };
      S.startSent = false;
      sendStart();
    } else {
      const id = uuid();
      node.dataset.clientId = id;
      S.outbox.set(id, { text, node });
      flushOutbox(false);
    }
    if (!S.ws && !S.connecting) connect();
  }

  function submit() {
    const text = ui.input.value.trim();
    if (!text) return;
    if (text.length > MAX_LEN) {
      showError(`Messages can be at most ${MAX_LEN} characters.`);
      return;
    }
    if (S.conv && S.conv.state === 'closed') return;
    ui.input.value = '';
    autoGrow();
    updateSendButton();
    stopTyping();
    const node = renderPending(text);
    scrollToBottom();
    queueText(text, node);
  }

  function updateSendButton() {
    const len = ui.input.value.length;
    const text = ui.input.value.trim();
    ui.send.disabled = ui.input.disabled || !text || len > MAX_LEN;
    ui.counter.hidden = len < MAX_LEN - 500;
    ui.counter.textContent = `${len} / ${MAX_LEN}`;
  }

  function autoGrow() {
    ui.input.style.height = 'auto';
    ui.input.style.height = `${Math.min(ui.input.scrollHeight, 140)}px`;
  }

  // Throttled typing notifications: true at most every few seconds while
  // typing, false after a pause or when the message is sent.
  function noteTyping() {
    if (!S.conv || S.conv.state === 'closed' || !S.ready) return;
    const now = Date.now();
    if (!S.typingOut.on || now - S.typingOut.lastAt > TYPING_REFRESH_MS) {
      if (send({ type: 'typing', conversation_id: S.conv.id, state: true })) {
        S.typingOut.on = true;
        S.typingOut.lastAt = now;
      }
    }
    clearTimeout(S.typingOut.idle);
    S.typingOut.idle = setTimeout(stopTyping, TYPING_IDLE_MS);
  }

  function stopTyping() {
    clearTimeout(S.typingOut.idle);
    if (S.typingOut.on && S.conv) send({ type: 'typing', conversation_id: S.conv.id, state: false });
    S.typingOut.on = false;
  }

  function markReadSoon() {
    clearTimeout(S.readTimer);
    S.readTimer = setTimeout(() => {
      if (!S.open || document.hidden || !S.conv || !S.ready) return;
      const seq = S.tl.maxSeq;
      if (seq > S.lastReadSent && send({ type: 'read', conversation_id: S.conv.id, seq })) S.lastReadSent = seq;
    }, 300);
  }

  // ------------------------------------------------------------ panel / UI

  function openPanel() {
    S.open = true;
    ui.panel.hidden = false;
    root.classList.add('sb-open');
    ui.launcher.setAttribute('aria-expanded', 'true');
    setUnread(0);
    if (!S.ws && !S.connecting) connect();
    scrollToBottom();
    ui.input.focus();
    markReadSoon();
  }

  function closePanel() {
    S.open = false;
    ui.panel.hidden = true;
    root.classList.remove('sb-open');
    ui.launcher.setAttribute('aria-expanded', 'false');
    stopTyping();
    ui.launcher.focus();
  }

  ui.launcher.addEventListener('click', () => (S.open ? closePanel() : openPanel()));
  ui.close.addEventListener('click', closePanel);
  ui.panel.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') {
      e.preventDefault();
      closePanel();
    }
  });
  ui.form.addEventListener('submit', (e) => {
    e.preventDefault();
    submit();
  });
  ui.input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      submit();
    }
  });
  ui.input.addEventListener('input', () => {
    autoGrow();
    updateSendButton();
    if (ui.input.value) noteTyping();
    else stopTyping();
  });
  ui.newChat.addEventListener('click', () => {
    resetConversation();
    ui.input.focus();
  });
  ui.earlier.addEventListener('click', () => {
    if (!S.conv || !Number.isFinite(S.tl.minSeq)) return;
    // Keep the visible messages in place while older ones are prepended.
    const fromBottom = ui.scroll.scrollHeight - ui.scroll.scrollTop;
    const keep = () => {
      ui.scroll.scrollTop = ui.scroll.scrollHeight - fromBottom;
    };
    requestAnimationFrame(() => setTimeout(keep, 400));
    requestHistory(S.tl.minSeq);
  });
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden) markReadSoon();
  });
  window.addEventListener('online', () => {
    if (!S.ws && !S.connecting && S.reconnectTimer) {
      clearTimeout(S.reconnectTimer);
      S.reconnectTimer = null;
      connect();
    }
  });

  updateStatus();
  // Only visitors who already chatted connect right away; everyone else
  // gets a visitor record when they first open the panel.
  if (loadStored()) connect();
}

if (document.readyState === 'loading') {
  document.addEventListener('DOMContentLoaded', init, { once: true });
} else {
  init();
}
