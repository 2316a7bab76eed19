// The demo site's loader: the one tag a site adds, for the team and the
// language named in the page's own address (`/?team=sales&lang=zh-CN`), so
// that they can be tried without another page. A real site writes the tag itself:
// <script src="https://chat.example.com/widget.js" async data-team="sales"></script>

const params = new URLSearchParams(location.search);
const team = params.get('team');
const lang = params.get('lang');
const tag = document.createElement('script');
tag.src = '/widget.js';
tag.async = true;
if (team && /^[A-Za-z0-9_-]{1,64}$/.test(team)) tag.dataset.team = team;
if (lang && /^[A-Za-z-]{2,16}$/.test(lang)) tag.dataset.lang = lang;
document.body.appendChild(tag);
