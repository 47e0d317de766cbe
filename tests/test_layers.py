"""The import rules between fsrt's layers, checked on the source with ``ast`` (nothing is imported).

- ``fsrt.bench`` (bench/) may import the bench itself, ``fsrt.exporters`` and the core;
- ``fsrt.exporters`` (exporters/) may import itself, ``fsrt.kernels`` and the core;
- ``fsrt.kernels`` (kernels/) imports no other part of fsrt, only the standard library, torch,
  triton and the libraries of its own export path (numpy, onnx, onnxscript, onnx_ir, tensorrt);
- the core (fsrt/) never imports exporters, kernels or bench, except ``fsrt/cli.py`` and the
  command modules ``fsrt/commands/*``, and those only lazily (inside a function);
- the core has no import cycles (lazy imports count: a cycle is a design cycle either way).

Every import statement counts, wherever it stands in a module. docs/architecture.md ("Layers")
explains why the arrows point this way.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

from conftest import REPO

FOLDERS = {"fsrt": "fsrt", "fsrt.exporters": "exporters", "fsrt.kernels": "kernels", "fsrt.bench": "bench"}
MAY_IMPORT = {
    "fsrt.bench": {"fsrt.bench", "fsrt.exporters", "fsrt"},
    "fsrt.exporters": {"fsrt.exporters", "fsrt.kernels", "fsrt"},
    "fsrt.kernels": {"fsrt.kernels"},
    "fsrt": {"fsrt"},
}
KERNEL_LIBRARIES = {"torch", "triton", "numpy", "onnx", "onnxscript", "onnx_ir", "tensorrt"}


@dataclass(frozen=True)
class Import:
    importer: str  # module name, e.g. fsrt.exporters.onnx_export
    target: str    # absolute module name (or package, for `from pkg import name` of a non-module)
    lazy: bool     # inside a function
    line: int


def _modules() -> dict[str, tuple[Path, bool]]:
    """``{module name: (file, is package __init__)}`` for every source file of the four folders."""
    out = {}
    for package, folder in FOLDERS.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            parts = [p for p in path.relative_to(REPO / folder).with_suffix("").parts if p != "__init__"]
            out[".".join([package, *parts])] = (path, path.name == "__init__.py")
    return out


MODULES = _modules()


def _targets(module: str, is_package: bool, node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    return [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in MODULES else prefix for a in node.names]


def _imports() -> list[Import]:
    found = []
    for module, (path, is_package) in MODULES.items():
        tree = ast.parse(path.read_text(), str(path))
        lazy_nodes = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                      for n in ast.walk(f)}
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                found += [Import(module, t, id(node) in lazy_nodes, node.lineno)
                          for t in _targets(module, is_package, node)]
    return found


IMPORTS = _imports()


def layer(module: str) -> str | None:
    """The layer a module belongs to (``fsrt`` is the core), or None outside fsrt."""
    if module != "fsrt" and not module.startswith("fsrt."):
        return None
    return next((p for p in ("fsrt.exporters", "fsrt.kernels", "fsrt.bench") if module == p or
                 module.startswith(p + ".")), "fsrt")


def _where(imp: Import) -> str:
    return f"{MODULES[imp.importer][0].relative_to(REPO)}:{imp.line} imports {imp.target}"


def _is_command(module: str) -> bool:
    return module == "fsrt.cli" or module.startswith("fsrt.commands.")


def test_the_scan_sees_every_layer():
    """Guard against a scan that silently finds nothing (which would pass every rule below)."""
    assert {layer(m) for m in MODULES} == set(FOLDERS)
    assert len(IMPORTS) > 200
    known = [(i.target, i.lazy) for i in IMPORTS if i.importer == "fsrt.exporters.onnx_export"]
    assert ("fsrt.precision", False) in known and ("fsrt.kernels.bn_fold", True) in known  # top level and lazy


def test_layers_import_only_downwards():
    bad = []
    for imp in IMPORTS:
        src, dst = layer(imp.importer), layer(imp.target)
        if dst is None or dst in MAY_IMPORT[src]:
            continue
        if _is_command(imp.importer) and imp.lazy:
            continue  # the CLI's command modules reach every layer, lazily per command
        rule = "command modules import other layers inside functions" if _is_command(imp.importer) else \
            f"{src} may import only {', '.join(sorted(MAY_IMPORT[src]))}"
        bad.append(f"{_where(imp)}{'' if imp.lazy else ' at module level'}: {rule}")
    assert not bad, "\n".join(bad)


def test_kernels_use_only_torch_triton_and_their_export_libraries():
    allowed = KERNEL_LIBRARIES | set(sys.stdlib_module_names)
    bad = [_where(imp) for imp in IMPORTS if layer(imp.importer) == "fsrt.kernels" and layer(imp.target) is None
           and imp.target.split(".")[0] not in allowed]
    assert not bad, "\n".join(bad)


def test_the_core_has_no_import_cycles():
    core = {m for m in MODULES if layer(m) == "fsrt"}
    graph = {m: sorted({i.target for i in IMPORTS if i.importer == m and i.target in core and i.target != m})
             for m in core}
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in graph[m]:
            if state.get(n) == 1:
                cycles.append(" -> ".join((path + [m])[(path + [m]).index(n):] + [n]))
            elif n not in state:
                visit(n, path + [m])
        state[m] = 2

    for m in sorted(core):
        if m not in state:
            visit(m, [])
    assert not cycles, "\n".join(cycles)
