"""`careline settings`: the effective configuration and where each value came from.

The list is every environment variable Careline's settings read (found in
careline/settings.py itself, so a new setting cannot be left out), with the value in
effect and whether it came from the environment or is the default. Secrets (keys, tokens,
passwords, and the password inside a database or mail URL) are never printed.
"""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings
from django.core.management.base import BaseCommand

import careline.settings as settings_module

SECRET_WORDS = ("SECRET", "TOKEN", "PASSWORD", "AUTH")
_URL_WITH_PASSWORD = re.compile(r"^[a-z0-9+.-]+://[^/@]*:[^/@]*@", re.IGNORECASE)


def read_variables(path: Path | None = None) -> dict[str, str | None]:
    """Each environment variable the settings module reads, with its default as written
    (None when it has none or it is computed)."""
    tree = ast.parse(Path(path or settings_module.__file__).read_text())
    found: dict[str, str | None] = {}
    for node in ast.walk(tree):
        name, default = None, None
        if isinstance(node, ast.Call):
            func = ast.unparse(node.func)
            if func in ("os.environ.get", "os.getenv", "env_bool") and node.args:
                name = node.args[0]
                if len(node.args) > 1:
                    default = node.args[1]
        elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
            name = node.slice
        if isinstance(name, ast.Constant) and isinstance(name.value, str):
            text = None
            if isinstance(default, ast.Constant):
                text = str(default.value)
            found.setdefault(name.value, text)
    return found


def shown(name: str, value: object) -> str:
    """The value as printed: secrets as '(set, hidden)', a URL's password as '***'."""
    if value in (None, "") or value == []:
        return "(empty)"
    if any(word in name for word in SECRET_WORDS):
        return "(set, hidden)"
    text = str(value)
    if _URL_WITH_PASSWORD.match(text):
        parts = urlsplit(text)
        netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        text = urlunsplit(parts._replace(netloc=netloc))
    return text


class Command(BaseCommand):
    help = "Print the effective configuration: each setting, its value, and where it came from."

    def handle(self, *args, **opts):
        rows = []
        for name, default in sorted(read_variables().items()):
            from_environment = name in os.environ
            if from_environment:
                value: object = os.environ[name]
            elif name == "DATABASE_URL":
                value = f"sqlite:///{settings.DATABASES['default']['NAME']}"
            elif hasattr(settings, name):
                value = getattr(settings, name)
            else:
                value = default if default is not None else "(computed at start)"
            rows.append(
                (name, shown(name, value), "environment" if from_environment else "default")
            )
        width = max(len(r[0]) for r in rows)
        for name, value, source in rows:
            self.stdout.write(f"{name:<{width}}  {source:<11}  {value}")
