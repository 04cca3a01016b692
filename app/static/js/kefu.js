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
  const yearDateFmt = new Intl.DateTimeFormat(lang, { year: "numeric", month: "numeric", day: "numeric" });
  const fullFmt = new Intl.DateTimeFormat(lang, { dateStyle: "full", timeStyle: "medium" });
  function localizeTimes(root) {
    for (const t of $$("time[datetime]", root)) {
      const d = new Date(t.getAttribute("datetime"));
      if (isNaN(d)) continue;
      const now = new Date();
      const today = now.toDateString() === d.toDateString();
      const day = now.getFullYear() === d.getFullYear() ? dateFmt : yearDateFmt; // an earlier year says which
      t.textContent = today || !t.classList.contains("conv-time") ? timeFmt.format(d) : day.format(d);
      t.title = fullFmt.format(d);
    }
  }

  // --- every effect of a message happens once: a stream replays recent messages after a reconnect ---
  const handled = new Set(); // message ids this tab has processed (the newest few thousand)
  function firstTime(id) {
    if (handled.has(id)) return false;
    handled.add(id);
    if (handled.size > 5000) handled.delete(handled.values().next().value);
    return true;
  }

  // --- unread: the title and bottom-nav badge, and the list's badges ---
  // Server counts are the truth. Between two answers from the server, a message from the peer that no
  // server count included yet adds one; `counted` remembers those (message id -> conversation id) so that
  // the next server answer, which knows which messages it counted, can add back only the ones it missed.
  const counted = new Map();
  let totalAsOf = lastEventId; // the newest message id the shown total accounts for
  const pageAsOf = lastEventId; // messages up to here were stored before the page: no sound for them
  function setTotalUnread(n) {
    totalUnread = Math.max(0, n);
    document.title = (totalUnread ? `(${totalUnread}) ` : "") + baseTitle;
    for (const b of $$('[data-testid="total-unread"]')) {
      b.textContent = String(totalUnread);
      b.hidden = totalUnread === 0;
    }
  }
  function itemOf(cid) { return $(`[data-testid="conversation"][data-conversation-id="${cid}"]`); }
  function itemUnread(item) { return Number($('[data-testid="unread"]', item)?.textContent || 0); }
  function setItemUnread(item, n) {
    const badge = $('[data-testid="unread"]', item);
    if (!badge) return;
    badge.textContent = String(Math.max(0, n));
    badge.hidden = n <= 0;
    item.classList.toggle("has-unread", n > 0);
  }
  // Whether a server count that included every message of `cid` up to `through` (or, without one for
  // the conversation, every message up to `asOf`) included message `mid`. Ids are handed out in one
  // conversation in the order its messages are stored, so this holds even when commits race elsewhere.
  function included(mid, cid, throughs, asOf) {
    return mid <= (throughs.has(cid) ? throughs.get(cid) : asOf);
  }
  // The server's total arrived. `throughs` maps conversation ids to the last message the same answer's
  // items counted; `fix` is what those items counted that this tab knows is read already.
  function applyServerTotal(total, asOf, throughs, fix = 0) {
    if (asOf < totalAsOf) return; // an older answer than the one shown
    totalAsOf = asOf;
    let n = total - fix;
    for (const [mid, cid] of counted) {
      if (included(mid, cid, throughs, asOf)) counted.delete(mid);
      else n += 1;
    }
    setTotalUnread(n);
  }
  // Unread messages of the open conversation after the reader's watermark, when the thread holds them all.
  function openUnread(cid) {
    const thread = openThread();
    if (!thread || thread.dataset.conversationId !== String(cid)) return null;
    const read = Number(thread.dataset.myLastRead || 0);
    const first = $('[data-testid="message"]', thread);
    if ($(".older-loader", thread) && first && Number(first.dataset.messageId) > read) return null;
    return $$('[data-testid="message"]', thread)
      .filter((m) => m.dataset.senderId !== me && Number(m.dataset.messageId) > read).length;
  }
  // Items just rendered by the server (with the reader's total when `total` is a number): their counts
  // plus what they missed, the open thread's read receipts.
  function itemsArrived(items, total, asOf) {
    const throughs = new Map();
    let fix = 0;
    for (const item of items) {
      const cid = item.dataset.conversationId;
      const through = Number(item.dataset.unreadThrough || 0);
      throughs.set(cid, through);
      let n = itemUnread(item);
      for (const [mid, c] of counted) if (c === cid && mid > through) n += 1;
      const known = openUnread(cid);
      if (known !== null) { fix += n - known; n = known; } // read here, and not yet (or just) told
      setItemUnread(item, n);
      applyPeerRead(cid, Number(item.dataset.peerLastRead || 0)); // for the open conversation only
    }
    if (Number.isFinite(total)) applyServerTotal(total, asOf, throughs, fix);
  }
  // A message from the peer that this tab has not handled before.
  function countUnread(article) {
    const cid = article.dataset.conversationId;
    const mid = Number(article.dataset.messageId);
    const item = itemOf(cid);
    if (item) {
      if (mid <= Number(item.dataset.unreadThrough || 0)) return; // the item's count has it already
      counted.set(mid, cid);
      setItemUnread(item, itemUnread(item) + 1);
      if (mid > totalAsOf) setTotalUnread(totalUnread + 1);
      else refreshSoon(); // an older message: the total may or may not have it; ask the server
    } else {
      counted.set(mid, cid); // the item (fetched below) and its total will say whether they counted it
      if (mid > totalAsOf) fetchListItem(cid);
      else refreshSoon();
    }
    if (counted.size > 2000) counted.delete(counted.keys().next().value);
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
    // A replayed message from before the oldest one shown, while older pages are still to load: the page that
    // holds it brings it when the person scrolls up (inserting it now would leave a gap before it).
    const first = $('[data-testid="message"]', thread);
    if (first && id < Number(first.dataset.messageId) && $(".older-loader", thread.closest(".thread-scroll") || thread)) {
      return false;
    }
    // A thread opened at an old message (a search result): newer messages come with its "newer" loader; one's own
    // send goes back to the newest (where it shows), and anything that came meanwhile is fetched once the last
    // newer page is in (it may have been stored after that page was read).
    if ($(".newer-loader", thread)) {
      if (article.dataset.senderId === me && !monitor && !thread.dataset.reloading) {
        thread.dataset.reloading = "true";
        reloadThread();
      } else {
        thread.dataset.missedWhileBehind = "true";
      }
      return false;
    }
    $('[data-testid="thread-empty"]', thread)?.remove();
    if (article.dataset.clientKey) pendingRow(article.dataset.clientKey)?.remove(); // this send, now stored
    const scroller = $(".thread-scroll");
    const stick = !scroller || nearBottom(scroller) || article.dataset.senderId === me;
    const row = messageRow(article, thread);
    const later = $$('[data-testid="message"]', thread).find((m) => Number(m.dataset.messageId) > id)
      ?.closest(".msg-row") || $(".msg-row.pending", thread); // sends not yet answered stay below
    if (later) thread.insertBefore(row, later);
    else thread.appendChild(row);
    localizeTimes(row);
    if (stick) scrollToBottom();
    if (!monitor && article.dataset.senderId === me) {
      const peerRead = Number(thread.dataset.peerLastRead || 0);
      if (id <= peerRead) row.classList.add("is-read");
    }
    return true;
  }

  // --- the list ---
  function updateListItem(article) {
    const cid = article.dataset.conversationId;
    const item = itemOf(cid);
    if (!item) return false;
    const mid = Number(article.dataset.messageId);
    if (mid <= Number(item.dataset.lastMessageId || 0)) return true; // older news: the item shows newer
    item.dataset.lastMessageId = String(mid);
    const count = $('[data-testid="message-count"]', item); // the monitor's rows
    if (count) count.textContent = String(Number(count.textContent || 0) + 1);
    $(".conv-preview", item).textContent = article.dataset.preview || "";
    const time = $(".conv-time", item);
    time.setAttribute("datetime", $("time", article).getAttribute("datetime"));
    localizeTimes(item);
    const list = listEl();
    if (list.firstElementChild !== item) list.prepend(item);
    return true;
  }
  function fetchListItem(cid) {
    const list = listEl();
    if (!list || $(`[data-conversation-id="${cid}"].pending`, list)) return;
    const holder = document.createElement("div");
    holder.className = "pending";
    holder.dataset.conversationId = cid;
    list.prepend(holder);
    $(".list-empty", list)?.remove();
    const url = monitor ? `/admin/c/${cid}/row?${body.dataset.filterQuery || ""}` : `/chat/c/${cid}/item`;
    htmx.ajax("GET", url, { target: holder, swap: "outerHTML" }).then(() => {
      const item = itemOf(cid);
      if (!item || monitor) return;
      // the item comes with its unread count and the reader's total
      itemsArrived([item], Number(item.dataset.totalUnread), Number(item.dataset.asOf || 0));
    }).catch(() => holder.remove()); // the network was away: the next refresh brings the item
  }
  function markActive(cid) {
    for (const c of $$('[data-testid="conversation"]')) {
      c.classList.toggle("active", c.dataset.conversationId === String(cid));
    }
  }
  let listRefresh = null; // one refresh at a time; asked again while it runs: once more after it
  let listRefreshAgain = false;
  function refreshList() {
    const list = listEl();
    if (!list) return Promise.resolve();
    if (listRefresh) { listRefreshAgain = true; return listRefresh; }
    const url = monitor ? `/admin/list?${body.dataset.filterQuery || ""}` : "/chat/list";
    listRefresh = htmx.ajax("GET", url, { target: list, swap: "innerHTML" }).then(() => {
      localizeTimes(list);
      // presence missed while away: each refreshed dot speaks for that person's dots elsewhere (thread, card)
      for (const dot of $$('[data-testid="presence"]', list)) {
        applyPresence({ user: dot.dataset.userId, online: dot.dataset.online === "true" });
      }
      const cid = openThread()?.dataset.conversationId;
      if (cid) markActive(cid);
      const meta = $('[data-testid="list-total"]', list);
      if (!monitor && meta) {
        itemsArrived($$('[data-testid="conversation"]', list), Number(meta.dataset.totalUnread),
                     Number(meta.dataset.asOf || 0));
        if (cid && !itemOf(cid)) syncOpenConversation(cid);
      }
    }).catch(() => {}).finally(() => { // failed: the next reconnect refreshes again
      listRefresh = null;
      if (listRefreshAgain) { listRefreshAgain = false; refreshList(); }
    });
    return listRefresh;
  }
  let refreshTimer = null;
  function refreshSoon() {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(refreshList, 300);
  }
  // The open conversation is further down than the list's first page: its read state from its own item.
  function syncOpenConversation(cid) {
    fetch(`/chat/c/${cid}/item`, { headers: requestHeaders() }).then((r) => (r.ok ? r.text() : "")).then((html) => {
      const tpl = document.createElement("template");
      tpl.innerHTML = html;
      const item = $('[data-testid="conversation"]', tpl.content);
      if (item && openThread()?.dataset.conversationId === cid) {
        applyPeerRead(cid, Number(item.dataset.peerLastRead || 0));
      }
    }).catch(() => {});
  }
  function requestHeaders() {
    const headers = { "HX-Request": "true", "X-CSRFToken": csrf };
    if (actingAs) headers["X-Kefu-As"] = actingAs;
    return headers;
  }

  // --- reading: only what has been on the screen while the page was visible ---
  // The highest id among the peer's messages whose end has been inside the thread's scroller (or that fill
  // it), and how many of the peer's unread messages wait below the view.
  function visibleState(thread, scroller) {
    const box = scroller.getBoundingClientRect();
    const read = Number(thread.dataset.myLastRead || 0);
    let seen = 0;
    let below = 0;
    const messages = $$('[data-testid="message"]', thread).reverse();
    for (const m of messages) {
      const id = Number(m.dataset.messageId);
      if (id <= read) break;
      if (m.dataset.senderId === me) continue;
      const r = m.getBoundingClientRect();
      if (r.top >= box.bottom - 4) { below += 1; continue; }
      const endInside = r.bottom <= box.bottom + 2 && r.bottom > box.top;
      const fills = r.top <= box.top && r.bottom >= box.bottom;
      if (endInside || fills) { seen = id; break; }
      if (r.bottom <= box.top) break;
    }
    return { read, seen, below };
  }
  function showJump(count) {
    const jump = $('[data-testid="jump-new"]');
    if (!jump) return;
    jump.hidden = count === 0;
    $(".jump-count", jump).textContent = count > 1 ? String(count) : "";
  }
  function checkSeen() {
    if (monitor) return;
    const thread = openThread();
    const scroller = thread?.closest(".thread-scroll");
    if (!thread || !scroller) return;
    const shown = document.visibilityState === "visible" && scroller.clientHeight > 0;
    const state = visibleState(thread, scroller);
    if (shown && state.seen > state.read) {
      readLocally(thread.dataset.conversationId, state.seen);
      queueRead(thread.dataset.conversationId, state.seen);
      showJump(visibleState(thread, scroller).below);
    } else {
      showJump(state.below);
    }
  }
  let seenFrame = 0;
  function checkSeenSoon() {
    if (!seenFrame) seenFrame = requestAnimationFrame(() => { seenFrame = 0; checkSeen(); });
  }
  // The reader's watermark in `cid` moved to `upTo` (here, or in another tab): the counts follow.
  function readLocally(cid, upTo) {
    const thread = openThread();
    const open = thread?.dataset.conversationId === String(cid) ? thread : null;
    if (open) {
      if (upTo <= Number(open.dataset.myLastRead || 0)) return;
      open.dataset.myLastRead = String(upTo);
    }
    for (const [mid, c] of counted) if (c === String(cid) && mid <= upTo) counted.delete(mid);
    const item = itemOf(cid);
    // unread messages left after upTo, when this tab knows them all
    let left = open ? openUnread(cid) : null;
    if (left === null && item && upTo >= Number(item.dataset.lastMessageId || 0)) left = 0;
    if (item && left !== null) {
      const before = itemUnread(item);
      if (left < before) {
        setItemUnread(item, left);
        setTotalUnread(totalUnread - (before - left));
      }
    } else {
      refreshSoon(); // this tab cannot tell how many are left: the server can
    }
  }
  const readQueue = new Map(); // conversation id -> highest message id seen, not yet told to the server
  let readTimer = null;
  let readDelay = 0; // after a failure: the next try waits this long (ms), doubling up to 15 s
  function queueRead(cid, upTo, wait = 150) {
    readQueue.set(cid, Math.max(readQueue.get(cid) || 0, upTo));
    clearTimeout(readTimer);
    readTimer = setTimeout(flushReads, wait);
  }
  // Tells the server what was read. A receipt that got no answer, or a proxy's or a stopping server's 5xx, is
  // tried again, by itself, until it is told (the server's watermark only moves forward, so a repeat is harmless).
  function flushReads() {
    clearTimeout(readTimer);
    for (const [cid, upTo] of readQueue) {
      readQueue.delete(cid);
      fetch(`/chat/c/${cid}/read`, {
        method: "POST",
        headers: requestHeaders(),
        body: new URLSearchParams({ up_to: String(upTo) }),
        signal: AbortSignal.timeout(20000),
      }).then((r) => {
        if (r.status >= 500) throw new Error(String(r.status));
        readDelay = 0;
        const total = r.headers.get("X-Kefu-Total-Unread");
        if (r.ok && total !== null) applyServerTotal(Number(total), Number(r.headers.get("X-Kefu-As-Of")), new Map());
      }).catch(() => {
        readDelay = Math.min(Math.max(readDelay * 2, 1000), 15000);
        queueRead(cid, upTo, readDelay);
      });
    }
  }
  function applyPeerRead(cid, upTo) {
    const thread = openThread();
    if (!thread || thread.dataset.conversationId !== String(cid)) return;
    if (upTo <= Number(thread.dataset.peerLastRead || 0)) return;
    thread.dataset.peerLastRead = String(upTo);
    for (const m of $$(`[data-testid="message"][data-sender-id="${CSS.escape(me)}"]`, thread)) {
      if (Number(m.dataset.messageId) <= upTo) m.closest(".msg-row")?.classList.add("is-read");
    }
  }
  function applyRead(data) {
    if (data.user === me) readLocally(String(data.cid), Number(data.upto)); // here, or in another tab of mine
    else applyPeerRead(String(data.cid), Number(data.upto));
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
    if (!audio || audio.state !== "running" || body.dataset.sound === "off") return; // the switch: composer.js
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
    if (body.dataset.notify === "off") return; // switched off on this device (composer.js)
    const name = $(".msg-sender", article)?.textContent || "";
    const n = new Notification(name, { body: article.dataset.preview || "", tag: "kefu-" + article.dataset.conversationId });
    const mid = article.dataset.messageId;
    n.onclick = () => { window.focus(); n.close(); };
    n.onclose = () => { if (notified.get(mid) === n) notified.delete(mid); };
    notified.set(mid, n);
    if (notified.size > 50) notified.delete(notified.keys().next().value); // the oldest: replaced by its tag anyway
  }
  // a notification still showing a message that was then recalled is taken back: it would show what no longer exists
  const notified = new Map(); // message id → its notification
  document.addEventListener("kefu:recall", (e) => notified.get(String(e.detail.message_id))?.close());
  // the switches for both, and what they say: composer.js

  // --- a message, from the stream or as the answer to one's own POST: each effect once per message id ---
  function onMessage(article) {
    const mid = Number(article.dataset.messageId);
    const fresh = firstTime(mid);
    insertMessage(article); // by id: a second copy is not inserted
    document.dispatchEvent(new CustomEvent("kefu:message", { detail: article }));
    if (article.dataset.clientKey && article.dataset.senderId === me) storedByStream(article);
    const listed = updateListItem(article);
    if (!fresh) return;
    if (monitor || article.dataset.senderId === me) {
      if (!listed && mid > totalAsOf) fetchListItem(article.dataset.conversationId); // new activity
      return;
    }
    countUnread(article);
    const thread = openThread();
    const before = Number(thread?.dataset.myLastRead || 0);
    checkSeen();
    const seenNow = thread?.dataset.conversationId === article.dataset.conversationId
      && Number(thread.dataset.myLastRead || 0) >= mid && before < mid;
    if (!seenNow && mid > pageAsOf) notify(article);
  }

  // --- the event stream: one owner, one EventSource at a time, one reconnect timer ---
  const stream = (() => {
    let source = null;
    let timer = null;
    let delay = 1000;
    let lastSignal = Date.now();
    let everOpened = false;
    let stopped = false; // too many tabs: the server asked this one to stop
    let failures = 0; // errors since the stream was last open
    const conn = () => $('[data-testid="connection"]');
    const heard = (s, handler) => (e) => {
      if (s !== source) return; // a stream that was replaced says nothing any more
      lastSignal = Date.now();
      if (e.lastEventId) lastEventId = Math.max(lastEventId, Number(e.lastEventId) || 0);
      handler(e);
    };
    function open() {
      clearTimeout(timer);
      timer = null;
      source?.close();
      const params = new URLSearchParams({ last_event_id: String(lastEventId) });
      if (actingAs) params.set("as", actingAs);
      if (monitor) params.set("monitor", "1");
      const s = new EventSource("/events?" + params);
      source = s;
      lastSignal = Date.now();
      s.onopen = () => {
        if (s !== source) return;
        delay = 1000;
        failures = 0;
        lastSignal = Date.now();
        conn()?.setAttribute("data-state", "open");
        retryAllNow(); // the server is reachable again: waiting sends go now
        if (everOpened) caughtUp(); // counts, order and read receipts may have moved while we were away
        everOpened = true;
      };
      s.onerror = () => {
        if (s !== source) return;
        conn()?.setAttribute("data-state", "reconnecting");
        failures += 1;
        // The browser reconnects by itself after the server's `retry:` hint (a restarting server spreads them);
        // if that fails too, the server is away: wait longer and longer (retry), not every second.
        if (s.readyState === EventSource.CLOSED || failures >= 2) retry();
      };
      s.addEventListener("message", heard(s, (e) => {
        const article = parseMessage(e.data);
        if (article) onMessage(article);
      }));
      s.addEventListener("read", heard(s, (e) => applyRead(JSON.parse(e.data))));
      s.addEventListener("presence", heard(s, (e) => applyPresence(JSON.parse(e.data))));
      // recalls and typing are conversation.js's: handed on as DOM events ("kefu:recall", "kefu:typing")
      // an order of the buyer changed (app.chat.orders): the orders panel beside the thread comes again
      s.addEventListener("order", heard(s, () => {
        for (const panel of $$('[data-testid="orders"]')) htmx.trigger(panel, "kefu-order-changed");
      }));
      // someone joined or left (the platform stepping in or out): the open thread comes again, with who is in it now
      s.addEventListener("member", heard(s, (e) => {
        const change = JSON.parse(e.data);
        document.dispatchEvent(new CustomEvent("kefu:member", { detail: change }));
        if (openThread()?.dataset.conversationId !== String(change.conversation_id)) return;
        if (!monitor && change.user_id === me && change.action === "left") closeThread();
        else reloadThread();
      }));
      for (const kind of ["recall", "typing"]) {
        s.addEventListener(kind, heard(s, (e) => {
          document.dispatchEvent(new CustomEvent(`kefu:${kind}`, { detail: JSON.parse(e.data) }));
        }));
      }
      s.addEventListener("ping", heard(s, () => {}));
      // Too much happened while away to replay it all: the list and the open thread come again from the server.
      s.addEventListener("stale", heard(s, () => { caughtUp(); reloadThread(); }));
      s.addEventListener("closed", heard(s, (e) => {
        // too many tabs open: the newest ones stay live; this one stops instead of fighting them.
        // "signed-out": this tab's person (or admin) logged out; it stops rather than act for anyone else.
        stop();
        stopped = true;
        conn()?.setAttribute("data-state", e.data === "signed-out" ? "signed-out" : "closed");
      }));
    }
    function stop() {
      clearTimeout(timer);
      timer = null;
      source?.close();
      source = null;
    }
    // Open again after `delay` (growing up to 10 s), unless a reconnect is already on its way.
    function retry() {
      if (stopped || timer) return;
      source?.close();
      source = null;
      conn()?.setAttribute("data-state", "reconnecting"); // whatever the reason: an error, a silent stall
      timer = setTimeout(open, delay);
      delay = Math.min(delay * 2, 10000);
    }
    // A reason to think the stream may be down (back online, the tab shown again): reconnect if it is.
    function check() {
      if (stopped || timer) return;
      if (!source || source.readyState !== EventSource.OPEN) { delay = 1000; retry(); }
    }
    // The page came back from the browser's back/forward cache: a new stream from the last event id.
    function restart() {
      if (stopped) return;
      stop();
      everOpened = true;
      delay = 1000;
      open();
    }
    // A stream that went quiet (sleep, a dead proxy) is replaced; pings arrive every 15 s.
    setInterval(() => {
      if (source && source.readyState === EventSource.OPEN && Date.now() - lastSignal > 45000) retry();
    }, 5000);
    return { open, check, restart };
  })();
  // After a reconnect: the list and the total from the server, read receipts, and reads not yet told.
  function reloadThread() {
    const cid = openThread()?.dataset.conversationId;
    if (!cid) return;
    const url = monitor ? `/admin/c/${cid}?${body.dataset.filterQuery || ""}` : `/chat/c/${cid}`;
    htmx.ajax("GET", url, { target: "#thread-col", swap: "innerHTML" }).catch(() => {});
  }
  function closeThread() {
    // this person is no longer in the open conversation: the list, without it
    refreshList();
    const col = document.getElementById("thread-col");
    if (col) col.replaceChildren();
    showView("list");
  }
  function caughtUp() {
    refreshList();
    flushReads();
    checkSeen();
  }
  window.addEventListener("online", () => stream.check());
  window.addEventListener("pageshow", (e) => {
    if (!e.persisted) return;
    stream.restart(); // replays what arrived meanwhile into the thread; the list is refreshed when it opens
    showView(openThread() ? body.dataset.view : "list");
  });

  // --- the composer: Enter sends, the answer goes in once, errors show in place, text never lost ---
  document.addEventListener("keydown", (e) => {
    const area = e.target.closest?.(".composer textarea");
    if (!area || e.key !== "Enter" || e.shiftKey || e.isComposing) return;
    if (window.matchMedia("(pointer: coarse)").matches) return; // a touch keyboard's Enter is a new line (layout.js)
    e.preventDefault();
    area.form.requestSubmit();
  });
  // --- sending: the outbox. Each message gets its own key (Idempotency-Key) and is tried until the server
  // answers: a dropped connection, a proxy's 502, a restarting server (503) or a rate limit (429, after its
  // Retry-After) neither loses it nor sends it twice (the server stores one message per key). One queue per
  // conversation, one send of each on the wire at a time: messages arrive in the order sent, and one conversation's
  // trouble holds up no other. A send shows in its thread at once ("发送中…", then "重试中…" or "稍后自动发送"); texts
  // and quick replies outlive a reload of the tab (sessionStorage, same keys); a refusal (too long, nothing
  // visible…) gives the text back, with the reason, in its own conversation.
  const RETRY = new Set([0, 429, 500, 502, 503, 504]); // no answer, a server or proxy that could not answer, too soon
  const SAVED = `kefu-outbox:${me}`;
  const queues = new Map(); // conversation id -> {items, onWire, timer, delay}; items[0] may be on the wire
  function newKey() {
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function queueOf(cid) {
    if (!queues.has(cid)) queues.set(cid, { items: [], onWire: false, timer: null, delay: 0 });
    return queues.get(cid);
  }
  function pendingItems() {
    return [...queues.values()].flatMap((q) => q.items);
  }
  // Texts and quick replies are kept for a reload of this tab (a file cannot be: the page warns before it goes).
  function save() {
    const kept = pendingItems().filter((i) => !i.file)
      .map(({ key, cid, url, text, preview, form }) => ({ key, cid, url, text, preview, form }));
    try {
      if (kept.length) sessionStorage.setItem(SAVED, JSON.stringify(kept));
      else sessionStorage.removeItem(SAVED);
    } catch { /* storage full or off: the sends still go, they just do not outlive the page */ }
  }
  function restore() {
    let saved = [];
    try { saved = JSON.parse(sessionStorage.getItem(SAVED) || "[]"); } catch { saved = []; }
    for (const item of Array.isArray(saved) ? saved : []) {
      if (item && item.key && item.cid && item.url) add({ ...item, state: "sending" });
    }
  }
  function enqueue(item) {
    const error = $(".composer-error"); // the person sends something new: earlier notes have been read
    if (error && openThread()?.dataset.conversationId === item.cid) {
      error.textContent = "";
      delete error.dataset.refusal;
    }
    add({ ...item, key: newKey(), state: "sending" });
  }
  function add(item) {
    const q = queueOf(item.cid);
    q.items.push(item);
    save();
    showPending(item);
    // someone is writing: a send waiting on a failed network is tried again now (not one waiting out a rate limit,
    // and not more than once a second)
    const head = q.items[0];
    if (q.timer && head.state === "retrying" && Date.now() - (head.triedAt || 0) > 1000) retryNow(item.cid);
    pump(item.cid);
  }
  function pump(cid) {
    const q = queueOf(cid);
    if (q.onWire || q.timer || !q.items.length) return;
    q.onWire = true;
    attempt(cid, q.items[0]);
  }
  function retryNow(cid) {
    const q = queueOf(cid);
    if (!q.timer) return;
    clearTimeout(q.timer);
    q.timer = null;
    pump(cid);
  }
  function retryAllNow() {
    for (const cid of queues.keys()) retryNow(cid);
  }
  function attempt(cid, item) {
    item.triedAt = Date.now();
    const xhr = new XMLHttpRequest();
    xhr.open("POST", item.url);
    for (const [name, value] of Object.entries(requestHeaders())) xhr.setRequestHeader(name, value);
    xhr.setRequestHeader("Idempotency-Key", item.key);
    xhr.timeout = item.file ? 0 : 20000; // a send that hangs is tried again (the key makes that safe)
    if (item.file) {
      const bar = progressBar();
      if (bar) { bar.hidden = false; bar.value = 0; }
      xhr.upload.onprogress = (e) => {
        if (bar && e.lengthComputable) bar.value = Math.round((e.loaded / e.total) * 100);
      };
    }
    xhr.onload = () => settle(cid, item, xhr.status, xhr);
    xhr.onerror = xhr.ontimeout = () => settle(cid, item, 0, xhr);
    if (item.file) {
      const data = new FormData();
      data.append("file", item.file);
      xhr.send(data);
    } else {
      xhr.send(new URLSearchParams(item.form || {}));
    }
  }
  function settle(cid, item, status, xhr) {
    const q = queueOf(cid);
    q.onWire = false;
    if (item.file) { const bar = progressBar(); if (bar) bar.hidden = true; }
    if (!q.items.includes(item)) return pump(cid); // the stream showed it stored meanwhile
    if (item.stored && !(status >= 400 && status < 500)) status = 201; // stored, whatever became of the answer
    if (RETRY.has(status)) {
      const asked = Number(xhr.getResponseHeader("Retry-After")) * 1000 || 0;
      setSendState(item, status === 429 ? "waiting" : "retrying");
      q.delay = status === 429 ? Math.max(asked, 1000) : Math.min(Math.max(q.delay * 2, 1000, asked), 10000);
      q.timer = setTimeout(() => { q.timer = null; pump(cid); }, q.delay * (0.8 + Math.random() * 0.4));
      return;
    }
    q.items.splice(q.items.indexOf(item), 1);
    q.delay = 0;
    save();
    if (status === 200 || status === 201) {
      pendingRow(item.key)?.remove();
      const article = xhr.status === status ? parseMessage(xhr.responseText) : null; // else the stream brought it
      if (article) onMessage(article);
      const error = $(".composer-error"); // a note from an earlier failure, not a refusal (that stays until sent again)
      if (error && !error.dataset.refusal && openThread()?.dataset.conversationId === cid) error.textContent = "";
      stream.check(); // the server answers: if the stream is still waiting to reconnect, it need not
    } else {
      refused(item, status, xhr.responseText);
    }
    showSendStatus();
    pump(cid);
  }
  // The stream brought a send of this tab's, stored: it need not be tried again (its answer may have been lost).
  function storedByStream(article) {
    const q = queues.get(article.dataset.conversationId);
    const index = q ? q.items.findIndex((i) => i.key === article.dataset.clientKey) : -1;
    if (index < 0) return;
    if (index === 0 && q.onWire) { q.items[0].stored = true; return; } // on the wire: settled when it ends
    q.items.splice(index, 1);
    save();
    if (index === 0) {
      clearTimeout(q.timer);
      q.timer = null;
      q.delay = 0;
      pump(article.dataset.conversationId);
    }
    showSendStatus();
  }
  // The server said no (4xx): the message is not sent. Say why, in Chinese, naming what was refused, in its own
  // conversation (kept for the tab's life, a reload included, until that conversation is open), and give the text
  // back into the composer (before any draft there). The reason stays until the person sends again.
  const REFUSED = `kefu-refused:${me}`;
  function refused(item, status, html) {
    pendingRow(item.key)?.remove();
    const tpl = document.createElement("template");
    tpl.innerHTML = html || "";
    const ours = tpl.content.querySelector('[data-testid="composer-error"], [data-testid="error"] .error-text');
    const reason = ours?.textContent.trim() || {
      401: "登录已失效，请刷新页面后重试。",
      403: "没有权限，或登录已失效，请刷新页面。",
      404: "要发送的内容已不存在。",
      413: "文件太大。",
    }[status] || `请重试（错误 ${status}）。`;
    const what = item.file?.name ?? item.preview ?? item.text ?? "";
    const named = what.length > 30 ? what.slice(0, 30) + "…" : what;
    const refusal = { cid: item.cid, why: `没有发出「${named}」：${reason}`, text: item.text };
    if (openThread()?.dataset.conversationId === item.cid) showRefusals([refusal]);
    else keepRefusal(refusal);
  }
  function keptRefusals() {
    try { return JSON.parse(sessionStorage.getItem(REFUSED) || "[]"); } catch { return []; }
  }
  function keepRefusal(refusal) {
    try { sessionStorage.setItem(REFUSED, JSON.stringify([...keptRefusals(), refusal])); } catch { /* storage off */ }
  }
  function showRefusals(list) {
    if (!list.length) return;
    const area = $(".composer textarea");
    const error = $(".composer-error");
    const texts = list.map((r) => r.text).filter((t) => t !== undefined);
    if (area && texts.length) {
      area.value = [...texts, area.value].filter((t) => t.trim()).join("\n");
    }
    if (error) {
      error.textContent = list.map((r) => r.why).join(" ") + (texts.length ? " 文字已放回输入框。" : "");
      error.dataset.refusal = "1";
    }
  }
  function showRefusalsOf(cid) {
    const all = keptRefusals();
    const here = all.filter((r) => r.cid === cid);
    if (!here.length) return;
    try { sessionStorage.setItem(REFUSED, JSON.stringify(all.filter((r) => r.cid !== cid))); } catch { /* off */ }
    showRefusals(here);
  }
  function pendingRow(key) {
    return $(`.msg-row.pending[data-client-key="${key}"]`);
  }
  const SEND_STATES = { sending: "发送中…", retrying: "重试中…", waiting: "稍后自动发送…" };
  function setSendState(item, state) {
    item.state = state;
    const row = pendingRow(item.key);
    if (row) {
      row.dataset.sendState = state;
      $('[data-testid="send-state"]', row).textContent = SEND_STATES[state];
    }
    showSendStatus();
  }
  // Under the composer, while a send of the open conversation waits: why, and that nothing needs doing.
  function showSendStatus() {
    const status = $('[data-testid="send-status"]');
    if (!status) return;
    const states = (queues.get(openThread()?.dataset.conversationId)?.items || []).map((i) => i.state);
    const scroller = $(".thread-scroll");
    const stick = scroller && nearBottom(scroller); // the line takes room from the thread: keep its end in view
    status.textContent = states.includes("retrying")
      ? "网络不稳定或服务器正在重启：消息会自动重发，请不要关闭页面。"
      : states.includes("waiting") ? "发送太频繁了：消息会在稍后自动发出。" : "";
    if (stick) scrollToBottom();
  }
  // A send not yet answered, in its thread (when that thread is open), below every message.
  function showPending(item) {
    const thread = openThread();
    if (!thread || thread.dataset.conversationId !== item.cid || pendingRow(item.key)) return;
    if ($(`[data-testid="message"][data-client-key="${item.key}"]`, thread)) return; // the stream brought it
    const row = document.createElement("div");
    row.className = "msg-row mine pending";
    row.dataset.clientKey = item.key;
    row.dataset.sendState = item.state;
    row.dataset.testid = "pending-message";
    const bubble = document.createElement("div");
    bubble.className = "msg-bubble";
    bubble.textContent = item.file ? `📎 ${item.file.name}` : item.preview ?? item.text;
    const state = document.createElement("span");
    state.className = "send-state";
    state.dataset.testid = "send-state";
    state.setAttribute("role", "status");
    state.textContent = SEND_STATES[item.state];
    const article = document.createElement("div");
    article.className = "msg";
    article.append(bubble, state);
    row.appendChild(article);
    $('[data-testid="thread-empty"]', thread)?.remove();
    thread.appendChild(row);
    scrollToBottom();
  }
  // A conversation was opened: its waiting sends, a refusal it missed, and the status line.
  function sendsOf(cid) {
    for (const item of queues.get(cid)?.items || []) showPending(item);
    showRefusalsOf(cid);
    showSendStatus();
  }
  window.addEventListener("online", retryAllNow);
  window.addEventListener("beforeunload", (e) => {
    // texts outlive a reload; a file being sent, or a closed tab, would be lost: ask first
    if (pendingItems().length) e.preventDefault();
  });
  document.addEventListener("submit", (e) => {
    const form = e.target.closest?.(".composer");
    if (!form) return;
    e.preventDefault();
    const area = $("textarea", form);
    const text = area.value;
    const error = $(".composer-error");
    if (!text.trim()) {
      if (error) error.textContent = "消息不能为空。";
      return;
    }
    // the form's fields as they are (the text, and `reply_to` when it quotes a message)
    const fields = Object.fromEntries(new FormData(form));
    enqueue({ cid: openThread()?.dataset.conversationId, url: form.getAttribute("action"), text, form: fields });
    form.reset();
  });
  document.addEventListener("click", (e) => {
    const button = e.target.closest("button.quick-send[data-send-url]");
    if (!button) return;
    const cid = button.dataset.sendUrl.split("/")[3];
    enqueue({ cid, url: button.dataset.sendUrl, preview: button.textContent.trim(), form: {} });
  });

  // --- a page part that could not load (opening a conversation while the server restarts…): say so, briefly ---
  let toastTimer = null;
  function toast(text) {
    let box = $('[data-testid="toast"]');
    if (!box) {
      box = document.createElement("div");
      box.className = "toast";
      box.dataset.testid = "toast";
      box.setAttribute("role", "status");
      body.appendChild(box);
    }
    box.textContent = text;
    box.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { box.hidden = true; }, 6000);
  }
  document.addEventListener("kefu:toast", (e) => toast(String(e.detail))); // other scripts' notes
  document.addEventListener("htmx:sendError", () => toast("没能打开：网络不稳定或服务器正在重启，请稍后再试。"));
  document.addEventListener("htmx:responseError", (e) => {
    const xhr = e.detail.xhr;
    const tpl = document.createElement("template");
    tpl.innerHTML = xhr.responseText || "";
    const ours = tpl.content.querySelector('[data-testid="error"] .error-text')?.textContent.trim();
    toast(xhr.status >= 500 || !ours ? "没能打开：服务器暂时没有回应，请稍后再试。" : `没能打开：${ours}`);
  });

  // --- files: the paperclip, drag and drop onto the thread, paste; each one a send in the outbox ---
  function progressBar() { return $(".upload-progress"); }
  function uploadAll(files) {
    const list = Array.from(files || []);
    const form = $(".upload-form");
    if (!list.length || !form) return false;
    for (const file of list) enqueue({ cid: openThread()?.dataset.conversationId, url: form.getAttribute("action"), file });
    return true;
  }
  document.addEventListener("change", (e) => {
    const input = e.target.closest?.('.upload-form input[type="file"]');
    if (!input) return;
    uploadAll(input.files);
    input.value = "";
  });
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
    const touch = matchMedia("(pointer: coarse)").matches; // no Tab key: each reply also has 插入 (composer.js)
    menu.replaceChildren(...matches.flatMap((b, i) => {
      const item = document.createElement("button");
      item.type = "button";
      item.dataset.testid = "slash-item";
      item.dataset.quickReplyId = b.dataset.quickReplyId;
      item.textContent = b.textContent.trim();
      item.setAttribute("aria-selected", String(i === slashIndex));
      if (!touch) return [item];
      const insert = document.createElement("button");
      insert.type = "button";
      insert.className = "slash-insert";
      insert.dataset.testid = "slash-insert";
      insert.dataset.quickReplyId = b.dataset.quickReplyId;
      insert.textContent = "插入";
      return [item, insert];
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
    const items = $$('[data-testid="slash-item"]', menu);
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
    const item = e.target.closest('.slash-menu [data-testid="slash-item"]');
    if (item) sendQuick(item.dataset.quickReplyId, $(".composer textarea"));
  });

  // --- views on a phone, and opening a conversation ---
  function showView(view) {
    if (view === "thread" && !openThread()) view = "list";
    body.dataset.view = view;
    checkSeenSoon();
  }
  document.addEventListener("click", (e) => {
    const b = e.target.closest("[data-show-view]");
    if (b) showView(b.dataset.showView);
  });
  // Older messages go in above what is being read: the view stays where it was, rather than jumping to the oldest
  // (which would also keep the next loader in sight and load every page in a row).
  let olderFromBottom = null;
  document.addEventListener("htmx:beforeSwap", (e) => {
    const scroller = e.detail.elt?.closest?.(".thread-scroll");
    if (scroller && e.detail.elt.classList.contains("older-loader")) {
      olderFromBottom = scroller.scrollHeight - scroller.scrollTop;
    }
  });
  document.addEventListener("htmx:afterSwap", () => {
    if (olderFromBottom === null) return;
    const scroller = $(".thread-scroll");
    if (scroller) scroller.scrollTop = scroller.scrollHeight - olderFromBottom;
    olderFromBottom = null;
  });
  document.addEventListener("htmx:afterSettle", (e) => {
    const thread = openThread();
    if (thread?.dataset.missedWhileBehind && !$(".newer-loader", thread)) reloadThread(); // caught up: the rest
    // a conversation swapped in ends at its newest message once everything in it has settled (day separators and
    // the like come in after the swap), unless it was opened at an older one
    if (e.detail?.target?.id === "thread-col" && thread && !$(".newer-loader", thread)) scrollToBottom();
  });
  document.addEventListener("htmx:afterSwap", (e) => {
    const target = e.detail.target;
    if (!target) return;
    if (target.id === "thread-col") {
      const thread = openThread();
      body.dataset.openConversation = thread?.dataset.conversationId || "";
      showView("thread");
      markActive(body.dataset.openConversation);
      sendsOf(body.dataset.openConversation);
      localizeTimes(target);
      scrollToBottom();
      checkSeen();
      $(".composer textarea")?.focus();
    } else {
      localizeTimes(target);
    }
  });
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState !== "visible") return;
    checkSeen();
    stream.check();
  });
  window.addEventListener("focus", checkSeenSoon);
  window.addEventListener("resize", checkSeenSoon);
  document.addEventListener("click", (e) => {
    if (!e.target.closest('[data-testid="jump-new"]')) return;
    const scroller = $(".thread-scroll");
    if (scroller) scroller.scrollTo({ top: scroller.scrollHeight });
    checkSeenSoon();
  });

  // Older messages and more conversations also load when one scrolls near the edge (the loaders'
  // "intersect" trigger can miss when the page is still laying out).
  document.addEventListener("scroll", (e) => {
    const scroller = e.target;
    if (!(scroller instanceof HTMLElement)) return;
    if (scroller.matches(".thread-scroll")) checkSeenSoon();
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
  for (const m of $$('[data-testid="message"]')) firstTime(Number(m.dataset.messageId));
  scrollToBottom();
  setTotalUnread(totalUnread);
  stream.open();
  restore(); // sends this tab had not finished before a reload go on
  checkSeen();
})();
