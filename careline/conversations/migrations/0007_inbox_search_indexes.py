"""Indexes for the inbox search by name, phone and text (conversations.search).

The search looks for a fragment anywhere in a name, a phone number or a text, so a B-tree
cannot serve it. Each database gets what it has for substring search:

- PostgreSQL: pg_trgm GIN indexes on the very expressions Django's `icontains` compares
  (`UPPER(column::text)`), so the planner uses them for `LIKE '%…%'`. CREATE EXTENSION needs
  a superuser (or a trusted-extension grant) once per database; docs/production.md says so.
- SQLite: FTS5 tables (names, phones, texts) with the trigram tokenizer (SQLite 3.34+), case-folded, kept in step
  with their tables by triggers, so every writer (the owners, the demo loader, the admin)
  keeps them current without knowing about them. A substring of three characters or more
  is a trigram query; a shorter one falls back to a scan, as before.

Only the outbox's staff replies (kind "reply") are searched, so only they are indexed: the
outbox's reminders are most of its rows and its hottest writes.
"""

from django.db import migrations

POSTGRES = [
    (
        "CREATE EXTENSION IF NOT EXISTS pg_trgm",
        None,
    ),
    (
        "CREATE INDEX patients_patient_given_name_trgm ON patients_patient "
        "USING gin ((UPPER(given_name::text)) gin_trgm_ops)",
        "DROP INDEX IF EXISTS patients_patient_given_name_trgm",
    ),
    (
        "CREATE INDEX patients_patient_family_name_trgm ON patients_patient "
        "USING gin ((UPPER(family_name::text)) gin_trgm_ops)",
        "DROP INDEX IF EXISTS patients_patient_family_name_trgm",
    ),
    (
        "CREATE INDEX conversations_conversation_phone_trgm ON conversations_conversation "
        "USING gin ((phone::text) gin_trgm_ops)",
        "DROP INDEX IF EXISTS conversations_conversation_phone_trgm",
    ),
    (
        "CREATE INDEX conversations_inboundmessage_body_trgm ON conversations_inboundmessage "
        "USING gin ((UPPER(body::text)) gin_trgm_ops)",
        "DROP INDEX IF EXISTS conversations_inboundmessage_body_trgm",
    ),
    (
        "CREATE INDEX messaging_outboundmessage_reply_body_trgm ON messaging_outboundmessage "
        "USING gin ((UPPER(body::text)) gin_trgm_ops) WHERE kind = 'reply'",
        "DROP INDEX IF EXISTS messaging_outboundmessage_reply_body_trgm",
    ),
]


def _fts(
    table: str, name: str, columns: str, key: str, values: str, of: str, when: str = ""
) -> list:
    """An FTS5 trigram index `name` over `values` (an expression of a `table` row, `new.`
    and `old.` prefixed in the triggers), rowid = the row's `key`; filled from the rows
    already there, then kept in step by triggers (on updates: of the columns `of` only)."""
    new, old = values.format(row="new"), values.format(row="old")
    changed = " OR ".join(f"old.{c.strip()} IS NOT new.{c.strip()}" for c in of.split(","))
    on_new = f"WHEN {when.format(row='new')} " if when else ""
    on_old = f"WHEN {when.format(row='old')} " if when else ""
    return [
        (
            f"CREATE VIRTUAL TABLE {name} USING fts5({columns}, content='', "
            "tokenize='trigram case_sensitive 0')",
            f"DROP TABLE IF EXISTS {name}",
        ),
        (
            f"INSERT INTO {name}(rowid, {columns}) SELECT {key}, {values.format(row=table)} "
            f"FROM {table}" + (f" WHERE {when.format(row=table)}" if when else ""),
            None,
        ),
        (
            f"CREATE TRIGGER {name}_insert AFTER INSERT ON {table} {on_new}BEGIN "
            f"INSERT INTO {name}(rowid, {columns}) VALUES (new.{key}, {new}); END",
            f"DROP TRIGGER IF EXISTS {name}_insert",
        ),
        (
            f"CREATE TRIGGER {name}_delete AFTER DELETE ON {table} {on_old}BEGIN "
            f"INSERT INTO {name}({name}, rowid, {columns}) VALUES ('delete', old.{key}, {old}); "
            "END",
            f"DROP TRIGGER IF EXISTS {name}_delete",
        ),
        (
            # One trigger, deleting then inserting: SQLite runs several triggers of one event
            # in no order to rely on. The WHERE keeps a row that enters or leaves the indexed
            # kind right; Django's save() writes every column, so unchanged ones are skipped.
            f"CREATE TRIGGER {name}_update AFTER UPDATE OF {of} ON {table} WHEN {changed} BEGIN "
            f"INSERT INTO {name}({name}, rowid, {columns}) SELECT 'delete', old.{key}, {old} "
            f"WHERE {when.format(row='old') if when else 1}; "
            f"INSERT INTO {name}(rowid, {columns}) SELECT new.{key}, {new} "
            f"WHERE {when.format(row='new') if when else 1}; END",
            f"DROP TRIGGER IF EXISTS {name}_update",
        ),
    ]


SQLITE = [
    *_fts(
        "patients_patient",
        "patients_patient_name_fts",
        "name",
        "id",
        "{row}.given_name || ' ' || {row}.family_name",
        "given_name, family_name",
    ),
    *_fts(
        "conversations_conversation",
        "conversations_conversation_phone_fts",
        "phone",
        "id",
        "{row}.phone",
        "phone",
    ),
    *_fts(
        "conversations_inboundmessage",
        "conversations_inboundmessage_body_fts",
        "body",
        "id",
        "{row}.body",
        "body",
    ),
    *_fts(
        "messaging_outboundmessage",
        "messaging_outboundmessage_reply_body_fts",
        "body",
        "id",
        "{row}.body",
        "body, kind",
        when="{row}.kind = 'reply'",
    ),
]


def _run(statements: list, reverse: bool):
    def run(apps, schema_editor) -> None:
        ordered = reversed(statements) if reverse else statements
        for forward, backward in ordered:
            sql = backward if reverse else forward
            if sql:
                schema_editor.execute(sql)

    return run


def forwards(apps, schema_editor) -> None:
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        _run(POSTGRES, reverse=False)(apps, schema_editor)
    elif vendor == "sqlite":
        _run(SQLITE, reverse=False)(apps, schema_editor)


def backwards(apps, schema_editor) -> None:
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        _run(POSTGRES, reverse=True)(apps, schema_editor)
    elif vendor == "sqlite":
        _run(SQLITE, reverse=True)(apps, schema_editor)


class Migration(migrations.Migration):
    # After every migration that rebuilds the patients table: SQLite rebuilds a table to
    # alter it, and the copy has none of the triggers this adds. A later migration that
    # rebuilds it must create them again (tests/conversations/test_inbox_search.py fails).
    dependencies = [
        ("conversations", "0006_queue_response_limits"),
        ("patients", "0005_patient_identifiers_by_system"),
        ("messaging", "0004_experiments_from_analytics"),
    ]

    operations = [migrations.RunPython(forwards, backwards, elidable=False)]
