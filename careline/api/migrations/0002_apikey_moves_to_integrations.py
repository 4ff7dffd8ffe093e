# ApiKey now belongs to careline.integrations (its 0003 takes it over, table and rows as
# they are); here it only leaves Django's model state, nothing is dropped.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("api", "0001_initial"),
        ("integrations", "0003_apikey"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="ApiKey")],
            database_operations=[],
        ),
    ]
