"""Inbox search: milliseconds to find conversations by a patient's name, a phone number
written any way, and a fragment of their texts (English and Spanish), among N
conversations with ten texts each (10^5 conversations, 10^6 texts in `make bench`).

Timed: the query the inbox list runs for `?q=` as a front-desk user (the conversations
they may see, `conversations.workspace.search`, the last-text preview and the list's
order, first 200 rows), median of several runs after one warm-up. It uses the indexes of
migration conversations 0007 (pg_trgm GIN on PostgreSQL, FTS5 trigram on SQLite).
Same-run baseline: a raw scan of the same texts table for the same fragment
(`SELECT count(*) … WHERE body LIKE '%…%'`, no index can serve it): ratio < 1 is the
index's gain. Also printed: an indexed primary-key look-up of one conversation, the
floor of any query here.

    .venv/bin/python -m bench.inbox_search [--conversations 100000] [--database sqlite|postgres]
"""

from __future__ import annotations

import argparse
import re
import statistics
from datetime import UTC, datetime, timedelta

from bench.common import figure, timer
from bench.reminders_common import throwaway_database

RUNS = 15
TEXTS_PER_CONVERSATION = 10
GIVEN = ("Rosa", "Ana", "Luis", "John", "Mary", "Wei", "Fatima", "Diego", "Grace", "Omar")
FAMILY = (
    "Vega", "Smith", "Nguyen", "Garcia", "Okafor", "Kowalski", "Haddad", "Tanaka", "Silva",
    "Brown", "Lopez", "Ivanova", "Moreau", "Patel", "Schmidt", "Rossi", "Cohen", "Kim",
)  # fmt: skip
# What patients text, picked per text by a hash of its id, so conversations differ: a
# medicine is named in about one text in a thousand, a phrase in one in ten.
TEMPLATES = (
    ("'Can I get a refill of my '", "'?'"),
    ("'¿Me pueden renovar la receta de '", "'? Gracias'"),
    ("'Is '", "' covered by my insurance?'"),
    ("'¿El seguro cubre '", "'? Es urgente'"),
    ("'How much do I still owe on invoice ' || i.id || '? Also '", "''"),
    ("'I feel dizzy since I started '", "''"),
    ("'Me siento mareado desde que empecé '", "''"),
    ("'Can I move my visit to another day? I ran out of '", "''"),
    ("'ok thanks, '", "' is fine'"),
    ("'Gracias, nos vemos pronto. '", "''"),
)
MEDICINES = (
    "lisinopril", "metformina", "amoxicilina", "atorvastatina", "ibuprofeno", "omeprazol",
    "levothyroxine", "albuterol", "gabapentin", "losartán", "sertralina", "prednisona",
    "insulina glargina", "hidroclorotiazida", "montelukast", "azitromicina", "warfarin",
    "clopidogrel", "tamsulosina", "escitalopram",
)  # fmt: skip
NAMED_SHARE = 1000  # a medicine by name in one text out of this many (per medicine: ×20)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--conversations", type=int, default=100_000)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    args = parser.parse_args(argv)
    if args.conversations < 100:
        parser.error("--conversations must be at least 100")
    return args


def load(conversations: int):
    """An organization with `conversations` patients, each with one conversation of ten
    texts, and a front-desk user; another organization with a tenth of that. Patients and
    conversations through bulk_create, the texts in one INSERT … SELECT per organization."""
    from django.contrib.auth import get_user_model
    from django.db import connection

    from careline.clinics.models import Organization, Practice, StaffMembership, StaffRole
    from careline.conversations.models import Conversation, Queue
    from careline.patients.models import Patient

    now = datetime.now(UTC)
    user = None
    for number, (slug, size) in enumerate(
        (("bench-search", conversations), ("bench-other", conversations // 10))
    ):
        org = Organization.objects.create(
            name=slug, slug=slug, default_sender_number=f"+1512555010{number}"
        )
        practice = Practice.objects.create(organization=org, name=f"{slug} clinic", code="S")
        if user is None:
            user = get_user_model().objects.create_user("bench-desk", password="x")
            membership = StaffMembership.objects.create(
                user=user, organization=org, role=StaffRole.FRONT_DESK
            )
            membership.practices.add(practice)
        queues = Queue.values
        for low in range(0, size, 10_000):
            high = min(size, low + 10_000)
            patients = Patient.objects.bulk_create(
                Patient(
                    organization=org,
                    home_practice=practice,
                    given_name=GIVEN[n % len(GIVEN)],
                    family_name=f"{FAMILY[(n // len(GIVEN)) % len(FAMILY)]}",
                    mobile_phone=f"+1{number + 2}{n:09d}",
                )
                for n in range(low, high)
            )
            Conversation.objects.bulk_create(
                Conversation(
                    organization=org,
                    practice=practice,
                    patient=p,
                    phone=p.mobile_phone,
                    queue=queues[n % len(queues)],
                    unread_count=n % 3,
                    created_at=now - timedelta(minutes=n % 5000),
                    opened_at=now - timedelta(minutes=n % 5000),
                    last_patient_message_at=now - timedelta(minutes=n % 5000),
                )
                for n, p in zip(range(low, high), patients, strict=True)
            )
        digits = " UNION ALL ".join(f"SELECT {d} AS n" for d in range(TEXTS_PER_CONVERSATION))
        # "%%": the statement has parameters, so a literal percent sign is doubled.
        hashed = "((c.id * 10 + d.n) * 7919) %% 10007"
        named = " ".join(f"WHEN {n} THEN '{m}'" for n, m in enumerate(MEDICINES))
        medicine = f"CASE {hashed} %% {NAMED_SHARE} {named} ELSE 'pill ' || ({hashed} %% 5000) END"
        body = (
            f"CASE {hashed} %% {len(TEMPLATES)} "
            + " ".join(
                f"WHEN {n} THEN {before} || {medicine} || {after}"
                for n, (before, after) in enumerate(TEMPLATES)
            )
            + " END"
        ).replace("i.id", "(c.id * 10 + d.n)")
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO conversations_inboundmessage (provider_message_id, from_phone, "
                "to_phone, body, received_at, organization_id, practice_id, intent, "
                "action_taken, note, conversation_id) "
                f"SELECT 'SMb' || c.id || '_' || d.n, c.phone, %s, {body}, "
                "c.last_patient_message_at, c.organization_id, c.practice_id, '', '', '', c.id "
                f"FROM conversations_conversation c CROSS JOIN ({digits}) d "
                "WHERE c.organization_id = %s",
                [org.default_sender_number, org.pk],
            )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE" if connection.vendor == "sqlite" else "VACUUM ANALYZE")
    return user


def _median_ms(run) -> float:
    run()
    times = []
    for _ in range(RUNS):
        with timer() as t:
            run()
        times.append(t.seconds * 1000)
    return statistics.median(times)


def _indexes(connection, conversations, q: str) -> list[str]:
    """The trigram indexes PostgreSQL's plan for the search `q` reads."""
    from careline.conversations import workspace

    sql, params = workspace.search(conversations, q).values("id").query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + sql, params)
        plan = " ".join(row[0] for row in cursor.fetchall())
    return sorted({w for w in plan.split() if w.endswith("_trgm")}) or ["no trigram index"]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with throwaway_database(args.database) as connection:
        from careline.conversations import workspace
        from careline.conversations.models import Conversation, InboundMessage

        kind = "sqlite" if connection.vendor == "sqlite" else "postgres"
        n = args.conversations
        with timer() as loading:
            user = load(n)
        texts = InboundMessage.objects.count()
        print(
            f"# inbox search, {n:,} conversations (+{n // 10:,} in another organization), "
            f"{texts:,} texts, {kind}; loaded in {loading.seconds:.0f} s"
        )
        visible = Conversation.objects.visible_to(user)
        mine = visible.count()
        middle = n // 2
        phone = f"{middle:09d}"
        asking = InboundMessage.objects.filter(
            body__startswith="How much", conversation__in=visible
        )
        # "invoice 123454?": one text of one conversation.
        invoice = re.search(
            r"invoice \d+\?", asking.order_by("id").values_list("body", flat=True)[100]
        ).group(0)
        searches = [
            ("name", "Rosa Vega", None),
            ("phone any format", f"(2{phone[:2]}) {phone[2:5]}-{phone[5:]}", None),
            ("text fragment en", "lisinopril", "lisinopril"),
            ("text fragment es", "Atorvastatina", "torvastatina"),
            ("rare text", invoice, invoice),
            ("common phrase es", "me siento mareado", "me siento mareado"),
        ]

        def rows(q: str) -> list[Conversation]:
            found = workspace.with_preview(workspace.search(visible, q))
            return list(found.order_by("-urgent", "-unread_count", "last_patient_message_at")[:200])

        def scan(fragment: str) -> None:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FROM conversations_inboundmessage WHERE body LIKE %s",
                    [f"%{fragment}%"],
                )
                cursor.fetchone()

        scan_ms = _median_ms(lambda: scan("lisinopril"))
        pk = Conversation.objects.filter(organization_id=user.memberships.get().organization_id)
        some_id = pk.order_by("id").values_list("id", flat=True)[middle]
        lookup_ms = _median_ms(lambda: Conversation.objects.get(pk=some_id))
        failed = False
        for label, q, fragment in searches:
            found = rows(q)
            if not found or len({c.organization_id for c in found}) != 1 or len(found) > mine:
                print(f"FAIL: {label} {q!r} found {len(found)} conversations")
                failed = True
            baseline = _median_ms(lambda f=fragment or q: scan(f))
            ms = _median_ms(lambda q=q: rows(q))
            print(figure(f"inbox search {label}: ms[{kind},{n}]", ms, baseline, ",.2f"))
        print(figure(f"inbox search: raw scan of the texts, ms[{kind},{n}]", scan_ms, None, ",.2f"))
        print(figure(f"inbox search: primary-key look-up, ms[{kind},{n}]", lookup_ms, None, ",.3f"))
        if kind == "postgres":
            for label, q, _ in searches:
                used = ", ".join(_indexes(connection, visible, q))
                print(f"# PostgreSQL's plan for {label}: {used}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
