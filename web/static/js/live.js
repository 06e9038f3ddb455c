// The watch page: a live session's recording as Server-Sent Events (/sessions/live/SESSION/feed).
// Terminal bytes go to the xterm.js terminal only; everything else is text in a list.
// The stream ends with an `end` event (the session ended, or the viewer's sign-in did);
// it is never reopened by itself, so nothing is shown twice.
(function () {
  'use strict';
  const MAX_LINES = 2000;
  const el = document.getElementById('live');
  if (!el) return;
  const screen = el.querySelector('.terminal');  // none for sftp and database sessions: lines only
  const term = screen ? JitgateTerm.create(screen, 80, 24, el.dataset.kind !== 'terminal') : null;
  const lines = document.getElementById('live-lines');
  const statusText = el.querySelector('.live-status');
  const source = new EventSource(el.dataset.feed);
  el.dataset.state = 'connecting';

  source.addEventListener('open', () => {
    el.dataset.state = 'watching';
    statusText.textContent = 'watching live';
  });
  source.addEventListener('o', (e) => term && term.write(JSON.parse(e.data)));
  source.addEventListener('r', (e) => {
    const [cols, rows] = JSON.parse(e.data);
    if (term) term.resize(cols, rows);
  });
  source.addEventListener('line', (e) => {
    const item = document.createElement('li');
    item.textContent = JSON.parse(e.data).text;
    lines.append(item);
    if (lines.children.length > MAX_LINES) lines.firstElementChild.remove();  // the page stays bounded
  });
  source.addEventListener('end', (e) => {
    source.close();
    el.dataset.state = 'ended';
    statusText.textContent = JSON.parse(e.data).why;
  });
  source.addEventListener('error', () => {
    if (el.dataset.state === 'ended') return;
    source.close();
    el.dataset.state = 'lost';
    statusText.textContent = 'the connection to the console was lost: reload the page to watch again';
  });
})();
