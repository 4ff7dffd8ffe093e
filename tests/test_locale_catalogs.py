"""The gettext catalogs under careline/locale: every patient-facing text's translations.

CI machines have no GNU gettext, so the compiled .mo files are committed beside their .po
sources. These tests read both with the standard library and fail when a .po was edited
without recompiling (`django-admin compilemessages`, run in careline/), or when a
translation lost a placeholder the code fills in."""

from __future__ import annotations

import ast
import gettext
import re
import string
from pathlib import Path

import pytest

LOCALE = Path(__file__).resolve().parent.parent / "careline" / "locale"
CATALOGS = sorted(LOCALE.glob("*/LC_MESSAGES/django.po"))


def read_po(path: Path) -> dict:
    """The translations msgfmt would compile from `path`, keyed like
    gettext.GNUTranslations keys its catalog: "context\\x04msgid", (msgid, n) for plurals;
    fuzzy and untranslated entries left out, as msgfmt leaves them out."""
    catalog: dict = {}
    for block in path.read_text(encoding="utf-8").split("\n\n"):
        fuzzy = any(line.startswith("#,") and "fuzzy" in line for line in block.splitlines())
        fields: dict[str, str] = {}
        field = None
        for line in block.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            keyword = re.match(r"(msgctxt|msgid_plural|msgid|msgstr(?:\[\d+\])?) ", line)
            if keyword:
                field = keyword.group(1)
                line = line[keyword.end() :]
                fields[field] = ""
            fields[field] += ast.literal_eval(line)
        if "msgid" not in fields or (fuzzy and fields["msgid"]):
            continue
        msgid = fields["msgid"]
        if "msgctxt" in fields:
            msgid = f"{fields['msgctxt']}\x04{msgid}"
        if "msgid_plural" in fields:
            forms = {
                (msgid, int(name[7:-1])): value
                for name, value in fields.items()
                if name.startswith("msgstr[")
            }
            if all(forms.values()):
                catalog.update(forms)
        elif fields.get("msgstr"):
            catalog[msgid] = fields["msgstr"]
    return catalog


def read_mo(path: Path) -> dict:
    with path.open("rb") as mo:
        return dict(gettext.GNUTranslations(mo)._catalog)


def _without_creation_date(catalog: dict) -> dict:
    """msgfmt leaves the header's POT-Creation-Date out of the .mo."""
    header = re.sub(r"POT-Creation-Date: [^\n]*\n", "", catalog.get("", ""))
    return {**catalog, "": header}


def test_there_is_a_catalog():
    assert [p.parent.parent.name for p in CATALOGS] == ["es"]


@pytest.mark.parametrize("po", CATALOGS, ids=lambda p: p.parent.parent.name)
def test_the_committed_mo_is_compiled_from_the_po(po):
    mo = po.with_suffix(".mo")
    assert mo.exists(), f"{mo} is missing: run `django-admin compilemessages` in careline/"
    assert _without_creation_date(read_mo(mo)) == _without_creation_date(read_po(po)), (
        f"{mo.name} is out of date with {po}: run `django-admin compilemessages` in careline/"
    )


def _placeholders(text: str) -> set[str]:
    braces = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    percents = set(re.findall(r"%\((\w+)\)s", text))
    return braces | percents


@pytest.mark.parametrize("po", CATALOGS, ids=lambda p: p.parent.parent.name)
def test_translations_keep_every_placeholder(po):
    for key, translation in read_po(po).items():
        if key == "":
            continue  # the header
        msgid = key[0] if isinstance(key, tuple) else key
        msgid = msgid.split("\x04", 1)[-1]
        assert _placeholders(translation) == _placeholders(msgid), (msgid, translation)
