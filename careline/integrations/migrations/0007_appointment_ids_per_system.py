from urllib.parse import quote

from django.db import migrations, models


def to_feed_namespaces(apps, schema_editor):
    """Visits a feed sent were keyed by the feed's name; keyed by its namespace now (the
    system a visit id without an EI namespace belongs to). A visit whose id the namespace
    already holds (two feeds of one EHR that both sent it) keeps the feed's name, so no two
    visits merge behind staff's backs."""
    Hl7Feed = apps.get_model("integrations", "Hl7Feed")
    Appointment = apps.get_model("scheduling", "Appointment")
    for feed in Hl7Feed.objects.select_related("organization").order_by("pk"):
        namespace = feed.identifier_system or (
            f"urn:careline:{feed.organization.slug}:{quote(feed.name, safe='')}"
        )
        if namespace == feed.name:
            continue
        visits = Appointment.objects.filter(organization_id=feed.organization_id)
        taken = visits.filter(external_system=namespace).values("external_id")
        visits.filter(external_system=feed.name).exclude(external_id__in=taken).update(
            external_system=namespace
        )


class Migration(migrations.Migration):
    dependencies = [
        ("integrations", "0006_writeback_modification_label"),
        ("scheduling", "0006_appointment_ids_per_system"),
        # The patients' upgrade finds each feed's patients by visits still named after the
        # feed, so it runs before this moves them to the feed's namespace.
        ("patients", "0005_patient_identifiers_by_system"),
    ]

    operations = [
        migrations.AlterField(
            model_name="hl7feed",
            name="name",
            field=models.CharField(
                help_text="The feed's id in Careline, unique in the organization.", max_length=60
            ),
        ),
        migrations.RunPython(to_feed_namespaces, migrations.RunPython.noop),
    ]
