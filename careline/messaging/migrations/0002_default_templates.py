"""Careline's default texts in English and Spanish, as they were when this migration was
written: PHI-minimal (first name, practice, local date and time, a link; never the visit
reason) and asking for C / X / R, which are not carrier keywords, so cancelling a visit can
never be mistaken for an opt-out.

The texts are copied here rather than imported from live code, so that editing today's
defaults never changes what this migration did to an existing database."""

from django.db import migrations

DEFAULTS = {
    ("reminder", "en"): "{first_name}: reminder of your visit at {practice} on {date} at {time}. "
    "Reply C to confirm, X to cancel, R to reschedule. {link}",
    ("reminder", "es"): "{first_name}: le recordamos su cita en {practice} el {date} a las "
    "{time}. Responda C para confirmar, X para cancelar, R para cambiar la fecha. {link}",
    ("booked", "en"): "{first_name}: your visit at {practice} is booked for {date} at {time}, "
    "{address}. Reply X to cancel, R to reschedule. {link}",
    ("booked", "es"): "{first_name}: su cita en {practice} esta reservada para el {date} a las "
    "{time}, {address}. Responda X para cancelar, R para cambiar la fecha. {link}",
    ("rescheduled", "en"): "{first_name}: your visit at {practice} is now on {date} at {time}. "
    "Reply C to confirm, X to cancel, R to reschedule. {link}",
    ("rescheduled", "es"): "{first_name}: su cita en {practice} ahora es el {date} a las {time}. "
    "Responda C para confirmar, X para cancelar, R para cambiar la fecha. {link}",
    ("cancelled", "en"): "{first_name}: your visit at {practice} on {date} at {time} is "
    "cancelled. To book again call {practice_phone} or visit {link}",
    ("cancelled", "es"): "{first_name}: su cita en {practice} del {date} a las {time} fue "
    "cancelada. Para una nueva cita llame al {practice_phone} o visite {link}",
}


def create_defaults(apps, schema_editor):
    MessageTemplate = apps.get_model("messaging", "MessageTemplate")
    MessageTemplate.objects.bulk_create(
        MessageTemplate(organization=None, kind=kind, language=language, body=body)
        for (kind, language), body in DEFAULTS.items()
    )


def remove_defaults(apps, schema_editor):
    apps.get_model("messaging", "MessageTemplate").objects.filter(
        organization__isnull=True
    ).delete()


class Migration(migrations.Migration):
    dependencies = [("messaging", "0001_initial")]

    operations = [migrations.RunPython(create_defaults, remove_defaults)]
