from django.db import migrations


def start_now(apps, schema_editor):
    # Times freed before the waitlist existed are not offered: start at today's history.
    AppointmentEvent = apps.get_model("scheduling", "AppointmentEvent")
    FreedSlotCursor = apps.get_model("selfservice", "FreedSlotCursor")
    newest = AppointmentEvent.objects.order_by("-id").values_list("id", flat=True).first()
    FreedSlotCursor.objects.update_or_create(pk=1, defaults={"last_event_id": newest or 0})


class Migration(migrations.Migration):
    dependencies = [
        ("selfservice", "0001_initial"),
        ("scheduling", "0001_initial"),
    ]

    operations = [migrations.RunPython(start_now, migrations.RunPython.noop)]
