# The admin's jobs list across every workspace (a superuser's), newest first: 50 rows read from the
# end of this index instead of a sort of every job. Built concurrently on PostgreSQL, so a big jobs
# table keeps taking writes meanwhile.

import importlib

from django.db import migrations, models

_0007 = importlib.import_module("queueapp.migrations.0007_fewer_index_entries_per_job")


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("queueapp", "0011_one_owner_index"),
    ]

    operations = [
        _0007.AddIndexConcurrentlyIfMissing(
            model_name="job",
            index=models.Index(fields=["-created_at"], name="job_created"),
        ),
    ]
