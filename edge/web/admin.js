// Switchboard admin pages: the live dashboard (who is there, the queues,
// the last 24 hours from the stats API, drawn as plain SVG), agents,
// teams, canned responses, the queue and broadcasts. Everything goes
// through the admin HTTP API (docs/protocol.md) with an admin's token.
//
// Plain ES module, no build step. SECURITY: every piece of text from the
// server is set with textContent, never as HTML.

import { pageLanguage, translator, translatePage, languagePicker } from '/i18n.js';
import { STRINGS } from '/admin-strings.js';
import { make } from '/core/dom.js';

// The pages' language (i18n.js); every string is in admin-strings.js.
const LANG = pageLanguage();
const t = translator(STRINGS, LANG);
translatePage(document, t, LANG);

const AUTH_KEY = 'switchboard.admin';
// Agents' statuses, as the pages say them.
const STATUS_KEYS = { online: 'statusOnline', away: 'statusAway', offline: 'statusOffline' };
const REFRESH_MS = 5000;
const SVG = 'http://www.w3.org/2000/svg';

const $ = (id) => document.getElementById(id);

function duration(secs) {
  if (typeof secs !== 'number' || !Number.isFinite(secs)) return '–';
  if (secs < 60) return `${Math.round(secs)} s`;
  if (secs < 3600) return `${Math.round(secs / 60)} min`;
  return `${(secs / 3600).toFixed(1)} h`;
}

const S = { token: null, timer: null };

function loadAuth() {
  try {
    const v = JSON.parse(sessionStorage.getItem(AUTH_KEY) || 'null');
    return v && typeof v.token === 'string' ? v : null;
  } catch {
    return null;
  }
}

function problem(text) {
  $('problem').textContent = text || '';
  $('problem').hidden = !text;
}

// A call of the API: the parsed JSON, or an Error carrying the server's
// message. A 401 or 403 ends the session.
async function api(method, path, body) {
  const headers = { authorization: `Bearer ${S.token}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  let json = null;
  try {
    json = await res.json();
  } catch {
    json = null;
  }
  if (res.status === 401 || res.status === 403) {
    logout(json && json.message ? json.message : t('signInAsAdmin'));
    throw new Error('signed out');
  }
  if (!res.ok) throw new Error((json && json.message) || t('serverAnswered', { status: res.status }));
  return json;
}

// ---------------------------------------------------------------- login

async function login(event) {
  event.preventDefault();
  const error = $('login-error');
  error.hidden = true;
  let res;
  try {
    res = await fetch('/api/v1/agents/login', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ login: $('login').value.trim(), password: $('password').value }),
    });
  } catch {
    error.textContent = t('cannotReach');
    error.hidden = false;
    return;
  }
  const body = await res.json().catch(() => null);
  if (!res.ok || !body || typeof body.token !== 'string') {
    error.textContent = (body && body.message) || t('signInFailed');
    error.hidden = false;
    return;
  }
  if (body.role !== 'admin') {
    error.textContent = t('notAdmin');
    error.hidden = false;
    return;
  }
  sessionStorage.setItem(AUTH_KEY, JSON.stringify({ token: body.token, name: body.name || '' }));
  start(loadAuth());
}

function logout(message) {
  clearInterval(S.timer);
  S.timer = null;
  S.token = null;
  sessionStorage.removeItem(AUTH_KEY);
  $('app').hidden = true;
  $('login-view').hidden = false;
  $('login-error').textContent = message || '';
  $('login-error').hidden = !message;
}

function start(auth) {
  if (!auth) return;
  S.token = auth.token;
  $('admin-name').textContent = auth.name || '';
  $('login-view').hidden = true;
  $('app').hidden = false;
  refresh();
  loadStats();
  clearInterval(S.timer);
  S.timer = setInterval(refresh, REFRESH_MS);
}

// ------------------------------------------------------------ dashboard

async function refresh() {
  try {
    const [directory, agents, teams, canned, queue] = await Promise.all([
      api('GET', '/api/v1/directory'),
      api('GET', '/api/v1/admin/agents'),
      api('GET', '/api/v1/admin/teams'),
      api('GET', '/api/v1/canned'),
      api('GET', '/api/v1/admin/queue'),
    ]);
    problem('');
    renderNow(directory);
    renderAgents(agents.agents || []);
    renderTeams(teams.teams || []);
    renderCanned(canned.canned || []);
    renderQueue(queue.entries || []);
  } catch (err) {
    if (S.token) problem(err.message);
  }
}

function renderNow(d) {
  const agents = Array.isArray(d.agents) ? d.agents.filter((a) => !a.disabled) : [];
  const count = (status) => agents.filter((a) => a.status === status).length;
  $('kpi-online').textContent = String(count('online'));
  $('kpi-away').textContent = String(count('away'));
  $('kpi-offline').textContent = String(count('offline'));
  const open = d.open || {};
  $('kpi-assigned').textContent = String(open.assigned ?? '–');
  $('kpi-waiting').textContent = String(open.waiting ?? '–');
  $('kpi-missed').textContent = String(open.missed ?? '–');
  const now = Number(d.at) || Date.now();
  const rows = (Array.isArray(d.teams) ? d.teams : []).map((team) => {
    const tr = make('tr');
    const oldest = Number(team.oldest_queued_at);
    tr.append(
      make('td', null, team.team || t('noTeam')),
      make('td', null, team.online),
      make('td', null, team.away),
      make('td', null, team.waiting),
      make('td', null, oldest ? duration((now - oldest) / 1000) : '–'),
      make('td', null, team.bot ? t('yes') : ''),
    );
    return tr;
  });
  $('teams-now').replaceChildren(...rows);
}

async function loadStats() {
  const since = new Date(Date.now() - 24 * 3600 * 1000).toISOString();
  const tz = Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
  try {
    const report = await api('GET', `/api/v1/stats?since=${encodeURIComponent(since)}&tz=${encodeURIComponent(tz)}`);
    $('stats-note').hidden = true;
    renderStats(report);
  } catch (err) {
    if (!S.token) return;
    $('stats-note').textContent = t('statsUnavailable', { message: err.message });
    $('stats-note').hidden = false;
  } finally {
    if (S.token) setTimeout(loadStats, REFRESH_MS * 2);
  }
}

function renderStats(r) {
  const c = r.conversations || {};
  $('stat-started').textContent = String(c.started ?? 0);
  $('stat-answered').textContent = String(c.answered ?? 0);
  $('stat-wait').textContent = duration(r.wait_secs && r.wait_secs.median);
  $('stat-first').textContent = duration(r.first_response_secs && r.first_response_secs.median);
  const csat = r.csat && r.csat.average;
  $('stat-csat').textContent = typeof csat === 'number' ? csat.toFixed(1) : '–';
  drawChart(Array.isArray(r.by_hour) ? r.by_hour : []);
}

// Bars of conversations started per hour, answered ones darker.
function drawChart(hours) {
  const svg = $('chart');
  const width = 480;
  const height = 160;
  const base = height - 20;
  const max = Math.max(1, ...hours.map((h) => Number(h.started) || 0));
  const slot = width / 24;
  const nodes = [];
  for (const h of hours) {
    const hour = Number(h.hour);
    if (!(hour >= 0 && hour < 24)) continue;
    for (const [value, cls] of [[Number(h.started) || 0, 'bar-started'], [Number(h.answered) || 0, 'bar-answered']]) {
      if (!value) continue;
      const bar = document.createElementNS(SVG, 'rect');
      const tall = ((base - 10) * value) / max;
      bar.setAttribute('x', String(hour * slot + 2));
      bar.setAttribute('y', String(base - tall));
      bar.setAttribute('width', String(slot - 4));
      bar.setAttribute('height', String(tall));
      bar.setAttribute('class', cls);
      bar.dataset.hour = String(hour);
      bar.dataset.value = String(value);
      const title = document.createElementNS(SVG, 'title');
      title.textContent = t(cls === 'bar-started' ? 'barStarted' : 'barAnswered', { hour: String(hour).padStart(2, '0'), n: value });
      bar.appendChild(title);
      nodes.push(bar);
    }
  }
  for (const hour of [0, 6, 12, 18]) {
    const label = document.createElementNS(SVG, 'text');
    label.setAttribute('x', String(hour * slot + 2));
    label.setAttribute('y', String(height - 4));
    label.setAttribute('class', 'axis');
    label.textContent = `${String(hour).padStart(2, '0')}:00`;
    nodes.push(label);
  }
  const axis = document.createElementNS(SVG, 'line');
  for (const [k, v] of [['x1', 0], ['x2', width], ['y1', base], ['y2', base]]) axis.setAttribute(k, String(v));
  axis.setAttribute('class', 'axis-line');
  nodes.push(axis);
  svg.replaceChildren(...nodes);
}

// --------------------------------------------------------------- agents

function renderAgents(agents) {
  const rows = agents.map((a) => {
    const tr = make('tr');
    tr.dataset.login = String(a.login || '');
    if (a.disabled) tr.classList.add('disabled');
    const team = make('input');
    team.value = a.team || '';
    team.setAttribute('aria-label', t('teamOf', { name: a.name }));
    team.addEventListener('change', () => change(a.id, { team: team.value.trim() || null }));
    const capacity = make('input');
    capacity.type = 'number';
    capacity.min = '1';
    capacity.value = String(a.capacity || '');
    capacity.setAttribute('aria-label', t('capacityOf', { name: a.name }));
    capacity.addEventListener('change', () => change(a.id, { capacity: Number(capacity.value) }));
    const role = make('select');
    for (const r of ['agent', 'admin']) role.appendChild(Object.assign(make('option', null, t(r === 'admin' ? 'roleAdmin' : 'roleAgent')), { value: r }));
    role.value = a.role || 'agent';
    role.setAttribute('aria-label', t('roleOf', { name: a.name }));
    role.addEventListener('change', () => change(a.id, { role: role.value }));
    const toggle = make('button', null, a.disabled ? t('enable') : t('disable'));
    toggle.type = 'button';
    toggle.addEventListener('click', () => change(a.id, { disabled: !a.disabled }));
    const cells = [make('td', null, a.name), make('td', null, a.login), make('td'), make('td'), make('td'),
      make('td', `status-${a.status}`, a.disabled ? t('disabled') : STATUS_KEYS[a.status] ? t(STATUS_KEYS[a.status]) : a.status), make('td', null, a.load), make('td')];
    cells[2].appendChild(team);
    cells[3].appendChild(capacity);
    cells[4].appendChild(role);
    cells[7].appendChild(toggle);
    tr.append(...cells);
    return tr;
  });
  // Editing a field is not interrupted by the periodic refresh.
  if (!$('agents').contains(document.activeElement)) $('agents').replaceChildren(...rows);
}

async function change(id, fields) {
  try {
    await api('PATCH', `/api/v1/admin/agents/${encodeURIComponent(id)}`, fields);
    problem('');
  } catch (err) {
    problem(err.message);
  }
  refresh();
}

async function addAgent(event) {
  event.preventDefault();
  const body = {
    name: $('new-name').value.trim(),
    login: $('new-login').value.trim(),
    password: $('new-password').value,
    capacity: Number($('new-capacity').value) || 3,
    role: $('new-role').value,
  };
  const team = $('new-team').value.trim();
  if (team) body.team = team;
  try {
    const added = await api('POST', '/api/v1/admin/agents', body);
    $('add-agent-result').textContent = t('added', { name: added.name, login: added.login });
    $('add-agent').reset();
  } catch (err) {
    $('add-agent-result').textContent = err.message;
  }
  refresh();
}

// ---------------------------------------------------------------- teams

function renderTeams(teams) {
  const rows = teams.map((team) => {
    const settings = team.settings || {};
    const tr = make('tr');
    const strategy = make('select');
    for (const s of ['', 'least_busy', 'longest_idle']) {
      strategy.appendChild(Object.assign(make('option', null, s || t('configured')), { value: s }));
    }
    strategy.value = settings.strategy || '';
    const botFirst = Object.assign(make('input'), { type: 'checkbox', checked: settings.bot_first !== false });
    const prechat = Object.assign(make('input'), { type: 'checkbox', checked: !!settings.prechat });
    const save = make('button', null, t('save'));
    save.type = 'button';
    save.addEventListener('click', async () => {
      const body = { bot_first: botFirst.checked, prechat: prechat.checked };
      if (strategy.value) body.strategy = strategy.value;
      if (settings.first_reply_secs) body.first_reply_secs = settings.first_reply_secs;
      try {
        await api('PUT', `/api/v1/admin/teams/${encodeURIComponent(team.team)}`, body);
        problem('');
      } catch (err) {
        problem(err.message);
      }
      refresh();
    });
    const cells = [make('td', null, team.team), make('td'), make('td'), make('td'), make('td')];
    cells[1].appendChild(strategy);
    cells[2].appendChild(botFirst);
    cells[3].appendChild(prechat);
    cells[4].appendChild(save);
    tr.append(...cells);
    return tr;
  });
  if (!$('teams').contains(document.activeElement)) $('teams').replaceChildren(...rows);
}

async function addTeam(event) {
  event.preventDefault();
  const team = $('team-name').value.trim();
  try {
    await api('PUT', `/api/v1/admin/teams/${encodeURIComponent(team)}`, {});
    $('add-team').reset();
    problem('');
  } catch (err) {
    problem(err.message);
  }
  refresh();
}

// --------------------------------------------------------------- canned

function renderCanned(canned) {
  const items = canned.map((c) => {
    const li = make('li');
    li.append(make('code', null, `/${c.shortcut}`), make('span', 'canned-text', c.text));
    const remove = make('button', null, t('remove'));
    remove.type = 'button';
    remove.addEventListener('click', async () => {
      try {
        await api('DELETE', `/api/v1/admin/canned/${encodeURIComponent(c.shortcut)}`);
      } catch (err) {
        problem(err.message);
      }
      refresh();
    });
    li.appendChild(remove);
    return li;
  });
  $('canned').replaceChildren(...items);
}

async function addCanned(event) {
  event.preventDefault();
  const shortcut = $('canned-shortcut').value.trim().replace(/^\//, '');
  try {
    await api('PUT', `/api/v1/admin/canned/${encodeURIComponent(shortcut)}`, { text: $('canned-text').value });
    $('add-canned').reset();
    problem('');
  } catch (err) {
    problem(err.message);
  }
  refresh();
}

// ---------------------------------------------------------------- queue

function renderQueue(entries) {
  const items = entries.map((e) => {
    const li = make('li');
    const who = (e.visitor && e.visitor.name) || t('visitor');
    li.append(make('span', null, `#${e.position ?? '?'} ${who}${e.team ? ` · ${e.team}` : ''}${e.priority ? t('priorityN', { n: e.priority }) : ''}`));
    const first = make('button', null, t('prioritise'));
    first.type = 'button';
    first.addEventListener('click', () => queueAction('prioritize', { conversation_id: e.conversation_id, priority: (Number(e.priority) || 0) + 10 }));
    const assign = make('button', null, t('assignTo'));
    assign.type = 'button';
    assign.addEventListener('click', () => {
      const login = window.prompt(t('agentLogin'));
      if (login) queueAction('assign', { conversation_id: e.conversation_id, agent: login.trim() });
    });
    li.append(first, assign);
    return li;
  });
  $('queue').replaceChildren(...items);
  $('queue-empty').hidden = items.length > 0;
}

async function queueAction(action, body) {
  try {
    await api('POST', `/api/v1/admin/queue/${action}`, body);
    problem('');
  } catch (err) {
    problem(err.message);
  }
  refresh();
}

async function broadcast(event) {
  event.preventDefault();
  try {
    await api('POST', '/api/v1/admin/broadcast', { to: $('broadcast-to').value, text: $('broadcast-text').value });
    $('broadcast-result').textContent = t('sentDone');
    $('broadcast').reset();
  } catch (err) {
    $('broadcast-result').textContent = err.message;
  }
}

$('login-form').addEventListener('submit', login);
$('logout').addEventListener('click', () => logout(''));
$('add-agent').addEventListener('submit', addAgent);
$('add-team').addEventListener('submit', addTeam);
$('add-canned').addEventListener('submit', addCanned);
$('broadcast').addEventListener('submit', broadcast);
languagePicker($('language'), LANG);
languagePicker($('login-language'), LANG);
start(loadAuth());
