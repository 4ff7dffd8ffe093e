"""Experiment and ExperimentAssignment now belong to messaging
(messaging.0004_experiments_from_analytics): analytics forgets them without dropping the
tables, which messaging goes on using under the same names."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('analytics', '0002_experiments'),
        ('messaging', '0004_experiments_from_analytics'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.DeleteModel(name='ExperimentAssignment'),
                migrations.DeleteModel(name='Experiment'),
            ],
        ),
    ]
