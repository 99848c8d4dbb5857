"""The engine boundary: engine-neutral code reaches an engine only through rnnkit/engines.py.

The imports of the trainer, the tasks, the CLI, the server (and the data, metrics and spec modules) are read
with `ast`, those inside functions included, relative ones resolved: none may name rnnkit.scratch or
rnnkit.torch (or anything under them). Both engines implement engines.Engine, and engines.info() is flat.
"""
from __future__ import annotations

import ast
import numbers
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "rnnkit"
ENGINE_PACKAGES = ("rnnkit.scratch", "rnnkit.torch")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, absolute module name) for every import in `source`, anywhere in it, of the module `module`.

    `from X import a` counts X and X.a (a may be a submodule); relative imports are resolved against
    `module`'s package; importlib.import_module / __import__ with a constant name count too."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                base_name = ".".join(base + ([node.module] if node.module else []))
            else:
                base_name = node.module or ""
            found.append((node.lineno, base_name))
            found += [(node.lineno, f"{base_name}.{alias.name}") for alias in node.names if alias.name != "*"]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in ("import_module", "__import__"):
                found.append((node.lineno, node.args[0].value))
    return found


def engine_imports(source: str, module: str, is_package: bool = False) -> list[str]:
    """The imports of an engine module in `source`, as "line N: name"."""
    return [f"line {line}: {name}" for line, name in imported_modules(source, module, is_package)
            if any(name == p or name.startswith(p + ".") for p in ENGINE_PACKAGES)]


def neutral_files() -> list[Path]:
    files = [PACKAGE / "train.py", PACKAGE / "cli.py", PACKAGE / "spec.py", PACKAGE / "metrics.py"]
    for folder in ("tasks", "serve", "data"):
        files += sorted((PACKAGE / folder).rglob("*.py"))
    return files


@pytest.mark.parametrize("path", neutral_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_engine_neutral_code_imports_no_engine(path):
    found = engine_imports(path.read_text(encoding="utf-8"), module_name(path), path.name == "__init__.py")
    assert not found, f"{path.relative_to(ROOT)} imports an engine module directly (use rnnkit.engines): {found}"


@pytest.mark.parametrize("source, module", [
    ("def f():\n    from ..scratch.pooling import X\n", "rnnkit.tasks.fake"),
    ("import rnnkit.torch.models\n", "rnnkit.tasks.fake"),
    ("from rnnkit.scratch import engine\n", "rnnkit.cli"),
    ("from .. import torch\n", "rnnkit.serve.fake"),
    ("from . import scratch\n", "rnnkit.train"),
    ("class A:\n    def f(self):\n        import rnnkit.scratch\n", "rnnkit.serve.app"),
    ("import importlib\nimportlib.import_module('rnnkit.torch.engine')\n", "rnnkit.tasks.fake"),
])
def test_the_check_catches_engine_imports(source, module):
    assert engine_imports(source, module)


def test_the_check_resolves_a_package_init():
    assert engine_imports("from ..scratch import models\n", "rnnkit.tasks", is_package=True)
    assert not engine_imports("from .scratch import models\n", "rnnkit.tasks", is_package=True)  # rnnkit.tasks.scratch


@pytest.mark.parametrize("source, module", [
    ("import torch\nimport numpy as np\n", "rnnkit.tasks.fake"),        # the torch package, not rnnkit.torch
    ("from ..engines import build_engine\nfrom ..spec import CELLS\n", "rnnkit.tasks.fake"),
    ("from .settings import ServeSettings\nfrom ..tasks import lm\n", "rnnkit.serve.app"),
    ("from rnnkit import engines, spec\n", "rnnkit.cli"),
    ("from .scratchpad import x\n", "rnnkit.tasks.fake"),               # rnnkit.tasks.scratchpad
])
def test_the_check_lets_neutral_imports_pass(source, module):
    assert not engine_imports(source, module)


# ------------------------------------------------------------------------------------------------ the door

def protocol_members() -> set[str]:
    from rnnkit.engines import Engine

    return {n for n in vars(Engine) if not n.startswith("_")} | set(Engine.__annotations__)


@pytest.mark.parametrize("engine", ["scratch", "torch"])
def test_both_engines_implement_the_protocol(engine):
    if engine == "torch":
        pytest.importorskip("torch")
    from rnnkit.engines import Engine, build_engine

    built = build_engine(engine, "LanguageModel", dict(vocab_size=7, embedding_dim=4, hidden_size=4),
                         device="cpu")
    assert not [m for m in sorted(protocol_members()) if not hasattr(built, m)]
    assert isinstance(built, Engine)
    assert {"train_step", "eval_loss", "predict", "from_numpy", "to_numpy", "lr"} <= protocol_members()


def test_info_is_a_flat_dict():
    from rnnkit import __version__
    from rnnkit.engines import info

    report = info()
    assert report["rnnkit"] == __version__
    assert {"numpy", "torch", "numba", "scratch_threads"} <= set(report)
    assert all(isinstance(k, str) and isinstance(v, (str, numbers.Number)) for k, v in report.items()), report
    assert report["scratch_threads"] >= 1
