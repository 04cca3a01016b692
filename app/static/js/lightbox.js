// Images open in the page: a click on a message's picture shows the original file (/files/{id}) in a viewer
// (`data-testid="lightbox"`) over the thread. Esc, the close button, a click beside the picture or a swipe down
// close it; ← / → and swipes left / right go between the pictures loaded in the open conversation. The link keeps
// its href, so a middle click, a modified click or a page without this script still opens the file in a tab.
(function () {
  "use strict";

  const $ = (sel, root = document) => root.querySelector(sel);
  let box = null;
  let links = [];
  let index = 0;
  let opener = null;

  function build() {
    box = document.createElement("dialog");
    box.className = "lightbox";
    box.dataset.testid = "lightbox";
    box.setAttribute("aria-label", "查看图片");
    box.innerHTML = `
      <img class="lightbox-image" data-testid="lightbox-image" alt="">
      <p class="lightbox-count" data-testid="lightbox-count" aria-live="polite"></p>
      <button type="button" class="lightbox-close" data-testid="lightbox-close" aria-label="关闭">×</button>
      <button type="button" class="lightbox-prev" data-testid="lightbox-prev" aria-label="上一张">‹</button>
      <button type="button" class="lightbox-next" data-testid="lightbox-next" aria-label="下一张">›</button>
      <a class="lightbox-original" data-testid="lightbox-original" target="_blank" rel="noopener">查看原图</a>`;
    document.body.appendChild(box);
    box.addEventListener("close", () => {
      $(".lightbox-image", box).removeAttribute("src");
      opener?.focus({ preventScroll: true });
    });
    box.addEventListener("click", (e) => {
      if (swiped) { swiped = false; return; } // the end of a swipe is not a click beside the picture
      if (e.target.closest(".lightbox-close")) close();
      else if (e.target.closest(".lightbox-prev")) show(index - 1);
      else if (e.target.closest(".lightbox-next")) show(index + 1);
      else if (!e.target.closest(".lightbox-image, .lightbox-original")) close();
    });
    box.addEventListener("keydown", (e) => {
      if (e.key === "ArrowLeft") { e.preventDefault(); show(index - 1); }
      else if (e.key === "ArrowRight") { e.preventDefault(); show(index + 1); }
      // Esc: the dialog's own cancel closes it
    });
    // Swipes, with any pointer (touch on a phone): down closes, left shows the next picture, right the previous.
    let start = null;
    let swiped = false;
    box.addEventListener("pointerdown", (e) => { start = { x: e.clientX, y: e.clientY }; swiped = false; });
    box.addEventListener("pointercancel", () => { start = null; });
    box.addEventListener("pointerup", (e) => {
      if (!start) return;
      const dx = e.clientX - start.x;
      const dy = e.clientY - start.y;
      start = null;
      if (Math.max(Math.abs(dx), Math.abs(dy)) < 50) return;
      swiped = true;
      if (Math.abs(dy) > Math.abs(dx)) { if (dy > 0) close(); }
      else show(index + (dx < 0 ? 1 : -1));
    });
    return box;
  }

  function show(i) {
    if (i < 0 || i >= links.length) return;
    index = i;
    const link = links[i];
    const img = $(".lightbox-image", box);
    img.src = link.getAttribute("href");
    img.alt = $("img", link)?.alt || "";
    $(".lightbox-original", box).href = link.getAttribute("href");
    $(".lightbox-count", box).textContent = links.length > 1 ? `${i + 1} / ${links.length}` : "";
    $(".lightbox-prev", box).hidden = i === 0;
    $(".lightbox-next", box).hidden = i === links.length - 1;
  }
  function open(link) {
    if (!box) build();
    const thread = link.closest('[data-testid="thread"]');
    links = thread ? Array.from(thread.querySelectorAll('a[data-testid="image-link"]')) : [link];
    opener = link;
    show(Math.max(0, links.indexOf(link)));
    if (!box.open) box.showModal();
    box.focus();
  }
  function close() {
    if (box?.open) box.close();
  }

  document.addEventListener("click", (e) => {
    const link = e.target.closest?.('a[data-testid="image-link"]');
    if (!link || e.button !== 0 || e.ctrlKey || e.metaKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    open(link);
  });
  // A conversation swapped in: a viewer of another one's pictures goes.
  document.addEventListener("htmx:afterSwap", (e) => { if (e.detail.target?.id === "thread-col") close(); });
})();
