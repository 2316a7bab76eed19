// Languages of Switchboard's pages: which one a page speaks, and its
// strings. Every page keeps every string it shows in one table per
// language (`{ en: {...}, 'zh-CN': {...} }`); `{name}` marks a value put
// in by `t`. Add a language by adding a table with every key.
//
// Shared by the widget, the console and the admin pages (an ES module;
// the widget imports it from its own server).

// Where the console and admin pages keep the language an agent chose.
export const LANG_KEY = 'switchboard.lang';

// The languages there are tables for, by their tag, with their own name.
export const LANGUAGES = { en: 'English', 'zh-CN': '简体中文' };

// The first of `wanted` and the browser's languages that Switchboard
// speaks (any `zh` is Simplified Chinese), else English.
export function pickLanguage(wanted) {
  const browser = globalThis.navigator ? navigator.languages || [navigator.language] : [];
  for (const choice of [wanted, ...browser].filter(Boolean)) {
    const tag = String(choice).toLowerCase();
    if (tag.startsWith('zh')) return 'zh-CN';
    if (tag.startsWith('en')) return 'en';
  }
  return 'en';
}

// The console's and admin pages' language: `?lang=` in the address, else
// the one chosen in the page (saved), else the browser's.
export function pageLanguage() {
  let wanted = null;
  try {
    wanted = new URLSearchParams(location.search).get('lang') || localStorage.getItem(LANG_KEY);
  } catch {
    wanted = null;
  }
  return pickLanguage(wanted);
}

// Remembers the language chosen in a page (for every page of the site).
export function saveLanguage(lang) {
  try {
    localStorage.setItem(LANG_KEY, lang);
  } catch {
    // Not saved: the page still switches for now.
  }
}

// `t(key, values)`: the string `key` in `lang` (English when the table
// lacks it), with `{name}`s filled in from `values`.
export function translator(strings, lang) {
  const table = strings[lang] || strings.en;
  return (key, values) => {
    const text = table[key] ?? strings.en[key] ?? key;
    return values ? text.replace(/\{(\w+)\}/g, (m, k) => (k in values ? String(values[k]) : m)) : text;
  };
}

// Puts a page's static strings in its language: the text of every
// `data-i18n` element, and the attributes named by `data-i18n-placeholder`,
// `data-i18n-label` (aria-label) and `data-i18n-title`.
export function translatePage(root, t, lang) {
  if (root.documentElement) root.documentElement.lang = lang;
  for (const node of root.querySelectorAll('[data-i18n]')) node.textContent = t(node.dataset.i18n);
  for (const node of root.querySelectorAll('[data-i18n-placeholder]')) node.placeholder = t(node.dataset.i18nPlaceholder);
  for (const node of root.querySelectorAll('[data-i18n-label]')) node.setAttribute('aria-label', t(node.dataset.i18nLabel));
  for (const node of root.querySelectorAll('[data-i18n-title]')) node.title = t(node.dataset.i18nTitle);
}

// Fills a <select> with the languages, `lang` chosen; choosing another
// saves it and reloads the page in it.
export function languagePicker(select, lang) {
  select.replaceChildren(
    ...Object.entries(LANGUAGES).map(([tag, name]) => Object.assign(document.createElement('option'), { value: tag, textContent: name, selected: tag === lang })),
  );
  select.addEventListener('change', () => {
    saveLanguage(select.value);
    const url = new URL(location.href);
    url.searchParams.delete('lang');
    location.replace(url.href);
  });
}
