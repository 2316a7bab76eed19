// Small DOM helpers shared by the widget, the console and the admin pages.
//
// SECURITY: text goes in with textContent only, never as HTML.

// An element with a class and text (both optional).
export function make(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text != null) node.textContent = String(text);
  return node;
}

// A <time> of an ISO time (now when absent), shown as hours and minutes,
// with the full date and time as its title.
export function timeElement(iso, className = 'time') {
  const d = iso ? new Date(iso) : new Date();
  const t = make('time', className);
  if (!Number.isNaN(d.getTime())) {
    t.dateTime = d.toISOString();
    t.textContent = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    t.title = d.toLocaleString();
  }
  return t;
}

// A random UUID (v4): the `client_id` of a frame.
export function uuid() {
  if (globalThis.crypto && typeof crypto.randomUUID === 'function') return crypto.randomUUID();
  // randomUUID needs a secure context; getRandomValues does not.
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
