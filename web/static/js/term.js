// A read-only xterm.js terminal for the console's replay and live pages (JitgateTerm.create).
//
// xterm.js writes a few <style> elements of its own (row layout, theme colours, scrollbar).
// The console's Content-Security-Policy (style-src 'self') blocks inline <style>, and rightly:
// so their text is copied into a constructed stylesheet (CSSOM, which CSP allows, as it allows
// element.style), again each time xterm.js changes them. That text comes from xterm.js and the
// fixed options below, never from a recording. Recorded bytes only ever go to term.write().
(function () {
  'use strict';

  function mirrorStyles(root) {
    const sheet = new CSSStyleSheet();
    document.adoptedStyleSheets = [...document.adoptedStyleSheets, sheet];
    const copy = () => sheet.replaceSync(
      Array.from(root.querySelectorAll('style'), (s) => s.textContent).join('\n'));
    new MutationObserver(copy).observe(root, { subtree: true, childList: true, characterData: true });
    copy();
  }

  // `lines`: output written without a terminal (an exec session's stdout), whose "\n" alone must
  // also return the cursor (convertEol), as a terminal's line discipline would have.
  function create(element, cols, rows, lines) {
    const term = new window.Terminal({
      cols: cols, rows: rows, disableStdin: true, cursorBlink: false, scrollback: 10000, convertEol: Boolean(lines),
      fontFamily: 'DejaVu Sans Mono, Liberation Mono, monospace', fontSize: 14,
      theme: { background: '#101418', foreground: '#d8dee9' },
    });
    term.open(element);
    mirrorStyles(element);
    return term;
  }

  // Seconds as mm:ss (h:mm:ss past an hour).
  function clock(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    const two = (n) => String(n).padStart(2, '0');
    return h ? `${h}:${two(m)}:${two(r)}` : `${two(m)}:${two(r)}`;
  }

  window.JitgateTerm = { create: create, clock: clock };
})();
