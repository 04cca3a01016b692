// Day separators in the open thread, in the reader's own time zone: before the first message of each local day a
// `data-testid="day-separator"` with `data-day="YYYY-MM-DD"`, labelled 今天, 昨天, 11月28日 (this year) or
// 2025年11月28日. Whatever puts messages in the thread (the page, older pages above, live and replayed messages, a
// reloaded thread) is followed by one pass that adds what is missing and removes what is wrong, so no day is shown
// twice. Each message's time tooltip shows its full date.
(function () {
  "use strict";

  const full = new Intl.DateTimeFormat("zh-CN", { dateStyle: "full", timeStyle: "medium" });
  const pad = (n) => String(n).padStart(2, "0");
  const dayOf = (d) => `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`; // local calendar day

  function label(day, now) {
    const [y, m, d] = day.split("-").map(Number);
    const yesterday = new Date(now.getFullYear(), now.getMonth(), now.getDate() - 1);
    if (day === dayOf(now)) return "今天";
    if (day === dayOf(yesterday)) return "昨天";
    return y === now.getFullYear() ? `${m}月${d}日` : `${y}年${m}月${d}日`;
  }
  function separator(day, now) {
    const el = document.createElement("div");
    el.className = "day-separator";
    el.dataset.testid = "day-separator";
    el.dataset.day = day;
    el.setAttribute("role", "separator");
    const text = document.createElement("span");
    text.textContent = label(day, now);
    el.appendChild(text);
    return el;
  }

  // One pass over the thread: a separator right before each row that starts a local day, and no other.
  function mark(thread) {
    const now = new Date();
    const keep = new Set();
    let previous = null;
    for (const row of thread.querySelectorAll(":scope > .msg-row")) {
      const time = row.querySelector(".msg-meta time[datetime]");
      if (!time) continue; // a send not yet stored: below everything, and today
      const at = new Date(time.getAttribute("datetime"));
      if (isNaN(at)) continue;
      const title = full.format(at);
      if (time.title !== title) time.title = title;
      const day = dayOf(at);
      if (day !== previous) {
        let sep = row.previousElementSibling;
        if (!(sep?.matches('[data-testid="day-separator"]') && sep.dataset.day === day)) {
          sep = separator(day, now);
          row.before(sep);
        }
        const text = label(day, now);
        if (sep.firstElementChild.textContent !== text) sep.firstElementChild.textContent = text; // after midnight
        keep.add(sep);
      }
      previous = day;
    }
    for (const sep of thread.querySelectorAll(':scope > [data-testid="day-separator"]')) {
      if (!keep.has(sep)) sep.remove();
    }
  }

  let queued = false;
  function markSoon() {
    if (queued) return;
    queued = true;
    queueMicrotask(() => {
      queued = false;
      for (const thread of document.querySelectorAll('[data-testid="thread"]')) mark(thread);
    });
  }
  // Rows come and go in the thread column (htmx swaps, kefu.js's inserts); separators follow. Marking changes only
  // what is wrong, so the observer's own changes settle after one more pass.
  const column = document.getElementById("thread-col") || document.querySelector(".col-thread");
  if (!column) return;
  new MutationObserver((records) => {
    if (records.some((r) => [...r.addedNodes, ...r.removedNodes].some((n) => n.nodeType === 1
        && !n.matches?.('[data-testid="day-separator"]')))) markSoon();
  }).observe(column, { childList: true, subtree: true });
  document.addEventListener("visibilitychange", () => { if (document.visibilityState === "visible") markSoon(); });
  setInterval(markSoon, 60000); // 今天 becomes 昨天 at midnight
  markSoon();
})();
