// Switchboard agent console.
//
// Plain ES module, no build step, no dependencies. Logs in with
// POST /api/v1/agents/login, keeps the token in sessionStorage, then talks
// JSON over the same-origin WebSocket /ws.
//
// SECURITY: all user or server supplied text (messages, names, notices,
// errors) is set with textContent / createTextNode, never as HTML.

const AUTH_KEY = 'switchboard.agent';
const STATUS_KEY = 'switchboard.agent.status';
const MAX_LEN = 4000;
const HISTORY_LIMIT = 50;
const MAX_BACKOFF_MS = 10000;
const TYPING_REFRESH_MS = 3000;
const TYPING_IDLE_MS = 2500;
const TYPING_SHOW_MS = 8000;

// ---------------------------------------------------------------- helpers

function uuid() {
  if (globalThis.crypto && typeof crypto.randomUUID === 'function') return crypto.randomUUID();
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

function timeElement(iso) {
  const d = iso ? new Date(iso) : new Date();
  const t = make('time', 'time');
  if (!Number.isNaN(d.getTime())) {
    t.dateTime = d.toISOString();
    t.textContent = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    t.title = d.toLocaleString();
  }
  return t;
}

function sameId(a, b) {
  return a != null && b != null && String(a) === String(b);
}

function visitorName(visitor) {
  if (visitor && visitor.name) return visitor.name;
  if (visitor && visitor.id != null) return `Visitor ${String(visitor.id).slice(0, 8)}`;
  return 'Visitor';
}

const $ = (id) => document.getElementById(id);

// ------------------------------------------------------------- timeline
// Keeps one conversation's elements ordered by seq, at most one per seq.
// Elements without a seq (messages still sending) stay at the end.

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
    let prev = this.root.lastElementChild;
    while (prev && (prev === node || prev.dataset.seq === undefined || Number(prev.dataset.seq) > seq)) {
      prev = prev.previousElementSibling;
    }
    this.root.insertBefore(node, prev ? prev.nextElementSibling : this.root.firstElementChild);
    if (seq > this.maxSeq) this.maxSeq = seq;
    if (seq < this.minSeq) this.minSeq = seq;
  }

  // The highest not-yet-requested hole between known seqs, as a history
  // request, or null.
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

// -------------------------------------------------------------- elements

const ui = {
  loginView: $('login-view'),
  loginForm: $('login-form'),
  login: $('login'),
  password: $('password'),
  loginSubmit: $('login-submit'),
  loginError: $('login-error'),
  app: $('app'),
  agentName: $('agent-name'),
  connection: $('connection'),
  status: $('status'),
  logout: $('logout'),
  notice: $('notice'),
  list: $('conversations'),
  noConversations: $('no-conversations'),
  chatEmpty: $('chat-empty'),
  chatView: $('chat-view'),
  chatTitle: $('chat-title'),
  chatSubtitle: $('chat-subtitle'),
  closeConv: $('close-conversation'),
  scroll: $('chat-scroll'),
  earlier: $('load-earlier'),
  messages: $('messages'),
  typing: $('typing'),
  chatError: $('chat-error'),
  composer: $('composer'),
  input: $('composer-input'),
  send: $('composer-send'),
  counter: $('composer-counter'),
};

// ------------------------------------------------------------------ state

const S = {
  auth: null, // {agent_id, name, token}
  ws: null,
  ready: false,
  everConnected: false,
  attempt: 0,
  reconnectTimer: null,
  stopped: true,
  me: null,
  convs: new Map(), // String(conversation_id) -> conversation
  activeKey: null,
  typingOut: { on: false, lastAt: 0, idle: null, key: null },
  noticeTimer: null,
  errorTimer: null,
};

function loadAuth() {
  try {
    const a = JSON.parse(sessionStorage.getItem(AUTH_KEY) || 'null');
    return a && typeof a.token === 'string' ? a : null;
  } catch {
    return null;
  }
}

function saveAuth(a) {
  try {
    sessionStorage.setItem(AUTH_KEY, JSON.stringify(a));
  } catch {
    /* the console still works until reload */
  }
}

function desiredStatus() {
  const v = sessionStorage.getItem(STATUS_KEY);
  return v === 'away' || v === 'offline' ? v : 'online';
}

// ------------------------------------------------------------------ login

function showLogin(message) {
  ui.app.hidden = true;
  ui.loginView.hidden = false;
  ui.loginError.textContent = message || '';
  ui.loginError.hidden = !message;
  ui.loginSubmit.disabled = false;
  ui.login.focus();
}

ui.loginForm.addEventListener('submit', async (e) => {
  e.preventDefault();
  const login = ui.login.value.trim();
  const password = ui.password.value;
  if (!login || !password) {
    showLogin('Enter your login and password.');
    return;
  }
  ui.loginSubmit.disabled = true;
  ui.loginError.hidden = true;
  let res;
  try {
    res = await fetch('/api/v1/agents/login', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ login, password }),
    });
  } catch {
    showLogin('Cannot reach the server. Check your connection and try again.');
    return;
  }
  let body = null;
  try {
    body = await res.json();
  } catch {
    /* no JSON body */
  }
  if (res.status === 401) {
    showLogin((body && body.message) || 'Invalid login or password.');
    return;
  }
  if (!res.ok || !body || typeof body.token !== 'string') {
    showLogin((body && body.message) || `Sign-in failed (HTTP ${res.status}).`);
    return;
  }
  ui.password.value = '';
  const auth = { agent_id: body.agent_id, name: body.name, token: body.token };
  saveAuth(auth);
  startApp(auth);
});

function startApp(auth) {
  S.auth = auth;
  S.stopped = false;
  ui.loginView.hidden = true;
  ui.app.hidden = false;
  ui.agentName.textContent = auth.name || '';
  ui.status.value = desiredStatus();
  connect();
}

function logout(message) {
  S.stopped = true;
  clearTimeout(S.reconnectTimer);
  S.reconnectTimer = null;
  const ws = S.ws;
  S.ws = null;
  S.ready = false;
  if (ws) {
    if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: 'status', status: 'offline' }));
    ws.close(1000, 'logout');
  }
  try {
    sessionStorage.removeItem(AUTH_KEY);
    sessionStorage.removeItem(STATUS_KEY);
  } catch {
    /* ignore */
  }
  S.auth = null;
  S.me = null;
  S.convs.clear();
  S.activeKey = null;
  ui.list.replaceChildren();
  ui.messages.replaceChildren();
  ui.chatView.hidden = true;
  ui.chatEmpty.hidden = false;
  ui.noConversations.hidden = false;
  setConnection('closed');
  showLogin(message);
}

ui.logout.addEventListener('click', () => logout());

// -------------------------------------------------------------- transport

function send(frame) {
  if (!S.ws || S.ws.readyState !== WebSocket.OPEN) return false;
  S.ws.send(JSON.stringify(frame));
  return true;
}

function setConnection(state, text) {
  ui.app.dataset.connection = state; // "connecting" | "open" | "closed"
  const labels = { connecting: 'Connecting…', open: 'Connected', closed: 'Offline' };
  ui.connection.textContent = text || labels[state] || '';
  ui.connection.dataset.state = state;
}

function connect() {
  if (S.ws || S.stopped || !S.auth) return;
  clearTimeout(S.reconnectTimer);
  S.reconnectTimer = null;
  setConnection('connecting', S.everConnected ? 'Reconnecting…' : 'Connecting…');
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const ws = new WebSocket(`${proto}//${location.host}/ws`);
  const token = S.auth.token;
  S.ws = ws;
  S.ready = false;
  for (const c of S.convs.values()) {
    c.tl.gapAsked.clear();
    c.historyRequested = false;
  }

  ws.addEventListener('open', () => {
    const hello = { type: 'hello', token };
    const resume = {};
    for (const c of S.convs.values()) if (c.tl.maxSeq > 0) resume[String(c.id)] = c.tl.maxSeq;
    if (Object.keys(resume).length) hello.resume = resume;
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
  return base / 2 + Math.random() * (base / 2);
}

function scheduleReconnect(minDelay = 0) {
  if (S.stopped || S.reconnectTimer) return;
  const delay = Math.max(minDelay, backoff(S.attempt++));
  S.reconnectTimer = setTimeout(() => {
    S.reconnectTimer = null;
    connect();
  }, delay);
}

function onSocketClosed(code) {
  S.typingOut.on = false;
  for (const c of S.convs.values()) setVisitorTyping(c, false);
  switch (code) {
    case 4401:
      logout('Your session has expired. Please sign in again.');
      return;
    case 4403:
      S.stopped = true;
      setConnection('closed', 'Not allowed');
      showNotice('This account may not use the console.');
      return;
    case 1012: // server restarting: reconnect at once, back off if it repeats
      if (S.attempt === 0) {
        S.attempt++;
        connect();
      } else {
        scheduleReconnect();
      }
      setConnection('connecting', 'Reconnecting…');
      return;
    case 4429:
      setConnection('connecting', 'Too many requests, reconnecting…');
      scheduleReconnect(5000);
      return;
    default:
      setConnection('connecting', 'Reconnecting…');
      scheduleReconnect();
  }
}

window.addEventListener('online', () => {
  if (!S.ws && S.reconnectTimer) {
    clearTimeout(S.reconnectTimer);
    S.reconnectTimer = null;
    connect();
  }
});

// ----------------------------------------------------------------- frames

function handleFrame(f) {
  switch (f.type) {
    case 'welcome':
      return onWelcome(f);
    case 'assigned':
      return onAssigned(f);
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
      return showNotice(f.sender && f.sender.name ? `${f.sender.name}: ${f.text || ''}` : f.text || '');
    case 'error':
      return onError(f);
    default:
      return undefined;
  }
}

function onWelcome(f) {
  if (f.role && f.role !== 'agent') {
    logout('This account is not an agent account.');
    return;
  }
  S.ready = true;
  S.everConnected = true;
  S.attempt = 0;
  setConnection('open');
  S.me = { id: f.id, name: f.name };
  if (f.name) ui.agentName.textContent = f.name;
  for (const info of Array.isArray(f.conversations) ? f.conversations : []) {
    const c = upsertConversation(info);
    if (c.state !== 'closed' || sameKey(c, S.activeKey)) requestHistory(c);
  }
  send({ type: 'status', status: ui.status.value });
  for (const c of S.convs.values()) flushOutbox(c);
  renderList();
  if (S.activeKey) renderChatHeader();
}

function onAssigned(f) {
  const c = upsertConversation({
    conversation_id: f.conversation_id,
    state: 'assigned',
    visitor: f.visitor,
    agent: S.me,
    last_seq: f.last_seq,
  });
  c.fresh = S.activeKey !== c.key;
  requestHistory(c);
  renderList();
  if (S.activeKey === c.key) renderChatHeader();
}

function onAck(f) {
  const c = S.convs.get(String(f.conversation_id));
  if (!c) return;
  const entry = c.outbox.get(f.client_id);
  if (!entry) return; // already confirmed by the echoed message
  c.outbox.delete(f.client_id);
  confirmMine(c, entry.node, f.seq, f.sent_at);
}

function onHistory(f) {
  const c = S.convs.get(String(f.conversation_id));
  if (!c) return;
  const items = Array.isArray(f.items) ? f.items : [];
  const wasEmpty = c.tl.bySeq.size === 0;
  let lowest = Infinity;
  for (const item of items) {
    if (item.conversation_id == null) item.conversation_id = f.conversation_id;
    if (typeof item.seq === 'number' && item.seq < lowest) lowest = item.seq;
    ingest(item, false);
  }
  if (lowest <= c.tl.minSeq) c.hasMore = !!f.has_more;
  askForGap(c);
  renderListItem(c);
  if (S.activeKey === c.key) {
    ui.earlier.hidden = !c.hasMore;
    if (wasEmpty) scrollToBottom();
    markRead(c);
  }
}

function onTyping(f) {
  const c = S.convs.get(String(f.conversation_id));
  if (!c || !f.sender || f.sender.role !== 'visitor') return;
  setVisitorTyping(c, !!f.state, f.sender.name);
}

function setVisitorTyping(c, on, name) {
  clearTimeout(c.typingTimer);
  c.typing = on ? `${name || visitorName(c.visitor)} is typing…` : '';
  if (on) c.typingTimer = setTimeout(() => setVisitorTyping(c, false), TYPING_SHOW_MS);
  if (S.activeKey === c.key) ui.typing.textContent = c.typing;
  renderListItem(c);
}

function onRead(f) {
  const c = S.convs.get(String(f.conversation_id));
  if (!c || !f.reader || f.reader.role !== 'visitor') return;
  for (const [seq, node] of c.tl.bySeq) {
    if (seq <= f.seq && node.classList.contains('mine')) {
      const st = node.querySelector('.state');
      if (st) st.textContent = 'Seen';
    }
  }
}

function onError(f) {
  let handled = false;
  for (const c of S.convs.values()) {
    const entry = f.ref ? c.outbox.get(f.ref) : null;
    if (!entry) continue;
    handled = true;
    if (f.code === 'rate_limited' || f.code === 'unavailable') {
      setTimeout(() => flushOutbox(c), 2000);
    } else {
      c.outbox.delete(f.ref);
      markFailed(c, entry.node, entry.text);
    }
  }
  if (!handled) ui.closeConv.disabled = !activeConv() || activeConv().state === 'closed';
  showChatError(f.message || `Error: ${f.code || 'unknown'}`);
}

// ---------------------------------------------------------- conversations

function sameKey(c, key) {
  return key != null && c.key === key;
}

function activeConv() {
  return S.activeKey ? S.convs.get(S.activeKey) : null;
}

function upsertConversation(info) {
  const key = String(info.conversation_id);
  let c = S.convs.get(key);
  if (!c) {
    const log = make('div', 'log');
    log.setAttribute('role', 'log');
    log.setAttribute('aria-live', 'polite');
    log.setAttribute('aria-relevant', 'additions');
    c = {
      key,
      id: info.conversation_id, // sent back as the server gave it
      state: info.state || 'assigned',
      visitor: info.visitor || null,
      agent: info.agent || null,
      team: info.team || null,
      serverLastSeq: 0,
      log,
      tl: new Timeline(log),
      outbox: new Map(), // client_id -> {text, node}
      unread: 0,
      fresh: false,
      preview: '', // text of the newest message, shown in the list
      previewSeq: 0,
      lastActivity: Date.now(),
      typing: '',
      typingTimer: null,
      draft: '',
      hasMore: false,
      historyRequested: false,
      lastReadSent: 0,
      statusSeq: 0,
      item: null,
    };
    S.convs.set(key, c);
  } else {
    if (info.state) c.state = info.state;
    if (info.visitor) c.visitor = info.visitor;
    if (info.agent !== undefined && info.agent !== null) c.agent = info.agent;
    if (info.team !== undefined) c.team = info.team;
  }
  if (typeof info.last_seq === 'number') c.serverLastSeq = Math.max(c.serverLastSeq, info.last_seq);
  return c;
}

function requestHistory(c, beforeSeq) {
  const frame = { type: 'history', conversation_id: c.id, limit: HISTORY_LIMIT };
  if (beforeSeq) frame.before_seq = beforeSeq;
  else if (c.historyRequested) return;
  if (send(frame) && !beforeSeq) c.historyRequested = true;
}

function askForGap(c) {
  if (!S.ready) return;
  const gap = c.tl.nextGap();
  if (gap) send({ type: 'history', conversation_id: c.id, ...gap });
}

// Adds a live or historical message / event, once per seq.
function ingest(item, live) {
  let c = S.convs.get(String(item.conversation_id));
  if (!c) {
    if (!live) return;
    // A conversation we were not told about yet: track it and load it.
    c = upsertConversation({
      conversation_id: item.conversation_id,
      state: 'assigned',
      visitor: item.sender && item.sender.role === 'visitor' ? { id: item.sender.id, name: item.sender.name } : null,
    });
    requestHistory(c);
  }
  const seq = item.seq;
  if (typeof seq !== 'number') {
    if (item.type === 'event') applyEvent(c, item, Infinity);
    return;
  }
  if (c.tl.has(seq)) return;
  const active = S.activeKey === c.key;
  const stick = active && isNearBottom();

  if (item.type === 'message') {
    const mine = !!item.sender && item.sender.role === 'agent' && S.me && sameId(item.sender.id, S.me.id);
    const pending = mine && item.client_id ? c.outbox.get(item.client_id) : null;
    if (pending) {
      c.outbox.delete(item.client_id);
      confirmMine(c, pending.node, seq, item.sent_at);
    } else {
      c.tl.insert(renderMessage(item, mine), seq);
    }
    if (seq > c.previewSeq) {
      c.preview = item.text || '';
      c.previewSeq = seq;
    }
    if (live) {
      c.lastActivity = Date.now();
      if (item.sender && item.sender.role === 'visitor') {
        setVisitorTyping(c, false);
        if (!active || document.hidden) c.unread += 1;
      }
    }
  } else if (item.type === 'event') {
    c.tl.insert(renderEvent(item), seq);
    applyEvent(c, item, seq);
    if (live) c.lastActivity = Date.now();
  } else {
    return;
  }
  if (live) {
    askForGap(c);
    renderList();
    if (active) markRead(c);
  }
  if (stick) scrollToBottom();
}

function applyEvent(c, ev, seq) {
  if (seq !== Infinity) {
    if (seq < c.statusSeq) return; // an older event replayed by history
    c.statusSeq = seq;
  }
  switch (ev.event) {
    case 'queued':
      c.state = 'queued';
      break;
    case 'assigned':
      c.state = 'assigned';
      if (ev.agent) c.agent = ev.agent;
      break;
    case 'closed':
      c.state = 'closed';
      setVisitorTyping(c, false);
      break;
    default:
      if (ev.agent) c.agent = ev.agent;
  }
  renderListItem(c);
  if (S.activeKey === c.key) renderChatHeader();
}

// ------------------------------------------------------------- rendering

function renderMessage(m, mine) {
  const node = make('div', `msg ${mine ? 'mine' : 'theirs'}`);
  if (m.sender && m.sender.role === 'system') node.classList.add('system');
  node.dataset.state = 'sent';
  if (m.id != null) node.dataset.id = String(m.id);
  const meta = make('div', 'meta');
  const who = mine ? 'You' : m.sender && m.sender.name ? m.sender.name : m.sender && m.sender.role === 'visitor' ? 'Visitor' : 'System';
  meta.appendChild(make('span', 'who', who));
  meta.appendChild(timeElement(m.sent_at));
  if (mine) meta.appendChild(make('span', 'state', 'Sent'));
  node.appendChild(meta);
  node.appendChild(make('div', 'text', m.text || ''));
  return node;
}

function renderPending(c, text) {
  const node = make('div', 'msg mine');
  node.dataset.state = 'sending';
  const meta = make('div', 'meta');
  meta.appendChild(make('span', 'who', 'You'));
  meta.appendChild(timeElement(null));
  meta.appendChild(make('span', 'state', 'Sending…'));
  node.appendChild(meta);
  node.appendChild(make('div', 'text', text));
  c.log.appendChild(node);
  return node;
}

function confirmMine(c, node, seq, sentAt) {
  if (typeof seq !== 'number') return;
  if (c.tl.has(seq)) {
    if (c.tl.bySeq.get(seq) !== node) node.remove();
    return;
  }
  node.dataset.state = 'sent';
  const st = node.querySelector('.state');
  if (st) st.textContent = 'Sent';
  if (sentAt) node.querySelector('.meta').replaceChild(timeElement(sentAt), node.querySelector('.time'));
  c.tl.insert(node, seq);
}

function markFailed(c, node, text) {
  node.dataset.state = 'failed';
  const st = node.querySelector('.state');
  if (st) st.textContent = 'Not sent';
  const retry = make('button', 'retry', 'Retry');
  retry.type = 'button';
  retry.addEventListener('click', () => {
    retry.remove();
    node.dataset.state = 'sending';
    if (st) st.textContent = 'Sending…';
    const id = uuid();
    c.outbox.set(id, { text, node });
    flushOutbox(c, false);
  });
  node.querySelector('.meta').appendChild(retry);
}

function renderEvent(ev) {
  const node = make('div', 'event');
  node.dataset.event = String(ev.event || '');
  const by = ev.by && ev.by.name ? ev.by.name : null;
  let text;
  switch (ev.event) {
    case 'opened':
      text = 'Conversation opened';
      break;
    case 'queued':
      text = typeof ev.position === 'number' ? `Queued (position ${ev.position})` : 'Queued';
      break;
    case 'assigned':
      text = ev.agent && ev.agent.name ? `Assigned to ${ev.agent.name}` : 'Assigned';
      break;
    case 'closed':
      text = by ? `Closed by ${by}` : 'Conversation closed';
      break;
    default:
      text = by ? `${String(ev.event || 'update')} (${by})` : String(ev.event || 'update');
  }
  node.appendChild(document.createTextNode(text));
  node.appendChild(document.createTextNode(' · '));
  node.appendChild(timeElement(ev.at));
  return node;
}

function stateLabel(c) {
  if (c.state === 'closed') return 'Closed';
  if (c.state === 'queued') return 'Queued';
  return 'Open';
}

function renderListItem(c) {
  if (!c.item) {
    const li = make('li', 'conv-row');
    const button = make('button', 'conv-item');
    button.type = 'button';
    button.dataset.conversationId = c.key;
    button.addEventListener('click', () => selectConversation(c.key));
    const top = make('span', 'conv-top');
    top.append(make('span', 'conv-name'), make('span', 'conv-badge'));
    const bottom = make('span', 'conv-bottom');
    bottom.append(make('span', 'conv-preview'), make('span', 'conv-state'));
    button.append(top, bottom);
    li.appendChild(button);
    c.item = li;
  }
  const button = c.item.firstElementChild;
  button.querySelector('.conv-name').textContent = visitorName(c.visitor);
  const badge = button.querySelector('.conv-badge');
  badge.textContent = c.unread > 0 ? String(c.unread) : c.fresh ? 'New' : '';
  badge.hidden = !(c.unread > 0 || c.fresh);
  badge.setAttribute('aria-label', c.unread > 0 ? `${c.unread} unread` : 'new conversation');
  button.querySelector('.conv-preview').textContent = c.typing || c.preview || (c.team ? `Team: ${c.team}` : ' ');
  button.querySelector('.conv-preview').classList.toggle('is-typing', !!c.typing);
  button.querySelector('.conv-state').textContent = stateLabel(c);
  button.classList.toggle('active', S.activeKey === c.key);
  button.classList.toggle('closed', c.state === 'closed');
  if (S.activeKey === c.key) button.setAttribute('aria-current', 'true');
  else button.removeAttribute('aria-current');
}

// Open conversations first (newest activity on top), closed ones last.
function renderList() {
  const convs = [...S.convs.values()].sort((a, b) => {
    const ca = a.state === 'closed' ? 1 : 0;
    const cb = b.state === 'closed' ? 1 : 0;
    return ca - cb || b.lastActivity - a.lastActivity;
  });
  for (const c of convs) {
    renderListItem(c);
    ui.list.appendChild(c.item); // re-appending moves it into order
  }
  ui.noConversations.hidden = convs.length > 0;
}

function renderChatHeader() {
  const c = activeConv();
  if (!c) return;
  ui.chatTitle.textContent = visitorName(c.visitor);
  const parts = [stateLabel(c)];
  if (c.team) parts.push(`Team: ${c.team}`);
  if (c.agent && c.agent.name && !(S.me && sameId(c.agent.id, S.me.id))) parts.push(`Agent: ${c.agent.name}`);
  ui.chatSubtitle.textContent = parts.join(' · ');
  const closed = c.state === 'closed';
  ui.closeConv.disabled = closed;
  ui.input.disabled = closed;
  ui.input.placeholder = closed ? 'This conversation is closed' : 'Type a reply — Enter to send, Shift+Enter for a new line';
  ui.chatView.classList.toggle('is-closed', closed);
  updateSendButton();
}

function selectConversation(key) {
  const c = S.convs.get(key);
  if (!c) return;
  const prev = activeConv();
  if (prev && prev !== c) {
    prev.draft = ui.input.value;
    stopTyping();
  }
  S.activeKey = key;
  c.unread = 0;
  c.fresh = false;
  ui.chatEmpty.hidden = true;
  ui.chatView.hidden = false;
  ui.messages.replaceChildren(c.log);
  ui.earlier.hidden = !c.hasMore;
  ui.typing.textContent = c.typing;
  if (prev !== c) ui.input.value = c.draft;
  renderChatHeader();
  for (const other of S.convs.values()) renderListItem(other);
  requestHistory(c);
  scrollToBottom();
  markRead(c);
  ui.input.focus();
}

function isNearBottom() {
  return ui.scroll.scrollHeight - ui.scroll.scrollTop - ui.scroll.clientHeight < 80;
}

function scrollToBottom() {
  ui.scroll.scrollTop = ui.scroll.scrollHeight;
}

function markRead(c) {
  if (document.hidden || S.activeKey !== c.key) return;
  const seq = c.tl.maxSeq;
  if (seq > c.lastReadSent && send({ type: 'read', conversation_id: c.id, seq })) c.lastReadSent = seq;
  if (c.unread) {
    c.unread = 0;
    renderListItem(c);
  }
}

document.addEventListener('visibilitychange', () => {
  const c = activeConv();
  if (c && !document.hidden) markRead(c);
});

function showNotice(text) {
  ui.notice.textContent = text;
  ui.notice.hidden = !text;
  clearTimeout(S.noticeTimer);
  S.noticeTimer = setTimeout(() => {
    ui.notice.hidden = true;
  }, 10000);
}

function showChatError(text) {
  ui.chatError.textContent = text;
  ui.chatError.hidden = false;
  clearTimeout(S.errorTimer);
  S.errorTimer = setTimeout(() => {
    ui.chatError.hidden = true;
  }, 6000);
}

// ------------------------------------------------------------- composing

// Sends what waits in a conversation's outbox: with `all`, also what was
// sent but not acknowledged yet (after a reconnect, or an `unavailable`).
function flushOutbox(c, all = true) {
  if (!S.ready || c.state === 'closed') return;
  for (const [client_id, entry] of c.outbox) {
    if (entry.sent && !all) continue;
    // A re-send says so: the server then finds the original even after its
    // dedupe window, instead of storing the message twice.
    send({ type: 'send', conversation_id: c.id, client_id, text: entry.text, retry: !!entry.sent });
    entry.sent = true;
  }
}

function submit() {
  const c = activeConv();
  const text = ui.input.value.trim();
  if (!c || !text || c.state === 'closed') return;
  if (text.length > MAX_LEN) {
    showChatError(`Messages can be at most ${MAX_LEN} characters.`);
    return;
  }
  ui.input.value = '';
  c.draft = '';
  updateSendButton();
  stopTyping();
  const node = renderPending(c, text);
  const id = uuid();
  node.dataset.clientId = id;
  c.outbox.set(id, { text, node });
  c.preview = text;
  c.lastActivity = Date.now();
  scrollToBottom();
  flushOutbox(c);
  renderList();
}

function updateSendButton() {
  const len = ui.input.value.length;
  ui.send.disabled = ui.input.disabled || !ui.input.value.trim() || len > MAX_LEN;
  ui.counter.hidden = len < MAX_LEN - 500;
  ui.counter.textContent = `${len} / ${MAX_LEN}`;
}

function noteTyping() {
  const c = activeConv();
  if (!c || c.state === 'closed' || !S.ready) return;
  const now = Date.now();
  if (!S.typingOut.on || S.typingOut.key !== c.key || now - S.typingOut.lastAt > TYPING_REFRESH_MS) {
    if (send({ type: 'typing', conversation_id: c.id, state: true })) {
      S.typingOut = { ...S.typingOut, on: true, lastAt: now, key: c.key };
    }
  }
  clearTimeout(S.typingOut.idle);
  S.typingOut.idle = setTimeout(stopTyping, TYPING_IDLE_MS);
}

function stopTyping() {
  clearTimeout(S.typingOut.idle);
  const c = S.typingOut.key ? S.convs.get(S.typingOut.key) : null;
  if (S.typingOut.on && c) send({ type: 'typing', conversation_id: c.id, state: false });
  S.typingOut.on = false;
}

ui.composer.addEventListener('submit', (e) => {
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
  updateSendButton();
  if (ui.input.value) noteTyping();
  else stopTyping();
});

ui.closeConv.addEventListener('click', () => {
  const c = activeConv();
  if (!c || c.state === 'closed') return;
  if (send({ type: 'close', conversation_id: c.id })) ui.closeConv.disabled = true;
  else showChatError('Not connected — try again in a moment.');
});

ui.status.addEventListener('change', () => {
  try {
    sessionStorage.setItem(STATUS_KEY, ui.status.value);
  } catch {
    /* ignore */
  }
  send({ type: 'status', status: ui.status.value }); // re-sent on every welcome
});

ui.earlier.addEventListener('click', () => {
  const c = activeConv();
  if (!c || !Number.isFinite(c.tl.minSeq)) return;
  const fromBottom = ui.scroll.scrollHeight - ui.scroll.scrollTop;
  requestAnimationFrame(() =>
    setTimeout(() => {
      ui.scroll.scrollTop = ui.scroll.scrollHeight - fromBottom;
    }, 400),
  );
  requestHistory(c, c.tl.minSeq);
});

// ------------------------------------------------------------------ start

const saved = loadAuth();
if (saved) startApp(saved);
else showLogin();
