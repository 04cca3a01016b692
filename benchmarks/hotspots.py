"""Summarise a py-spy profile in collapsed-stack ("raw") form: where the server's CPU time goes.

    python benchmarks/hotspots.py PROFILE.txt [--top 15] [--json]

PROFILE.txt comes from `python benchmarks/load.py latency --profile PROFILE.txt` (or `py-spy record --format raw`).
Prints the share of samples by package (self time), the top functions by self time, the top functions by
inclusive time (the function or anything it calls), and the same for the app's own functions.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path

FRAME_RE = re.compile(r"^(?P<function>.*?) \((?P<path>[^()]*?)(?::(?P<line>\d+))?\)$")


def parse(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


def function_of(frame: str) -> tuple[str, str]:
    """(`module:function`, area) of one frame, line numbers dropped. py-spy names files relative to their
    sys.path entry (`sqlalchemy/orm/session.py`, `app/web/chat.py`, `threading.py`, `_message.html`)."""
    match = FRAME_RE.match(frame.strip())
    if match is None:
        return frame.strip(), "other"
    function, path = match["function"], match["path"]
    for marker in ("site-packages/", "/lib/python3."):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker.startswith("/lib"):
                path = path.split("/", 1)[-1]
    if path.endswith(".html"):
        area = "templates (jinja2)"
    elif "/" in path:
        area = path.split("/", 1)[0]
    else:
        area = "stdlib:" + path.removesuffix(".py")
    return f"{path.removesuffix('.py')}:{function}", area


def summarise(stacks: list[tuple[list[str], int]], top: int) -> dict[str, object]:
    total = sum(count for _, count in stacks) or 1
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    for frames, count in stacks:
        names = [function_of(f) for f in frames if f.strip()]
        if not names:
            continue
        leaf, area = names[-1]
        own[leaf] += count
        areas[area] += count
        for name in {name for name, _ in names}:
            inclusive[name] += count

    def share(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(name, round(100 * n / total, 1)) for name, n in counter.most_common(top)]

    app_only = Counter({name: n for name, n in inclusive.items() if name.startswith("app/")})
    return {"samples": total, "self_by_area_pct": share(areas), "self_pct": share(own),
            "inclusive_pct": share(inclusive), "app_inclusive_pct": share(app_only)}


def main(argv: list[str] | None = None) -> int:
    options = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    options.add_argument("profile", type=Path)
    options.add_argument("--top", type=int, default=15)
    options.add_argument("--json", action="store_true", help="one JSON line instead of tables")
    args = options.parse_args(argv)
    summary = summarise(parse(args.profile), args.top)
    if args.json:
        print(json.dumps(summary, ensure_ascii=False, separators=(",", ":")))
        return 0
    print(f"{summary['samples']} samples")
    for title, key in (("self time by area", "self_by_area_pct"), ("self time", "self_pct"),
                       ("inclusive time", "inclusive_pct"), ("inclusive time, app code", "app_inclusive_pct")):
        print(f"\n{title}:")
        for name, pct in summary[key]:  # type: ignore[attr-defined]
            print(f"  {pct:5.1f}%  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
