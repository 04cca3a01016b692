// Message search in the list column (GET /chat/search, htmx), and a thread opened at a search result: the found
// message is scrolled into view and marked for a moment. Loaded after kefu.js.
(function () {
  "use strict";

  const box = document.querySelector('[data-testid="search-box"]');
  const results = document.getElementById("search-results");
  const column = box?.closest(".col-list");

  function searching(on) {
    if (!column || !results) return;
    column.classList.toggle("searching", on);
    results.hidden = !on;
    if (!on) results.innerHTML = "";
  }
  if (box) {
    box.addEventListener("input", () => searching(box.value.trim() !== ""));
    box.addEventListener("keydown", (e) => {
      if (e.key !== "Escape") return;
      box.value = "";
      searching(false);
    });
    // Enter searches in place (htmx); without scripts the form opens the search page
    box.form?.addEventListener("submit", (e) => {
      e.preventDefault();
      searching(box.value.trim() !== "");
      if (window.htmx) window.htmx.trigger(box, "search");
    });
  }

  // The thread was opened at a message (`?at=`): show that one rather than the newest.
  function showTarget() {
    const at = document.querySelector(".thread-at");
    if (!at) return;
    at.remove(); // once: a later swap of the same thread goes to the newest as usual
    const target = document.querySelector(
      `[data-testid="thread"] [data-testid="message"][data-message-id="${CSS.escape(at.dataset.targetId)}"]`);
    if (!target) return;
    target.classList.add("msg-target");
    target.scrollIntoView({ block: "center" });
    setTimeout(() => target.classList.remove("msg-target"), 4000);
  }
  document.addEventListener("htmx:afterSwap", (e) => {
    if (e.detail.target && e.detail.target.id === "thread-col") showTarget();
  });
  showTarget();
})();
