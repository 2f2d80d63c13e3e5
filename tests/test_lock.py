"""requirements.lock cannot silently fall behind pyproject.toml.

``deploy/local/lock.sh`` generates the lock (uv pip compile, hashes, Linux x86_64 / CPython
3.11) and ``deploy/local/setup.sh`` installs from it with ``--require-hashes``. These checks
need no network: every runtime and dev dependency named in pyproject.toml is pinned in the
lock at a version its specifier allows, and every pin carries a hash.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
PYPROJECT = ROOT / "pyproject.toml"

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;\\]+)")


def _declared() -> list[Requirement]:
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    return [Requirement(r) for r in
            (*project["dependencies"], *project["optional-dependencies"]["dev"])]


def _entries() -> dict[str, tuple[Version, list[str]]]:
    """name -> (pinned version, its hashes) from the lock's requirement entries."""
    out: dict[str, tuple[Version, list[str]]] = {}
    entry: list[str] = []
    for line in [*LOCK.read_text(encoding="utf-8").splitlines(), ""]:
        if line.strip().startswith("#"):
            continue
        entry.append(line.rstrip("\\").strip())
        if line.endswith("\\"):
            continue
        text = " ".join(p for p in entry if p)
        entry = []
        if not text:
            continue
        m = PIN.match(text)
        assert m, f"not an exact pin in requirements.lock: {text[:80]}"
        name = canonicalize_name(m.group(1))
        assert name not in out, f"{name} pinned twice"
        out[name] = (Version(m.group(3)), re.findall(r"--hash=sha256:([0-9a-f]{64})", text))
    return out


@pytest.fixture(scope="module")
def entries() -> dict[str, tuple[Version, list[str]]]:
    if not LOCK.is_file():
        pytest.fail("requirements.lock is missing: run `bash deploy/local/lock.sh`")
    return _entries()


def test_every_declared_dependency_is_pinned_within_its_range(
        entries: dict[str, tuple[Version, list[str]]]) -> None:
    problems = []
    for req in _declared():
        name = canonicalize_name(req.name)
        if name not in entries:
            problems.append(f"{req.name}: not in requirements.lock")
        elif not req.specifier.contains(entries[name][0], prereleases=True):
            problems.append(f"{req.name}: locked {entries[name][0]} outside '{req.specifier}'")
    assert not problems, ("requirements.lock is behind pyproject.toml; run "
                          "`bash deploy/local/lock.sh`:\n" + "\n".join(problems))


def test_every_pin_has_a_hash(entries: dict[str, tuple[Version, list[str]]]) -> None:
    assert len(entries) >= len(_declared())
    assert not [n for n, (_, hashes) in entries.items() if not hashes], \
        "pip install --require-hashes needs a hash for every package"


def test_setup_installs_from_the_lock() -> None:
    setup = (ROOT / "deploy" / "local" / "setup.sh").read_text(encoding="utf-8")
    assert "--require-hashes -r requirements.lock" in setup
    assert "--no-deps -e ." in setup
    lock_sh = (ROOT / "deploy" / "local" / "lock.sh").read_text(encoding="utf-8")
    assert "--generate-hashes" in lock_sh and "--extra dev" in lock_sh


def test_parser_reads_multiline_entries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                        ) -> None:
    lock = tmp_path / "requirements.lock"
    lock.write_text("# header\nFoo_Bar==1.2.0 \\\n    --hash=sha256:" + "a" * 64 + " \\\n"
                    "    --hash=sha256:" + "b" * 64 + "\n    # via x\n"
                    "baz[extra]==2!3.0 ; sys_platform == 'linux' \\\n    --hash=sha256:"
                    + "c" * 64 + "\n", encoding="utf-8")
    monkeypatch.setattr(f"{__name__}.LOCK", lock)
    got = _entries()
    assert got["foo-bar"] == (Version("1.2.0"), ["a" * 64, "b" * 64])
    assert got["baz"][0] == Version("2!3.0")
