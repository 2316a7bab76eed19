// Switchboard visitor chat widget.
//
// No build step, no dependencies. One tag on any site, as a classic script
// or a module:
//   <script src="https://chat.example.com/widget.js" async
//           data-team="sales" data-color="#0a7d55" data-position="left"
//           data-greeting="Questions about your order? Ask us."></script>
//
// - data-server: the chat server's origin (default: where widget.js was
//   loaded from). The site must be in its `edge.allowed_origins`.
// - data-team: the team the site's chats go to (also `widget.js?team=`).
// - data-color: the brand colour (any CSS colour).
// - data-greeting: the line shown before the first message.
// - data-position: `right` (default) or `left`.
//
// The widget lives in a shadow root (its own element, <switchboard-chat>)
// with its own stylesheet, so the site's CSS cannot break it and its CSS
// cannot leak. It talks to the server: POST /api/v1/visitors for a token,
// then a WebSocket on /ws carrying one JSON object per text frame.
//
// The client core it shares with the console (core/timeline.js,
// core/dom.js, core/connection.js, core/outbox.js, core/resume.js,
// i18n.js, transport.js) is loaded from
// the same server with import(), which works from a classic script and a
// module alike (the files are served with CORS).
//
// SECURITY: every piece of text that comes from users or the server is put
// into the page with textContent / createTextNode only. The only innerHTML
// below is the static skeleton template, which contains no data.
//
// Everything is inside one function: loaded as a classic script, the
// widget's names (SETTINGS, init, uuid, …) would otherwise be the host
// page's globals, clash with its own and break it or the widget.

(() => {
// Where the visitor's token is kept: `switchboard.visitor@<server>`, one
// per chat server (a site may embed two deployments, whose tokens are not
// each other's). A token kept under the bare key, by earlier versions, is
// taken over by the first server to ask.
const STORE_KEY = 'switchboard.visitor';
const MAX_LEN = 4000;
const MAX_NAME = 80; // leave_message name
const MAX_EMAIL = 254; // leave_message email
const MAX_COMMENT = 1000; // rating comment
const HISTORY_LIMIT = 50;
const TYPING_REFRESH_MS = 3000; // resend typing:true at most this often
const TYPING_IDLE_MS = 2500; // send typing:false after this much quiet
const TYPING_SHOW_MS = 8000; // hide the agent's indicator if not refreshed

// ---------------------------------------------------------------- helpers

const TEAM_RE = /^[A-Za-z0-9_-]{1,64}$/;

// The <script> that loaded the widget: the running classic script, or the
// first script whose address ends in /widget.js (a module has no
// currentScript).
function widgetScript() {
  if (document.currentScript && document.currentScript.src) return document.currentScript;
  return [...document.querySelectorAll('script[src]')].find((node) => {
    try {
      return new URL(node.src, location.href).pathname.endsWith('/widget.js');
    } catch {
      return false;
    }
  }) || null;
}

// The settings of the widget's tag (see the top of the file); anything
// invalid is left out.
function widgetSettings() {
  const script = widgetScript();
  const data = (script && script.dataset) || {};
  let src = null;
  try {
    src = script ? new URL(script.src, location.href) : null;
  } catch {
    src = null;
  }
  let server = src ? src.origin : location.origin;
  if (data.server) {
    try {
      const url = new URL(data.server, location.href);
      if (url.protocol === 'https:' || url.protocol === 'http:') server = url.origin;
    } catch {
      // An invalid data-server: the script's own origin.
    }
  }
  const team = data.team || (src && src.searchParams.get('team')) || null;
  const color = data.color && globalThis.CSS && CSS.supports('color', data.color) ? data.color : null;
  return {
    server,
    team: team && TEAM_RE.test(team) ? team : null,
    color,
    greeting: data.greeting ? String(data.greeting).slice(0, 300) : null,
    position: data.position === 'left' ? 'left' : 'right',
    lang: data.lang || null,
  };
}

const SETTINGS = widgetSettings();
const TEAM = SETTINGS.team;
const SERVER = SETTINGS.server;

// ----------------------------------------------------------- languages

// Every string the widget shows, one table per language. `{name}` marks a
// value put in by `t`. Add a language by adding a table with every key.
const STRINGS = {
  en: {
    chatWithUs: 'Chat with us',
    chatWithUsUnread: 'Chat with us ({n} unread)',
    subtitle: 'We usually reply within a few minutes',
    subtitleOnline: 'We are online — ask us anything',
    subtitleQueue: 'Everyone is busy — you may wait a little',
    subtitleNobody: 'No one is available right now',
    closeChat: 'Close chat',
    dismiss: 'Dismiss announcement',
    chattingWithBot: 'You are chatting with a bot',
    talkToPerson: 'Talk to a person',
    leaveAMessage: 'Leave a message',
    introTitle: 'Ask us anything',
    introText: 'Send us a message and a member of our team will answer here.',
    earlier: 'Load earlier messages',
    conversation: 'Conversation',
    leaveTitle: 'Leave us a message',
    prechatTitle: 'Before we start',
    prechatHint: 'Tell us who you are, so we can get back to you.',
    startChat: 'Start chat',
    enterName: 'Please tell us your name.',
    leaveHint: 'We will answer by email, or here when you come back.',
    name: 'Name',
    optional: '(optional)',
    email: 'Email',
    message: 'Message',
    cancel: 'Cancel',
    sendMessage: 'Send message',
    howWasChat: 'How was your chat?',
    star1: '1 of 5: very poor',
    star2: '2 of 5: poor',
    star3: '3 of 5: okay',
    star4: '4 of 5: good',
    star5: '5 of 5: excellent',
    commentLabel: 'Comment (optional)',
    commentPlaceholder: 'Anything to add? (optional)',
    sendFeedback: 'Send feedback',
    thanksFeedback: 'Thanks for your feedback',
    newChat: 'Start a new chat',
    yourMessage: 'Your message',
    typeMessage: 'Type your message…',
    addAnything: 'Add anything else here…',
    send: 'Send',
    sending: 'Sending…',
    sent: 'Sent',
    delivered: 'Delivered',
    read: 'Read',
    notSent: 'Not sent',
    retry: 'Retry',
    cannotReach: 'Cannot reach the chat service. Retrying…',
    sessionExpired: 'Your chat session expired. Please send your message again.',
    reconnecting: 'Reconnecting…',
    notAvailable: 'Chat is not available right now.',
    tooMany: 'Too many requests. Reconnecting shortly…',
    connectionLost: 'Connection lost. Reconnecting…',
    connecting: 'Connecting…',
    overWebSocket: 'Connected over WebSocket',
    overEventStream: 'Connected over the event stream (WebSocket unavailable)',
    agent: 'Agent',
    isTyping: '{name} is typing…',
    wrong: 'Something went wrong.',
    anAgent: 'An agent',
    yourAgent: 'Your agent',
    theBot: 'The bot',
    pickedUp: '{name} picked up your message',
    queuePos: 'You are #{pos} in the queue',
    waitingForAgent: 'Waiting for an agent',
    queuePosEta: 'You are #{pos} in the queue — about {min} min',
    queuePosSoon: 'You are #{pos} in the queue — an agent will be with you shortly',
    waitingSoon: 'Waiting for an agent — someone will be with you shortly',
    backAt: "Thanks — we'll get back to you at {email}",
    backSoon: "Thanks — we'll get back to you as soon as we can",
    nowCalled: 'You are now called {name}',
    chattingWith: 'You are chatting with {name}',
    chattingWithAgent: 'You are chatting with an agent',
    aBot: ' (a bot)',
    wasClosed: 'This conversation was closed',
    startNew: 'Type a message below to start a new chat',
    nobodyLeave: 'No one is available right now — leave us a message',
    preferNotWait: 'Prefer not to wait? Leave us a message',
    started: 'Conversation started',
    waitingInQueue: 'Waiting in queue (#{pos})',
    joined: '{name} joined the chat',
    anAgentJoined: 'An agent joined the chat',
    hadToLeave: "{name} had to leave — you're back in the queue",
    gettingPerson: 'Getting you a person from our team',
    handingYou: '{name} is handing you to a person from our team',
    transferredTo: "You're being transferred to {name}",
    transferredTeam: "You're being transferred to our {team} team",
    transferredOther: "You're being transferred to another agent",
    closedBy: 'Conversation closed by {name}',
    closed: 'Conversation closed',
    reopened: 'Conversation reopened',
    rated: 'You rated this chat {stars} — thanks for your feedback',
    tooLong: 'Messages can be at most {max} characters.',
    writeMessage: 'Please write your message.',
    nameTooLong: 'Names can be at most {max} characters.',
    checkEmail: 'Please check your email address.',
    couldNotSendRetry: 'We could not send your message. Please try again.',
    couldNotSend: 'We could not send your message.',
    commentTooLong: 'Comments can be at most {max} characters.',
    notConnected: 'Not connected — please try again in a moment.',
    couldNotSendFeedback: 'We could not send your feedback.',
  },
  'zh-CN': {
    chatWithUs: '在线咨询',
    chatWithUsUnread: '在线咨询（{n} 条未读）',
    subtitle: '我们通常会在几分钟内回复',
    subtitleOnline: '客服在线，欢迎咨询',
    subtitleQueue: '客服正忙，可能需要稍等',
    subtitleNobody: '当前暂无客服在线',
    closeChat: '关闭聊天',
    dismiss: '关闭公告',
    chattingWithBot: '您正在与机器人对话',
    talkToPerson: '转人工客服',
    leaveAMessage: '留言',
    introTitle: '有问题，随时问我们',
    introText: '发送消息后，我们的客服会在这里回复您。',
    earlier: '加载更早的消息',
    conversation: '对话',
    leaveTitle: '给我们留言',
    prechatTitle: '开始咨询前',
    prechatHint: '请留下您的称呼和邮箱，方便我们联系您。',
    startChat: '开始咨询',
    enterName: '请填写您的称呼。',
    leaveHint: '我们会通过邮件回复，或在您回来时在这里回复。',
    name: '姓名',
    optional: '（选填）',
    email: '邮箱',
    message: '留言内容',
    cancel: '取消',
    sendMessage: '发送留言',
    howWasChat: '您对本次服务满意吗？',
    star1: '1 星（共 5 星）：很差',
    star2: '2 星（共 5 星）：较差',
    star3: '3 星（共 5 星）：一般',
    star4: '4 星（共 5 星）：满意',
    star5: '5 星（共 5 星）：非常满意',
    commentLabel: '评价（选填）',
    commentPlaceholder: '还有什么想说的吗？（选填）',
    sendFeedback: '提交评价',
    thanksFeedback: '感谢您的评价',
    newChat: '开始新的对话',
    yourMessage: '您的消息',
    typeMessage: '请输入消息…',
    addAnything: '还有补充可以写在这里…',
    send: '发送',
    sending: '发送中…',
    sent: '已发送',
    delivered: '已送达',
    read: '已读',
    notSent: '发送失败',
    retry: '重试',
    cannotReach: '无法连接客服系统，正在重试…',
    sessionExpired: '会话已过期，请重新发送您的消息。',
    reconnecting: '正在重新连接…',
    notAvailable: '在线客服暂不可用。',
    tooMany: '请求过于频繁，稍后将重新连接…',
    connectionLost: '连接已断开，正在重新连接…',
    connecting: '正在连接…',
    overWebSocket: '已通过 WebSocket 连接',
    overEventStream: '已通过事件流连接（WebSocket 不可用）',
    agent: '客服',
    isTyping: '{name} 正在输入…',
    wrong: '出了点问题。',
    anAgent: '一位客服',
    yourAgent: '您的客服',
    theBot: '机器人',
    pickedUp: '{name} 已接收您的留言',
    queuePos: '您当前排在第 {pos} 位',
    waitingForAgent: '正在等待客服',
    queuePosEta: '您当前排在第 {pos} 位，预计等待约 {min} 分钟',
    queuePosSoon: '您当前排在第 {pos} 位，客服很快就会为您服务',
    waitingSoon: '正在等待客服，很快就会有人为您服务',
    backAt: '谢谢！我们会尽快通过 {email} 回复您',
    backSoon: '谢谢！我们会尽快回复您',
    nowCalled: '您的称呼已改为 {name}',
    chattingWith: '{name} 正在为您服务',
    chattingWithAgent: '客服正在为您服务',
    aBot: '（机器人）',
    wasClosed: '本次对话已结束',
    startNew: '在下方输入消息即可开始新的对话',
    nobodyLeave: '当前暂无客服在线，请给我们留言',
    preferNotWait: '不想等待？给我们留言',
    started: '对话已开始',
    waitingInQueue: '排队中（第 {pos} 位）',
    joined: '{name} 已加入对话',
    anAgentJoined: '客服已加入对话',
    hadToLeave: '{name} 暂时离开，您已重新排队',
    gettingPerson: '正在为您转接人工客服',
    handingYou: '{name} 正在为您转接人工客服',
    transferredTo: '正在为您转接给 {name}',
    transferredTeam: '正在为您转接到 {team} 组',
    transferredOther: '正在为您转接给其他客服',
    closedBy: '{name} 结束了对话',
    closed: '对话已结束',
    reopened: '对话已重新打开',
    rated: '您的评分：{stars}，感谢您的评价',
    tooLong: '消息最多 {max} 个字符。',
    writeMessage: '请填写留言内容。',
    nameTooLong: '姓名最多 {max} 个字符。',
    checkEmail: '请检查邮箱地址。',
    couldNotSendRetry: '消息发送失败，请重试。',
    couldNotSend: '消息发送失败。',
    commentTooLong: '评价最多 {max} 个字符。',
    notConnected: '尚未连接，请稍后再试。',
    couldNotSendFeedback: '评价提交失败。',
  },
};

// ------------------------------------------------------ the shared core

// Bound by loadCore() before init() runs.
let Timeline;
let make;
let uuid;
let timeElementOf;
let backoff;
let advances;
let listen;
let Outbox;
let sendFrame;
let helloFrame;
let resumedGap;
let translate;
// The widget's language: `data-lang`, else the browser's first language
// the widget has (any `zh` is Simplified Chinese), else English.
let LANG = 'en';

async function loadCore() {
  const [timeline, dom, connection, outbox, resume, i18n] = await Promise.all([
    import(`${SERVER}/core/timeline.js`),
    import(`${SERVER}/core/dom.js`),
    import(`${SERVER}/core/connection.js`),
    import(`${SERVER}/core/outbox.js`),
    import(`${SERVER}/core/resume.js`),
    import(`${SERVER}/i18n.js`),
  ]);
  ({ Timeline } = timeline);
  ({ make, uuid } = dom);
  timeElementOf = dom.timeElement;
  ({ backoff, advances, listen } = connection);
  ({ Outbox, sendFrame } = outbox);
  ({ helloFrame, resumedGap } = resume);
  LANG = i18n.pickLanguage(SETTINGS.lang);
  translate = i18n.translator(STRINGS, LANG);
}

// The string `key` in the widget's language, with `{name}`s filled in.
function t(key, values) {
  return translate(key, values);
}

function timeElement(iso) {
  return timeElementOf(iso, 'sb-time');
}

function storeKey() {
  return `${STORE_KEY}@${SERVER}`;
}

function loadStored() {
  try {
    let raw = localStorage.getItem(storeKey());
    if (raw === null) {
      raw = localStorage.getItem(STORE_KEY);
      if (raw !== null) {
        localStorage.setItem(storeKey(), raw);
        localStorage.removeItem(STORE_KEY);
      }
    }
    const v = JSON.parse(raw || 'null');
    return v && typeof v.token === 'string' ? v : null;
  } catch {
    return null;
  }
}

function saveStored(v) {
  try {
    localStorage.setItem(storeKey(), JSON.stringify({ visitor_id: v.visitor_id, token: v.token }));
  } catch {
    /* storage disabled: the chat still works for this page view */
  }
}

function clearStored() {
  try {
    localStorage.removeItem(storeKey());
  } catch {
    /* ignore */
  }
}

// ------------------------------------------------------------- skeleton

const skeleton = () => `
<button id="sb-launcher" class="sb-launcher" type="button" aria-expanded="false" aria-controls="sb-panel">
  <svg class="sb-launcher-icon" viewBox="0 0 24 24" aria-hidden="true" focusable="false">
    <path d="M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z"/>
  </svg>
  <span class="sb-launcher-label">${t('chatWithUs')}</span>
  <span id="sb-badge" class="sb-badge" hidden></span>
</button>
<div id="sb-panel" class="sb-panel" role="dialog" aria-modal="false" aria-labelledby="sb-title" hidden>
  <div class="sb-header">
    <div class="sb-header-text">
      <h2 id="sb-title" class="sb-title">${t('chatWithUs')}</h2>
      <p id="sb-subtitle" class="sb-subtitle">${t('subtitle')}</p>
    </div>
    <button id="sb-close" class="sb-icon-button" type="button" aria-label="${t('closeChat')}">
      <svg viewBox="0 0 24 24" aria-hidden="true" focusable="false"><path d="M6 6l12 12M18 6L6 18"/></svg>
    </button>
  </div>
  <div id="sb-notice" class="sb-banner" role="status" hidden>
    <p id="sb-notice-text" class="sb-banner-text"></p>
    <button id="sb-notice-dismiss" class="sb-banner-close" type="button" aria-label="${t('dismiss')}">
      <svg viewBox="0 0 24 24" aria-hidden="true" focusable="false"><path d="M6 6l12 12M18 6L6 18"/></svg>
    </button>
  </div>
  <p id="sb-status" class="sb-status" role="status"></p>
  <p id="sb-conn" class="sb-conn" role="status" hidden></p>
  <div id="sb-person" class="sb-person" hidden>
    <p class="sb-person-text">${t('chattingWithBot')}</p>
    <button id="sb-person-button" class="sb-person-button" type="button">${t('talkToPerson')}</button>
  </div>
  <div id="sb-offer" class="sb-offer" data-kind="optional" hidden>
    <p id="sb-offer-text" class="sb-offer-text"></p>
    <button id="sb-leave-open" class="sb-offer-button" type="button">${t('leaveAMessage')}</button>
  </div>
  <div id="sb-scroll" class="sb-scroll">
    <div id="sb-intro" class="sb-intro">
      <p class="sb-intro-title">${t('introTitle')}</p>
      <p class="sb-intro-text">${t('introText')}</p>
    </div>
    <button id="sb-earlier" class="sb-earlier" type="button" hidden>${t('earlier')}</button>
    <div id="sb-messages" class="sb-messages" role="log" aria-live="polite" aria-relevant="additions" aria-label="${t('conversation')}"></div>
  </div>
  <p id="sb-typing" class="sb-typing" aria-live="polite"></p>
  <p id="sb-error" class="sb-error" role="alert" hidden></p>
  <form id="sb-prechat" class="sb-leave sb-prechat" novalidate hidden aria-labelledby="sb-prechat-title">
    <p id="sb-prechat-title" class="sb-leave-title">${t('prechatTitle')}</p>
    <p class="sb-leave-hint">${t('prechatHint')}</p>
    <div class="sb-leave-row">
      <label for="sb-prechat-name">${t('name')}</label>
      <input id="sb-prechat-name" type="text" maxlength="${MAX_NAME}" autocomplete="name" required>
    </div>
    <div class="sb-leave-row">
      <label for="sb-prechat-email">${t('email')} <span class="sb-optional">${t('optional')}</span></label>
      <input id="sb-prechat-email" type="email" maxlength="${MAX_EMAIL}" autocomplete="email" inputmode="email" spellcheck="false">
    </div>
    <p id="sb-prechat-error" class="sb-leave-error" role="alert" hidden></p>
    <div class="sb-leave-actions">
      <button id="sb-prechat-submit" class="sb-primary" type="submit">${t('startChat')}</button>
    </div>
  </form>
  <form id="sb-leave" class="sb-leave" novalidate hidden aria-labelledby="sb-leave-title">
    <p id="sb-leave-title" class="sb-leave-title">${t('leaveTitle')}</p>
    <p class="sb-leave-hint">${t('leaveHint')}</p>
    <div class="sb-leave-row">
      <label for="sb-leave-name">${t('name')} <span class="sb-optional">${t('optional')}</span></label>
      <input id="sb-leave-name" type="text" maxlength="${MAX_NAME}" autocomplete="name">
    </div>
    <div class="sb-leave-row">
      <label for="sb-leave-email">${t('email')}</label>
      <input id="sb-leave-email" type="email" maxlength="${MAX_EMAIL}" autocomplete="email" inputmode="email" spellcheck="false">
    </div>
    <div class="sb-leave-row">
      <label for="sb-leave-text">${t('message')}</label>
      <textarea id="sb-leave-text" rows="3" maxlength="${MAX_LEN}"></textarea>
    </div>
    <p id="sb-leave-error" class="sb-leave-error" role="alert" hidden></p>
    <div class="sb-leave-actions">
      <button id="sb-leave-cancel" class="sb-secondary" type="button">${t('cancel')}</button>
      <button id="sb-leave-submit" class="sb-primary" type="submit">${t('sendMessage')}</button>
    </div>
  </form>
  <div id="sb-closed" class="sb-closed" hidden>
    <form id="sb-rating" class="sb-rating" novalidate hidden>
      <p id="sb-rating-title" class="sb-rating-title">${t('howWasChat')}</p>
      <div class="sb-stars" role="group" aria-labelledby="sb-rating-title">
        <button class="sb-star" type="button" data-score="1" aria-pressed="false" aria-label="${t('star1')}">★</button>
        <button class="sb-star" type="button" data-score="2" aria-pressed="false" aria-label="${t('star2')}">★</button>
        <button class="sb-star" type="button" data-score="3" aria-pressed="false" aria-label="${t('star3')}">★</button>
        <button class="sb-star" type="button" data-score="4" aria-pressed="false" aria-label="${t('star4')}">★</button>
        <button class="sb-star" type="button" data-score="5" aria-pressed="false" aria-label="${t('star5')}">★</button>
      </div>
      <label for="sb-rating-comment" class="sb-visually-hidden">${t('commentLabel')}</label>
      <textarea id="sb-rating-comment" class="sb-rating-comment" rows="2" maxlength="${MAX_COMMENT}" placeholder="${t('commentPlaceholder')}"></textarea>
      <button id="sb-rating-submit" class="sb-primary" type="submit" disabled>${t('sendFeedback')}</button>
    </form>
    <p id="sb-rating-thanks" class="sb-rating-thanks" role="status" hidden>${t('thanksFeedback')}</p>
    <button id="sb-new-chat" class="sb-new-chat" type="button">${t('newChat')}</button>
  </div>
  <form id="sb-form" class="sb-composer" novalidate>
    <label for="sb-input" class="sb-visually-hidden">${t('yourMessage')}</label>
    <textarea id="sb-input" class="sb-input" rows="1" maxlength="${MAX_LEN}" placeholder="${t('typeMessage')}" aria-describedby="sb-counter"></textarea>
    <button id="sb-send" class="sb-send" type="submit" disabled>${t('send')}</button>
    <p id="sb-counter" class="sb-counter" aria-live="polite" hidden></p>
  </form>
  <p id="sb-diag" class="sb-diag"></p>
</div>`;

// Receipt states of the visitor's own messages, as they are shown.
const stateLabel = (state) => ({ sending: t('sending'), sent: t('sent'), delivered: t('delivered'), read: t('read') })[state] || '';

const STARS = ['', '★☆☆☆☆', '★★☆☆☆', '★★★☆☆', '★★★★☆', '★★★★★'];

function minutes(secs) {
  return Math.max(1, Math.ceil(secs / 60));
}

function isBot(p) {
  return !!p && p.role === 'bot';
}

function nameOf(p, fallback) {
  return p && p.name ? String(p.name) : fallback;
}

// ---------------------------------------------------------------- widget

function init() {
  if (document.querySelector('switchboard-chat')) return; // loaded twice
  // The widget's own shadow root: the site's styles stay outside it, and
  // its stylesheet inside. It shows once its stylesheet is in.
  const host = document.createElement('switchboard-chat');
  const shadow = host.attachShadow({ mode: 'open' });
  const sheet = document.createElement('link');
  sheet.rel = 'stylesheet';
  sheet.href = `${SERVER}/widget.css`;
  const root = make('div', 'sb-root');
  root.id = 'sb-root';
  root.hidden = true;
  root.innerHTML = skeleton(); // static markup and our own strings only, no data
  root.lang = LANG;
  if (SETTINGS.position === 'left') root.classList.add('sb-left');
  if (SETTINGS.color) root.style.setProperty('--sb-brand', SETTINGS.color);
  if (SETTINGS.color) root.style.setProperty('--sb-brand-dark', SETTINGS.color);
  const shown = () => {
    root.hidden = false;
  };
  sheet.addEventListener('load', shown, { once: true });
  sheet.addEventListener('error', shown, { once: true });
  shadow.append(sheet, root);
  document.body.appendChild(host);

  const $ = (id) => root.querySelector('#' + id);
  const ui = {
    launcher: $('sb-launcher'),
    badge: $('sb-badge'),
    panel: $('sb-panel'),
    close: $('sb-close'),
    notice: $('sb-notice'),
    noticeText: $('sb-notice-text'),
    noticeDismiss: $('sb-notice-dismiss'),
    status: $('sb-status'),
    conn: $('sb-conn'),
    diag: $('sb-diag'),
    subtitle: $('sb-subtitle'),
    person: $('sb-person'),
    personButton: $('sb-person-button'),
    offer: $('sb-offer'),
    offerText: $('sb-offer-text'),
    leaveOpen: $('sb-leave-open'),
    scroll: $('sb-scroll'),
    intro: $('sb-intro'),
    earlier: $('sb-earlier'),
    messages: $('sb-messages'),
    typing: $('sb-typing'),
    error: $('sb-error'),
    leave: $('sb-leave'),
    prechat: $('sb-prechat'),
    prechatName: $('sb-prechat-name'),
    prechatEmail: $('sb-prechat-email'),
    prechatError: $('sb-prechat-error'),
    leaveName: $('sb-leave-name'),
    leaveEmail: $('sb-leave-email'),
    leaveText: $('sb-leave-text'),
    leaveError: $('sb-leave-error'),
    leaveCancel: $('sb-leave-cancel'),
    leaveSubmit: $('sb-leave-submit'),
    closed: $('sb-closed'),
    rating: $('sb-rating'),
    stars: [...root.querySelectorAll('.sb-star')],
    ratingComment: $('sb-rating-comment'),
    ratingSubmit: $('sb-rating-submit'),
    ratingThanks: $('sb-rating-thanks'),
    newChat: $('sb-new-chat'),
    form: $('sb-form'),
    input: $('sb-input'),
    send: $('sb-send'),
    counter: $('sb-counter'),
  };

  const S = {
    ws: null,
    connector: null, // chooses the transport (transport.js), once loaded
    connecting: false,
    ready: false, // welcome received on the current socket
    everConnected: false,
    attempt: 0,
    reconnectTimer: null,
    stopped: false,
    me: null, // {id, name}
    prechat: false, // the team asks for a name before a chat (GET /api/v1/widget)
    prechatOpen: false, // the pre-chat form is shown
    prechatProfile: null, // {name, email} it gave, for the visitor record
    conv: null, // see newConv()
    // After "Start a new chat": the closed conversation, still on screen
    // until the next `started` says whether it was reopened (same id, the
    // transcript stays) or a new one began (the transcript is cleared).
    prev: null,
    tl: new Timeline(ui.messages),
    // Unacknowledged sends (core/outbox.js). An entry's `leave`
    // ({name, email}) marks a message left while nobody is online, not yet
    // answered by `started`.
    outbox: new Outbox(),
    // {text, node, clientId}: first message, sent with `start`. Its own
    // client_id: the server's default (`start-<conversation_id>`) would make
    // the text of a `start` that reopens a conversation look like a retry
    // of the first one.
    startPending: null,
    startSent: false, // `start` already sent on this socket
    startEcho: null, // {text, node, clientId}: start text stored, waiting for its seq
    earliestHasMore: false,
    open: false,
    unread: 0,
    lastReadSent: 0,
    readTimer: null,
    typingOut: { on: false, lastAt: 0, idle: null },
    typingIn: null,
    errorTimer: null,
    leaveOpen: false, // the leave-a-message form is shown
    leaveEmail: null, // the email of the last message left, until confirmed
    rating: { score: 0, sending: false },
  };

  function newConv(info) {
    return {
      id: info.conversation_id,
      state: info.state || 'queued',
      agent: info.agent || null,
      position: null,
      eta: null, // estimated_wait_secs of the last `queued`
      agentsOnline: null, // agents_online of the last `queued` (0: nobody)
      pickedBy: null, // name of the agent who picked up the left message
      email: null, // contact left with `leave_message`
      rated: false,
      statusSeq: 0,
      peerRead: 0, // the agent side has read up to this seq
      peerDelivered: 0, // … and received up to this one
      personAsked: false, // "talk to a person" sent while a bot has it
    };
  }

  // The conversation a record of `id` belongs to: the current one, or the
  // closed one still shown after "Start a new chat".
  function convFor(id) {
    if (S.conv && S.conv.id === id) return S.conv;
    if (!S.conv && S.prev && S.prev.id === id) return S.prev;
    return null;
  }

  // ------------------------------------------------------------ transport

  function send(frame) {
    if (!S.ws || S.ws.readyState !== 1) return false;
    S.ws.send(JSON.stringify(frame));
    return true;
  }

  // The page the visitor is on, for the agent: without its fragment (never
  // sent to a server; sign-in flows put tokens there) and at most the
  // 2048 bytes the server takes (a longer address would be refused, and
  // the visitor could never start a chat).
  function pageUrl() {
    const url = location.href.split('#')[0];
    const bytes = new TextEncoder().encode(url);
    if (bytes.length <= 2048) return url;
    return new TextDecoder().decode(bytes.slice(0, 2048)).replace(/\uFFFD+$/, '');
  }

  async function ensureVisitor() {
    const stored = loadStored();
    if (stored) return stored;
    const res = await fetch(`${SERVER}/api/v1/visitors`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      // The pre-chat form's name and email, when the team asks for them.
      body: JSON.stringify({ page_url: pageUrl(), ...(S.prechatProfile || {}) }),
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
      setConn(t('cannotReach'));
      scheduleReconnect(S.attempt++);
      return;
    }
    // The transports are shared with the console (transport.js): a
    // WebSocket while it works, else the event stream.
    if (!S.connector) {
      try {
        const { Connector } = await import(`${SERVER}/transport.js`);
        S.connector = new Connector(SERVER);
      } catch {
        S.connecting = false;
        setConn(t('cannotReach'));
        scheduleReconnect(S.attempt++);
        return;
      }
    }
    const ws = S.connector.open(() => (loadStored() || visitor).token);
    const transport = S.connector.transport;
    S.ws = ws;
    S.connecting = false;
    S.ready = false;
    S.startSent = false;
    S.tl.gapAsked.clear();

    ws.addEventListener('open', () => {
      showTransport(transport);
      const c = S.conv || S.prev;
      ws.send(JSON.stringify(helloFrame(visitor.token, c ? [[c.id, S.tl]] : [])));
    });
    listen(ws, () => ws === S.ws, handleFrame, (code) => {
      S.ws = null;
      S.ready = false;
      onSocketClosed(code);
    });
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
        if (S.conv || S.prev) {
          resetConversation();
          showError(t('sessionExpired'));
        }
        setConn(t('reconnecting'));
        if (S.attempt === 0) {
          S.attempt++;
          connect();
        } else {
          scheduleReconnect(S.attempt++);
        }
        return;
      case 4403:
        S.stopped = true;
        setConn(t('notAvailable'));
        return;
      case 1012: // server restarting: reconnect at once (once)
        setConn(t('reconnecting'));
        if (S.attempt === 0) {
          S.attempt++;
          connect();
        } else {
          scheduleReconnect(S.attempt++);
        }
        return;
      case 4429:
        setConn(t('tooMany'));
        scheduleReconnect(S.attempt++, 5000);
        return;
      default:
        setConn(S.everConnected ? t('connectionLost') : t('connecting'));
        scheduleReconnect(S.attempt++);
    }
  }

  // The diagnostics line: which transport the widget is on.
  function showTransport(transport) {
    ui.panel.dataset.transport = transport === 'websocket' ? 'websocket' : 'sse';
    ui.diag.textContent = transport === 'websocket'
      ? t('overWebSocket')
      : t('overEventStream');
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
      case 'refreshed':
        return scheduleRefresh(f.token_expires_at);
      case 'started':
        return onStarted(f);
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
      case 'notice':
        return onNotice(f);
      case 'error':
        return onError(f);
      default:
        return undefined; // unknown frames are ignored
    }
  }

  // ------------------------------------------------------ token refresh
  // The token ends the connection when it expires (close 4401): a fresh
  // one is fetched well before, stored, and given to the open connection.

  function scheduleRefresh(expiresAt) {
    clearTimeout(S.refreshTimer);
    const at = Date.parse(expiresAt || '');
    if (!Number.isFinite(at)) return;
    const left = at - Date.now();
    // At four fifths of what is left, and never beyond what a timer holds.
    const delay = Math.min(Math.max(left * 0.8, 1000), 2147483647);
    S.refreshTimer = setTimeout(refreshToken, delay);
  }

  async function refreshToken() {
    const stored = loadStored();
    if (!stored) return;
    try {
      const res = await fetch(`${SERVER}/api/v1/token/refresh`, {
        method: 'POST',
        headers: { authorization: `Bearer ${stored.token}` },
      });
      if (!res.ok) return; // the close at expiry starts over
      const body = await res.json();
      if (!body || typeof body.token !== 'string') return;
      saveStored({ visitor_id: stored.visitor_id, token: body.token });
      if (S.ws && S.ready) S.ws.send(JSON.stringify({ type: 'refresh', token: body.token }));
    } catch {
      S.refreshTimer = setTimeout(refreshToken, 30000);
    }
  }

  function onWelcome(f) {
    scheduleRefresh(f.token_expires_at);
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
    // Reopened within the reopen window: `started` names the same
    // conversation (created: false) and the transcript stays.
    setConversation({ conversation_id: f.conversation_id, state: f.state, last_seq: f.last_seq });
    if (S.startPending) startDelivered();
    // A message left while nobody was online now has its conversation: if
    // its ack is lost, it is re-sent as an ordinary retried `send`.
    for (const entry of S.outbox.values()) if (entry.leave && entry.sent) entry.leave = null;
    if (f.state === 'missed' && S.conv && !S.conv.email && S.leaveEmail) S.conv.email = S.leaveEmail;
    requestHistory();
    flushOutbox();
    updateStatus();
  }

  // The outcome of the `resume` entry of `hello`. When more was missed than
  // the server replays, page in what lies between.
  function onResumed(f) {
    if (!S.conv || f.conversation_id !== S.conv.id) return;
    const gap = resumedGap(f, S.conv.id, S.tl);
    if (gap) send(gap);
  }

  function onAck(f) {
    if (S.startEcho && f.client_id === S.startEcho.clientId) {
      const { node } = S.startEcho;
      S.startEcho = null;
      confirmMine(node, f.seq, f.sent_at);
      return;
    }
    const entry = S.outbox.take(f.client_id);
    if (!entry) return; // already confirmed by an echoed `message`
    confirmMine(entry.node, f.seq, f.sent_at);
  }

  function onHistory(f) {
    const c = convFor(f.conversation_id);
    if (!c) return;
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
      ui.typing.textContent = t('isTyping', { name: f.sender.name || t('agent') });
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

  // Read receipts from the agent side: the visitor's messages up to `seq`
  // show "Read".
  function onRead(f) {
    const c = convFor(f.conversation_id);
    if (!c || !f.reader || f.reader.role === 'visitor' || typeof f.seq !== 'number') return;
    if (f.seq <= c.peerRead) return;
    c.peerRead = f.seq;
    refreshReceipts(c);
  }

  // Delivery receipts: the agent's client has every record up to `seq`.
  function onDelivered(f) {
    const c = convFor(f.conversation_id);
    if (!c || !f.recipient || f.recipient.role === 'visitor' || typeof f.seq !== 'number') return;
    if (f.seq <= c.peerDelivered) return;
    c.peerDelivered = f.seq;
    refreshReceipts(c);
  }

  // Admin broadcast: a banner above the conversation until dismissed.
  function onNotice(f) {
    const text = typeof f.text === 'string' ? f.text : '';
    ui.noticeText.replaceChildren();
    if (f.sender && f.sender.name) ui.noticeText.appendChild(make('strong', 'sb-banner-from', `${f.sender.name}: `));
    ui.noticeText.appendChild(document.createTextNode(text));
    ui.notice.hidden = !text;
  }

  function onError(f) {
    if (S.outbox.refused(f, () => flushOutbox(false), (entry) => markFailed(entry.node, entry.text))) {
      showError(f.message || t('wrong'));
      return;
    }
    if (f.ref === 'leave_message') {
      leaveFailed(f);
      return;
    }
    if (f.ref === 'rate') {
      ratingFailed(f);
      return;
    }
    if (S.startPending && S.startSent && !S.conv && (f.ref === 'start' || f.ref == null)) {
      // Most likely the answer to our `start`.
      const { text, node } = S.startPending;
      S.startPending = null;
      markFailed(node, text);
      updateStatus();
    }
    showError(f.message || t('wrong'));
  }

  // ------------------------------------------------------- conversation

  function setConversation(info) {
    if (S.conv && S.conv.id !== info.conversation_id) resetConversation(true);
    if (!S.conv && S.prev) {
      if (S.prev.id === info.conversation_id) {
        // The closed conversation came back: keep its transcript.
        S.conv = S.prev;
        S.prev = null;
        resetRating();
      } else {
        resetConversation(true);
      }
    }
    if (!S.conv) {
      S.conv = newConv(info);
      ui.intro.hidden = true;
    } else {
      if (info.state) S.conv.state = info.state;
      if (info.agent) S.conv.agent = info.agent;
    }
    ui.panel.dataset.conversationId = info.conversation_id;
    const c = S.conv;
    if (typeof info.peer_read_seq === 'number' && info.peer_read_seq > c.peerRead) {
      c.peerRead = info.peer_read_seq;
      refreshReceipts(c);
    }
    if (typeof info.read_seq === 'number' && info.read_seq > S.lastReadSent) S.lastReadSent = info.read_seq;
    if (typeof info.unread === 'number' && !S.open) setUnread(info.unread);
    updateStatus();
  }

  // Forget the current conversation. `keepPending` keeps unsent messages.
  function resetConversation(keepPending = false) {
    S.conv = null;
    S.prev = null;
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
    resetRating();
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
    const c = S.conv || S.prev;
    if (!c || !S.ready) return;
    const gap = S.tl.nextGap();
    if (gap) send({ type: 'history', conversation_id: c.id, ...gap });
  }

  // Adds a live or historical `message` / `event` to the list, once per seq.
  function ingest(item, live) {
    const c = convFor(item.conversation_id);
    if (!c) return;
    const seq = item.seq;
    if (typeof seq !== 'number') {
      if (item.type === 'event') applyEvent(c, item, Infinity);
      return;
    }
    if (S.tl.has(seq)) return;
    const stick = isNearBottom();

    if (item.type === 'message') {
      const mine = !!item.sender && item.sender.role === 'visitor';
      let node = null;
      const pending = mine && item.client_id ? S.outbox.take(item.client_id) : null;
      if (pending) {
        node = pending.node;
      } else if (mine && S.startEcho && item.client_id === S.startEcho.clientId) {
        // The text we sent with `start`, as stored by the server.
        node = S.startEcho.node;
        S.startEcho = null;
      }
      if (node) {
        confirmMine(node, seq, item.sent_at);
      } else {
        S.tl.insert(renderMessage(c, item, mine), seq);
      }
      if (!mine && live) {
        clearIncomingTyping();
        if (!S.open) setUnread(S.unread + 1);
      }
    } else if (item.type === 'event') {
      S.tl.insert(renderEvent(item), seq);
      applyEvent(c, item, seq);
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

  function applyEvent(c, ev, seq) {
    // Facts that hold whatever order the records come in.
    if (ev.event === 'rated') c.rated = true;
    if (ev.event === 'left_message' && ev.email) c.email = String(ev.email);
    if (seq !== Infinity) {
      if (seq < c.statusSeq) {
        if (c === S.conv) updateStatus();
        return; // an older event from history
      }
      c.statusSeq = seq;
    }
    switch (ev.event) {
      case 'queued':
        c.state = 'queued';
        if (typeof ev.position === 'number') c.position = ev.position;
        c.eta = typeof ev.estimated_wait_secs === 'number' ? ev.estimated_wait_secs : null;
        if (typeof ev.agents_online === 'number') c.agentsOnline = ev.agents_online;
        break;
      case 'assigned':
        c.state = 'assigned';
        c.pickedBy = null;
        c.personAsked = false;
        if (ev.agent) c.agent = ev.agent;
        break;
      case 'handed_off': // from the bot to the human queue, at its place
      case 'agent_left': // back in the queue at its place
      case 'transferred': // waiting for the next agent or team
      case 'reopened': // waiting for an agent again
        c.state = 'queued';
        c.agent = null;
        c.pickedBy = null;
        c.position = null;
        c.eta = null;
        c.agentsOnline = null;
        break;
      case 'left_message':
        c.state = 'missed';
        c.position = null;
        c.agentsOnline = null;
        break;
      case 'picked_up':
        c.state = 'queued';
        c.pickedBy = nameOf(ev.agent, t('anAgent'));
        c.position = null;
        c.agentsOnline = null;
        break;
      case 'closed':
        c.state = 'closed';
        c.pickedBy = null;
        break;
      default:
        if (typeof ev.position === 'number') c.position = ev.position;
        if (ev.agent) c.agent = ev.agent;
    }
    if (c === S.conv) updateStatus();
  }

  function updateStatus() {
    const c = S.conv;
    let text = '';
    if (c) {
      if (c.state === 'queued') {
        const pos = typeof c.position === 'number' && c.position > 0 ? c.position : null;
        if (c.pickedBy) {
          text = t('pickedUp', { name: c.pickedBy });
        } else if (c.agentsOnline === 0) {
          // The offer below says that nobody is available.
          text = pos ? t('queuePos', { pos }) : t('waitingForAgent');
        } else if (pos && typeof c.eta === 'number') {
          text = t('queuePosEta', { pos, min: minutes(c.eta) });
        } else if (pos) {
          text = t('queuePosSoon', { pos });
        } else {
          text = t('waitingSoon');
        }
      } else if (c.state === 'missed') {
        text = c.email ? t('backAt', { email: c.email }) : t('backSoon');
      } else if (c.state === 'assigned') {
        text = c.agent && c.agent.name ? t('chattingWith', { name: c.agent.name }) : t('chattingWithAgent');
        if (isBot(c.agent)) text += t('aBot');
      } else if (c.state === 'closed') {
        text = t('wasClosed');
      }
    } else if (S.prev) {
      text = t('startNew');
    }
    ui.status.textContent = text;
    ui.status.hidden = !text;
    const closed = !!c && c.state === 'closed';
    ui.panel.dataset.state = c ? c.state : 'new';

    // Leaving a message: offered when nobody is online, and as an option
    // before a conversation exists.
    const leaving = [...S.outbox.values()].some((e) => e.leave);
    const offline = !!c && c.state === 'queued' && c.agentsOnline === 0 && !c.pickedBy && !leaving;
    const beforeStart = !c && !S.startPending && !leaving;
    if (S.leaveOpen && !(offline || beforeStart)) S.leaveOpen = false; // an agent came, say
    ui.offer.hidden = S.leaveOpen || !(offline || beforeStart);
    ui.offer.dataset.kind = offline ? 'offline' : 'optional';
    ui.offerText.textContent = offline
      ? t('nobodyLeave')
      : t('preferNotWait');
    ui.leave.hidden = !S.leaveOpen;
    ui.prechat.hidden = !S.prechatOpen;
    if (S.prechatOpen) ui.offer.hidden = true;

    // A bot has the conversation: the visitor can ask for a person.
    ui.person.hidden = !(c && c.state === 'assigned' && isBot(c.agent));
    ui.personButton.disabled = !!c && c.personAsked;

    ui.closed.hidden = !closed;
    ui.rating.hidden = !closed || c.rated;
    ui.ratingThanks.hidden = !closed || !c.rated;
    ui.form.hidden = closed || S.leaveOpen || S.prechatOpen;
    ui.input.disabled = closed;
    ui.input.placeholder = c && c.state === 'missed' ? t('addAnything') : t('typeMessage');
    if (closed) {
      clearIncomingTyping();
      stopTyping();
    }
    updateSendButton();
  }

  // ------------------------------------------------------------ rendering

  function setMineState(node, state) {
    node.dataset.state = state;
    const st = node.querySelector('.sb-state');
    if (st) st.textContent = stateLabel(state);
  }

  // The furthest state a message of mine at `seq` has reached.
  function receiptState(c, seq) {
    if (c && seq <= c.peerRead) return 'read';
    if (c && seq <= c.peerDelivered) return 'delivered';
    return 'sent';
  }

  // Moves the visitor's stored messages forward to what the receipts say.
  function refreshReceipts(c) {
    if (c !== (S.conv || S.prev)) return;
    for (const [seq, node] of S.tl.bySeq) {
      if (!node.classList.contains('sb-mine')) continue;
      const want = receiptState(c, seq);
      const have = node.dataset.state;
      if (advances(have, want)) setMineState(node, want);
    }
  }

  function renderMessage(c, m, mine) {
    const node = make('div', `sb-msg ${mine ? 'sb-mine' : 'sb-theirs'}`);
    if (m.sender && m.sender.role === 'system') node.classList.add('sb-system');
    const state = mine ? receiptState(c, m.seq) : 'sent';
    node.dataset.state = state;
    if (m.id) node.dataset.id = String(m.id);
    node.appendChild(make('div', 'sb-text', m.text || ''));
    const meta = make('div', 'sb-meta');
    if (!mine && m.sender && m.sender.name) meta.appendChild(make('span', 'sb-who', m.sender.name));
    meta.appendChild(timeElement(m.sent_at));
    if (mine) meta.appendChild(make('span', 'sb-state', stateLabel(state)));
    node.appendChild(meta);
    return node;
  }

  function renderPending(text) {
    const node = make('div', 'sb-msg sb-mine');
    node.dataset.state = 'sending';
    node.appendChild(make('div', 'sb-text', text));
    const meta = make('div', 'sb-meta');
    meta.appendChild(timeElement(null));
    meta.appendChild(make('span', 'sb-state', t('sending')));
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
    setMineState(node, receiptState(S.conv || S.prev, seq));
    if (sentAt) node.querySelector('.sb-meta').replaceChild(timeElement(sentAt), node.querySelector('.sb-time'));
    S.tl.insert(node, seq);
  }

  function markFailed(node, text) {
    node.dataset.state = 'failed';
    const st = node.querySelector('.sb-state');
    if (st) st.textContent = t('notSent');
    const retry = make('button', 'sb-retry', t('retry'));
    retry.type = 'button';
    retry.addEventListener('click', () => {
      retry.remove();
      setMineState(node, 'sending');
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
        text = t('started');
        break;
      case 'queued':
        text = typeof ev.position === 'number' ? t('waitingInQueue', { pos: ev.position }) : t('waitingForAgent');
        break;
      case 'assigned':
        text = ev.agent && ev.agent.name ? t('joined', { name: ev.agent.name }) : t('anAgentJoined');
        break;
      case 'agent_left':
        text = t('hadToLeave', { name: nameOf(ev.agent, t('yourAgent')) });
        break;
      case 'handed_off':
        text = ev.reason === 'visitor_asked'
          ? t('gettingPerson')
          : t('handingYou', { name: nameOf(ev.from, t('theBot')) });
        break;
      case 'transferred':
        // The note is for the next agent: never shown to the visitor.
        if (ev.to_agent && ev.to_agent.name) text = t('transferredTo', { name: ev.to_agent.name });
        else if (ev.to_team) text = t('transferredTeam', { team: ev.to_team });
        else text = t('transferredOther');
        break;
      case 'closed':
        text = by ? t('closedBy', { name: by }) : t('closed');
        break;
      case 'reopened':
        text = t('reopened');
        break;
      case 'picked_up':
        text = t('pickedUp', { name: nameOf(ev.agent, t('anAgent')) });
        break;
      case 'rated': {
        const score = Number(ev.score);
        text = score >= 1 && score <= 5 ? t('rated', { stars: STARS[score] }) : t('thanksFeedback');
        break;
      }
      case 'left_message':
        text = ev.email ? t('backAt', { email: ev.email }) : t('backSoon');
        break;
      case 'renamed':
        text = t('nowCalled', { name: ev.visitor && ev.visitor.name ? ev.visitor.name : '' });
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
    ui.launcher.setAttribute('aria-label', n ? t('chatWithUsUnread', { n }) : t('chatWithUs'));
  }

  // -------------------------------------------------------------- sending

  function sendStart() {
    if (!S.ready || S.startSent || !S.startPending) return;
    const { text, clientId } = S.startPending;
    const frame = { type: 'start', text, client_id: clientId };
    if (TEAM) frame.team = TEAM;
    S.startSent = send(frame);
  }

  // The conversation exists, so the text sent with `start` is stored: show
  // it as sent; its seq comes with the echoed `message` or the history.
  function startDelivered() {
    S.startEcho = S.startPending;
    S.startPending = null;
    setMineState(S.startEcho.node, 'sent');
  }

  // Sends what waits in the outbox (new, or refused as busy): with `all`,
  // also what was sent but not acknowledged yet (after a reconnect).
  function flushOutbox(all = true) {
    if (!S.ready) return;
    S.outbox.flush(all, outboxFrame, send);
  }

  function outboxFrame(clientId, entry) {
    if (entry.leave) {
      // Needs no conversation: the server makes one if there is none.
      const frame = { type: 'leave_message', text: entry.text, client_id: clientId };
      if (entry.leave.name) frame.name = entry.leave.name;
      if (entry.leave.email) frame.email = entry.leave.email;
      return frame;
    }
    // Messages typed before the conversation exists wait for it.
    if (!S.conv || S.conv.state === 'closed') return null;
    return sendFrame(S.conv.id, clientId, entry);
  }

  function queueText(text, node) {
    ui.intro.hidden = true;
    if (!S.conv && !S.startPending) {
      const clientId = uuid();
      node.dataset.clientId = clientId;
      S.startPending = { text, node, clientId };
      S.startSent = false;
      sendStart();
      updateStatus();
    } else {
      S.outbox.add(text, node);
      flushOutbox(false);
    }
    if (!S.ws && !S.connecting) connect();
  }

  function submit() {
    const text = ui.input.value.trim();
    if (!text) return;
    if (needsPrechat()) {
      openPrechat();
      return;
    }
    if (text.length > MAX_LEN) {
      showError(t('tooLong', { max: MAX_LEN }));
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

  // ------------------------------------------------------ leave a message

  function openLeave() {
    S.leaveOpen = true;
    ui.leaveError.hidden = true;
    // Whatever was typed in the composer becomes the message.
    if (!ui.leaveText.value.trim() && ui.input.value.trim()) ui.leaveText.value = ui.input.value.trim();
    updateStatus();
    (ui.leaveEmail.value ? ui.leaveText : ui.leaveEmail).focus();
  }

  function closeLeave() {
    S.leaveOpen = false;
    updateStatus();
    ui.input.focus();
  }

  function leaveProblem(text) {
    ui.leaveError.textContent = text;
    ui.leaveError.hidden = false;
  }

  function submitLeave() {
    const name = ui.leaveName.value.trim();
    const email = ui.leaveEmail.value.trim();
    const text = ui.leaveText.value.trim();
    if (!text) return leaveProblem(t('writeMessage'));
    if (text.length > MAX_LEN) return leaveProblem(t('tooLong', { max: MAX_LEN }));
    if (name.length > MAX_NAME) return leaveProblem(t('nameTooLong', { max: MAX_NAME }));
    if (email && (email.length > MAX_EMAIL || !/^[^\s@]+@[^\s@]+$/.test(email))) {
      return leaveProblem(t('checkEmail'));
    }
    ui.leaveError.hidden = true;
    ui.leaveText.value = '';
    if (ui.input.value.trim() === text) {
      ui.input.value = '';
      autoGrow();
    }
    S.leaveOpen = false;
    S.leaveEmail = email || null;
    ui.intro.hidden = true;
    const node = renderPending(text);
    S.outbox.add(text, node, { leave: { name, email } });
    updateStatus();
    scrollToBottom();
    flushOutbox(false);
    if (!S.ws && !S.connecting) connect();
  }

  // `leave_message` was refused: show the form again with the text.
  function leaveFailed(f) {
    let entry = null;
    for (const [id, e] of S.outbox) {
      if (e.leave) {
        entry = S.outbox.take(id);
        break;
      }
    }
    if (entry) {
      entry.node.remove();
      ui.leaveText.value = entry.text;
    }
    const why =
      f.code === 'rate_limited' || f.code === 'unavailable'
        ? t('couldNotSendRetry')
        : f.message || t('couldNotSend');
    leaveProblem(why);
    S.leaveOpen = true;
    updateStatus();
    // No form to show it in (an agent is with you now, say).
    if (!S.leaveOpen) showError(why);
  }

  // --------------------------------------------------------------- rating

  function resetRating() {
    S.rating = { score: 0, sending: false };
    ui.ratingComment.value = '';
    paintStars();
  }

  function paintStars() {
    for (const star of ui.stars) {
      const n = Number(star.dataset.score);
      star.classList.toggle('sb-on', n <= S.rating.score);
      star.setAttribute('aria-pressed', String(n === S.rating.score));
    }
    ui.ratingSubmit.disabled = !S.rating.score || S.rating.sending;
    ui.ratingSubmit.textContent = S.rating.sending ? t('sending') : t('sendFeedback');
  }

  function submitRating() {
    const c = S.conv;
    if (!c || c.state !== 'closed' || c.rated || !S.rating.score || S.rating.sending) return;
    const comment = ui.ratingComment.value.trim();
    if (comment.length > MAX_COMMENT) {
      showError(t('commentTooLong', { max: MAX_COMMENT }));
      return;
    }
    const frame = { type: 'rate', conversation_id: c.id, score: S.rating.score };
    if (comment) frame.comment = comment;
    if (!send(frame)) {
      showError(t('notConnected'));
      return;
    }
    S.rating.sending = true;
    paintStars();
  }

  function ratingFailed(f) {
    S.rating.sending = false;
    paintStars();
    if (S.conv && /rated already/i.test(f.message || '')) {
      S.conv.rated = true;
      updateStatus();
      return;
    }
    showError(f.message || t('couldNotSendFeedback'));
  }

  // ------------------------------------------------------------ panel / UI

  // What the header says before and during a chat: who can answer now
  // (GET /api/v1/widget), never a promise nobody can keep.
  async function loadAvailability() {
    try {
      const res = await fetch(`${SERVER}/api/v1/widget${TEAM ? `?team=${encodeURIComponent(TEAM)}` : ''}`);
      if (!res.ok) return;
      const body = await res.json();
      S.prechat = !!(body && body.prechat);
      const key = { online: 'subtitleOnline', queue: 'subtitleQueue', nobody: 'subtitleNobody' }[body && body.availability];
      if (key) {
        ui.subtitle.textContent = t(key);
        ui.panel.dataset.availability = body.availability;
      }
    } catch {
      // The header keeps its general line.
    }
  }

  async function openPanel() {
    const availability = loadAvailability();
    S.open = true;
    ui.panel.hidden = false;
    root.classList.add('sb-open');
    ui.launcher.setAttribute('aria-expanded', 'true');
    setUnread(0);
    scrollToBottom();
    ui.input.focus();
    markReadSoon();
    if (S.ws || S.connecting) return;
    // A new visitor of a team with a pre-chat form gives a name (and an
    // email) first: the visitor record is made with them.
    if (!loadStored()) await availability;
    if (needsPrechat()) openPrechat();
    else if (!S.ws && !S.connecting) connect();
  }

  // ------------------------------------------------------------ pre-chat

  // Whether to ask for a name first: the team wants it, and this visitor
  // has no record yet (a returning visitor has told us, or chatted).
  function needsPrechat() {
    return S.prechat && !S.prechatProfile && !loadStored();
  }

  function openPrechat() {
    S.prechatOpen = true;
    updateStatus();
    ui.prechatName.focus();
  }

  function prechatProblem(text) {
    ui.prechatError.textContent = text;
    ui.prechatError.hidden = false;
  }

  function submitPrechat() {
    const name = ui.prechatName.value.trim();
    const email = ui.prechatEmail.value.trim();
    if (!name) return prechatProblem(t('enterName'));
    if (name.length > MAX_NAME) return prechatProblem(t('nameTooLong', { max: MAX_NAME }));
    // As the server checks it: something@host.domain.
    if (email && (email.length > MAX_EMAIL || !/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(email))) {
      return prechatProblem(t('checkEmail'));
    }
    ui.prechatError.hidden = true;
    S.prechatProfile = email ? { name, email } : { name };
    S.prechatOpen = false;
    updateStatus();
    ui.input.focus();
    connect();
    return undefined;
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
      if (S.leaveOpen) closeLeave();
      else closePanel();
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
  ui.noticeDismiss.addEventListener('click', () => {
    ui.notice.hidden = true;
  });
  ui.leaveOpen.addEventListener('click', openLeave);
  ui.personButton.addEventListener('click', () => {
    const c = S.conv;
    if (!c || c.personAsked || !isBot(c.agent)) return;
    if (send({ type: 'handoff', conversation_id: c.id })) {
      c.personAsked = true;
      updateStatus();
    } else {
      showError(t('notConnected'));
    }
  });
  ui.leaveCancel.addEventListener('click', closeLeave);
  ui.leave.addEventListener('submit', (e) => {
    e.preventDefault();
    submitLeave();
  });
  ui.prechat.addEventListener('submit', (e) => {
    e.preventDefault();
    submitPrechat();
  });
  for (const star of ui.stars) {
    star.addEventListener('click', () => {
      if (S.rating.sending) return;
      S.rating.score = Number(star.dataset.score);
      paintStars();
    });
  }
  ui.rating.addEventListener('submit', (e) => {
    e.preventDefault();
    submitRating();
  });
  ui.newChat.addEventListener('click', () => {
    if (!S.conv) return;
    // Keep the transcript on screen: the next message may reopen this
    // conversation (the server decides; see onStarted).
    S.prev = S.conv;
    S.conv = null;
    delete ui.panel.dataset.conversationId;
    clearIncomingTyping();
    resetRating();
    updateStatus();
    scrollToBottom();
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

  if (SETTINGS.greeting) ui.intro.querySelector('.sb-intro-text').textContent = SETTINGS.greeting;
  updateStatus();
  // Only visitors who already chatted connect right away; everyone else
  // gets a visitor record when they first open the panel.
  if (loadStored()) connect();
}

// The shared core first, then the widget, once the page is there.
function start() {
  loadCore().then(
    () => {
      if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init, { once: true });
      else init();
    },
    (err) => console.warn(`Switchboard: the chat could not load from ${SERVER}: ${err && err.message}`),
  );
}

start();
})();
