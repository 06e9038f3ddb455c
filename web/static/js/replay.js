// The replay page's player: asciicast v2 from /recordings/REF/cast into an xterm.js terminal,
// with play/pause, speed and seek. State is mirrored on the player element's data attributes
// (data-state, data-position, data-duration) for people's tools and the browser tests.
(function () {
  'use strict';
  const el = document.getElementById('player');
  if (!el) return;
  const screen = el.querySelector('.terminal');
  const playButton = el.querySelector('button.play');
  const speedSelect = el.querySelector('select.speed');
  const seekInput = el.querySelector('input.seek');
  const clockText = el.querySelector('.clock');
  const statusText = el.querySelector('.player-status');
  const marksList = document.getElementById('marks');

  let term = null, width = 80, height = 24, events = [], duration = 0;
  let next = 0, position = 0, timer = null, playing = false, wallStart = 0, positionStart = 0;

  const speed = () => Number(speedSelect.value) || 1;

  function show() {
    seekInput.value = String(position);
    clockText.textContent = `${JitgateTerm.clock(position)} / ${JitgateTerm.clock(duration)}`;
    el.dataset.position = position.toFixed(3);
  }

  // Write every event up to `upTo` seconds in one batch (resizes in their order).
  function apply(upTo, prefix) {
    let out = prefix || '';
    while (next < events.length && events[next][0] <= upTo) {
      const [, code, data] = events[next];
      if (code === 'o') {
        out += data;
      } else if (code === 'r') {
        if (out) { term.write(out); out = ''; }
        const [cols, rows] = data.split('x').map(Number);
        term.resize(cols, rows);
      }
      next += 1;
    }
    if (out) term.write(out);
  }

  function tick() {
    position = Math.min(duration, positionStart + ((performance.now() - wallStart) / 1000) * speed());
    apply(position);
    show();
    if (next >= events.length) {
      stop('ended');
      return;
    }
    const wait = ((events[next][0] - position) / speed()) * 1000;
    timer = setTimeout(tick, Math.max(0, Math.min(wait, 250)));  // the clock moves at least 4 times a second
  }

  function play() {
    if (next >= events.length) seek(0);
    playing = true;
    wallStart = performance.now();
    positionStart = position;
    playButton.textContent = 'Pause';
    el.dataset.state = 'playing';
    tick();
  }

  function stop(state) {
    playing = false;
    clearTimeout(timer);
    playButton.textContent = 'Play';
    el.dataset.state = state;
  }

  function seek(t) {
    // Within a millisecond of the end is the end (data-duration and the clock are rounded).
    position = t >= duration - 0.001 ? duration : Math.max(0, t);
    next = 0;
    term.resize(width, height);
    apply(position, '\x1bc');  // ESC c: a full reset, queued before the replayed output
    positionStart = position;
    wallStart = performance.now();
    show();
  }

  function load(text) {
    const lines = text.split('\n').filter((line) => line.length > 0);
    const header = JSON.parse(lines[0]);
    width = header.width;
    height = header.height;
    events = lines.slice(1).map((line) => JSON.parse(line));
    duration = events.length ? events[events.length - 1][0] : 0;
    term = JitgateTerm.create(screen, width, height);
    seekInput.max = String(duration);
    el.dataset.duration = duration.toFixed(3);
    for (const [t, code, data] of events) {
      if (code !== 'm') continue;
      const item = document.createElement('li');
      const button = document.createElement('button');
      button.type = 'button';
      button.textContent = JitgateTerm.clock(t);
      button.addEventListener('click', () => seek(t));
      const note = document.createElement('span');
      note.textContent = ` ${data}`;  // escaped by the server; shown as text
      item.append(button, note);
      marksList.append(item);
    }
    if (!marksList.children.length) {
      const item = document.createElement('li');
      item.textContent = 'none: no warning, extension or cut was recorded';
      marksList.append(item);
    }
    statusText.textContent = '';
    play();
  }

  playButton.addEventListener('click', () => (playing ? stop('paused') : play()));
  speedSelect.addEventListener('change', () => { positionStart = position; wallStart = performance.now(); });
  seekInput.addEventListener('input', () => seek(Number(seekInput.value)));

  fetch(el.dataset.cast, { credentials: 'same-origin' })
    .then((r) => {
      if (!r.ok) throw new Error(`the recording could not be read (HTTP ${r.status})`);
      return r.text();
    })
    .then(load)
    .catch((err) => {
      el.dataset.state = 'failed';
      statusText.textContent = String(err.message || err);
    });
})();
