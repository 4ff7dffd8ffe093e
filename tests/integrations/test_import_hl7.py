"""`careline import-hl7`: batch files, framed or plain, with a summary of ACK codes."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from careline.integrations.hl7.files import iter_messages
from careline.integrations.hl7.mllp import frame
from careline.scheduling.models import Appointment
from tests.integrations.conftest import sample
from tests.integrations.messages import siu


def test_plain_file_split_on_msh_with_blank_lines_and_envelopes():
    text = "FHS|^~\\&\nBHS|^~\\&\n" + siu(appointment_id="F1", separator="\n") + "\n\n"
    text += siu(appointment_id="F2", separator="\r\n") + "BTS|2\r\nFTS|1\r\n"
    messages = list(iter_messages(io.BytesIO(text.encode())))
    assert len(messages) == 2
    assert all(m.startswith("MSH|") and "\n" not in m for m in messages)
    assert "SCH||F2|" in messages[1] and "BTS" not in messages[1]


def test_framed_file_and_chunk_boundaries(monkeypatch):
    import careline.integrations.hl7.files as files

    monkeypatch.setattr(files, "_CHUNK", 7)
    data = b"".join(frame(siu(appointment_id=f"G{n}")) for n in range(3))
    assert [m.split("SCH||")[1][:2] for m in iter_messages(io.BytesIO(data))] == [
        "G0",
        "G1",
        "G2",
    ]
    plain = (siu(appointment_id="H1") + siu(appointment_id="H2")).encode()
    assert len(list(iter_messages(io.BytesIO(plain)))) == 2


def test_command_applies_and_summarizes(feeds, tmp_path, capsys):
    good = tmp_path / "feed.hl7"
    good.write_bytes(
        (
            sample("01-s12-new-athena-style.hl7")
            + "\n"
            + sample("02-s13-reschedule-allscripts-style.hl7")
        ).encode()
    )
    framed = tmp_path / "feed.mllp"
    adt = "MSH|^~\\&|PMSYS|CLINIC|CARELINE|CARELINE|20261201||ADT^A01|ADT7|P|2.5.1\rPID|1\r"
    framed.write_bytes(
        frame(siu(location="MOON")) + frame(adt) + frame(sample("03-s14-modify-provider.hl7"))
    )
    call_command("import-hl7", str(good), str(framed))
    out = capsys.readouterr().out
    assert "message 1: AE Unknown location 'MOON'" in out
    assert "message 2: AR Message type ADT^A01" in out
    assert "5 message(s): 3 AA, 1 AE, 1 AR" in out
    assert Appointment.objects.count() == 2
    call_command("import-hl7", str(good))
    assert (
        "2 message(s): 2 AA, 0 AE, 0 AR (2 duplicate(s), not re-applied)" in capsys.readouterr().out
    )


def test_command_errors(feeds, tmp_path):
    with pytest.raises(CommandError, match="No such file"):
        call_command("import-hl7", str(tmp_path / "missing.hl7"))
    with pytest.raises(CommandError, match="No active HL7 feed named 'NOPE'"):
        call_command("import-hl7", str(tmp_path), "--feed", "NOPE")
