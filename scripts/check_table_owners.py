"""One writer per table: fail when a module writes a model that docs/architecture.md
does not name it the owner of.

The owners' table in docs/architecture.md is the source: each row names a model and the
one module that creates, updates and deletes its rows. This check reads every module
under careline/ (not migrations) and reports the writes it can see statically:
`Model.objects.create/update/delete/…(…)` (also through filter/select_for_update chains),
`.save()`/`.delete()` on a variable bound to a new or fetched instance, and raw SQL
`INSERT INTO`/`UPDATE`/`DELETE FROM` on a model's table. It also fails when a model has
no owner or a row names a model or module that does not exist. Run by `make lint`.
"""

from __future__ import annotations

import ast
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "architecture.md"
WRITES = {
    "create",
    "get_or_create",
    "update_or_create",
    "bulk_create",
    "bulk_update",
    "update",
    "delete",
}
MANAGERS = {"objects", "_default_manager", "_base_manager"}
SQL_WRITE = re.compile(r"(INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+\"?$", re.IGNORECASE)
ROW = re.compile(r"^\|\s*`(?P<model>\w+)`\s*\|\s*`(?P<table>\w+)`\s*\|\s*`(?P<owner>[\w.]+)`")
# Loaders of synthetic data write every table directly with COPY / multi-row INSERT;
# they are not a door patients' data comes through (docs/architecture.md says why).
EXEMPT_PREFIXES = ("careline.demo.",)


@dataclass(frozen=True)
class Owner:
    model: str
    table: str
    module: str


def read_owners() -> dict[str, Owner]:
    owners: dict[str, Owner] = {}
    for line in DOC.read_text().splitlines():
        m = ROW.match(line.strip())
        if m:
            owners[m["model"]] = Owner(m["model"], m["table"], m["owner"])
    return owners


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _chain(node: ast.AST) -> tuple[str | None, list[str]]:
    """For `A.b(...).c.d`, the base name `A` and the attribute names on the way."""
    attrs: list[str] = []
    while True:
        if isinstance(node, ast.Call):
            node = node.func
        elif isinstance(node, ast.Attribute):
            attrs.append(node.attr)
            node = node.value
        elif isinstance(node, ast.Subscript):
            node = node.value
        else:
            break
    return (node.id if isinstance(node, ast.Name) else None), list(reversed(attrs))


class Writes(ast.NodeVisitor):
    def __init__(self, models: dict[str, Owner]):
        self.models = models
        self.found: list[tuple[int, str, str]] = []  # (line, model, how)
        self.table_names: dict[str, str] = {}  # variable -> model, for SQL f-strings
        self.instances: dict[str, str] = {}  # variable -> model, within a function

    def _model_of_table_expr(self, node: ast.AST) -> str | None:
        if isinstance(node, ast.Name):
            return self.table_names.get(node.id)
        base, attrs = _chain(node)
        if base in self.models and attrs[-2:] == ["_meta", "db_table"]:
            return base
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return next((m for m, o in self.models.items() if o.table == node.value), None)
        return None

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        saved = dict(self.instances)
        self.generic_visit(node)
        self.instances = saved

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Assign(self, node: ast.Assign) -> None:
        model = self._model_of_table_expr(node.value)
        bound = None
        if isinstance(node.value, ast.Call):
            base, attrs = _chain(node.value)
            if base in self.models and (not attrs or (attrs[0] in MANAGERS)):
                bound = base
        for target in node.targets:
            if isinstance(target, ast.Name):
                if model:
                    self.table_names[target.id] = model
                if bound:
                    self.instances[target.id] = bound
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        base, attrs = _chain(node.func)
        if base in self.models and attrs:
            # An unsaved instance is not a write; its save() or bulk_create() is.
            if attrs[0] in MANAGERS and attrs[-1] in WRITES:
                self.found.append((node.lineno, base, f"{base}.{'.'.join(attrs)}(…)"))
        elif base in self.instances and attrs in (["save"], ["delete"]):
            model = self.instances[base]
            self.found.append((node.lineno, model, f"{base}.{attrs[0]}() on a {model}"))
        self.generic_visit(node)

    def visit_JoinedStr(self, node: ast.JoinedStr) -> None:
        values = node.values
        for before, value in zip(values, values[1:], strict=False):
            if (
                isinstance(before, ast.Constant)
                and isinstance(value, ast.FormattedValue)
                and SQL_WRITE.search(before.value)
            ):
                model = self._model_of_table_expr(value.value)
                if model:
                    self.found.append((node.lineno, model, "SQL write"))
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str):
            for model, owner in self.models.items():
                if re.search(
                    rf"(INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+\"?{owner.table}\b",
                    node.value,
                    re.IGNORECASE,
                ):
                    self.found.append((node.lineno, model, "SQL write"))


def django_models() -> dict[str, tuple[str, str]]:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "careline.settings")
    import django
    from django.apps import apps

    django.setup()
    return {
        m.__name__: (m._meta.db_table, m.__module__)
        for m in apps.get_models()
        if m.__module__.startswith("careline.")
    }


def main() -> int:
    owners = read_owners()
    problems: list[str] = []
    models = django_models()
    for name, (table, _) in sorted(models.items()):
        if name not in owners:
            problems.append(f"{DOC.name}: model {name} ({table}) has no owner row")
        elif owners[name].table != table:
            problems.append(f"{DOC.name}: {name}'s table is {table}, not {owners[name].table}")
    modules = {
        module_name(p): p
        for p in sorted((ROOT / "careline").rglob("*.py"))
        if "migrations" not in p.parts
    }
    for owner in owners.values():
        if owner.model not in models:
            problems.append(f"{DOC.name}: {owner.model} is not a Careline model")
        if owner.module not in modules:
            problems.append(f"{DOC.name}: owner {owner.module} of {owner.model} does not exist")
    for name, path in modules.items():
        if name.startswith(EXEMPT_PREFIXES):
            continue
        visitor = Writes(owners)
        visitor.visit(ast.parse(path.read_text(), filename=str(path)))
        for line, model, how in visitor.found:
            owner = owners[model].module
            # The model's own class may save itself (save() overrides, defaults).
            if name not in (owner, models.get(model, ("", ""))[1]):
                rel = path.relative_to(ROOT)
                problems.append(f"{rel}:{line}: writes {model} ({how}); its owner is {owner}")
    for p in problems:
        print(p)
    if problems:
        print(f"\n{len(problems)} write(s) outside their table's owner (see {DOC.name}).")
        return 1
    print(f"Table owners: {len(owners)} models, every write in its owner.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
