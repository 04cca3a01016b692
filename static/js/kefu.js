// Kefu's own script: the tab's one event stream (with replay on reconnect), live list and thread updates,
// read receipts, the unread title, phone views, sound and notifications. Everything else is htmx.
(function () {
  "use strict";

  const body = document.body;
  const me = body.dataset.userId;
  if (!me) return; // error pages and the like
  const actingAs = document.querySelector('meta[name="kefu-as"]')?.content || "";
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content || "";
  const baseTitle = document.title.replace(/^\(\d+\)\s*/, "");
  let lastEventId = Number(body.dataset.lastEventId || 0);
  let totalUnread = Number(body.dataset.totalUnread || 0);
  // The admins' monitor shares this script: it reads every conversation, writes none, and never marks read.
  const monitor = body.dataset.mode === "monitor";

  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
  const openThread = () => $('[data-testid="thread"]');
  const listEl = () => $("#conversation-list");

  // --- every htmx request: the CSRF token and the person this tab acts for ---
  document.addEventListener("htmx:configRequest", (e) => {
    e.detail.headers["X-CSRFToken"] = csrf;
    if (actingAs) e.detail.headers["X-Kefu-As"] = actingAs;
  });

  // --- times in the reader's own time zone ---
  const lang = document.documentElement.lang || undefined;
  const timeFmt = new Intl.DateTimeFormat(lang, { hour: "2-digit", minute: "2-digit", hour12: false });
  const dateFmt = new Intl.DateTimeFormat(lang, { month: "numeric", day: "numeric" });
  function localizeTimes(root) {
    for (const t of $$("time[datetime]", root)) {
      const d = new Date(t.getAttribute("datetime"));
      if (isNaN(d)) continue;
      const today = new Date().toDateString() === d.toDateString();
      t.textContent = today || !t.classList.contains("conv-time") ? timeFmt.format(d) : dateFmt.format(d);
      t.title = d.toLocaleString();
    }
  }

  // --- unread: title and bottom-nav badge ---
  function setTotalUnread(n) {
    totalUnread = Math.max(0, n);
    document.title = (totalUnread ? `(${totalUnread}) ` : "") + baseTitle;
    for (const b of $$('[data-testid="total-unread"]')) {
      b.textContent = String(totalUnread);
      b.hidden = totalUnread === 0;
    }
  }
  function setItemUnread(item, n) {
    const badge = $('[data-testid="unread"]', item);
    if (!badge) return;
    badge.textContent = String(n);
    badge.hidden = n === 0;
    item.classList.toggle("has-unread", n > 0);
  }

  // --- the thread ---
  function nearBottom(scroller) {
    return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 120;
  }
  function scrollToBottom() {
    const s = $(".thread-scroll");
    if (s) s.scrollTop = s.scrollHeight;
  }
  function messageRow(article, thread) {
    const right = thread.dataset.rightId || me; // whose messages stand on the right
    const row = document.createElement("div");
    row.className = "msg-row" + (article.dataset.senderId === right ? " mine" : "");
    row.appendChild(article);
    return row;
  }
  function parseMessage(html) {
    const tpl = document.createElement("template");
    tpl.innerHTML = html.trim();
    return tpl.content.querySelector('[data-testid="message"]');
  }
  // Inserts a message into the open thread once, in id order. Returns true when it was new.
  function insertMessage(article) {
    const thread = openThread();
    if (!thread || thread.dataset.conversationId !== article.dataset.conversationId) return false;
    const id = Number(article.dataset.messageId);
    if ($(`[data-testid="message"][data-message-id="${id}"]`, thread)) return false;
    $('[data-testid="thread-empty"]', thread)?.remove();
    const scroller = $(".thread-scroll");
    const stick = !scroller || nearBottom(scroller) || article.dataset.senderId === me;
    const row = messageRow(article, thread);
    const later = $$('[data-testid="message"]', thread).find((m) => Number(m.dataset.messageId) > id);
    if (later) thread.insertBefore(row, later.closest(".msg-row"));
    else thread.appendChild(row);
    localizeTimes(row);
    if (stick) scrollToBottom();
    return true;
  }

  // --- the list ---
  function updateListItem(article, isNewUnread) {
    const cid = article.dataset.conversationId;
    const item = $(`[data-testid="conversation"][data-conversation-id="${cid}"]`);
    if (!item) {
      fetchListItem(cid);
      return;
    }
    const mid = Number(article.dataset.messageId);
    if (mid > Number(item.dataset.lastMessageId || 0)) {
      item.dataset.lastMessageId = String(mid);
      const count = $('[data-testid="message-count"]', item); // the monitor's rows
      if (count) count.textContent = String(Number(count.textContent || 0) + 1);
      $(".conv-preview", item).textContent = article.dataset.preview || "";
      const time = $(".conv-time", item);
      time.setAttribute("datetime", $("time", article).getAttribute("datetime"));
      localizeTimes(item);
    }
    if (isNewUnread) {
      setItemUnread(item, Number($('[data-testid="unread"]', item).textContent || 0) + 1);
    }

    const list = listEl();
    if (list.firstElementChild !== item) list.prepend(item);
  }
  function fetchListItem(cid) {
    const list = listEl();
    if (!list || $(`[data-conversation-id="${cid}"].pending`, list)) return;
    const holder = document.createElement("div");
    holder.className = "pending";
    holder.dataset.conversationId = cid;
    list.prepend(holder);
    $(".list-empty", list)?.remove();
    // the item comes with its unread count; the total was already counted by the message event
    const url = monitor ? `/admin/c/${cid}/row?${body.dataset.filterQuery || ""}` : `/chat/c/${cid}/item`;
    htmx.ajax("GET", url, { target: holder, swap: "outerHTML" });
  }
  function markActive(cid) {
    for (const c of $$('[data-testid="conversation"]')) {
      c.classList.toggle("active", c.dataset.conversationId === String(cid));
    }
  }

  // --- reading ---
  let readTimer = null;
  function readOpenConversation() {
    if (monitor) return;
    const thread = openThread();
    if (!thread || document.visibilityState !== "visible") return;
    clearTimeout(readTimer);
    readTimer = setTimeout(() => {
      const cid = thread.dataset.conversationId;
      const ids = $$('[data-testid="message"]', thread).map((m) => Number(m.dataset.messageId));
      if (!ids.length) return;
      const item = $(`[data-testid="conversation"][data-conversation-id="${cid}"]`);
      if (item) {
        const n = Number($('[data-testid="unread"]', item).textContent || 0);
        if (n) setTotalUnread(totalUnread - n);
        setItemUnread(item, 0);
      }
      htmx.ajax("POST", `/chat/c/${cid}/read`, { values: { up_to: Math.max(...ids) }, swap: "none" });
    }, 150);
  }
  function applyRead(data) {
    const thread = openThread();
    if (data.user === me) {
      // read in another tab of mine
      const item = $(`[data-testid="conversation"][data-conversation-id="${data.cid}"]`);
      if (item) {
        const n = Number($('[data-testid="unread"]', item).textContent || 0);
        if (n) setTotalUnread(totalUnread - n);
        setItemUnread(item, 0);
      }
      return;
    }
    if (!thread || thread.dataset.conversationId !== String(data.cid)) return;
    for (const m of $$(`[data-testid="message"][data-sender-id="${CSS.escape(me)}"]`, thread)) {
      if (Number(m.dataset.messageId) <= data.upto) m.closest(".msg-row")?.classList.add("is-read");
    }
  }

  // --- presence ---
  function applyPresence(data) {
    for (const dot of $$(`[data-testid="presence"][data-user-id="${CSS.escape(data.user)}"]`)) {
      dot.dataset.online = data.online ? "true" : "false";
    }
  }

  // --- sound and browser notifications ---
  let audio = null;
  function unlockAudio() {
    if (!audio) audio = new (window.AudioContext || window.webkitAudioContext)();
    if (audio.state === "suspended") audio.resume();
  }
  document.addEventListener("pointerdown", unlockAudio, { once: true });
  document.addEventListener("keydown", unlockAudio, { once: true });
  function ding() {
    if (!audio || audio.state !== "running") return;
    const osc = audio.createOscillator();
    const gain = audio.createGain();
    osc.frequency.value = 880;
    gain.gain.setValueAtTime(0.15, audio.currentTime);
    gain.gain.exponentialRampToValueAtTime(0.001, audio.currentTime + 0.35);
    osc.connect(gain).connect(audio.destination);
    osc.start();
    osc.stop(audio.currentTime + 0.35);
  }
  function notify(article) {
    ding();
    if (!("Notification" in window) || Notification.permission !== "granted" || !document.hidden) return;
    const name = $(".msg-sender", article)?.textContent || "";
    const n = new Notification(name, { body: article.dataset.preview || "", tag: "kefu-" + article.dataset.conversationId });
    n.onclick = () => { window.focus(); n.close(); };
  }
  function showNotifyState() {
    const state = $(".notify-state");
    if (!state) return;
    if (!("Notification" in window)) state.textContent = "此浏览器不支持通知";
    else state.textContent = { granted: "已开启", denied: "已被浏览器拒绝", default: "" }[Notification.permission];
  }
  document.addEventListener("click", (e) => {
    if (!e.target.closest(".notify-toggle")) return;
    unlockAudio();
    ding();
    if ("Notification" in window && Notification.permission === "default") {
      Notification.requestPermission().then(showNotifyState);
    }
    showNotifyState();
  });

  // --- the event stream ---
  let source = null;
  let retryDelay = 1000;
  let lastSignal = Date.now();
  let everOpened = false;
  const conn = () => $('[data-testid="connection"]');

  function onMessageEvent(e) {
    lastEventId = Math.max(lastEventId, Number(e.lastEventId || 0));
    const article = parseMessage(e.data);
    if (!article) return;
    if (monitor) {
      insertMessage(article);
      updateListItem(article, false);
      return;
    }
    const mine = article.dataset.senderId === me;
    const inThread = insertMessage(article);
    const visibleHere = inThread && document.visibilityState === "visible";
    updateListItem(article, !mine && !visibleHere);
    if (!mine && !visibleHere) setTotalUnread(totalUnread + 1);
    if (!mine) {
      if (visibleHere) readOpenConversation();
      else notify(article);
    }
  }
  function connect() {
    const params = new URLSearchParams({ last_event_id: String(lastEventId) });
    if (actingAs) params.set("as", actingAs);
    if (monitor) params.set("monitor", "1");
    source = new EventSource("/events?" + params);
    source.onopen = () => {
      retryDelay = 1000;
      lastSignal = Date.now();
      conn()?.setAttribute("data-state", "open");
      if (everOpened) refreshList(); // counts and order may have moved while we were away
      everOpened = true;
    };
    source.onerror = () => {
      conn()?.setAttribute("data-state", "reconnecting");
      if (source.readyState === EventSource.CLOSED) reconnectSoon();
    };
    source.addEventListener("message", (e) => { lastSignal = Date.now(); onMessageEvent(e); });
    source.addEventListener("read", (e) => { lastSignal = Date.now(); applyRead(JSON.parse(e.data)); });
    source.addEventListener("ping", () => { lastSignal = Date.now(); });
    source.addEventListener("closed", (e) => {
      // too many tabs open: the newest ones stay live; this one stops instead of fighting them.
      // "signed-out": this tab's person (or admin) logged out; it stops rather than act for anyone else.
      source.close();
      source = null;
      conn()?.setAttribute("data-state", e.data === "signed-out" ? "signed-out" : "closed");
    });
    source.addEventListener("presence", (e) => { lastSignal = Date.now(); applyPresence(JSON.parse(e.data)); });
  }
  function reconnectSoon() {
    source?.close();
    setTimeout(connect, retryDelay);
    retryDelay = Math.min(retryDelay * 2, 30000);
  }
  // A stream that went quiet (sleep, a dead proxy) is replaced; pings arrive every 15 s.
  setInterval(() => {
    if (source && source.readyState === EventSource.OPEN && Date.now() - lastSignal > 45000) reconnectSoon();
  }, 5000);
  window.addEventListener("online", () => { if (source && source.readyState !== EventSource.OPEN) reconnectSoon(); });
  function refreshList() {
    const list = listEl();
    if (!list) return;
    const url = monitor ? `/admin/list?${body.dataset.filterQuery || ""}` : "/chat/list";
    htmx.ajax("GET", url, { target: list, swap: "innerHTML" }).then(() => {
      localizeTimes(list);
      const cid = openThread()?.dataset.conversationId;
      if (cid) markActive(cid);
      const sum = $$('[data-testid="unread"]', list).reduce((a, b) => a + Number(b.textContent || 0), 0);
      setTotalUnread(Math.max(sum, 0));
    });
  }

  // --- the composer: Enter sends, the answer goes in once, errors show in place, text never lost ---
  document.addEventListener("keydown", (e) => {
    const area = e.target.closest?.(".composer textarea");
    if (!area || e.key !== "Enter" || e.shiftKey || e.isComposing) return;
    e.preventDefault();
    area.form.requestSubmit();
  });
  const sendForms = ".composer, .upload-form, .quick-send";
  function composerError(el) {
    return el.closest(".composer-bar, .col-thread")?.querySelector(".composer-error") || $(".composer-error");
  }
  document.addEventListener("htmx:afterRequest", (e) => {
    const form = e.detail.elt.closest?.(sendForms);
    if (!form) return;
    const error = composerError(form);
    const xhr = e.detail.xhr;
    if (form.classList.contains("upload-form")) finishUpload(form);
    if (xhr.status === 201) {
      if (error) error.textContent = "";
      if (form.classList.contains("composer")) form.reset();
      const article = parseMessage(xhr.responseText);
      if (article) {
        insertMessage(article);
        updateListItem(article, false);
      }
    } else if (xhr.status >= 400 && error) {
      const tpl = document.createElement("template");
      tpl.innerHTML = xhr.responseText;
      error.textContent = tpl.content.textContent.trim() || "发送失败，请重试。";
    }
  });
  document.addEventListener("htmx:sendError", (e) => {
    const form = e.detail.elt.closest?.(sendForms);
    if (!form) return;
    if (form.classList.contains("upload-form")) finishUpload(form);
    const error = composerError(form);
    if (error) error.textContent = "网络中断，消息还没有发出。请检查网络后重试。";
  });

  // --- files: the paperclip, drag and drop onto the thread, paste; one upload at a time, with progress ---
  const uploadQueue = [];
  function progressBar() { return $(".upload-progress"); }
  document.addEventListener("htmx:xhr:progress", (e) => {
    if (!e.target.closest?.(".upload-form")) return;
    const bar = progressBar();
    if (!bar || !e.detail.lengthComputable) return;
    bar.hidden = false;
    bar.value = Math.round((e.detail.loaded / e.detail.total) * 100);
  });
  document.addEventListener("htmx:beforeRequest", (e) => {
    if (!e.target.closest?.(".upload-form")) return;
    const bar = progressBar();
    if (bar) { bar.hidden = false; bar.value = 0; }
  });
  function finishUpload(form) {
    const bar = progressBar();
    if (bar) bar.hidden = true;
    form.reset();
    if (uploadQueue.length) setTimeout(() => uploadFile(uploadQueue.shift()), 0);
  }
  function uploadFile(file) {
    const form = $(".upload-form");
    if (!form) return;
    const input = $('input[type="file"]', form);
    const data = new DataTransfer();
    data.items.add(file);
    input.files = data.files;
    input.dispatchEvent(new Event("change", { bubbles: true }));
  }
  function uploadAll(files) {
    const list = Array.from(files || []);
    if (!list.length) return false;
    const busy = !$(".upload-progress")?.hidden;
    uploadQueue.push(...list);
    if (!busy) uploadFile(uploadQueue.shift());
    return true;
  }
  let dragDepth = 0;
  document.addEventListener("dragenter", (e) => {
    const zone = e.target.closest?.(".col-thread");
    if (!zone || !openThread() || !e.dataTransfer?.types.includes("Files")) return;
    dragDepth += 1;
    $(".thread-scroll")?.classList.add("dragging");
  });
  document.addEventListener("dragleave", (e) => {
    if (!e.target.closest?.(".col-thread")) return;
    dragDepth = Math.max(0, dragDepth - 1);
    if (!dragDepth) $(".thread-scroll")?.classList.remove("dragging");
  });
  document.addEventListener("dragover", (e) => {
    if (e.target.closest?.(".col-thread") && openThread()) e.preventDefault();
  });
  document.addEventListener("drop", (e) => {
    if (!e.target.closest?.(".col-thread") || !openThread()) return;
    e.preventDefault();
    dragDepth = 0;
    $(".thread-scroll")?.classList.remove("dragging");
    uploadAll(e.dataTransfer.files);
  });
  document.addEventListener("paste", (e) => {
    if (!e.target.closest?.(".composer") || !e.clipboardData?.files.length) return;
    if (uploadAll(e.clipboardData.files)) e.preventDefault();
  });

  // --- quick replies: the sheet (below 1024 px), and "/" in the composer to pick one by text ---
  document.addEventListener("click", (e) => {
    if (e.target.closest(".quick-toggle")) {
      if (window.matchMedia("(min-width: 1024px)").matches) {
        $("#quick-replies")?.scrollIntoView({ block: "nearest" });
      } else {
        body.dataset.sheet = body.dataset.sheet === "quick" ? "" : "quick";
      }
    } else if (e.target.closest("[data-close-sheet]") || e.target.closest(".quick-send")) {
      body.dataset.sheet = "";
    }
  });
  let slashIndex = 0;
  function slashMatches(area) {
    const query = area.value.slice(1).trim().toLowerCase();
    return $$('button[data-testid="quick-reply"]').filter((b) => b.textContent.toLowerCase().includes(query));
  }
  function closeSlash() {
    const menu = $(".slash-menu");
    if (menu) { menu.hidden = true; menu.replaceChildren(); }
  }
  function renderSlash(area) {
    const menu = $(".slash-menu");
    if (!menu) return;
    if (!area.value.startsWith("/")) return closeSlash();
    const matches = slashMatches(area);
    slashIndex = Math.min(slashIndex, Math.max(matches.length - 1, 0));
    menu.replaceChildren(...matches.map((b, i) => {
      const item = document.createElement("button");
      item.type = "button";
      item.dataset.testid = "slash-item";
      item.dataset.quickReplyId = b.dataset.quickReplyId;
      item.textContent = b.textContent.trim();
      item.setAttribute("aria-selected", String(i === slashIndex));
      return item;
    }));
    menu.hidden = matches.length === 0;
  }
  function sendQuick(id, area) {
    const button = $(`button[data-testid="quick-reply"][data-quick-reply-id="${id}"]`);
    if (!button) return;
    button.click();
    area.value = "";
    closeSlash();
  }
  document.addEventListener("input", (e) => {
    const area = e.target.closest?.(".composer textarea");
    if (area) { slashIndex = 0; renderSlash(area); }
  });
  document.addEventListener("keydown", (e) => {
    const area = e.target.closest?.(".composer textarea");
    const menu = $(".slash-menu");
    if (!area || !menu || menu.hidden) return;
    const items = $$("button", menu);
    if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      e.preventDefault();
      slashIndex = (slashIndex + (e.key === "ArrowDown" ? 1 : items.length - 1)) % items.length;
      renderSlash(area);
    } else if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      e.stopImmediatePropagation(); // not the composer's own Enter-to-send
      sendQuick(items[slashIndex].dataset.quickReplyId, area);
    } else if (e.key === "Escape") {
      closeSlash();
    }
  }, true);
  document.addEventListener("click", (e) => {
    const item = e.target.closest(".slash-menu button");
    if (item) sendQuick(item.dataset.quickReplyId, $(".composer textarea"));
  });

  // --- views on a phone, and opening a conversation ---
  function showView(view) {
    if (view === "thread" && !openThread()) view = "list";
    body.dataset.view = view;
  }
  document.addEventListener("click", (e) => {
    const b = e.target.closest("[data-show-view]");
    if (b) showView(b.dataset.showView);
  });
  document.addEventListener("htmx:afterSwap", (e) => {
    if (e.detail.target.id === "thread-col") {
      const thread = openThread();
      body.dataset.openConversation = thread?.dataset.conversationId || "";
      showView("thread");
      markActive(body.dataset.openConversation);
      localizeTimes(e.detail.target);
      scrollToBottom();
      readOpenConversation();
      $(".composer textarea")?.focus();
    } else {
      localizeTimes(e.detail.target);
    }
  });
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") {
      readOpenConversation();
      if (source && source.readyState !== EventSource.OPEN) reconnectSoon();
    }
  });

  // Older messages and more conversations also load when one scrolls near the edge (the loaders'
  // "intersect" trigger can miss when the page is still laying out).
  document.addEventListener("scroll", (e) => {
    const scroller = e.target;
    if (!(scroller instanceof HTMLElement)) return;
    if (scroller.matches(".thread-scroll") && scroller.scrollTop < 150) {
      const loader = $(".older-loader:not(.htmx-request)", scroller);
      if (loader) htmx.trigger(loader, "near");
    } else if (scroller.matches(".list-scroll")
               && scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 150) {
      const more = $(".list-more:not(.htmx-request)", scroller);
      if (more) htmx.trigger(more, "near");
    }
  }, true);

  localizeTimes(document);
  scrollToBottom();
  setTotalUnread(totalUnread);
  showNotifyState();
  connect();
})();
