"""`methods/` and `encoders/` never import `harness/`; data loading knows no model."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(package: str):
    for path in (ROOT / package).rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                yield path, [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                yield path, [node.module]


def test_methods_and_encoders_do_not_import_harness():
    for package in ("methods", "encoders"):
        for path, names in imported_modules(package):
            assert not any(n.split(".")[0] == "harness" for n in names), f"{path} imports harness"


def test_data_loading_knows_no_model():
    for path, names in imported_modules("harness/data"):
        assert not any(n.split(".")[0] in ("methods", "encoders", "torch") for n in names), f"{path}: {names}"
