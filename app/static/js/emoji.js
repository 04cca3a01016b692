// The composer's emoji picker. The emoji and their Chinese and English names come from emojibase-data (vendored,
// static/vendor/emojibase-data-*), fetched the first time a picker opens: a page whose person never opens it loads
// nothing more. Search by Chinese or English name or keyword; a click (or Enter) inserts at the caret; the person's
// recently used ones come first (localStorage, per person on this device). Arrow keys move in the grid, Esc closes.
(function () {
  "use strict";

  const me = document.body.dataset.userId;
  if (!me) return;
  const RECENT = `kefu-emoji-recent:${me}`;
  const MOST_RECENT = 24;
  const GROUPS = ["笑脸和情感", "人物和身体", null, "动物和自然", "食物和饮料", "旅行和地点", "活动", "物品", "符号", "旗帜"];
  let data = null; // [{unicode, zh, en, words}] once loaded
  let loading = null;

  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
  const area = () => $(".composer textarea");

  function recent() {
    try {
      const list = JSON.parse(localStorage.getItem(RECENT) || "[]");
      return Array.isArray(list) ? list.filter((e) => typeof e === "string").slice(0, MOST_RECENT) : [];
    } catch { return []; }
  }
  function remember(emoji) {
    const list = [emoji, ...recent().filter((e) => e !== emoji)].slice(0, MOST_RECENT);
    try { localStorage.setItem(RECENT, JSON.stringify(list)); } catch { /* storage off: nothing remembered */ }
  }

  // Both languages' files, joined by emoji; skin-tone components and lone regional letters are left out.
  function load(button) {
    if (!loading) {
      const get = (url) => fetch(url).then((r) => { if (!r.ok) throw new Error(String(r.status)); return r.json(); });
      loading = Promise.all([get(button.dataset.emojiZh), get(button.dataset.emojiEn)]).then(([zh, en]) => {
        const english = new Map(en.map((e) => [e.hexcode, e]));
        data = zh.filter((e) => e.group !== undefined && e.group !== 2).sort((a, b) => a.order - b.order).map((e) => {
          const other = english.get(e.hexcode) || {};
          const words = [e.label, ...(e.tags || []), other.label || "", ...(other.tags || [])].join(" ").toLowerCase();
          const tags = [...(e.tags || []), ...(other.tags || [])].map((t) => t.toLowerCase());
          return { unicode: e.unicode, group: e.group, zh: e.label, en: other.label || "", words, tags };
        });
        return data;
      }).catch((error) => { loading = null; throw error; });
    }
    return loading;
  }

  function cell(e) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "emoji-cell";
    b.dataset.testid = "emoji";
    b.dataset.emoji = e.unicode;
    b.textContent = e.unicode;
    b.title = e.en ? `${e.zh} · ${e.en}` : e.zh;
    b.setAttribute("aria-label", e.zh);
    b.tabIndex = -1;
    return b;
  }
  function section(title, emoji, testid) {
    const part = document.createElement("section");
    part.className = "emoji-section";
    if (testid) part.dataset.testid = testid;
    const h = document.createElement("h4");
    h.textContent = title;
    const grid = document.createElement("div");
    grid.className = "emoji-grid";
    grid.setAttribute("role", "group");
    grid.setAttribute("aria-label", title);
    grid.append(...emoji.map(cell));
    part.append(h, grid);
    return part;
  }
  // The matches of a search, best first: the name itself ("心", "ok"), a name that starts with it ("heart with
  // arrow"), a name that holds it (as a word, in English: "red heart"), a keyword that is it, then any keyword that
  // holds it; the data set's own order within each.
  function rank(query) {
    const names = (e) => [e.zh.toLowerCase(), e.en.toLowerCase()];
    const tiers = [
      (e) => names(e).includes(query),
      (e) => names(e).some((n) => n.startsWith(query)),
      (e) => e.zh.includes(query) || ` ${e.en.toLowerCase()} `.includes(` ${query} `), // a whole English word
      (e) => e.tags.includes(query),
      (e) => e.words.includes(query),
    ];
    const found = [];
    const seen = new Set();
    for (const matches of tiers) {
      for (const e of data) {
        if (!seen.has(e) && matches(e)) { seen.add(e); found.push(e); }
      }
    }
    return found;
  }
  // What the picker shows: recently used first, then every group; or, while searching, the matches.
  function fill(picker) {
    const list = $(".emoji-list", picker);
    const query = $(".emoji-search", picker).value.trim().toLowerCase();
    const byChar = new Map(data.map((e) => [e.unicode, e]));
    const parts = [];
    if (query) {
      const found = rank(query);
      parts.push(found.length ? section("搜索结果", found, "emoji-results") : Object.assign(document.createElement("p"), {
        className: "muted emoji-none", textContent: "没有找到这个表情",
      }));
    } else {
      const used = recent().map((u) => byChar.get(u) || { unicode: u, zh: u, en: "" });
      if (used.length) parts.push(section("最近使用", used, "emoji-recent"));
      GROUPS.forEach((title, group) => {
        if (title) parts.push(section(title, data.filter((e) => e.group === group)));
      });
    }
    list.replaceChildren(...parts);
    const first = $(".emoji-cell", list);
    if (first) first.tabIndex = 0; // one tab stop into the grid; arrows move inside it
  }

  function build(button) {
    const picker = document.createElement("div");
    picker.className = "emoji-picker";
    picker.dataset.testid = "emoji-picker";
    picker.setAttribute("role", "dialog");
    picker.setAttribute("aria-label", "表情");
    const search = document.createElement("input");
    search.type = "search";
    search.className = "emoji-search";
    search.dataset.testid = "emoji-search";
    search.placeholder = "搜索表情（中文或英文）";
    search.setAttribute("aria-label", "搜索表情");
    search.autocomplete = "off";
    const list = document.createElement("div");
    list.className = "emoji-list";
    list.textContent = "正在加载表情…";
    picker.append(search, list);
    button.closest(".composer-bar").appendChild(picker);
    search.addEventListener("input", () => { if (data) fill(picker); });
    return picker;
  }

  function openPicker(button) {
    let picker = $('[data-testid="emoji-picker"]');
    if (!picker) picker = build(button);
    picker.hidden = false;
    button.setAttribute("aria-expanded", "true");
    const search = $(".emoji-search", picker);
    search.value = "";
    search.focus();
    load(button).then(() => fill(picker)).catch(() => {
      $(".emoji-list", picker).textContent = "表情没能加载，请稍后再试。";
    });
  }
  function closePicker(focusComposer) {
    const picker = $('[data-testid="emoji-picker"]');
    if (!picker || picker.hidden) return;
    picker.hidden = true;
    $('[data-testid="emoji-button"]')?.setAttribute("aria-expanded", "false");
    if (focusComposer) area()?.focus();
  }

  // At the caret (or over the selection) of the composer; the caret goes after it. The composer keeps its selection
  // while the picker has the focus.
  function insert(emoji) {
    const text = area();
    if (!text) return;
    const start = text.selectionStart ?? text.value.length;
    const end = text.selectionEnd ?? start;
    if (text.value.length - (end - start) + emoji.length > text.maxLength && text.maxLength > 0) return;
    text.setRangeText(emoji, start, end, "end");
    text.dispatchEvent(new Event("input", { bubbles: true })); // drafts and the like hear it as typing
    remember(emoji);
  }

  document.addEventListener("click", (e) => {
    const button = e.target.closest('[data-testid="emoji-button"]');
    if (button) {
      const picker = $('[data-testid="emoji-picker"]');
      if (picker && !picker.hidden) closePicker(true);
      else openPicker(button);
      return;
    }
    const chosen = e.target.closest(".emoji-cell");
    if (chosen) {
      insert(chosen.dataset.emoji);
      return;
    }
    if (!e.target.closest('[data-testid="emoji-picker"]')) closePicker(false); // a click elsewhere
  });
  document.addEventListener("submit", () => closePicker(false));

  function columns(grid) {
    const cells = $$(".emoji-cell", grid);
    if (cells.length < 2) return 1;
    const top = cells[0].offsetTop;
    const n = cells.findIndex((c) => c.offsetTop !== top);
    return n < 0 ? cells.length : n;
  }
  document.addEventListener("keydown", (e) => {
    const picker = e.target.closest?.('[data-testid="emoji-picker"]');
    if (!picker) return;
    if (e.key === "Escape") {
      e.preventDefault();
      closePicker(true);
      return;
    }
    const cells = $$(".emoji-cell", picker);
    if (e.target.matches(".emoji-search")) {
      if (e.key === "Enter" && cells.length) { e.preventDefault(); insert(cells[0].dataset.emoji); }
      else if (e.key === "ArrowDown" && cells.length) { e.preventDefault(); cells[0].focus(); }
      return;
    }
    const cellNow = e.target.closest(".emoji-cell");
    if (!cellNow) return;
    const i = cells.indexOf(cellNow);
    const step = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: columns(cellNow.parentElement),
                   ArrowUp: -columns(cellNow.parentElement) }[e.key];
    if (step === undefined) return;
    e.preventDefault();
    const next = cells[i + step];
    if (next) next.focus();
    else if (step < 0) $(".emoji-search", picker).focus();
  });
  // A conversation was swapped in: its composer has no picker open.
  document.addEventListener("htmx:afterSwap", (e) => {
    if (e.detail.target?.id === "thread-col") closePicker(false);
  });
})();
