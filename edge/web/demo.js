// The demo site's loader: the widget, for the team named in the page's own
// address (`/?team=sales`), so that a bot-first team can be tried without
// another page. A real site names its team in the script's address:
// <script type="module" src="/widget.js?team=sales"></script>.

const team = new URLSearchParams(location.search).get('team');
const src = team && /^[A-Za-z0-9_-]{1,64}$/.test(team) ? `/widget.js?team=${team}` : '/widget.js';
import(src);
