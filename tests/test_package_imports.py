"""The package's own imports, read from the source: no cycle between its modules (imports inside functions count: a
lazy cycle is still a knot), and nothing of the code around it (dataset_scripts, train.py, the Space, logo-eval,
logo-detect and logo-gallery, the benchmarks), not even lazily (test_eval_cli.py checks what importing every module
loads); `names.py`, which the command lines read without importing the package, imports nothing."""

import ast
from pathlib import Path


PACKAGE = Path(__file__).resolve().parents[1] / "modeling_logo"
NAME = PACKAGE.name
#: Top-level modules and packages of the repository that the package must never import.
OUTSIDE = {
    "dataset_scripts",
    "train",
    "train_localizer",
    "training_arguments",
    "space",
    "logo_evaluation",
    "logo_commands",
    "benchmarks",
    "tests",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str) -> set[str]:
    """Every module `name` imports, anywhere in its file (top level, functions, branches), as absolute names."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            submodules = {f"{module}.{alias.name}" for alias in node.names} & set(MODULES)
            found.update(submodules)  # `from . import onnx` imports the submodule modeling_logo.onnx ...
            if len(submodules) < len(node.names):
                found.add(module)  # ... `from .onnx import export_onnx` (or `from . import name`) the module itself
    return found


def internal_graph() -> dict[str, set[str]]:
    graph = {}
    for name in MODULES:
        targets = set()
        for module in imports_of(name):
            # The deepest module of the package that the import names (`modeling_logo.onnx.x` -> modeling_logo.onnx)
            parts = module.split(".")
            while parts and ".".join(parts) not in MODULES:
                parts.pop()
            if parts and parts[0] == NAME and ".".join(parts) != name:
                targets.add(".".join(parts))
        graph[name] = targets
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return [*stack[stack.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_walk_sees_lazy_imports_and_finds_cycles():
    assert "modeling_logo.onnx" in internal_graph()["modeling_logo.embedder"]  # imported inside a function
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_package_has_no_import_cycle():
    graph = internal_graph()
    # The parent package's __init__ runs before any submodule: an edge from a submodule to the package itself
    # would be a cycle with every module __init__ imports.
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))
    assert "modeling_logo.few_shot" not in graph["modeling_logo.onnx"]
    assert "modeling_logo.embedder" not in graph["modeling_logo.onnx"]


def test_the_package_imports_nothing_of_the_scripts_around_it():
    offending = {}
    for name in MODULES:
        outside = {module.split(".")[0] for module in imports_of(name)} & OUTSIDE
        if outside:
            offending[name] = sorted(outside)
    assert offending == {}


def test_the_names_the_command_lines_read_without_the_package_import_nothing():
    """`logo_commands.checks.hub_names` runs `names.py` on its own, without the package's `__init__` (torch,
    transformers): a file of plain values, which the modules that use its names import it from."""
    tree = ast.parse(MODULES["modeling_logo.names"].read_text(encoding="utf-8"))
    assert not [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]
    graph = internal_graph()
    assert (
        "modeling_logo.names" in graph["modeling_logo.losses"]
        and "modeling_logo.names" in graph["modeling_logo.few_shot"]
    )
