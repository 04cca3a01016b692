"""A tiny HTML tree (standard library only), so tests read pages the way people do: by element and text."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser

VOID_TAGS = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


@dataclass(eq=False)
class Element:
    tag: str
    attrs: dict[str, str] = field(default_factory=dict)
    children: list[Element | str] = field(default_factory=list)

    def get(self, name: str) -> str | None:
        return self.attrs.get(name)

    def has(self, name: str) -> bool:
        return name in self.attrs

    @property
    def classes(self) -> set[str]:
        return set((self.attrs.get("class") or "").split())

    @property
    def testid(self) -> str | None:
        return self.attrs.get("data-testid")

    def text(self) -> str:
        """The element's text with runs of whitespace collapsed, as a reader sees it."""
        parts: list[str] = []
        self._collect_text(parts)
        return " ".join("".join(parts).split())

    def _collect_text(self, parts: list[str]) -> None:
        for child in self.children:
            if isinstance(child, str):
                parts.append(child)
            else:
                child._collect_text(parts)

    def iter(self) -> Iterator[Element]:
        """This element and every element inside it, in document order."""
        yield self
        for child in self.children:
            if isinstance(child, Element):
                yield from child.iter()

    def find_all(self, tag: str | None = None, testid: str | None = None, cls: str | None = None,
                 **attrs: str) -> list[Element]:
        """Elements inside this one (not itself) that match; attribute names use `_` for `-`."""
        wanted = {name.replace("_", "-"): value for name, value in attrs.items()}
        found = []
        for element in self.iter():
            if element is self:
                continue
            if tag is not None and element.tag != tag:
                continue
            if testid is not None and element.testid != testid:
                continue
            if cls is not None and cls not in element.classes:
                continue
            if any(element.attrs.get(name) != value for name, value in wanted.items()):
                continue
            found.append(element)
        return found

    def one(self, tag: str | None = None, testid: str | None = None, cls: str | None = None,
            **attrs: str) -> Element:
        """The single matching element; fails the test when there are none or several."""
        found = self.find_all(tag, testid, cls, **attrs)
        assert len(found) == 1, f"expected one {tag or ''}[testid={testid}, class={cls}, {attrs}], got {len(found)}"
        return found[0]


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document")
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {name: value or "" for name, value in attrs})
        self.stack[-1].children.append(element)
        if tag not in VOID_TAGS:
            self.stack.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Element(tag, {name: value or "" for name, value in attrs}))

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse(html: str) -> Element:
    """A whole page or an htmx fragment, as a tree under a `#document` element."""
    builder = _TreeBuilder()
    builder.feed(html)
    builder.close()
    return builder.root
