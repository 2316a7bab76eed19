// Switchboard agent console.
//
// Plain ES module, no build step, no dependencies. Logs in with
// POST /api/v1/agents/login, keeps the token in localStorage (every tab of
// the agent shares the login; each tab is a connection of its own), then talks
// JSON over the same-origin WebSocket /ws, or the event stream when the
// WebSocket cannot connect (transport.js, shared with the widget).
//
// SECURITY: all user or server supplied text (messages, names, notices,
// errors) is set with textContent / createTextNode, never as HTML.

import { Connector } from '/transport.js';
import { Timeline } from '/core/timeline.js';
import { make, timeElement, uuid } from '/core/dom.js';
import { backoff, advances, listen } from '/core/connection.js';
import { Outbox, sendFrame } from '/core/outbox.js';
import { helloFrame, resumedGap } from '/core/resume.js';
import { pageLanguage, translator, translatePage, languagePicker } from '/i18n.js';
import { STRINGS } from '/console-strings.js';

// The console's language (i18n.js): `?lang=`, the one chosen in the page,
// or the browser's; every string is in console-strings.js.
const LANG = pageLanguage();
const t = translator(STRINGS, LANG);
translatePage(document, t, LANG);

const AUTH_KEY = 'switchboard.agent';
const STATUS_KEY = 'switchboard.agent.status';
const MAX_LEN = 4000;
const HISTORY_LIMIT = 50;
const TYPING_REFRESH_MS = 3000;
const TYPING_IDLE_MS = 2500;
const TYPING_SHOW_MS = 8000;
const MAX_NOTE = 1000; // transfer note
const ID_RE = /^[A-Za-z0-9_-]{1,64}$/; // agent and team ids

// Receipt states of the agent's own messages, as they are shown.
const STATE_LABEL = { sending: t('sending'), sent: t('sent'), delivered: t('delivered'), read: t('read') };
const STARS = ['', '★☆☆☆☆', '★★☆☆☆', '★★★☆☆', '★★★★☆', '★★★★★'];
// The archive's states of a past conversation, as the list says them.
const PAST_STATE = { closed: 'stateClosed', assigned: 'stateOpen', queued: 'stateQueued', missed: 'stateMissed' };
// Agents' statuses, as the transfer list says them.
const STATUS_WORDS = { online: 'statusOnline', away: 'statusAway', offline: 'statusOffline' };
// `t` under another name, where `t` is a local (a team, a <time>).
const tr = t;

// ---------------------------------------------------------------- helpers

// "4m 05s", "1h 12m": how long something has waited.
function formatWait(ms) {
  const secs = Math.max(0, Math.floor(ms / 1000));
  if (secs < 60) return `${secs}s`;
  const mins = Math.floor(secs / 60);
  if (mins < 60) return `${mins}m ${String(secs % 60).padStart(2, '0')}s`;
  const hours = Math.floor(mins / 60);
  if (hours < 48) return `${hours}h ${String(mins % 60).padStart(2, '0')}m`;
  return `${Math.floor(hours / 24)}d`;
}

// A <time> for unix milliseconds, shown as "12 min ago".
function agoElement(ms) {
  const t = make('time', 'time');
  const d = new Date(Number(ms));
  if (!Number.isNaN(d.getTime())) {
    t.dateTime = d.toISOString();
    t.title = d.toLocaleString();
    t.textContent = tr('ago', { time: formatWait(Date.now() - d.getTime()) });
  }
  return t;
}

function sameId(a, b) {
  return a != null && b != null && String(a) === String(b);
}

function visitorName(visitor) {
  if (visitor && visitor.name) return visitor.name;
  if (visitor && visitor.id != null) return t('visitorN', { id: String(visitor.id).slice(0, 8) });
  return t('visitor');
}

const $ = (id) => document.getElementById(id);

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
  noticeText: $('notice-text'),
  noticeDismiss: $('notice-dismiss'),
  queue: $('queue'),
  queueCount: $('queue-count'),
  queueEmpty: $('queue-empty'),
  missed: $('missed'),
  missedCount: $('missed-count'),
  missedEmpty: $('missed-empty'),
  missedError: $('missed-error'),
  missedRefresh: $('missed-refresh'),
  transferToggle: $('transfer-toggle'),
  transferForm: $('transfer-form'),
  transferKind: $('transfer-kind'),
  transferTarget: $('transfer-target'),
  private: $('composer-private'),
  detailsToggle: $('details-toggle'),
  details: $('details'),
  detailsProfile: $('details-profile'),
  detailsHistory: $('details-history'),
  searchForm: $('search-form'),
  searchInput: $('search-input'),
  searchStatus: $('search-status'),
  searchResults: $('search-results'),
  hint: $('composer-hint'),
  transferNote: $('transfer-note'),
  transferError: $('transfer-error'),
  transferCancel: $('transfer-cancel'),
  transferSubmit: $('transfer-submit'),
  list: $('conversations'),
  language: $('language'),
  loginLanguage: $('login-language'),
  noConversations: $('no-conversations'),
  conversationsHeading: $('conversations-heading'),
  filters: [...document.querySelectorAll('.filter')],
  mineCount: $('mine-count'),
  panelConversations: $('panel-conversations'),
  panelQueue: $('panel-queue'),
  panelMissed: $('panel-missed'),
  closedStatus: $('closed-status'),
  closedRefresh: $('closed-refresh'),
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
  queue: [], // entries of the last `queue` frame
  queueTimer: null, // ticks the waiting times
  missed: null, // entries of the last `missed` frame (null: not asked yet)
  missedLoading: false,
  pickingUp: new Set(), // conversation ids we sent `pick_up` for
  opening: new Set(), // ids taken or picked up: opened once assigned
  knownAgents: new Map(), // agent id -> name, seen in conversations
  knownTeams: new Set(), // team ids seen in conversations and the queue
  canned: new Map(), // shortcut -> text (GET /api/v1/canned)
  audio: null, // the alerts' AudioContext, made on the sign-in click
  transferKey: null, // conversation with a `transfer` in flight
  filter: 'mine', // what the sidebar shows: mine | queue | missed | closed
  closedLoading: false,
};

function loadAuth() {
  try {
    const a = JSON.parse(localStorage.getItem(AUTH_KEY) || 'null');
    return a && typeof a.token === 'string' ? a : null;
  } catch {
    return null;
  }
}

function saveAuth(a) {
  try {
    localStorage.setItem(AUTH_KEY, JSON.stringify(a));
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
  prepareAlerts();
  e.preventDefault();
  const login = ui.login.value.trim();
  const password = ui.password.value;
  if (!login || !password) {
    showLogin(t('enterLogin'));
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
    showLogin(t('cannotReach'));
    return;
  }
  let body = null;
  try {
    body = await res.json();
  } catch {
    /* no JSON body */
  }
  if (res.status === 401) {
    showLogin((body && body.message) || t('invalidLogin'));
    return;
  }
  if (!res.ok || !body || typeof body.token !== 'string') {
    showLogin((body && body.message) || t('signInFailed', { status: res.status }));
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

// ------------------------------------------------------- token refresh
// The token ends the connection when it expires (close 4401): a fresh one
// is fetched well before, kept, and given to the open connection.

function scheduleRefresh(expiresAt) {
  clearTimeout(S.refreshTimer);
  const at = Date.parse(expiresAt || '');
  if (!Number.isFinite(at)) return;
  const delay = Math.min(Math.max((at - Date.now()) * 0.8, 1000), 2147483647);
  S.refreshTimer = setTimeout(refreshToken, delay);
}

async function refreshToken() {
  if (!S.auth) return;
  try {
    const res = await fetch('/api/v1/token/refresh', {
      method: 'POST',
      headers: { authorization: `Bearer ${S.auth.token}` },
    });
    if (!res.ok) return; // the close at expiry asks to sign in again
    const body = await res.json();
    if (!S.auth || !body || typeof body.token !== 'string') return;
    S.auth = { ...S.auth, token: body.token };
    saveAuth(S.auth);
    if (S.ws && S.ready) S.ws.send(JSON.stringify({ type: 'refresh', token: body.token }));
  } catch {
    S.refreshTimer = setTimeout(refreshToken, 30000);
  }
}

function logout(message) {
  clearTimeout(S.refreshTimer);
  // The token stops working on every edge (best effort: it expires anyway).
  if (S.auth && !message) {
    fetch('/api/v1/agents/logout', {
      method: 'POST',
      headers: { authorization: `Bearer ${S.auth.token}` },
    }).catch(() => {});
  }
  S.stopped = true;
  clearTimeout(S.reconnectTimer);
  S.reconnectTimer = null;
  const ws = S.ws;
  S.ws = null;
  S.ready = false;
  if (ws) {
    if (ws.readyState === 1) ws.send(JSON.stringify({ type: 'status', status: 'offline' }));
    ws.close(1000, 'logout');
  }
  try {
    localStorage.removeItem(AUTH_KEY);
    sessionStorage.removeItem(STATUS_KEY);
  } catch {
    /* ignore */
  }
  S.auth = null;
  S.me = null;
  S.convs.clear();
  S.activeKey = null;
  S.queue = [];
  S.missed = null;
  S.missedLoading = false;
  S.pickingUp.clear();
  S.opening.clear();
  S.transferKey = null;
  S.closedLoading = false;
  setFilter('mine');
  clearInterval(S.queueTimer);
  S.queueTimer = null;
  ui.list.replaceChildren();
  renderQueue();
  renderMissed();
  ui.transferForm.hidden = true;
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
  if (!S.ws || S.ws.readyState !== 1) return false;
  S.ws.send(JSON.stringify(frame));
  return true;
}

function setConnection(state, text) {
  ui.app.dataset.connection = state; // "connecting" | "open" | "closed"
  const fallback = ui.app.dataset.transport === 'sse';
  const labels = {
    connecting: t('connecting'),
    // The diagnostics: which transport the console is on.
    open: fallback ? t('connectedSse') : t('connected'),
    closed: t('offline'),
  };
  ui.connection.textContent = text || labels[state] || '';
  ui.connection.title = fallback
    ? t('viaSse')
    : t('viaWs');
  ui.connection.dataset.state = state;
}

const connector = new Connector(location.origin);

function connect() {
  if (S.ws || S.stopped || !S.auth) return;
  clearTimeout(S.reconnectTimer);
  S.reconnectTimer = null;
  setConnection('connecting', S.everConnected ? t('reconnecting') : t('connecting'));
  const token = S.auth.token;
  const ws = connector.open(() => (S.auth ? S.auth.token : token));
  const transport = connector.transport;
  S.ws = ws;
  S.ready = false;
  for (const c of S.convs.values()) {
    c.tl.gapAsked.clear();
    c.historyRequested = false;
  }

  ws.addEventListener('open', () => {
    ui.app.dataset.transport = transport === 'websocket' ? 'websocket' : 'sse';
    // Not the conversations that left this agent: those are no longer ours.
    const resume = [...S.convs.values()].filter(canRead).map((c) => [c.id, c.tl]);
    ws.send(JSON.stringify(helloFrame(token, resume)));
  });
  listen(ws, () => ws === S.ws, handleFrame, (code) => {
    S.ws = null;
    S.ready = false;
    onSocketClosed(code);
  });
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
      logout(t('sessionExpired'));
      return;
    case 4403:
      S.stopped = true;
      setConnection('closed', t('notAllowed'));
      showNotice(t('accountNotAllowed'));
      return;
    case 1012: // server restarting: reconnect at once, back off if it repeats
      if (S.attempt === 0) {
        S.attempt++;
        connect();
      } else {
        scheduleReconnect();
      }
      setConnection('connecting', t('reconnecting'));
      return;
    case 4429:
      setConnection('connecting', t('tooMany'));
      scheduleReconnect(5000);
      return;
    default:
      setConnection('connecting', t('reconnecting'));
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
    case 'refreshed':
      return scheduleRefresh(f.token_expires_at);
    case 'assigned':
      return onAssigned(f);
    case 'resumed':
      return onResumed(f);
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
    case 'delivered':
      return onDelivered(f);
    case 'queue':
      return onQueue(f);
    case 'missed':
      return onMissed(f);
    case 'notice':
      return showNotice(typeof f.text === 'string' ? f.text : '', f.sender && f.sender.name, true);
    case 'error':
      return onError(f);
    default:
      return undefined;
  }
}

function onWelcome(f) {
  if (f.role && f.role !== 'agent') {
    logout(t('notAgent'));
    return;
  }
  scheduleRefresh(f.token_expires_at);
  loadCanned();
  S.ready = true;
  S.everConnected = true;
  S.attempt = 0;
  setConnection('open');
  S.me = { id: f.id, name: f.name };
  if (f.name) ui.agentName.textContent = f.name;
  // Answers lost with the old socket: ask again rather than wait forever.
  // (A transfer that did happen comes back as its event with the resume.)
  S.missedLoading = false;
  if (S.transferKey) {
    S.transferKey = null;
    ui.transferSubmit.disabled = false;
    ui.transferSubmit.textContent = t('transfer');
  }
  for (const info of Array.isArray(f.conversations) ? f.conversations : []) {
    const c = upsertConversation(info);
    c.handedOff = null; // listed as ours
    c.archived = false;
    if (c.state !== 'closed' || sameKey(c, S.activeKey)) requestHistory(c);
  }
  send({ type: 'status', status: ui.status.value });
  for (const c of S.convs.values()) flushOutbox(c);
  // Missed messages have no live feed: refresh the list on every connect.
  requestMissed();
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
  c.handedOff = null;
  c.archived = false; // reopened: followed again
  S.pickingUp.delete(c.key);
  const picked = S.opening.delete(c.key);
  if (S.missed) {
    S.missed = S.missed.filter((e) => String(e.conversation_id) !== c.key);
    renderMissed();
  }
  c.fresh = S.activeKey !== c.key && !picked;
  if (c.fresh) alertAgent(t('newConversation'), visitorName(c.visitor));
  requestHistory(c);
  renderList();
  // A missed conversation this agent picked up, or one taken from the
  // queue, opens right away, in the Mine filter.
  if (picked) {
    setFilter('mine');
    selectConversation(c.key);
  }
  else if (S.activeKey === c.key) renderChatHeader();
}

// The outcome of a `resume` entry of `hello`: when more was missed than the
// server replays, page in what lies between.
function onResumed(f) {
  const c = S.convs.get(String(f.conversation_id));
  const gap = c ? resumedGap(f, c.id, c.tl) : null;
  if (gap) send(gap);
}

function onAck(f) {
  const c = S.convs.get(String(f.conversation_id));
  if (!c) return;
  const entry = c.outbox.take(f.client_id);
  if (!entry) return; // already confirmed by the echoed message
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

// Read receipts from the visitor: the agent's messages up to `seq` show
// "Read".
function onRead(f) {
  const c = S.convs.get(String(f.conversation_id));
  if (!c || !f.reader || f.reader.role !== 'visitor' || typeof f.seq !== 'number') return;
  if (f.seq <= c.peerRead) return;
  c.peerRead = f.seq;
  refreshReceipts(c);
}

// Delivery receipts: the visitor's client has every record up to `seq`.
function onDelivered(f) {
  const c = S.convs.get(String(f.conversation_id));
  if (!c || !f.recipient || f.recipient.role !== 'visitor' || typeof f.seq !== 'number') return;
  if (f.seq <= c.peerDelivered) return;
  c.peerDelivered = f.seq;
  refreshReceipts(c);
}

function onError(f) {
  let handled = false;
  for (const c of S.convs.values()) {
    const refused = c.outbox.refused(f, () => flushOutbox(c, false), (entry) => markFailed(c, entry.node, entry.text));
    handled = handled || refused;
  }
  if (handled) {
    showChatError(f.message || t('errorCode', { code: f.code || 'unknown' }));
    return;
  }
  switch (f.ref) {
    case 'transfer':
      return transferFailed(f);
    case 'pick_up':
      return pickUpFailed(f);
    case 'list_missed':
      S.missedLoading = false;
      renderMissed();
      return showMissedError(f.message || t('couldNotLoadMissed'));
    default:
      break;
  }
  // A `resume` entry of `hello` refused: the conversation is no longer ours.
  const gone = f.ref != null ? S.convs.get(String(f.ref)) : null;
  if (gone && (f.code === 'forbidden' || f.code === 'not_found')) {
    gone.handedOff = gone.handedOff || 'noLongerYours';
    renderList();
    if (S.activeKey === gone.key) renderChatHeader();
    return;
  }
  const c = activeConv();
  ui.closeConv.disabled = !c || !isMine(c);
  showChatError(f.message || t('errorCode', { code: f.code || 'unknown' }));
}

// ---------------------------------------------------------- conversations

function sameKey(c, key) {
  return key != null && c.key === key;
}

function activeConv() {
  return S.activeKey ? S.convs.get(S.activeKey) : null;
}

function isMe(p) {
  return !!p && !!S.me && sameId(p.id, S.me.id);
}

// Assigned to this agent now: it may send, close and transfer.
function isMine(c) {
  return !c.archived && c.state === 'assigned' && !c.handedOff && (!c.agent || !S.me || isMe(c.agent));
}

// The server lets this agent read it: theirs, or closed while theirs.
function canRead(c) {
  return !c.archived && !c.handedOff && (c.state === 'assigned' || c.state === 'closed');
}

function learnAgent(p) {
  if (p && p.role === 'agent' && p.id != null && !isMe(p)) S.knownAgents.set(String(p.id), p.name || '');
}

function learnTeam(team) {
  if (team != null && team !== '') S.knownTeams.add(String(team));
}

// The visitor as a frame or the archive tells it, keeping a name learnt
// from a `renamed` or `left_message` event (newer than what they say).
function adoptVisitor(c, visitor) {
  c.visitor = c.nameSeq && c.visitor && c.visitor.name ? { ...visitor, name: c.visitor.name } : visitor;
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
      outbox: new Outbox(), // core/outbox.js
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
      nameSeq: 0, // seq of the `renamed` or `left_message` event the visitor's name is from
      peerRead: 0, // the visitor has read up to this seq
      peerDelivered: 0, // … and received up to this one
      handedOff: null, // why it is no longer this agent's, a string key ("transferred", …)
      rating: null,
      contact: null, // email left with a missed message
      archived: false, // opened from the archive: read over HTTP, not followed
      transcriptLoading: false,
      item: null,
    };
    S.convs.set(key, c);
  } else {
    if (info.state) c.state = info.state;
    if (info.visitor) adoptVisitor(c, info.visitor);
    if (info.agent !== undefined && info.agent !== null) c.agent = info.agent;
    if (info.team !== undefined) c.team = info.team;
  }
  learnTeam(c.team);
  if (typeof info.last_seq === 'number') c.serverLastSeq = Math.max(c.serverLastSeq, info.last_seq);
  // welcome: read marks kept by the server.
  if (typeof info.read_seq === 'number' && info.read_seq > c.lastReadSent) c.lastReadSent = info.read_seq;
  if (typeof info.peer_read_seq === 'number' && info.peer_read_seq > c.peerRead) {
    c.peerRead = info.peer_read_seq;
    refreshReceipts(c);
  }
  if (typeof info.unread === 'number' && S.activeKey !== c.key) c.unread = info.unread;
  return c;
}

function requestHistory(c, beforeSeq) {
  if (c.archived) {
    fetchTranscript(c, beforeSeq);
    return;
  }
  if (!canRead(c)) return;
  const frame = { type: 'history', conversation_id: c.id, limit: HISTORY_LIMIT };
  if (beforeSeq) frame.before_seq = beforeSeq;
  else if (c.historyRequested) return;
  if (send(frame) && !beforeSeq) c.historyRequested = true;
}

function askForGap(c) {
  if (!S.ready || !canRead(c)) return;
  // (An archived transcript comes in whole pages: it has no gaps to ask.)
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
    learnAgent(item.sender);
    const mine = !!item.sender && item.sender.role === 'agent' && isMe(item.sender);
    const pending = mine && item.client_id ? c.outbox.take(item.client_id) : null;
    if (pending) {
      confirmMine(c, pending.node, seq, item.sent_at);
    } else {
      c.tl.insert(renderMessage(c, item, mine), seq);
    }
    if (seq > c.previewSeq) {
      c.preview = item.text || '';
      c.previewSeq = seq;
    }
    if (live) {
      c.lastActivity = Date.now();
      if (item.sender && item.sender.role === 'visitor') {
        setVisitorTyping(c, false);
        if ((!active || document.hidden) && !c.handedOff) {
          c.unread += 1;
          alertAgent(visitorName(c.visitor), item.text || '');
        }
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
  // Learn who and what exists, for the transfer suggestions.
  for (const p of [ev.agent, ev.from, ev.to_agent, ev.by]) learnAgent(p);
  learnTeam(ev.team);
  learnTeam(ev.to_team);
  if (ev.reason && Array.isArray(ev.reason.candidates)) {
    for (const cand of ev.reason.candidates) {
      const id = cand && cand.agent_id != null ? String(cand.agent_id) : null;
      if (id && !(S.me && sameId(id, S.me.id)) && !S.knownAgents.has(id)) S.knownAgents.set(id, '');
    }
  }
  // Facts that hold whatever order the records come in.
  if (ev.event === 'rated' && typeof ev.score === 'number') c.rating = ev.score;
  if (ev.event === 'left_message' && ev.email) c.contact = String(ev.email);
  // The visitor's newest name, live (the header, the list, typing): a
  // rename, or the name given when leaving a message.
  const newName = ev.event === 'renamed' ? ev.visitor && ev.visitor.name : ev.event === 'left_message' ? ev.name : null;
  if (newName && seq > c.nameSeq) {
    c.nameSeq = seq;
    c.visitor = { ...(c.visitor || {}), name: String(newName) };
  }
  if (seq !== Infinity) {
    if (seq < c.statusSeq) {
      renderListItem(c);
      if (S.activeKey === c.key) renderChatHeader();
      return; // an older event replayed by history
    }
    c.statusSeq = seq;
  }
  switch (ev.event) {
    case 'queued':
      c.state = 'queued';
      break;
    case 'assigned':
      c.state = 'assigned';
      if (ev.agent) c.agent = ev.agent;
      if (ev.agent && S.me) c.handedOff = isMe(ev.agent) ? null : c.handedOff || 'reassigned';
      break;
    case 'transferred':
      c.state = 'queued';
      c.agent = null;
      if (isMe(ev.from)) {
        c.handedOff = 'transferred';
        if (S.transferKey === c.key) transferDone(c);
      }
      if (ev.to_team) c.team = ev.to_team;
      break;
    case 'agent_left':
      c.state = 'queued';
      c.agent = null;
      if (isMe(ev.agent)) c.handedOff = 'returnedToQueue';
      break;
    case 'reopened':
    case 'picked_up':
      c.state = 'queued';
      break;
    case 'left_message':
      c.state = 'missed';
      break;
    case 'closed':
      c.state = 'closed';
      setVisitorTyping(c, false);
      break;
    default:
      if (ev.agent) c.agent = ev.agent;
  }
  if (c.handedOff) setVisitorTyping(c, false);
  renderListItem(c);
  if (S.activeKey === c.key) renderChatHeader();
}

// ------------------------------------------------------------- rendering

function setMineState(node, state) {
  node.dataset.state = state;
  const st = node.querySelector('.state');
  if (st) st.textContent = STATE_LABEL[state] || '';
}

// The furthest state a message of mine at `seq` has reached.
function receiptState(c, seq) {
  if (seq <= c.peerRead) return 'read';
  if (seq <= c.peerDelivered) return 'delivered';
  return 'sent';
}

// Moves this agent's stored messages forward to what the receipts say.
function refreshReceipts(c) {
  for (const [seq, node] of c.tl.bySeq) {
    if (!node.classList.contains('mine')) continue;
    const want = receiptState(c, seq);
    const have = node.dataset.state;
    if (advances(have, want)) setMineState(node, want);
  }
}

function renderMessage(c, m, mine) {
  const node = make('div', `msg ${mine ? 'mine' : 'theirs'}`);
  if (m.sender && m.sender.role === 'system') node.classList.add('system');
  const state = mine && typeof m.seq === 'number' ? receiptState(c, m.seq) : 'sent';
  node.dataset.state = state;
  if (m.id != null) node.dataset.id = String(m.id);
  const meta = make('div', 'meta');
  const who = mine ? t('you') : m.sender && m.sender.name ? m.sender.name : m.sender && m.sender.role === 'visitor' ? t('visitor') : t('system');
  meta.appendChild(make('span', 'who', who));
  meta.appendChild(timeElement(m.sent_at));
  if (mine) meta.appendChild(make('span', 'state', STATE_LABEL[state]));
  node.appendChild(meta);
  node.appendChild(make('div', 'text', m.text || ''));
  return node;
}

function renderPending(c, text) {
  const node = make('div', 'msg mine');
  node.dataset.state = 'sending';
  const meta = make('div', 'meta');
  meta.appendChild(make('span', 'who', t('you')));
  meta.appendChild(timeElement(null));
  meta.appendChild(make('span', 'state', STATE_LABEL.sending));
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
  setMineState(node, receiptState(c, seq));
  if (sentAt) node.querySelector('.meta').replaceChild(timeElement(sentAt), node.querySelector('.time'));
  c.tl.insert(node, seq);
}

function markFailed(c, node, text) {
  node.dataset.state = 'failed';
  const st = node.querySelector('.state');
  if (st) st.textContent = t('notSent');
  const retry = make('button', 'retry', t('retry'));
  retry.type = 'button';
  retry.addEventListener('click', () => {
    retry.remove();
    setMineState(node, 'sending');
    c.outbox.add(text, node);
    flushOutbox(c, false);
  });
  node.querySelector('.meta').appendChild(retry);
}

function agentName(p, fallback) {
  if (p && p.name) return isMe(p) ? t('nameYou', { name: p.name }) : p.name;
  return fallback;
}

function renderEvent(ev) {
  const node = make('div', 'event');
  node.dataset.event = String(ev.event || '');
  const by = ev.by && ev.by.name ? ev.by.name : null;
  let text;
  let detail = null; // a second line: a transfer note, a rating comment
  switch (ev.event) {
    case 'opened':
      text = t('evOpened');
      break;
    case 'queued':
      text = typeof ev.position === 'number' ? t('evQueuedAt', { n: ev.position }) : t('evQueued');
      if (typeof ev.estimated_wait_secs === 'number') text += t('aboutMin', { n: Math.max(1, Math.ceil(ev.estimated_wait_secs / 60)) });
      if (ev.agents_online === 0) text += t('nobodyOnline');
      break;
    case 'assigned':
      text = ev.agent && ev.agent.name ? t('assignedTo', { name: agentName(ev.agent) }) : t('assigned');
      if (ev.handed_off) detail = t('handedOverBy', { name: agentName(ev.handed_off.from, t('theBotLower')), why: handoffWhy(ev.handed_off.reason) });
      break;
    case 'handed_off':
      text = t('botHandedToTeam', { name: agentName(ev.from, t('theBot')), why: handoffWhy(ev.reason) });
      break;
    case 'agent_left': {
      const why = ev.reason === 'offline' ? t('wentOffline') : ev.reason === 'no_reply' ? t('noReplyInTime') : String(ev.reason || t('leftGeneric'));
      text = t('agentLeft', { name: agentName(ev.agent, t('theAgent')), why });
      break;
    }
    case 'transferred': {
      let to = t('anotherAgent');
      if (ev.to_agent) to = agentName(ev.to_agent, String(ev.to_agent.id || t('anAgent')));
      if (ev.to_team) to = ev.to_agent ? t('toAgentOfTeam', { to, team: ev.to_team }) : t('toTeam', { team: ev.to_team });
      text = t('transferredBy', { from: agentName(ev.from, by || t('anAgent')), to });
      if (ev.note) detail = t('noteLine', { note: ev.note });
      break;
    }
    case 'closed':
      text = by ? t('closedBy', { name: by }) : t('conversationClosed');
      break;
    case 'reopened':
      text = t('reopenedByVisitor');
      break;
    case 'rated': {
      const score = Number(ev.score);
      text = score >= 1 && score <= 5 ? t('ratedStars', { stars: STARS[score], score }) : t('rated');
      if (ev.comment) detail = `“${ev.comment}”`;
      break;
    }
    case 'picked_up':
      text = t('pickedUpBy', { name: agentName(ev.agent, t('anAgent')) });
      break;
    case 'note':
      text = by ? t('privateNoteBy', { name: by }) : t('privateNoteEvent');
      detail = ev.text || null;
      node.classList.add('note');
      break;
    case 'renamed':
      text = t('visitorRenamed', { previous: ev.previous || t('visitor'), name: visitorName(ev.visitor) });
      break;
    case 'left_message': {
      text = t('leftMessage');
      const contact = [ev.name, ev.email].filter(Boolean).join(' · ');
      if (contact) text += t('contactLine', { contact });
      break;
    }
    default:
      text = by ? `${String(ev.event || 'update')} (${by})` : String(ev.event || 'update');
  }
  node.appendChild(document.createTextNode(text));
  node.appendChild(document.createTextNode(' · '));
  node.appendChild(timeElement(ev.at));
  if (detail) node.appendChild(make('div', 'event-note', detail));
  return node;
}

// Why a bot handed a conversation to the humans (the `reason` of `handed_off`).
function handoffWhy(reason) {
  switch (reason) {
    case 'visitor_asked':
      return t('whyVisitorAsked');
    case 'bot_asked':
      return t('whyBotAsked');
    case 'no_answer':
      return t('whyNoAnswer');
    case 'bot_absent':
      return t('whyBotAbsent');
    default:
      return String(reason || t('whyHandedOff'));
  }
}

function stateLabel(c) {
  if (c.state === 'closed') return t('stateClosed');
  if (c.handedOff) return t(c.handedOff);
  if (c.state === 'queued') return t('stateQueued');
  if (c.state === 'missed') return t('stateMissed');
  return t('stateOpen');
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
  const unread = c.unread > 99 ? '99+' : String(c.unread);
  badge.textContent = c.unread > 0 ? unread : c.fresh ? t('badgeNew') : '';
  badge.hidden = !(c.unread > 0 || c.fresh);
  badge.setAttribute('aria-label', c.unread > 0 ? t('unreadN', { n: unread }) : t('newConversationLabel'));
  button.querySelector('.conv-preview').textContent = c.typing || c.preview || (c.team ? t('teamColon', { team: c.team }) : ' ');
  button.querySelector('.conv-preview').classList.toggle('is-typing', !!c.typing);
  button.querySelector('.conv-state').textContent = stateLabel(c);
  button.dataset.state = c.handedOff ? 'transferred' : c.state;
  button.classList.toggle('active', S.activeKey === c.key);
  button.classList.toggle('closed', c.state === 'closed');
  button.classList.toggle('transferred', !!c.handedOff && c.state !== 'closed');
  if (S.activeKey === c.key) button.setAttribute('aria-current', 'true');
  else button.removeAttribute('aria-current');
}

// Own open conversations first (newest activity on top), then the ones
// that left this agent, closed ones last.
// The Mine filter shows the conversations this agent has (and those that
// just left them); Closed the closed ones, this session's and the
// archive's.
function listed(c) {
  if (S.filter === 'closed') return c.state === 'closed';
  return c.state !== 'closed' && !c.archived;
}

function renderList() {
  const rank = (c) => (c.state === 'closed' ? 2 : c.handedOff ? 1 : 0);
  const convs = [...S.convs.values()].sort((a, b) => rank(a) - rank(b) || b.lastActivity - a.lastActivity);
  let shown = 0;
  for (const c of convs) {
    renderListItem(c);
    c.item.hidden = !listed(c);
    if (!c.item.hidden) shown += 1;
    ui.list.appendChild(c.item); // re-appending moves it into order
  }
  const closed = S.filter === 'closed';
  ui.noConversations.textContent = closed ? t('noClosed') : t('noConversations');
  ui.noConversations.hidden = shown > 0 || (closed && S.closedLoading);
  const open = convs.filter((c) => c.state !== 'closed' && !c.archived && !c.handedOff).length;
  ui.mineCount.textContent = String(open);
  ui.mineCount.hidden = open === 0;
  updateTitle();
}

// ---------------------------------------------------------------- filters

function setFilter(filter) {
  S.filter = filter;
  for (const button of ui.filters) button.setAttribute('aria-pressed', String(button.dataset.filter === filter));
  const list = filter === 'mine' || filter === 'closed';
  ui.panelConversations.hidden = !list;
  ui.panelQueue.hidden = filter !== 'queue';
  ui.panelMissed.hidden = filter !== 'missed';
  ui.conversationsHeading.textContent = filter === 'closed' ? t('closedConversations') : t('myConversations');
  ui.closedRefresh.hidden = filter !== 'closed';
  if (filter !== 'closed') ui.closedStatus.hidden = true;
  renderList();
}

for (const button of ui.filters) {
  button.addEventListener('click', () => {
    setFilter(button.dataset.filter);
    if (S.filter === 'closed') loadClosed();
    if (S.filter === 'missed' && S.missed === null) requestMissed();
  });
}

ui.closedRefresh.addEventListener('click', () => loadClosed());

// This agent's closed conversations from the archive
// (GET /api/v1/archive?agent=me&status=closed): after logging in again too.
async function loadClosed() {
  if (S.closedLoading || !S.auth) return;
  S.closedLoading = true;
  ui.closedRefresh.disabled = true;
  ui.closedStatus.hidden = false;
  ui.closedStatus.textContent = t('loading');
  renderList();
  const body = await desk('/api/v1/archive?agent=me&status=closed&limit=50');
  S.closedLoading = false;
  ui.closedRefresh.disabled = false;
  if (!S.auth) return;
  const found = body && Array.isArray(body.conversations) ? body.conversations : null;
  if (found == null) {
    ui.closedStatus.textContent = t('archiveUnavailable');
  } else {
    ui.closedStatus.hidden = true;
    for (const p of found) if (p && p.conversation_id != null) knowArchived(p);
  }
  renderList();
}

// A conversation of the archive as one of the list's: read-only, its
// transcript fetched over HTTP when it is opened.
function knowArchived(p) {
  const known = S.convs.has(String(p.conversation_id));
  const c = upsertConversation({
    conversation_id: p.conversation_id,
    state: known ? undefined : p.status || 'closed',
    visitor: p.visitor || undefined,
    agent: p.agent || undefined,
    team: p.team === undefined ? undefined : p.team,
  });
  if (!known) {
    c.archived = true;
    if (typeof p.last_activity_at === 'number') c.lastActivity = p.last_activity_at;
    if (typeof p.rating === 'number') c.rating = p.rating;
  }
  return c;
}

// Opens a past conversation (a search result, the visitor's history).
function openPast(p) {
  const c = knowArchived(p);
  renderList();
  selectConversation(c.key);
}

// A page of an archived conversation's transcript
// (GET /api/v1/archive/<id>), handled as a `history` frame.
async function fetchTranscript(c, beforeSeq) {
  if (c.transcriptLoading || (!beforeSeq && c.historyRequested)) return;
  c.transcriptLoading = true;
  if (!beforeSeq) c.historyRequested = true;
  const page = beforeSeq ? `&before_seq=${encodeURIComponent(beforeSeq)}` : '';
  const body = await desk(`/api/v1/archive/${encodeURIComponent(c.key)}?limit=${HISTORY_LIMIT}${page}`);
  c.transcriptLoading = false;
  if (!body || !Array.isArray(body.items)) {
    if (!beforeSeq) c.historyRequested = false;
    if (S.activeKey === c.key) showChatError(t('transcriptUnavailable'));
    return;
  }
  if (body.visitor) adoptVisitor(c, body.visitor);
  if (body.agent) c.agent = body.agent;
  onHistory({ conversation_id: c.id, items: body.items, has_more: !!body.has_more });
  if (S.activeKey === c.key) renderChatHeader();
}

// ---------------------------------------------------------------- alerts

const BASE_TITLE = document.title;

// The tab's title carries what waits for the agent: unread messages and
// new conversations, `(3) Switchboard — …`.
function updateTitle() {
  const waiting = [...S.convs.values()].reduce((n, c) => n + (c.unread || 0) + (c.fresh && !c.unread ? 1 : 0), 0);
  document.title = waiting ? `(${waiting > 99 ? '99+' : waiting}) ${BASE_TITLE}` : BASE_TITLE;
}

// Asked on the sign-in click (a user gesture, as browsers require).
function prepareAlerts() {
  try {
    if (!S.audio && globalThis.AudioContext) S.audio = new AudioContext();
    if (globalThis.Notification && Notification.permission === 'default') Notification.requestPermission().catch(() => {});
  } catch {
    // Alerts are a nicety: the console works without them.
  }
}

// A short tone and, when the tab is in the background, a desktop
// notification: a new conversation or a visitor's message.
function alertAgent(title, body) {
  try {
    if (S.audio && S.audio.state === 'running') {
      const tone = S.audio.createOscillator();
      const gain = S.audio.createGain();
      tone.frequency.value = 880;
      gain.gain.value = 0.05;
      tone.connect(gain).connect(S.audio.destination);
      tone.start();
      tone.stop(S.audio.currentTime + 0.15);
    }
    if (document.hidden && globalThis.Notification && Notification.permission === 'granted') {
      new Notification(title, { body, tag: 'switchboard' });
    }
  } catch {
    // As above.
  }
}

function renderChatHeader() {
  const c = activeConv();
  if (!c) return;
  ui.chatTitle.textContent = visitorName(c.visitor);
  const parts = [stateLabel(c)];
  if (c.team) parts.push(t('teamColon', { team: c.team }));
  if (c.agent && c.agent.name && !isMe(c.agent)) parts.push(t('agentColon', { name: c.agent.name }));
  if (c.contact) parts.push(t('emailColon', { email: c.contact }));
  if (c.rating) parts.push(t('ratedN', { n: c.rating }));
  ui.chatSubtitle.textContent = parts.join(' · ');
  const mine = isMine(c);
  const closed = c.state === 'closed';
  ui.closeConv.disabled = !mine;
  ui.transferToggle.disabled = !mine || S.transferKey === c.key;
  if (!mine && !ui.transferForm.hidden && S.transferKey !== c.key) hideTransfer();
  ui.input.disabled = !mine;
  let placeholder = t('replyPlaceholder');
  if (closed) placeholder = t('isClosed');
  else if (c.handedOff === 'transferred') placeholder = t('youTransferred');
  else if (c.handedOff) placeholder = t('noLongerAssigned');
  else if (!mine) placeholder = t('waitingAssign');
  ui.input.placeholder = placeholder;
  ui.chatView.classList.toggle('is-closed', closed);
  ui.chatView.classList.toggle('is-transferred', !!c.handedOff && !closed);
  updateSendButton();
}

function selectConversation(key) {
  const c = S.convs.get(key);
  if (!c) return;
  const prev = activeConv();
  if (prev && prev !== c) {
    prev.draft = ui.input.value;
    stopTyping();
    if (S.transferKey !== prev.key) hideTransfer();
    hideDetails();
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
  updateTitle();
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
  // Only while the server still lets this agent read the conversation.
  if (canRead(c) && seq > c.lastReadSent && send({ type: 'read', conversation_id: c.id, seq })) c.lastReadSent = seq;
  if (c.unread) {
    c.unread = 0;
    renderListItem(c);
    updateTitle();
  }
}

document.addEventListener('visibilitychange', () => {
  const c = activeConv();
  if (c && !document.hidden) markRead(c);
});

// A banner under the top bar. Broadcasts (`sticky`) stay until dismissed;
// the console's own notices go away after a while.
function showNotice(text, from, sticky = false) {
  ui.noticeText.replaceChildren();
  if (from) ui.noticeText.appendChild(make('strong', 'notice-from', `${from}: `));
  ui.noticeText.appendChild(document.createTextNode(text || ''));
  ui.notice.hidden = !text;
  ui.notice.dataset.kind = sticky ? 'broadcast' : 'local';
  clearTimeout(S.noticeTimer);
  if (!sticky) {
    S.noticeTimer = setTimeout(() => {
      ui.notice.hidden = true;
    }, 10000);
  }
}

ui.noticeDismiss.addEventListener('click', () => {
  clearTimeout(S.noticeTimer);
  ui.notice.hidden = true;
});

function showChatError(text) {
  ui.chatError.textContent = text;
  ui.chatError.hidden = false;
  clearTimeout(S.errorTimer);
  S.errorTimer = setTimeout(() => {
    ui.chatError.hidden = true;
  }, 6000);
}

// ------------------------------------------------------------------ queue

function onQueue(f) {
  S.queue = Array.isArray(f.entries) ? f.entries.filter((e) => e && e.conversation_id != null) : [];
  for (const e of S.queue) learnTeam(e.team);
  renderQueue();
}

function renderQueue() {
  // Most urgent first: priority, then the longest wait.
  const entries = [...S.queue].sort(
    (a, b) => (Number(b.priority) || 0) - (Number(a.priority) || 0) || (Number(a.queued_at) || 0) - (Number(b.queued_at) || 0),
  );
  const items = entries.map((e) => {
    const li = make('li', 'queue-item');
    li.dataset.conversationId = String(e.conversation_id);
    const top = make('span', 'side-top');
    top.append(make('span', 'side-name', visitorName(e.visitor)), make('span', 'queue-pos', `#${Number(e.position) || '?'}`));
    const bottom = make('span', 'side-bottom');
    const info = [];
    info.push(e.team ? t('teamN', { team: e.team }) : t('anyTeam'));
    if (Number(e.priority) > 0) info.push(t('priorityN', { n: Number(e.priority) }));
    bottom.appendChild(make('span', 'side-info', info.join(' · ')));
    const wait = make('span', 'queue-wait');
    wait.dataset.since = String(Number(e.queued_at) || Date.now());
    wait.title = t('waitingTime');
    bottom.appendChild(wait);
    const take = make('button', 'queue-take ghost', t('take'));
    take.type = 'button';
    take.addEventListener('click', () => {
      if (send({ type: 'take', conversation_id: e.conversation_id })) {
        take.disabled = true;
        S.opening.add(String(e.conversation_id));
      }
      else showChatError(t('notConnected'));
    });
    li.append(top, bottom, take);
    return li;
  });
  ui.queue.replaceChildren(...items);
  ui.queueEmpty.hidden = items.length > 0;
  ui.queueCount.textContent = String(items.length);
  ui.queueCount.hidden = items.length === 0;
  tickQueue();
  if (items.length && !S.queueTimer) S.queueTimer = setInterval(tickQueue, 1000);
  if (!items.length && S.queueTimer) {
    clearInterval(S.queueTimer);
    S.queueTimer = null;
  }
}

function tickQueue() {
  const now = Date.now();
  for (const n of ui.queue.querySelectorAll('.queue-wait')) n.textContent = formatWait(now - Number(n.dataset.since));
}

// ----------------------------------------------------------------- missed

function requestMissed() {
  if (S.missedLoading) return;
  if (send({ type: 'list_missed' })) {
    S.missedLoading = true;
    renderMissed();
  } else {
    showMissedError(t('notConnected'));
  }
}

function onMissed(f) {
  S.missedLoading = false;
  S.missed = Array.isArray(f.entries) ? f.entries.filter((e) => e && e.conversation_id != null) : [];
  // Those we are picking up are on their way to us.
  for (const id of [...S.pickingUp]) if (!S.missed.some((e) => String(e.conversation_id) === id)) S.pickingUp.delete(id);
  ui.missedError.hidden = true;
  renderMissed();
}

function renderMissed() {
  ui.missedRefresh.disabled = S.missedLoading;
  ui.missedRefresh.textContent = S.missedLoading ? t('loading') : S.missed ? t('refresh') : t('showMissed');
  const entries = S.missed || [];
  const items = entries.map((e) => {
    const id = String(e.conversation_id);
    const li = make('li', 'missed-item');
    li.dataset.conversationId = id;
    const top = make('span', 'side-top');
    top.append(make('span', 'side-name', visitorName(e.visitor)), agoElement(e.left_at));
    li.appendChild(top);
    if (e.email) li.appendChild(make('span', 'missed-email', e.email));
    li.appendChild(make('span', 'missed-preview', e.preview || ''));
    const picking = S.pickingUp.has(id);
    const button = make('button', 'pick-up primary small', picking ? t('pickingUp') : t('pickUp'));
    button.type = 'button';
    button.disabled = picking;
    button.dataset.conversationId = id;
    button.setAttribute('aria-label', t('pickUpFrom', { name: visitorName(e.visitor) }));
    button.addEventListener('click', () => pickUp(e));
    li.appendChild(button);
    return li;
  });
  ui.missed.replaceChildren(...items);
  ui.missedEmpty.hidden = S.missed === null || items.length > 0;
  ui.missedCount.textContent = String(items.length);
  ui.missedCount.hidden = items.length === 0;
}

function pickUp(entry) {
  const id = String(entry.conversation_id);
  if (S.pickingUp.has(id)) return;
  if (!send({ type: 'pick_up', conversation_id: entry.conversation_id })) {
    showMissedError(t('notConnected'));
    return;
  }
  // The conversation arrives as an `assigned` frame (see onAssigned).
  S.pickingUp.add(id);
  S.opening.add(id);
  ui.missedError.hidden = true;
  renderMissed();
}

function pickUpFailed(f) {
  S.pickingUp.clear();
  S.opening.clear();
  showMissedError(f.message || t('couldNotPickUp'));
  requestMissed(); // someone else may have taken it
}

function showMissedError(text) {
  ui.missedError.textContent = text;
  ui.missedError.hidden = false;
}

ui.missedRefresh.addEventListener('click', () => {
  ui.missedError.hidden = true;
  requestMissed();
});

// --------------------------------------------------------------- transfer

// Everyone a conversation can go to, by name, with who is there and their
// load (GET /api/v1/directory); what the conversations taught us when the
// directory cannot be read.
async function fillTransferSuggestions() {
  const team = ui.transferKind.value === 'team';
  let directory = null;
  try {
    const res = await fetch('/api/v1/directory', { headers: { authorization: `Bearer ${S.auth.token}` } });
    if (res.ok) directory = await res.json();
  } catch {
    directory = null;
  }
  const options = [];
  if (team) {
    const teams = directory && Array.isArray(directory.teams)
      ? directory.teams.filter((t) => t.team)
      : [...S.knownTeams].sort().map((t) => ({ team: t }));
    for (const t of teams) {
      const label = typeof t.online === 'number' ? tr('teamOnline', { team: t.team, n: t.online }) : String(t.team);
      options.push(Object.assign(make('option', null, label), { value: String(t.team) }));
    }
  } else {
    const agents = directory && Array.isArray(directory.agents)
      ? directory.agents
      : [...S.knownAgents].map(([id, name]) => ({ id, name }));
    for (const a of agents) {
      if (S.me && sameId(a.id, S.me.id)) continue;
      const load = typeof a.load === 'number' ? `, ${a.load}/${a.capacity || '?'}` : '';
      const status = a.status ? ` — ${STATUS_WORDS[a.status] ? tr(STATUS_WORDS[a.status]) : a.status}${load}` : '';
      options.push(Object.assign(make('option', null, `${a.name || a.id}${status}`), { value: String(a.id) }));
    }
  }
  if (!options.length) {
    const none = make('option', null, team ? t('noTeam') : t('noOtherAgent'));
    none.value = '';
    options.push(none);
  }
  ui.transferTarget.replaceChildren(...options);
}

function showTransfer() {
  const c = activeConv();
  if (!c || !isMine(c)) return;
  ui.transferForm.hidden = false;
  ui.transferToggle.setAttribute('aria-expanded', 'true');
  ui.transferError.hidden = true;
  fillTransferSuggestions();
  ui.transferTarget.focus();
}

function hideTransfer() {
  ui.transferForm.hidden = true;
  ui.transferToggle.setAttribute('aria-expanded', 'false');
  ui.transferError.hidden = true;
}

function transferProblem(text) {
  ui.transferError.textContent = text;
  ui.transferError.hidden = false;
}

function submitTransfer() {
  const c = activeConv();
  if (!c || !isMine(c) || S.transferKey) return;
  const target = ui.transferTarget.value.trim();
  const note = ui.transferNote.value.trim();
  const kind = ui.transferKind.value === 'team' ? 'team' : 'agent';
  if (!ID_RE.test(target)) {
    transferProblem(kind === 'team' ? t('pickTeam') : t('pickAgent'));
    return;
  }
  if (kind === 'agent' && S.me && sameId(target, S.me.id)) {
    transferProblem(t('alreadyYours'));
    return;
  }
  if (note.length > MAX_NOTE) {
    transferProblem(t('noteTooLong', { n: MAX_NOTE }));
    return;
  }
  const frame = { type: 'transfer', conversation_id: c.id };
  frame[kind === 'team' ? 'to_team' : 'to_agent'] = target;
  if (note) frame.note = note;
  if (!send(frame)) {
    transferProblem(t('notConnected'));
    return;
  }
  // Done when our `transferred` event comes back (see applyEvent).
  S.transferKey = c.key;
  ui.transferSubmit.disabled = true;
  ui.transferSubmit.textContent = t('transferring');
  renderChatHeader();
}

function transferDone(c) {
  S.transferKey = null;
  ui.transferSubmit.disabled = false;
  ui.transferSubmit.textContent = t('transfer');
  ui.transferNote.value = '';
  if (!activeConv() || activeConv() === c) hideTransfer();
  c.draft = '';
}

function transferFailed(f) {
  const key = S.transferKey;
  S.transferKey = null;
  ui.transferSubmit.disabled = false;
  ui.transferSubmit.textContent = t('transfer');
  const c = activeConv();
  if (c && c.key === key && !ui.transferForm.hidden) transferProblem(f.message || t('transferFailed'));
  else showChatError(f.message || t('transferFailed'));
  if (c) renderChatHeader();
}

ui.transferToggle.addEventListener('click', () => {
  if (ui.transferForm.hidden) showTransfer();
  else hideTransfer();
});
ui.transferCancel.addEventListener('click', () => {
  hideTransfer();
  ui.transferToggle.focus();
});
ui.transferKind.addEventListener('change', fillTransferSuggestions);
ui.transferForm.addEventListener('submit', (e) => {
  e.preventDefault();
  submitTransfer();
});

// ------------------------------------------------------------- composing

// Sends what waits in a conversation's outbox (new, or refused as busy):
// with `all`, also what was sent but not acknowledged yet (after a
// reconnect).
function flushOutbox(c, all = true) {
  if (!S.ready || c.state === 'closed') return;
  c.outbox.flush(all, (clientId, entry) => sendFrame(c.id, clientId, entry), send);
}

// The canned response `/shortcut` names, if the text is just that.
function cannedFor(text) {
  const m = /^\/([a-z0-9_-]{1,32})$/.exec(text.trim());
  return m ? S.canned.get(m[1]) || null : null;
}

// Replaces a `/shortcut` in the composer with its text; true if it did.
function expandCanned() {
  const canned = cannedFor(ui.input.value);
  if (canned == null) return false;
  ui.input.value = canned;
  ui.hint.hidden = true;
  updateSendButton();
  return true;
}

async function loadCanned() {
  try {
    const res = await fetch('/api/v1/canned', { headers: { authorization: `Bearer ${S.auth.token}` } });
    if (!res.ok) return;
    const body = await res.json();
    S.canned = new Map((Array.isArray(body.canned) ? body.canned : []).map((c) => [String(c.shortcut), String(c.text)]));
  } catch {
    // Without canned responses the composer still works.
  }
}

function submit() {
  const c = activeConv();
  // `/shortcut` then Enter inserts the canned response first.
  if (expandCanned()) return;
  const text = ui.input.value.trim();
  if (!c || !text || !isMine(c)) return;
  if (text.length > MAX_LEN) {
    showChatError(t('messageTooLong', { n: MAX_LEN }));
    return;
  }
  if (ui.private.checked) {
    // A private note: shown to agents only, when its event comes back.
    if (text.length > MAX_NOTE) {
      showChatError(t('privateTooLong', { n: MAX_NOTE }));
      return;
    }
    if (!send({ type: 'note', conversation_id: c.id, client_id: uuid(), text })) {
      showChatError(t('notConnected'));
      return;
    }
    ui.input.value = '';
    ui.private.checked = false;
    updateSendButton();
    return;
  }
  ui.input.value = '';
  c.draft = '';
  updateSendButton();
  stopTyping();
  const node = renderPending(c, text);
  c.outbox.add(text, node);
  c.preview = text;
  c.lastActivity = Date.now();
  scrollToBottom();
  flushOutbox(c, false);
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
  if (!c || !isMine(c) || !S.ready) return;
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
  if (S.typingOut.on && c && isMine(c)) send({ type: 'typing', conversation_id: c.id, state: false });
  S.typingOut.on = false;
}

ui.composer.addEventListener('submit', (e) => {
  e.preventDefault();
  submit();
});

ui.input.addEventListener('keydown', (e) => {
  if (e.key === 'Tab' && !e.shiftKey && expandCanned()) {
    e.preventDefault();
    return;
  }
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    submit();
  }
});

ui.input.addEventListener('input', () => {
  updateSendButton();
  const canned = cannedFor(ui.input.value);
  ui.hint.hidden = canned == null;
  ui.hint.textContent = canned == null ? '' : t('tabHint', { text: canned.length > 80 ? `${canned.slice(0, 80)}…` : canned });
  if (ui.input.value) noteTyping();
  else stopTyping();
});

ui.closeConv.addEventListener('click', () => {
  const c = activeConv();
  if (!c || !isMine(c)) return;
  if (send({ type: 'close', conversation_id: c.id })) ui.closeConv.disabled = true;
  else showChatError(t('notConnected'));
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

renderQueue();
renderMissed();
languagePicker(ui.language, LANG);
languagePicker(ui.loginLanguage, LANG);
setFilter('mine');
const saved = loadAuth();
if (saved) startApp(saved);
else showLogin();

// Keyboard: Alt+↑ and Alt+↓ move between conversations (in the list's
// order), Escape closes the transfer form.
document.addEventListener('keydown', (e) => {
  if (e.altKey && (e.key === 'ArrowUp' || e.key === 'ArrowDown')) {
    const keys = [...ui.list.querySelectorAll('.conv-row:not([hidden]) .conv-item')].map((n) => n.dataset.conversationId);
    if (!keys.length) return;
    e.preventDefault();
    const at = keys.indexOf(S.activeKey);
    const next = at < 0 ? 0 : Math.min(keys.length - 1, Math.max(0, at + (e.key === 'ArrowDown' ? 1 : -1)));
    selectConversation(keys[next]);
  } else if (e.key === 'Escape' && !ui.transferForm.hidden) {
    hideTransfer();
  }
});

// -------------------------------------------------- visitor and history

// A call of the desk's API with the agent's token: the JSON, or null.
async function desk(path) {
  try {
    const res = await fetch(path, { headers: { authorization: `Bearer ${S.auth.token}` } });
    return res.ok ? await res.json() : null;
  } catch {
    return null;
  }
}

function pastItem(p) {
  const li = make('li', 'past-item');
  li.dataset.conversationId = String(p.conversation_id);
  const open = make('button', 'past-open');
  open.type = 'button';
  const when = p.last_activity_at ? new Date(p.last_activity_at).toLocaleString() : '';
  const who = p.visitor && p.visitor.name ? p.visitor.name : t('visitor');
  open.append(make('span', 'side-name', who), make('span', 'side-info', [PAST_STATE[p.status] ? t(PAST_STATE[p.status]) : p.status, p.agent && p.agent.name, when].filter(Boolean).join(' · ')));
  if (typeof p.rating === 'number') open.appendChild(make('span', 'side-info', t('ratedLower', { n: p.rating })));
  open.addEventListener('click', () => openPast(p));
  li.appendChild(open);
  return li;
}

// The visitor's details (GET /api/v1/visitors/<id>): what they told, the
// page and browser, and their previous conversations.
async function showDetails() {
  const c = activeConv();
  if (!c || !c.visitor || c.visitor.id == null) return;
  ui.details.hidden = false;
  ui.detailsToggle.setAttribute('aria-expanded', 'true');
  ui.detailsProfile.replaceChildren(make('dd', null, t('loading')));
  ui.detailsHistory.replaceChildren();
  const body = await desk(`/api/v1/visitors/${encodeURIComponent(c.visitor.id)}`);
  // Another conversation opened meanwhile: its own request fills the
  // panel, this late answer must not (it is another visitor's).
  if (activeConv() !== c) return;
  if (!body) {
    ui.detailsProfile.replaceChildren(make('dd', null, t('detailsUnavailable')));
    return;
  }
  const p = body.profile || {};
  const since = c.tl.minSeq !== Infinity && p.created_at ? formatWait(Date.now() - p.created_at) : null;
  const rows = [
    [t('name'), p.name || visitorName(c.visitor)],
    [t('email'), p.email],
    [t('page'), p.page_url],
    [t('browser'), p.user_agent],
    [t('visitorFor'), since],
  ].filter(([, v]) => v);
  ui.detailsProfile.replaceChildren(...rows.flatMap(([k, v]) => [make('dt', null, k), make('dd', null, v)]));
  const past = (Array.isArray(body.conversations) ? body.conversations : []).filter((x) => String(x.conversation_id) !== c.key);
  ui.detailsHistory.replaceChildren(...(past.length ? past.map(pastItem) : [make('li', 'empty-hint', t('noneBefore'))]));
}

function hideDetails() {
  ui.details.hidden = true;
  ui.detailsToggle.setAttribute('aria-expanded', 'false');
}

ui.detailsToggle.addEventListener('click', () => (ui.details.hidden ? showDetails() : hideDetails()));

// Past conversations by words of their messages (GET /api/v1/archive).
ui.searchForm.addEventListener('submit', async (e) => {
  e.preventDefault();
  const q = ui.searchInput.value.trim();
  if (!q) return;
  ui.searchStatus.hidden = false;
  ui.searchStatus.textContent = t('searching');
  const body = await desk(`/api/v1/archive?q=${encodeURIComponent(q)}`);
  const found = body && Array.isArray(body.conversations) ? body.conversations : null;
  ui.searchStatus.textContent = found == null ? t('archiveUnavailable') : found.length ? t('foundN', { n: found.length }) : t('nothingFound');
  ui.searchResults.replaceChildren(...(found || []).map(pastItem));
});

// The other tabs of this agent: a logout there is one here; a token they
// refreshed is used here too.
window.addEventListener('storage', (e) => {
  if (e.key !== AUTH_KEY || !S.auth) return;
  const shared = loadAuth();
  if (!shared) logout(t('signedOutElsewhere'));
  else if (shared.token !== S.auth.token) S.auth = shared;
});
