"""``models`` stays pure: no Kafka, Faust, Redis, Prometheus, HTTP or project I/O layers.

The same functions run inside the Faust agents and in ``crowdwatch score``; this keeps
them importable and testable without any of the infrastructure.
"""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
FORBIDDEN = frozenset({
    "faust", "mode", "aiokafka", "kafka", "redis", "prometheus_client", "aiohttp",
    "grafana_client", "streams", "agents",
})
_IMPORT_FUNCTIONS = frozenset({"import_module", "__import__", "import_string"})


def _absolute(module: str | None, level: int, package: str) -> str:
    """The absolute name of ``from <level dots><module> import ...`` inside ``package``."""
    if level == 0:
        return module or ""
    parts = package.split(".")
    base = parts[: max(len(parts) - (level - 1), 0)]
    return ".".join([*base, module] if module else base)


def imported_modules(source: str, package: str = "models") -> list[tuple[int, str]]:
    """(line, module) for every import in ``source``, including ``importlib`` calls with a
    string literal; ``from x import y`` also yields ``x.y`` (y may be a submodule)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node.module, node.level, package)
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}" if base else alias.name)
                      for alias in node.names]
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            first = node.args[0]
            if name in _IMPORT_FUNCTIONS and isinstance(first, ast.Constant) \
                    and isinstance(first.value, str):
                found.append((node.lineno, first.value))
    return found


def forbidden_imports(source: str, package: str = "models") -> list[str]:
    return sorted({
        f"line {line}: {module}"
        for line, module in imported_modules(source, package)
        if module.split(".")[0] in FORBIDDEN
    })


def _model_files() -> list[Path]:
    return sorted(MODELS.rglob("*.py"))


def test_model_files_are_found() -> None:
    names = {p.name for p in _model_files()}
    assert {"post.py", "event.py", "geo.py", "text.py", "lang.py", "tagging.py", "enrich.py",
            "jsonio.py", "__init__.py"} <= names


@pytest.mark.parametrize("path", _model_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_models_import_no_infrastructure(path: Path) -> None:
    package = ".".join(path.relative_to(ROOT).parent.parts)
    bad = forbidden_imports(path.read_text(encoding="utf-8"), package)
    assert not bad, f"{path.relative_to(ROOT)} imports infrastructure: {bad}"


@pytest.mark.parametrize(
    "snippet",
    [
        "import faust",
        "import aiokafka.producer",
        "import kafka as k",
        "import os, redis",
        "from prometheus_client import Counter",
        "from streams.settings import Settings",
        "from agents import enrich",
        "from mode.utils import x",
        "import importlib\nimportlib.import_module('aiohttp')",
        "from importlib import import_module\nimport_module('grafana_client.api')",
        "__import__('redis.asyncio')",
        "def f():\n    import faust\n    return faust",
        "try:\n    import redis\nexcept ImportError:\n    redis = None",
        "if TYPE_CHECKING:\n    from streams.app import App",
        "from .. import streams",
        "from ..agents.enrich import x",
    ],
)
def test_the_checker_catches_every_form(snippet: str) -> None:
    assert forbidden_imports(textwrap.dedent(snippet)), snippet


@pytest.mark.parametrize(
    "snippet",
    [
        "import json, re",
        "from models.post import Post",
        "from . import post",
        "from .geo import Geofence",
        "import modelsx",
        "from kafkaesque import x",
        "x = 'import faust'",
        "importlib.import_module(name)",
    ],
)
def test_the_checker_allows_pure_imports(snippet: str) -> None:
    assert forbidden_imports(snippet) == [], snippet


def test_import_linter_contracts() -> None:
    exe = shutil.which("lint-imports")
    if exe is None:
        pytest.skip("import-linter (lint-imports) is not installed")
    proc = subprocess.run(
        [exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "broken" in proc.stdout and "0 broken" in proc.stdout


_RUNTIME_CHECK = """
import importlib, json, pkgutil, sys
import models
import models.enrich, models.event, models.generate
for info in pkgutil.walk_packages(models.__path__, "models."):
    importlib.import_module(info.name)
bad = sorted(m for m in sys.modules if m.split(".")[0] in set(sys.argv[1:]))
print(json.dumps({"bad": bad, "models": sorted(m for m in sys.modules
                                                 if m.startswith("models."))}))
"""


def test_importing_models_loads_no_infrastructure_at_runtime() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _RUNTIME_CHECK, *sorted(FORBIDDEN)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["bad"] == [], f"importing models loaded {report['bad']}"
    assert {"models.post", "models.enrich", "models.lang"} <= set(report["models"])
