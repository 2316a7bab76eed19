// The demo site's loader: the one tag a site adds, for the team named in
// the page's own address (`/?team=sales`), so that a bot-first team can be
// tried without another page. A real site writes the tag itself:
// <script src="https://chat.example.com/widget.js" async data-team="sales"></script>

const team = new URLSearchParams(location.search).get('team');
const tag = document.createElement('script');
tag.src = '/widget.js';
tag.async = true;
if (team && /^[A-Za-z0-9_-]{1,64}$/.test(team)) tag.dataset.team = team;
document.body.appendChild(tag);
