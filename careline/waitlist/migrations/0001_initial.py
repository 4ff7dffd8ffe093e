# The waitlist's models, moved here from careline.selfservice with their tables
# (db_table keeps the selfservice_* names): Django's state only, no database work.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('clinics', '0001_initial'),
        ('patients', '0001_initial'),
        ('scheduling', '0003_appointment_noshow_risk'),
        ('selfservice', '0002_start_reading_history_now'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.CreateModel(
                    name='FreedSlotCursor',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('last_event_id', models.BigIntegerField(default=0)),
                    ],
                    options={
                        'db_table': 'selfservice_freedslotcursor',
                    },
                ),
                migrations.CreateModel(
                    name='SlotOpening',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('start', models.DateTimeField()),
                        ('end', models.DateTimeField()),
                        ('state', models.CharField(choices=[('open', 'Waiting to be offered'), ('offering', 'Offered'), ('filled', 'Filled from the waitlist'), ('unfilled', 'Nobody took it'), ('withdrawn', 'Taken otherwise or too late')], default='open', max_length=10)),
                        ('batches_sent', models.PositiveSmallIntegerField(default=0)),
                        ('created_at', models.DateTimeField()),
                        ('closed_at', models.DateTimeField(blank=True, null=True)),
                        ('filled_appointment', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='scheduling.appointment')),
                        ('freed_by', models.OneToOneField(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='scheduling.appointmentevent')),
                        ('organization', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='clinics.organization')),
                        ('practice', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='clinics.practice')),
                        ('provider', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='clinics.provider')),
                    ],
                    options={
                        'db_table': 'selfservice_slotopening',
                    },
                ),
                migrations.CreateModel(
                    name='WaitlistEntry',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('earliest_date', models.DateField(help_text='First local day the patient can come.')),
                        ('latest_date', models.DateField(help_text='Last local day the patient can come.')),
                        ('source', models.CharField(choices=[('online', 'Booking page'), ('text', 'Text message'), ('staff', 'Staff')], max_length=10)),
                        ('active', models.BooleanField(default=True)),
                        ('created_at', models.DateTimeField()),
                        ('closed_at', models.DateTimeField(blank=True, null=True)),
                        ('closed_reason', models.CharField(blank=True, choices=[('filled', 'Got a slot'), ('patient', 'Left the waitlist'), ('staff', 'Removed by staff'), ('replaced', 'Replaced by a newer request')], max_length=10)),
                        ('appointment', models.ForeignKey(blank=True, help_text='The later visit to move earlier; blank books a new visit.', null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='scheduling.appointment')),
                        ('appointment_type', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='clinics.appointmenttype')),
                        ('organization', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='clinics.organization')),
                        ('patient', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='waitlist_entries', to='patients.patient')),
                        ('practice', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='waitlist', to='clinics.practice')),
                        ('provider', models.ForeignKey(blank=True, help_text='Blank: any provider at the practice.', null=True, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='clinics.provider')),
                    ],
                    options={
                        'verbose_name_plural': 'waitlist entries',
                        'db_table': 'selfservice_waitlistentry',
                        'ordering': ['created_at', 'id'],
                    },
                ),
                migrations.CreateModel(
                    name='WaitlistOffer',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('phone', models.CharField(max_length=20)),
                        ('batch', models.PositiveSmallIntegerField()),
                        ('sent_at', models.DateTimeField()),
                        ('expires_at', models.DateTimeField()),
                        ('state', models.CharField(choices=[('pending', 'Waiting for an answer'), ('accepted', 'Taken'), ('declined', 'Passed'), ('expired', 'Expired'), ('gone', 'Filled by someone else')], default='pending', max_length=10)),
                        ('answered_at', models.DateTimeField(blank=True, null=True)),
                        ('entry', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='offers', to='waitlist.waitlistentry')),
                        ('opening', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='offers', to='waitlist.slotopening')),
                        ('patient', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='patients.patient')),
                    ],
                    options={
                        'db_table': 'selfservice_waitlistoffer',
                    },
                ),
                migrations.AddIndex(
                    model_name='slotopening',
                    index=models.Index(fields=['state', 'start'], name='selfservice_state_1ec88a_idx'),
                ),
                migrations.AddIndex(
                    model_name='slotopening',
                    index=models.Index(fields=['practice', 'closed_at'], name='selfservice_practic_6036d6_idx'),
                ),
                migrations.AddIndex(
                    model_name='waitlistentry',
                    index=models.Index(fields=['practice', 'active', 'earliest_date'], name='selfservice_practic_648296_idx'),
                ),
                migrations.AddConstraint(
                    model_name='waitlistentry',
                    constraint=models.CheckConstraint(condition=models.Q(('latest_date__gte', models.F('earliest_date'))), name='waitlist_range_ordered'),
                ),
                migrations.AddIndex(
                    model_name='waitlistoffer',
                    index=models.Index(fields=['phone', 'state', 'sent_at'], name='selfservice_phone_aace61_idx'),
                ),
                migrations.AddIndex(
                    model_name='waitlistoffer',
                    index=models.Index(fields=['state', 'expires_at'], name='selfservice_state_62abd8_idx'),
                ),
                migrations.AddConstraint(
                    model_name='waitlistoffer',
                    constraint=models.UniqueConstraint(fields=('opening', 'entry'), name='one_offer_per_entry'),
                ),
            ],
        )
    ]
