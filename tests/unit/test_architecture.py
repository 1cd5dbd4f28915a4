"""The room order of docs/architecture.md, held by walking the imports of prober/ with ast.

Every `import prober...` / `from prober... import` counts, including those inside functions
(a lazy import is still a dependency). A room may import its own modules and the rooms
below it; the judge (sla) and the probes never import each other; nothing imports upward,
and there is no cycle between modules.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "prober"
DOC = PACKAGE.parent / "docs" / "architecture.md"

# room -> the rooms it may import (besides itself). Keep in step with docs/architecture.md.
ALLOWED: dict[str, set[str]] = {
    "ground": set(),
    "config": {"ground"},
    "probes": {"config", "ground"},
    "sla": {"config", "ground"},
    "agent": {"probes", "config", "ground"},
    "commands": {"agent", "probes", "sla", "config", "ground"},
    "cli": {"commands", "agent", "probes", "sla", "config", "ground"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def room(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "ground"  # prober/__init__.py
    if parts[1] in ("cli", "main", "__main__"):  # the click group; the executable
        return "cli"
    if len(parts) == 2 and not (PACKAGE / parts[1]).is_dir():
        return "ground"  # a top-level module: schema, lineproto, measurement, contract...
    return parts[1]


def imports(path: Path, module: str) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "prober")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target.split(".")[0] != "prober":
                continue
            found.add(target)
            for alias in node.names:  # `from prober.probes import canary` imports a module
                if (PACKAGE.parent / (target.replace(".", "/") + "/" + alias.name + ".py")
                        ).exists():
                    found.add(f"{target}.{alias.name}")
    return found


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges[name] = {t for t in imports(path, name) if t in modules and t != name}
    return edges


def test_imports_follow_the_room_order() -> None:
    bad = []
    for module, targets in sorted(graph().items()):
        src = room(module)
        assert src in ALLOWED, f"{module}: room {src!r} is not in docs/architecture.md"
        for target in sorted(targets):
            dst = room(target)
            if dst != src and dst not in ALLOWED[src]:
                bad.append(f"{module} ({src}) imports {target} ({dst})")
    assert bad == []


def test_no_import_cycle() -> None:
    edges = graph()
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*stack[stack.index(nxt):], nxt]))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert cycles == []


def test_the_walk_sees_the_imports_it_judges() -> None:
    edges = graph()
    # a known downward edge must be found, or the two tests above would pass vacuously
    assert "prober.lineproto" in edges["prober.measurement"]
    assert "prober.contract" in edges["prober.config"]
    assert room("prober.config.mail") == "config" and room("prober.schema") == "ground"
    assert room("prober.main") == "cli" and "prober.commands.run" in edges["prober.main"]


def test_the_architecture_page_states_the_same_order() -> None:
    text = DOC.read_text()
    table = dict(re.findall(r"^\| `([a-z]+)` \| [^|]* \| ([^|]*) \|$", text, re.M))
    stated = {r: {x.strip(" `") for x in v.split(",") if x.strip(" `-")} for r, v in
              table.items()}
    assert stated == ALLOWED
