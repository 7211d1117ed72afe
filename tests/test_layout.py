"""The house: the public API (`import pruneofa`), and imports that flow one way (commands -> pipeline -> stages ->
core) with no circles. Read from the source with `ast`, so a lazy import inside a function counts too."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import pruneofa

PACKAGE = Path(pruneofa.__file__).parent
VERBS = ("train", "sparsify", "export_model", "evaluate", "benchmark", "gate", "run_pipeline")
CONFIGS = ("TrainConfig", "SparsifyConfig", "ExportConfig", "EvalConfig", "BenchConfig", "GateConfig", "Recipe")

# Lower layers never import higher ones; a unit may import its own modules and anything below it.
LAYERS = {
    "core": 0,
    "data": 1,
    "kernels": 1,  # the native sparse kernel (ctypes): core only
    "runtime": 2,  # torch-free: core + kernels (the openvino-sparse engine adds the kernel's extension)
    "models": 2,
    "compress": 3,
    "training": 4,
    "gates": 4,
    "scoring": 5,
    "export": 6,
    "bench": 7,
    "pipeline": 8,
    "api": 9,
    "commands": 10,
    "cli": 11,
    "__main__": 12,
    "__init__": 12,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every pruneofa module this file imports, at the top or inside a function (`from pruneofa import x` counts
    as pruneofa.x when x is a module, else as pruneofa itself)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "pruneofa":
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in MODULES else node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "pruneofa"}
    return found


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_module_is_in_a_layer() -> None:
    assert {unit(m) for m in MODULES} <= set(LAYERS)


def test_imports_flow_down_the_layers() -> None:
    wrong = []
    for module, path in MODULES.items():
        for target in imports_of(path) - {"pruneofa"}:
            if unit(target) != unit(module) and LAYERS[unit(target)] >= LAYERS[unit(module)]:
                wrong.append(f"{module} imports {target}")
    assert not wrong, wrong


def test_no_import_circles() -> None:
    graph = {m: {t for t in imports_of(p) if t in MODULES and t != "pruneofa"} for m, p in MODULES.items()}
    graph["pruneofa"] = set()  # the lazy public API: resolved on attribute access, not at import
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            pytest.fail("import circle: " + " -> ".join([*path[path.index(node) :], node]))
        if node in done:
            return
        for nxt in graph[node]:
            visit(nxt, [*path, node])
        done.add(node)

    for module in graph:
        visit(module, [])


def test_public_api_is_typed_documented_and_listed() -> None:
    assert set(VERBS) | set(CONFIGS) <= set(pruneofa.__all__)
    assert set(pruneofa.__all__) - {"__version__"} == set(pruneofa._PUBLIC)
    for name in pruneofa.__all__:
        value = getattr(pruneofa, name)
        assert value.__doc__, f"pruneofa.{name} has no docstring"
    for verb in VERBS:
        fn = getattr(pruneofa, verb)
        assert inspect.isfunction(fn), verb
        sig = inspect.signature(fn)
        assert sig.return_annotation is not inspect.Signature.empty, verb
        assert all(p.annotation is not inspect.Parameter.empty for p in sig.parameters.values()), verb
    with pytest.raises(AttributeError):
        pruneofa.no_such_verb  # noqa: B018


def test_no_public_name_is_shadowed_by_a_subpackage() -> None:
    """Importing every module must leave each public name what it is (a module of the same name would replace
    the attribute once imported). And `import pruneofa` alone imports no torch."""
    code = (
        "import importlib, sys, pruneofa\n"
        "assert not {'torch', 'transformers'} & set(sys.modules), 'import pruneofa pulled torch in'\n"
        f"for m in {sorted(MODULES)!r}: importlib.import_module(m)\n"
        "import types\n"
        "bad = [n for n in pruneofa.__all__ if isinstance(getattr(pruneofa, n), types.ModuleType)]\n"
        "assert not bad, bad\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_cli_calls_the_public_verbs() -> None:
    """Each command module reaches the library through the public API, not around it."""
    calls = {
        "train": "train",
        "sparsify": "sparsify",
        "deploy": "export_model",
        "measure": "benchmark",
        "pipeline": "run_pipeline",
    }
    for module, verb in calls.items():
        tree = ast.parse((PACKAGE / "commands" / f"{module}.py").read_text())
        names = {
            a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module == "pruneofa" for a in n.names
        }
        assert verb in names, f"commands/{module}.py does not import pruneofa.{verb}"
    deploy = ast.parse((PACKAGE / "commands" / "deploy.py").read_text())
    measure = ast.parse((PACKAGE / "commands" / "measure.py").read_text())
    for tree, verb in ((deploy, "evaluate"), (deploy, "Predictor"), (measure, "gate")):
        names = {
            a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module == "pruneofa" for a in n.names
        }
        assert verb in names, verb
