"""The floors of the package, read from the code's own imports (README "Layout").

- no import cycle between packages, nor between files;
- `exchange.protocol` imports nothing else of the exchange (the wire code, shared with the partner library);
- `exchange.partner` imports only `exchange.protocol`;
- views import neither SQLAlchemy nor PyNaCl (no SQL, no crypto in a view);
- `exchange.db` imports nothing of `exchange.web`.

Every import counts, also one inside a function or under `if TYPE_CHECKING:`: a deferred import hides a cycle, it
does not remove it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "exchange"


def module_of(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: dict[str, Path] = {
    module_of(p): p for p in PACKAGE.rglob("*.py") if "migrations" not in p.relative_to(PACKAGE).parts
}


def imports_of(module: str) -> Iterator[tuple[str, int]]:
    """Every module `module` imports, with its line: `from a import b` is `a.b` when that is a module, else `a`."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            for alias in node.names:
                candidate = f"{source}.{alias.name}"
                yield (candidate if candidate in MODULES else source), node.lineno


def internal_imports(module: str) -> set[str]:
    """The exchange's own modules that `module` imports (a package's import counts as its __init__)."""
    found = set()
    for name, _ in imports_of(module):
        while name and name not in MODULES:
            name = name.rpartition(".")[0]
        if name.startswith("exchange") and name != module:
            found.add(name)
    return found


GRAPH = {module: internal_imports(module) for module in MODULES}


def package_of(module: str) -> str:
    """`exchange.audit.views` -> `exchange.audit`; a top-level file (`exchange.db`) is its own unit."""
    parts = module.split(".")
    if len(parts) >= 3 or MODULES[module].name == "__init__.py":
        return ".".join(parts[:2])
    return module


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` (as the list of its nodes, the first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, targets in GRAPH.items():
        source = package_of(module)
        graph.setdefault(source, set()).update(package_of(t) for t in targets if package_of(t) != source)
    # `exchange/__init__.py` only re-exports the app factory: it is the top, not a package the others sit in
    graph.pop("exchange", None)
    for targets in graph.values():
        targets.discard("exchange")
    return graph


def test_the_reader_sees_the_imports_it_must() -> None:
    """The rules below are only as good as the import reader: it must see deferred and relative imports."""
    assert "exchange.db" in GRAPH["exchange.app"]
    assert "exchange.protocol.encoding" in GRAPH["exchange.partner.api"]  # one of them sits inside a method
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_between_files() -> None:
    assert find_cycle(GRAPH) is None


# Package imports that still point down-to-up, each a known piece of the redesign not yet done (issue 11). They are
# listed so that the rule holds for everything else; an entry that no longer exists fails the test below, so the
# list only shrinks. Never add to it: move the code to the floor where it belongs instead.
KNOWN_UPWARD_IMPORTS: dict[tuple[str, str], str] = {
    ("exchange.audit", "exchange.keys"):
        "audit.recorder reads the key ring for the audit signing key; to go: a signer handed in by the app factory",
    ("exchange.keys", "exchange.envelope"):
        "keys.views uses EnvelopeBlueprint, keys.service re-wraps envelope evidence; to go: the envelope parser in "
        "web/, the evidence re-wrap behind a seam",
    ("exchange.clients", "exchange.envelope"):
        "clients.views uses EnvelopeBlueprint; to go: the envelope parser in web/",
}


def test_no_import_cycle_between_packages() -> None:
    graph = package_graph()
    stale = [edge for edge in KNOWN_UPWARD_IMPORTS if edge[1] not in graph.get(edge[0], set())]
    assert stale == [], "these imports are gone: take them off KNOWN_UPWARD_IMPORTS"
    for source, target in KNOWN_UPWARD_IMPORTS:
        graph[source].discard(target)
    assert find_cycle(graph) is None


# README "Layout", bottom up. A package imports only from the floors below its own; on the domain floor and the top
# floor the packages may also import each other (without a cycle: see above).
FLOORS: list[tuple[set[str], bool]] = [
    ({"exchange.protocol"}, False),
    ({"exchange.config", "exchange.files", "exchange.identity", "exchange.logs", "exchange.outages",
      "exchange.partner"}, False),
    ({"exchange.db"}, False),
    ({"exchange.web", "exchange.request_rules"}, False),
    ({"exchange.audit", "exchange.auth", "exchange.clients", "exchange.envelope", "exchange.events", "exchange.keys",
      "exchange.register", "exchange.operator", "exchange.limits", "exchange.witness"}, True),
    # exchange.client: the partner library's deprecated name, re-exporting it. exchange.console: the auditor's console
    # (reads the log through partner/, verifies it with audit/'s offline verifier; see the rule below)
    ({"exchange.app", "exchange.cli", "exchange.contracts", "exchange.demo", "exchange.health", "exchange.migrate",
      "exchange.openapi", "exchange.client", "exchange.console"}, True),
]


def test_every_package_has_a_floor() -> None:
    placed = set().union(*(floor for floor, _ in FLOORS))
    assert set(package_graph()) - placed == set()


def test_the_floors_are_in_order() -> None:
    graph = package_graph()
    below: set[str] = set()
    upward = []
    for floor, shared in FLOORS:
        for package in sorted(floor):
            allowed = below | (floor - {package} if shared else set())
            upward += [(package, target) for target in sorted(graph.get(package, set()) - allowed)]
        below |= floor
    assert upward == []


def test_protocol_imports_nothing_else_of_the_exchange() -> None:
    outside = {(m, t) for m, ts in GRAPH.items() if m.startswith("exchange.protocol")
               for t in ts if not t.startswith("exchange.protocol")}
    assert outside == set()


def test_the_partner_library_imports_only_the_protocol() -> None:
    outside = {(m, t) for m, ts in GRAPH.items() if m.startswith("exchange.partner")
               for t in ts if not t.startswith(("exchange.protocol", "exchange.partner"))}
    assert outside == set()


@pytest.mark.parametrize("library", ["sqlalchemy", "nacl"])
def test_views_import_neither_the_orm_nor_the_crypto_library(library: str) -> None:
    views = [m for m in MODULES if m.endswith(".views")]
    assert len(views) >= 5
    offending = {(m, name) for m in views for name, _ in imports_of(m) if name.split(".")[0] == library}
    assert offending == set()


def test_db_imports_nothing_of_the_web_layer() -> None:
    assert {t for t in GRAPH["exchange.db"] if t.startswith("exchange.web")} == set()


def test_the_console_trusts_only_what_it_verified() -> None:
    """The auditor's console runs on the auditor's machine: it reads the log through the partner library or an export
    and verifies it itself. It never opens the exchange's database, app or web layer."""
    reached = {t for m, ts in GRAPH.items() if m.startswith("exchange.console") for t in ts}
    assert reached, "the console exists"
    forbidden = {t for t in reached if t.startswith(("exchange.db", "exchange.web", "exchange.app", "exchange.keys",
                                                     "exchange.auth", "exchange.register"))}
    assert forbidden == set()
