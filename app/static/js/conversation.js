// The conversation toolkit: "对方正在输入…", recall (撤回) and quote replies (引用). kefu.js owns the event stream
// and hands recalls, typing and new messages on as DOM events (kefu:recall, kefu:typing, kefu:message). The product
// being asked about (正在咨询) goes once the card it became arrives.
(function () {
  "use strict";

  const body = document.body;
  const me = body.dataset.userId;
  if (!me) return;
  const monitor = body.dataset.mode === "monitor";
  const actingAs = document.querySelector('meta[name="kefu-as"]')?.content || "";
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content || "";
  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
  const openThread = () => $('[data-testid="thread"]');
  // A notice every 4.5 s while writing: the other side shows each for 6 s, so it reads as one; the server takes at
  // most one per 3 s (bus.TYPING_EVERY_SECONDS) and drops what comes faster
  const TYPING_EVERY_MS = 4500;
  const TYPING_SHOWN_MS = 6000; // bus.TYPING_SHOWN_SECONDS
  const RECALL_MS = 120000; // recall.RECALL_SECONDS: the server has the last word (409 after it)

  function post(url) {
    const headers = { "X-CSRFToken": csrf };
    if (actingAs) headers["X-Kefu-As"] = actingAs;
    return fetch(url, { method: "POST", headers, credentials: "same-origin" });
  }
  const toast = (text) => document.dispatchEvent(new CustomEvent("kefu:toast", { detail: text })); // kefu.js shows it

  // --- typing: say so at most every 3 s while writing; show the other side's for 6 s or until their message ---
  const lastTyped = new Map(); // conversation id -> when we last said so
  document.addEventListener("input", (e) => {
    const area = e.target.closest?.(".composer textarea");
    const cid = openThread()?.dataset.conversationId;
    if (!area || !cid || monitor || !area.value.trim()) return;
    const now = Date.now();
    if (now - (lastTyped.get(cid) || 0) < TYPING_EVERY_MS) return;
    lastTyped.set(cid, now);
    post(`/chat/c/${cid}/typing`).catch(() => {}); // a hint: nothing to retry
  });
  let typingTimer = null;
  function typingBox() {
    let box = $('[data-testid="typing"]');
    const scroller = $(".thread-scroll");
    if (!box && scroller) {
      box = document.createElement("p");
      box.className = "typing";
      box.dataset.testid = "typing";
      box.setAttribute("aria-live", "polite");
      box.hidden = true;
      scroller.after(box);
    }
    return box;
  }
  function hideTyping(userId) {
    const box = $('[data-testid="typing"]');
    if (box && (!userId || box.dataset.userId === userId)) box.hidden = true;
  }
  document.addEventListener("kefu:typing", (e) => {
    const { conversation_id: cid, user_id: who } = e.detail;
    const thread = openThread();
    if (who === me || !thread || thread.dataset.conversationId !== String(cid)) return;
    const box = typingBox();
    if (!box) return;
    const name = monitor ? ($(`[data-sender-id="${CSS.escape(who)}"] .msg-sender`, thread)?.textContent || who) : "对方";
    box.textContent = `${name}正在输入…`;
    box.dataset.userId = who;
    const scroller = $(".thread-scroll");
    const atEnd = scroller && scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 120;
    box.hidden = false; // it takes room from the thread: the newest message stays in view
    if (atEnd) scroller.scrollTop = scroller.scrollHeight;
    clearTimeout(typingTimer);
    typingTimer = setTimeout(() => hideTyping(who), TYPING_SHOWN_MS);
  });
  document.addEventListener("kefu:message", (e) => hideTyping(e.detail.dataset.senderId));
  document.addEventListener("htmx:afterSwap", (e) => {
    if (e.detail.target?.id === "thread-col") clearTimeout(typingTimer); // another conversation: a new box
  });

  // --- recall: the tombstone replaces the message wherever it shows; quotes of it say it was recalled ---
  const recalled = new Set(); // ids recalled while this page is open: a quote of one that arrives later says so too
  function markQuotesRecalled(root, mid) {
    for (const quote of $$(`[data-testid="quote"][data-quote-id="${mid}"]`, root)) {
      quote.dataset.quoteRecalled = "true";
      const text = $(".quote-text", quote);
      if (text) text.textContent = "该消息已撤回";
    }
  }
  // 正在咨询: the product card sent from this tab or another of this person carries the offer's key (its client key)
  document.addEventListener("kefu:message", (e) => {
    const key = e.detail.dataset.clientKey;
    const offer = $('[data-testid="consulting-card"]');
    if (key && offer && offer.dataset.consultingKey === key) offer.remove();
  });
  document.addEventListener("kefu:message", (e) => {
    const quote = $('[data-testid="quote"]', e.detail);
    if (quote && recalled.has(quote.dataset.quoteId)) markQuotesRecalled(document, quote.dataset.quoteId);
  });
  function applyRecall(cid, mid, html) {
    recalled.add(String(mid));
    const tpl = document.createElement("template");
    tpl.innerHTML = html.trim();
    const fresh = tpl.content.querySelector('[data-testid="message"]');
    const old = $(`[data-testid="message"][data-message-id="${mid}"]`);
    if (fresh && old) {
      old.replaceWith(fresh);
      fresh.closest(".msg-row")?.classList.remove("show-tools");
      for (const t of $$("time[datetime]", fresh)) t.textContent = new Date(t.dateTime).toTimeString().slice(0, 5);
    }
    markQuotesRecalled(document, mid);
    const item = $(`[data-testid="conversation"][data-conversation-id="${cid}"]`);
    if (item && item.dataset.lastMessageId === String(mid) && fresh) {
      const preview = $(".conv-preview", item);
      if (preview) preview.textContent = fresh.dataset.preview || "";
    }
    if ($(".quote-draft")?.dataset.quoteId === String(mid)) clearQuote();
  }
  document.addEventListener("kefu:recall", (e) => {
    applyRecall(e.detail.conversation_id, e.detail.message_id, e.detail.html);
  });

  // --- a message's tools: 引用 for any message, 撤回 for one's own within two minutes ---
  function sentAt(article) {
    return Date.parse($("footer time", article)?.dateTime || "") || 0;
  }
  // sent once the platform was asked in: evidence, which cannot be recalled (app.chat.recall: 409)
  function isEvidence(article) {
    const since = Date.parse(article.closest(".thread")?.dataset.interventionAt || "");
    return !Number.isNaN(since) && sentAt(article) >= since;
  }
  function tools(article) {
    const row = article.closest(".msg-row");
    if (!row || monitor || article.dataset.recalled === "true" || article.classList.contains("msg-kind-system")) return null;
    let bar = $(".msg-tools", row);
    if (!bar) {
      bar = document.createElement("div");
      bar.className = "msg-tools";
      row.appendChild(bar);
    }
    bar.replaceChildren(toolButton("引用", "quote-button"));
    if (article.dataset.senderId === me && !article.dataset.recallClosed && Date.now() - sentAt(article) < RECALL_MS
        && !isEvidence(article)) {
      bar.appendChild(toolButton("撤回", "recall-button"));
    }
    return bar;
  }
  function toolButton(label, testid) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = label;
    b.dataset.testid = testid;
    return b;
  }
  function articleOf(el) {
    return el.closest(".msg-row")?.querySelector('[data-testid="message"]');
  }
  // a tap (or a click) on a message shows its tools; a tap elsewhere hides them
  document.addEventListener("click", (e) => {
    const button = e.target.closest(".msg-tools button");
    if (button) return;
    const article = e.target.closest('[data-testid="thread"] [data-testid="message"]');
    if (e.target.closest("a, button, input, textarea")) return;
    for (const row of $$(".msg-row.show-tools")) {
      if (!article || row !== article.closest(".msg-row")) row.classList.remove("show-tools");
    }
    if (!article) return;
    if (tools(article)) article.closest(".msg-row").classList.toggle("show-tools");
  });
  document.addEventListener("mouseover", (e) => { // on a desk, the tools show on hover
    const article = e.target.closest?.('[data-testid="thread"] [data-testid="message"]');
    const row = article?.closest(".msg-row");
    if (row && !row.dataset.toolsFor) { tools(article); row.dataset.toolsFor = "1"; }
    else if (row && article) tools(article); // the recall window may have closed since
  });
  document.addEventListener("click", async (e) => {
    const button = e.target.closest('.msg-tools [data-testid="recall-button"]');
    if (!button) return;
    const article = articleOf(button);
    if (!article) return;
    button.disabled = true;
    let answer = null;
    try {
      answer = await post(`/chat/c/${article.dataset.conversationId}/messages/${article.dataset.messageId}/recall`);
    } catch { answer = null; }
    if (answer && answer.ok) {
      applyRecall(article.dataset.conversationId, article.dataset.messageId, await answer.text());
      return;
    }
    button.disabled = false;
    let reason = "没能撤回：网络不稳定，请重试。";
    if (answer) {
      const tpl = document.createElement("template");
      tpl.innerHTML = await answer.text();
      reason = tpl.content.querySelector('[data-testid="error"] h1 + p')?.textContent?.trim()
        || `没能撤回（${answer.status}）。`;
      if (answer.status === 409) { button.remove(); article.dataset.recallClosed = "true"; } // the window closed
    }
    toast(reason);
  });

  // --- quote: the composer carries `reply_to` and shows what it quotes until sent or cancelled ---
  function clearQuote() {
    $(".quote-draft")?.remove();
    const field = $('.composer input[name="reply_to"]');
    if (field) field.remove();
  }
  function setQuote(article) {
    const form = $(".composer");
    if (!form) return;
    clearQuote();
    const field = document.createElement("input");
    field.type = "hidden";
    field.name = "reply_to";
    field.value = article.dataset.messageId;
    form.appendChild(field);
    const bar = document.createElement("div");
    bar.className = "quote-draft";
    bar.dataset.testid = "quote-draft";
    bar.dataset.quoteId = article.dataset.messageId;
    const text = document.createElement("span");
    const who = $(".msg-sender", article)?.textContent || "";
    text.textContent = `引用 ${who}：${article.dataset.preview || ""}`;
    const cancel = toolButton("×", "quote-cancel");
    cancel.setAttribute("aria-label", "取消引用");
    bar.append(text, cancel);
    form.prepend(bar);
    $("textarea", form)?.focus();
  }
  document.addEventListener("click", (e) => {
    const button = e.target.closest('.msg-tools [data-testid="quote-button"]');
    if (button) {
      const article = articleOf(button);
      if (article) setQuote(article);
      button.closest(".msg-row")?.classList.remove("show-tools");
      return;
    }
    if (e.target.closest('[data-testid="quote-cancel"]')) clearQuote();
  });
  document.addEventListener("submit", (e) => { // kefu.js has taken the form's fields by now
    if (e.target.closest?.(".composer")) clearQuote();
  });
  document.addEventListener("htmx:afterSwap", (e) => {
    if (e.detail.target?.id === "thread-col") clearQuote();
  });

  // --- a click on a quote goes to the original, loading older pages until it is there ---
  function loadOlder(thread) {
    const loader = $(".older-loader", thread);
    if (!loader) return Promise.resolve(false);
    return new Promise((resolve) => {
      const done = () => {
        document.removeEventListener("htmx:afterSettle", done);
        resolve(true);
      };
      document.addEventListener("htmx:afterSettle", done);
      htmx.trigger(loader, "near");
    });
  }
  async function goTo(mid) {
    const thread = openThread();
    if (!thread) return;
    for (let pages = 0; pages < 100; pages += 1) {
      const target = $(`[data-testid="message"][data-message-id="${mid}"]`, thread);
      if (target) {
        target.scrollIntoView({ block: "center" });
        target.classList.add("msg-target");
        setTimeout(() => target.classList.remove("msg-target"), 2000);
        return;
      }
      if (!(await loadOlder(thread))) break;
    }
    toast("原消息已不在这个会话里。");
  }
  document.addEventListener("click", (e) => {
    const quote = e.target.closest('[data-testid="quote"]');
    if (!quote) return;
    e.preventDefault();
    goTo(quote.dataset.quoteId);
  });
})();
