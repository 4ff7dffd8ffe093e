"""Careline's default texts in English and Spanish: PHI-minimal (first name, practice, local
date and time, a link; never the visit reason) and asking for C / X / R, which are not
carrier keywords, so cancelling a visit can never be mistaken for an opt-out."""

from django.db import migrations

from careline.messaging.default_texts import DEFAULTS



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
