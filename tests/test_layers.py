"""Kefu's rooms depend downward only: web → realtime → chat → db (README, "Architecture"). A module may import its
own layer and the layers below it, never one above: the domain (chat) knows nothing of HTTP, streams or templates,
and the database layer nothing of the domain. Read from app/'s source, imports inside functions included."""

from __future__ import annotations

import ast
from pathlib import Path

APP = Path(__file__).resolve().parent.parent / "app"
# lower numbers lie below; modules of the same layer may import each other
LAYERS = {
    "app": 0, "app.config": 0, "app.i18n": 0,  # settings and translations: usable everywhere
    "app.db": 1,
    "app.chat": 2,
    "app.templating": 3, "app.realtime": 3,  # what people see and hear: rendered messages, the streams
    "app.web": 4,
    "app.main": 5, "app.cli": 5,  # the wiring: the app and the command line put everything together
}


def layer_of(module: str) -> tuple[str, int]:
    """The layer a dotted module name belongs to: its longest prefix in LAYERS."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        name = ".".join(parts[:end])
        if name in LAYERS:
            return name, LAYERS[name]
    raise AssertionError(f"{module} is in no layer: add its package to LAYERS")


def module_name(path: Path) -> str:
    relative = path.relative_to(APP.parent).with_suffix("")
    parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
    return ".".join(parts)


def app_imports(path: Path) -> list[tuple[int, str]]:
    imported = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            imported.extend((node.lineno, alias.name) for alias in node.names)
    return [(line, name) for line, name in imported if name == "app" or name.startswith("app.")]


def test_every_import_points_down_or_across() -> None:
    upward = []
    for path in sorted(APP.rglob("*.py")):
        if "migrations" in path.parts:  # Alembic's scripts: they import the models, run by `kefu db upgrade`
            continue
        here, level = layer_of(module_name(path))
        for line, imported in app_imports(path):
            there, other = layer_of(imported)
            if other > level:
                upward.append(f"{path.relative_to(APP.parent)}:{line} ({here}) imports {imported} ({there})")
    assert not upward, "imports that point up a layer:\n" + "\n".join(upward)


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    source = tmp_path / "seed.py"
    source.write_text("from app.chat import quick_replies\n")
    assert app_imports(source) == [(1, "app.chat")]
    assert layer_of("app.db.seed")[1] < layer_of("app.chat.quick_replies")[1]
