"""Experiment and ExperimentAssignment move from analytics to messaging, which assigns the
arms while planning. Only Django's idea of the models moves: the tables keep their names
and rows (db_table), so the database is not touched."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('analytics', '0002_experiments'),
        ('clinics', '0001_initial'),
        ('messaging', '0003_outbox_fewer_indexes'),
        ('scheduling', '0003_appointment_noshow_risk'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.CreateModel(
                    name='Experiment',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('name', models.CharField(max_length=120)),
                        ('withheld_step', models.CharField(default='all', help_text="'all' for a holdout, or a reminder step such as 'reminder:4320'.", max_length=40)),
                        ('share_basis_points', models.PositiveIntegerField(help_text='Share of visits in the withheld arm, in 1/10000 (1000 = 10%).')),
                        ('started_at', models.DateTimeField()),
                        ('ended_at', models.DateTimeField(blank=True, null=True)),
                        ('created_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                        ('organization', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='clinics.organization')),
                        ('practice', models.ForeignKey(blank=True, help_text='Blank: every practice of the organization.', null=True, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='clinics.practice')),
                    ],
                    options={
                        'db_table': 'analytics_experiment',
                        'ordering': ['-started_at'],
                        'constraints': [models.CheckConstraint(condition=models.Q(('share_basis_points__gt', 0), ('share_basis_points__lt', 10000)), name='experiment_share_between_0_and_1')],
                    },
                ),
                migrations.CreateModel(
                    name='ExperimentAssignment',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('arm', models.CharField(choices=[('control', 'Usual reminders'), ('withheld', 'Step withheld')], max_length=10)),
                        ('withheld_step', models.CharField(blank=True, max_length=40)),
                        ('assigned_at', models.DateTimeField()),
                        ('appointment', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='scheduling.appointment')),
                        ('experiment', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='assignments', to='messaging.experiment')),
                    ],
                    options={
                        'db_table': 'analytics_experimentassignment',
                        'indexes': [models.Index(fields=['appointment', 'withheld_step'], name='analytics_e_appoint_66c709_idx')],
                        'constraints': [models.UniqueConstraint(fields=('experiment', 'appointment'), name='one_arm_per_visit_and_experiment')],
                    },
                ),
            ],
        ),
    ]
