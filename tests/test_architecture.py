"""The package's shape: no import cycle, imports that point down, no import hidden in a function, callbacks
that stand alone."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import cifarbench

PACKAGE = Path(cifarbench.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imported_modules(node: ast.AST, importer: str) -> list[str]:
    """The cifarbench modules an import statement loads (``from a import b``: ``a.b`` if it is a module)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name in MODULES]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:  # relative: resolve against the importer's package
        package = importer.split(".")
        base = ".".join(package[: len(package) - node.level + (MODULES[importer].name == "__init__.py")])
        source = f"{base}.{node.module}" if node.module else base
    else:
        source = node.module or ""
    if source not in MODULES:
        return []
    return [
        f"{source}.{alias.name}" if f"{source}.{alias.name}" in MODULES else source for alias in node.names
    ]


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text())
        graph[name] = {target for node in ast.walk(tree) for target in imported_modules(node, name)} - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = "open"
        stack.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                return stack[stack.index(target) :] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[module] = "done"
        stack.pop()
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)):
            return cycle
    return None


def test_the_package_has_no_import_cycle():
    assert find_cycle(import_graph()) is None, " -> ".join(find_cycle(import_graph()) or [])


def test_the_cycle_finder_finds_a_cycle():
    """The check above has teeth: a cycle through three modules is found."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


VERBS = "cifarbench.commands"
CALLBACKS = "cifarbench.callbacks"
ENTRY_POINTS = {"cifarbench.__main__"}  # the dispatcher sits above the verbs


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def wrong_way_imports(graph: dict[str, set[str]]) -> list[str]:
    """Imports that point up: a callbacks module importing any of the package but callbacks, or a library
    module (outside commands/ and __main__) importing a verb."""
    wrong = []
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            if _within(module, CALLBACKS) and not _within(target, CALLBACKS):
                wrong.append(f"{module} imports {target}: the callbacks import only each other")
            elif _within(target, VERBS) and not _within(module, VERBS) and module not in ENTRY_POINTS:
                wrong.append(f"{module} imports {target}: a library module imports a verb")
    return wrong


def test_imports_point_down():
    assert wrong_way_imports(import_graph()) == []


def test_the_direction_check_finds_imports_that_point_up():
    """The check above has teeth: made-up modules that import the wrong way are each named."""
    graph = {
        "cifarbench.callbacks.timing": {"cifarbench.callbacks.records", "cifarbench.model"},
        "cifarbench.callbacks": {"cifarbench.callbacks.timing", "cifarbench.errors"},
        "cifarbench.lab.runs": {"cifarbench.commands.fit", "cifarbench.fitting"},
        "cifarbench.commands.lab": {"cifarbench.commands.parsing", "cifarbench.fitting"},
        "cifarbench.__main__": {"cifarbench.commands.fit"},
        "cifarbench.fitting": {"cifarbench.commands"},
    }
    assert wrong_way_imports(graph) == [
        "cifarbench.callbacks imports cifarbench.errors: the callbacks import only each other",
        "cifarbench.callbacks.timing imports cifarbench.model: the callbacks import only each other",
        "cifarbench.fitting imports cifarbench.commands: a library module imports a verb",
        "cifarbench.lab.runs imports cifarbench.commands.fit: a library module imports a verb",
    ]
    assert wrong_way_imports({"cifarbench.commands.lab": {"cifarbench.commands.fit"}}) == []


def test_no_cifarbench_import_hides_inside_a_function():
    """An import of cifarbench inside a function is how an import cycle gets dodged; there are none."""
    hidden = []
    for name, path in MODULES.items():
        for function in ast.walk(ast.parse(path.read_text())):
            if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                for node in ast.walk(function):
                    hidden += [
                        f"{name}.{function.name} imports {target}" for target in imported_modules(node, name)
                    ]
    assert hidden == []


def test_callbacks_import_only_torch_lightning_and_the_stdlib():
    """The callbacks are meant to be reused in other Lightning projects: no cifarbench code beyond them.

    Read from the source (every import statement) and from a fresh process (what importing them loads).
    """
    allowed = set(sys.stdlib_module_names) | {"torch", "lightning", "typing_extensions", "rich"}
    for path in (PACKAGE / "callbacks").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                assert module.split(".")[0] in allowed or module.startswith("cifarbench.callbacks"), (
                    f"{path.name} imports {module}"
                )
    code = (
        "import sys; from cifarbench.callbacks import EpochTimer; "
        "print(sorted(m for m in sys.modules if m.startswith('cifarbench') and not "
        "m.startswith('cifarbench.callbacks') and m != 'cifarbench'))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
