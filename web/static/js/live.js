// The watch page: a live session's recording as Server-Sent Events (/live/SESSION/feed).
// Terminal bytes go to the xterm.js terminal only; everything else is text in a list.
// The stream ends with an `end` event (the session ended, or the viewer's sign-in did);
// it is never reopened by itself, so nothing is shown twice.
(function () {
  'use strict';
  const el = document.getElementById('live');
  if (!el) return;
  const term = JitgateTerm.create(el.querySelector('.terminal'), 80, 24);
  const lines = document.getElementById('live-lines');
  const statusText = el.querySelector('.live-status');
  const source = new EventSource(el.dataset.feed);
  el.dataset.state = 'connecting';

  source.addEventListener('open', () => {
    el.dataset.state = 'watching';
    statusText.textContent = 'watching live';
  });
  source.addEventListener('o', (e) => term.write(JSON.parse(e.data)));
  source.addEventListener('r', (e) => {
    const [cols, rows] = JSON.parse(e.data);
    term.resize(cols, rows);
  });
  source.addEventListener('line', (e) => {
    const item = document.createElement('li');
    item.textContent = JSON.parse(e.data).text;
    lines.append(item);
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
