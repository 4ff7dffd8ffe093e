# The waitlist's models moved to careline.waitlist (waitlist 0001). Their tables stay as
# they are, so this only changes Django's idea of which app owns them: no database work.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("selfservice", "0002_start_reading_history_now"),
        ("waitlist", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.AlterField(
                    model_name="patientlink",
                    name="offer",
                    field=models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="links",
                        to="waitlist.waitlistoffer",
                    ),
                ),
                migrations.DeleteModel(name="WaitlistOffer"),
                migrations.DeleteModel(name="SlotOpening"),
                migrations.DeleteModel(name="WaitlistEntry"),
                migrations.DeleteModel(name="FreedSlotCursor"),
            ],
        )
    ]
