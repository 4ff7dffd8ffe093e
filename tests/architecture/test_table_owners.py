"""`make lint`'s owner check: every write of a table is in the module docs/architecture.md
names as its owner."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location(
    "check_table_owners", ROOT / "scripts" / "check_table_owners.py"
)
owners_check = importlib.util.module_from_spec(spec)
sys.modules["check_table_owners"] = owners_check
spec.loader.exec_module(owners_check)

OWNERS = {
    "OutboundMessage": owners_check.Owner(
        "OutboundMessage", "messaging_outboundmessage", "careline.messaging.outbox"
    ),
    "Appointment": owners_check.Owner(
        "Appointment", "scheduling_appointment", "careline.scheduling.appointments"
    ),
}


def writes(source: str) -> list[tuple[str, str]]:
    visitor = owners_check.Writes(OWNERS)
    visitor.visit(ast.parse(source))
    return [(model, how) for _, model, how in visitor.found]


def test_orm_writes_through_managers_and_querysets_are_seen():
    found = writes(
        "def f(pk):\n"
        "    OutboundMessage.objects.create(body='x')\n"
        "    OutboundMessage.objects.filter(pk=pk).update(state='sent')\n"
        "    Appointment.objects.select_for_update().filter(pk=pk).delete()\n"
        "    Appointment.objects.bulk_update([], ['status'])\n"
    )
    assert [m for m, _ in found] == [
        "OutboundMessage",
        "OutboundMessage",
        "Appointment",
        "Appointment",
    ]


def test_save_on_a_fetched_or_new_instance_is_seen_and_reads_are_not():
    found = writes(
        "def f(pk):\n"
        "    a = Appointment.objects.get(pk=pk)\n"
        "    a.status = 'cancelled'\n"
        "    a.save()\n"
        "    b = Appointment(status='booked')\n"
        "    list(OutboundMessage.objects.filter(pk=pk))\n"
        "    OutboundMessage.objects.filter(pk=pk).exists()\n"
    )
    assert found == [("Appointment", "a.save() on a Appointment")]


def test_raw_sql_writes_are_seen_by_table_name_and_by_db_table():
    found = writes(
        "OUTBOX = OutboundMessage._meta.db_table\n"
        "def f(cursor):\n"
        "    cursor.execute(f'INSERT INTO {OUTBOX} (body) SELECT 1')\n"
        "    cursor.execute('UPDATE scheduling_appointment SET status = 1')\n"
        "    cursor.execute(f'SELECT * FROM {OUTBOX}')\n"
    )
    assert [m for m, _ in found] == ["OutboundMessage", "Appointment"]


def test_the_code_base_keeps_every_write_in_its_owner():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "check_table_owners.py")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout
    assert "every write in its owner" in result.stdout
