// The composer's helpers: drafts kept per person and conversation, quick replies put into the composer to edit
// (besides sending them at once), and the switches for sound and browser notifications. The sending itself is
// kefu.js's outbox: a text handed to it is a pending send, not a draft.
(function () {
  "use strict";

  const body = document.body;
  const me = body.dataset.userId;
  if (!me || body.dataset.mode === "monitor") return; // the admins' monitor writes nothing
  const $ = (sel, root = document) => root.querySelector(sel);
  const area = () => $(".composer textarea");
  const openCid = () => $('[data-testid="thread"]')?.dataset.conversationId || "";

  // --- drafts: localStorage, one per person and conversation, kept across conversations, reloads and closed tabs ---
  const DRAFT = `kefu-draft:${me}:`;
  const MOST_DRAFTS = 100; // the oldest go beyond this many
  function readDraft(cid) {
    try { return JSON.parse(localStorage.getItem(DRAFT + cid) || "null")?.text || ""; } catch { return ""; }
  }
  function writeDraft(cid, text) {
    if (!cid) return;
    try {
      if (!text.trim()) { localStorage.removeItem(DRAFT + cid); return; }
      const fresh = localStorage.getItem(DRAFT + cid) === null;
      localStorage.setItem(DRAFT + cid, JSON.stringify({ text, at: Date.now() }));
      if (fresh) prune();
    } catch { /* storage full or off: the text stays in the composer, it just does not outlive the page */ }
  }
  function prune() {
    const mine = [];
    for (let i = 0; i < localStorage.length; i += 1) {
      const key = localStorage.key(i);
      if (!key?.startsWith(DRAFT)) continue;
      let at = 0;
      try { at = JSON.parse(localStorage.getItem(key))?.at || 0; } catch { /* a broken one goes first */ }
      mine.push([at, key]);
    }
    mine.sort((a, b) => a[0] - b[0]);
    for (const [, key] of mine.slice(0, Math.max(0, mine.length - MOST_DRAFTS))) localStorage.removeItem(key);
  }
  // The composer holds what it holds now: keep it as the draft (or forget the draft when it is empty).
  function sync() {
    const text = area();
    if (text && text.form?.dataset.draftOf === openCid()) writeDraft(openCid(), text.value);
  }
  // A conversation's composer appeared (the page, or opening another conversation): its draft comes back.
  function restore() {
    const text = area();
    const cid = openCid();
    if (!text || !cid || text.form.dataset.draftOf === cid) return;
    text.form.dataset.draftOf = cid;
    const draft = readDraft(cid);
    if (!draft) return;
    // a refused send given back by kefu.js is already there: the draft goes after it
    text.value = [text.value, draft].filter((t) => t.trim()).join("\n");
    text.setSelectionRange(text.value.length, text.value.length);
  }
  document.addEventListener("input", (e) => { if (e.target.closest?.(".composer textarea")) sync(); });
  // kefu.js empties the composer when it takes a text into the outbox (a submit, a quick reply chosen with "/"),
  // without an input event: the draft follows once it has.
  for (const type of ["submit", "keydown", "click"]) {
    document.addEventListener(type, (e) => {
      if (e.target.closest?.(".composer, .slash-menu")) queueMicrotask(sync);
    });
  }
  document.addEventListener("htmx:afterSwap", (e) => { if (e.detail.target?.id === "thread-col") restore(); });
  restore();

  // --- quick replies: "send" sends at once (kefu.js); "insert" puts the text into the composer to edit first ---
  function insertText(text) {
    const box = area();
    if (!box) return;
    const start = box.selectionStart ?? box.value.length;
    const end = box.selectionEnd ?? start;
    box.setRangeText(text, start, end, "end");
    box.focus();
    box.dispatchEvent(new Event("input", { bubbles: true }));
  }
  document.addEventListener("click", (e) => {
    const button = e.target.closest('[data-testid="quick-reply-insert"]');
    if (!button) return;
    body.dataset.sheet = ""; // the sheet below 1024 px closes, the composer is in sight
    insertText(button.closest(".qr")?.dataset.body || "");
  });
  // On a touch screen the "/" menu has 插入 beside each reply (kefu.js renders it): the reply goes into the composer.
  document.addEventListener("click", (e) => {
    const insert = e.target.closest('.slash-menu [data-testid="slash-insert"]');
    const menu = $(".slash-menu");
    const box = $(".composer textarea");
    if (!insert || !menu || !box) return;
    const reply = $(`.qr [data-testid="quick-reply"][data-quick-reply-id="${CSS.escape(insert.dataset.quickReplyId)}"]`);
    if (!reply) return;
    box.value = "";
    insertText(reply.closest(".qr").dataset.body);
    menu.hidden = true;
    menu.replaceChildren();
  });
  // In the "/" menu, Enter sends the chosen reply (kefu.js) and Tab puts it into the composer instead.
  document.addEventListener("keydown", (e) => {
    const box = e.target.closest?.(".composer textarea");
    const menu = $(".slash-menu");
    if (!box || !menu || menu.hidden || e.key !== "Tab" || e.shiftKey || e.isComposing) return;
    const chosen = $('[aria-selected="true"]', menu) || $("button", menu);
    const reply = chosen && $(`.qr [data-testid="quick-reply"][data-quick-reply-id="${CSS.escape(chosen.dataset.quickReplyId)}"]`);
    if (!reply) return;
    e.preventDefault();
    box.value = "";
    insertText(reply.closest(".qr").dataset.body);
    menu.hidden = true;
    menu.replaceChildren();
  }, true);

  // --- sound and notifications: two switches, kept per person on this device ---
  const ALERTS = `kefu-alerts:${me}`;
  const supported = "Notification" in window;
  function prefs() {
    try { return JSON.parse(localStorage.getItem(ALERTS) || "{}") || {}; } catch { return {}; }
  }
  function setPref(name, on) {
    try { localStorage.setItem(ALERTS, JSON.stringify({ ...prefs(), [name]: on })); } catch { /* off: this page only */ }
    apply();
  }
  // Sound is on unless switched off; notifications are on when the browser allows them and they were not switched off.
  function soundOn() { return prefs().sound !== false; }
  function notifyOn() { return supported && Notification.permission === "granted" && prefs().notify !== false; }
  function apply() {
    body.dataset.sound = soundOn() ? "on" : "off"; // kefu.js plays and notifies by these
    body.dataset.notify = notifyOn() ? "on" : "off";
    const notify = $('[data-testid="notify-toggle"]');
    const sound = $('[data-testid="sound-toggle"]');
    const state = $(".notify-state");
    if (notify) {
      notify.setAttribute("aria-checked", String(notifyOn()));
      $(".switch-state", notify).textContent = notifyOn() ? "开" : "关";
      notify.disabled = !supported;
    }
    if (sound) {
      sound.setAttribute("aria-checked", String(soundOn()));
      $(".switch-state", sound).textContent = soundOn() ? "开" : "关";
    }
    if (state) {
      state.textContent = !supported ? "此浏览器不支持通知。"
        : Notification.permission === "denied" ? "浏览器已拒绝通知：请在浏览器的网站设置里允许通知后再打开。"
          : "";
    }
  }
  document.addEventListener("click", (e) => {
    if (e.target.closest('[data-testid="sound-toggle"]')) {
      setPref("sound", !soundOn());
    } else if (e.target.closest('[data-testid="notify-toggle"]')) {
      if (!supported) return;
      if (notifyOn()) { setPref("notify", false); return; }
      if (Notification.permission === "granted") { setPref("notify", true); return; }
      if (Notification.permission === "default") {
        Notification.requestPermission().then((answer) => setPref("notify", answer === "granted"));
      }
      apply(); // denied: say how to allow it
    }
  });
  document.addEventListener("htmx:afterSwap", apply); // the third column comes again with each conversation
  document.addEventListener("visibilitychange", apply); // permission may have changed in the browser's settings
  apply();
})();
