// Kefu's layout helpers for phones and tablets: the composer on a touch screen (Enter is a new line, the send button
// sends, the placeholder says so, the box grows up to five lines), the thread kept at its newest message when the
// on-screen keyboard opens (visualViewport), and the third column as a drawer (tablet) or sheet (phone) opened by
// `info-toggle`, closed by its close button, Esc or a tap outside. kefu.js does the rest; nothing here talks to the
// server.
(function () {
  "use strict";

  const body = document.body;
  const $ = (sel, root = document) => root.querySelector(sel);
  const touch = () => window.matchMedia("(pointer: coarse)").matches;
  const MAX_LINES = 5;

  // --- the composer ---
  function grow(area) {
    const style = getComputedStyle(area);
    const line = parseFloat(style.lineHeight) || parseFloat(style.fontSize) * 1.4;
    const frame = parseFloat(style.paddingTop) + parseFloat(style.paddingBottom)
      + parseFloat(style.borderTopWidth) + parseFloat(style.borderBottomWidth);
    const most = Math.ceil(line * MAX_LINES + frame);
    area.style.height = "auto"; // measure the text's own height, not the box's
    const wanted = area.scrollHeight + parseFloat(style.borderTopWidth) + parseFloat(style.borderBottomWidth);
    area.style.height = `${Math.min(wanted, most)}px`;
    area.style.overflowY = wanted > most ? "auto" : "hidden";
  }
  function prepareComposer(root = document) {
    const area = $(".composer textarea", root);
    if (!area) return;
    if (touch() && area.dataset.touchPlaceholder) area.placeholder = area.dataset.touchPlaceholder;
    grow(area);
  }
  document.addEventListener("input", (e) => {
    const area = e.target.closest?.(".composer textarea");
    if (area) grow(area);
  });
  document.addEventListener("reset", (e) => { // kefu.js empties the form after a send
    const area = $("textarea", e.target);
    if (area && e.target.matches(".composer")) requestAnimationFrame(() => grow(area));
  });

  // --- the thread stays at its newest message when the keyboard (or anything) makes the screen shorter ---
  let atBottom = true;
  const scroller = () => $(".thread-scroll");
  const nearBottom = (s) => s.scrollHeight - s.scrollTop - s.clientHeight < 40;
  document.addEventListener("scroll", (e) => {
    if (e.target instanceof HTMLElement && e.target.matches(".thread-scroll")) atBottom = nearBottom(e.target);
  }, true);
  function fitViewport() {
    const vv = window.visualViewport;
    // the keyboard makes the visual viewport shorter; a pinch-zoom only scales it (height × scale stays the screen's)
    if (vv) document.documentElement.style.setProperty("--vvh", `${Math.round(vv.height * vv.scale)}px`);
    const s = scroller();
    if (s && atBottom) s.scrollTop = s.scrollHeight;
  }
  if (window.visualViewport) window.visualViewport.addEventListener("resize", fitViewport);
  else window.addEventListener("resize", fitViewport);
  document.addEventListener("focusin", (e) => { // the keyboard is about to open: remember whether we were at the end
    if (e.target.closest?.(".composer")) {
      const s = scroller();
      if (s) atBottom = nearBottom(s);
    }
  });

  // --- the third column as a drawer (768–1023 px) or a sheet (phone) ---
  function backdrop() {
    let b = $(".sheet-backdrop");
    if (!b) {
      b = document.createElement("div");
      b.className = "sheet-backdrop";
      b.dataset.testid = "sheet-backdrop";
      b.addEventListener("click", closeSheet);
      body.appendChild(b);
    }
    return b;
  }
  function setExpanded() {
    const open = body.dataset.sheet === "info";
    for (const t of document.querySelectorAll("[data-open-sheet]")) t.setAttribute("aria-expanded", String(open));
  }
  function openSheet(name) {
    backdrop();
    body.dataset.sheet = name;
    setExpanded();
    $(".col-info .sheet-close:not([hidden])")?.focus({ preventScroll: true });
  }
  function closeSheet() {
    if (!body.dataset.sheet) return;
    body.dataset.sheet = "";
    setExpanded();
  }
  document.addEventListener("click", (e) => {
    const opener = e.target.closest("[data-open-sheet]");
    if (opener) {
      if (body.dataset.sheet === opener.dataset.openSheet) closeSheet();
      else openSheet(opener.dataset.openSheet);
    } else if (e.target.closest(".quick-toggle")) {
      backdrop(); // kefu.js opens the quick-reply sheet: a tap outside closes it too
    }
  });
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && body.dataset.sheet) closeSheet();
  });
  // the sheet belongs to the screen it was opened on: a wider screen shows the column itself
  window.matchMedia("(min-width: 1024px)").addEventListener("change", (e) => { if (e.matches) closeSheet(); });
  new MutationObserver(setExpanded).observe(body, { attributes: true, attributeFilter: ["data-sheet"] });

  // a conversation opened in place (htmx): its composer, and the sheet of the previous one closed
  document.addEventListener("htmx:afterSwap", (e) => {
    if (e.detail.target?.id === "thread-col") {
      if (body.dataset.sheet === "info") closeSheet();
      atBottom = true;
      prepareComposer(e.detail.target);
    }
  });

  prepareComposer();
  fitViewport();
})();
