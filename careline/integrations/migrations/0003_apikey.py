# The ApiKey model moves here from careline.api (a feed credential belongs with the feeds).
# Only Django's idea of the model moves: the table `api_apikey` and its rows stay as they are.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("api", "0001_initial"),
        ("clinics", "0001_initial"),
        ("integrations", "0002_writeback_outbox"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="ApiKey",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True,
                                primary_key=True,
                                serialize=False,
                                verbose_name="ID",
                            ),
                        ),
                        (
                            "name",
                            models.CharField(
                                help_text="Who uses it, e.g. 'Epic interface'.", max_length=100
                            ),
                        ),
                        ("prefix", models.CharField(max_length=16, unique=True)),
                        (
                            "secret_hash",
                            models.CharField(
                                help_text="SHA-256 of the key's secret part.", max_length=64
                            ),
                        ),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        ("last_used_at", models.DateTimeField(blank=True, null=True)),
                        ("revoked_at", models.DateTimeField(blank=True, null=True)),
                        (
                            "organization",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="api_keys",
                                to="clinics.organization",
                            ),
                        ),
                    ],
                    options={
                        "verbose_name": "API key",
                        "ordering": ["organization", "name"],
                        "db_table": "api_apikey",
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
