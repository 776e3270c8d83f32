"""The code fingerprint in every cache key: what it covers, and that its exclusions are really inert."""

from __future__ import annotations

import ast

from bellm import provenance
from bellm.provenance import NON_NUMERIC, PACKAGE_DIR, code_fingerprint


def _bellm_imports(path) -> set[str]:
    """Every `bellm.x...` module a source file imports, at top level or inside functions."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("bellm"):
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.startswith("bellm"))
    return names


def test_numeric_modules_never_import_a_non_numeric_one() -> None:
    """A module left out of the fingerprint must not run on the way to a number: no fingerprinted module
    imports it (directly; transitively follows, since every importer is itself checked)."""
    excluded = {f"bellm.{m.removesuffix('.py')}" for m in NON_NUMERIC}
    for f in sorted(PACKAGE_DIR.rglob("*.py")):
        if not provenance._numeric(f):
            continue
        bad = {n for n in _bellm_imports(f) if any(n == e or n.startswith(e + ".") for e in excluded)}
        assert not bad, f"{f.relative_to(PACKAGE_DIR)} imports {bad}: drop it from NON_NUMERIC"


def test_fingerprint_ignores_non_numeric_code_and_sees_the_rest(tmp_path, monkeypatch) -> None:
    pkg = tmp_path / "bellm"
    (pkg / "serve").mkdir(parents=True)
    (pkg / "masks.py").write_text("A = 1\n")
    (pkg / "serve" / "app.py").write_text("B = 1\n")
    monkeypatch.setattr(provenance, "PACKAGE_DIR", pkg)
    code_fingerprint.cache_clear()
    try:
        first = code_fingerprint()
        code_fingerprint.cache_clear()
        (pkg / "serve" / "app.py").write_text("B = 2\n")
        assert code_fingerprint() == first
        code_fingerprint.cache_clear()
        (pkg / "masks.py").write_text("A = 2\n")
        assert code_fingerprint() != first
    finally:
        code_fingerprint.cache_clear()
