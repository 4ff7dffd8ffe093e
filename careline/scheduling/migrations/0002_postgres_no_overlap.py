"""On PostgreSQL, forbid overlapping bookings of one provider outright.

SQLite has no exclusion constraints; there the unique (provider, start) index and the
serialized write transactions in the booking service carry the guarantee.
"""

from django.db import migrations

CREATE = """
CREATE EXTENSION IF NOT EXISTS btree_gist;
ALTER TABLE scheduling_appointment ADD CONSTRAINT appointment_no_overlap
    EXCLUDE USING gist (provider_id WITH =, tstzrange(start, "end", '[)') WITH &&)
    WHERE (NOT allow_overlap AND status IN ('booked', 'confirmed', 'arrived', 'fulfilled', 'noshow'));
"""
DROP = "ALTER TABLE scheduling_appointment DROP CONSTRAINT IF EXISTS appointment_no_overlap;"


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("scheduling", "0001_initial")]
    operations = [migrations.RunPython(forwards, backwards)]
