# Written by hand on 2026-12-05: one index serves a member's own jobs and the user foreign key, where
# two did (job_ws_owner_created and job_owner): every job with an owner wrote an entry into both on
# its insert, its start and its finish. The new index is built before the two are dropped, all
# concurrently on PostgreSQL, so a big jobs table keeps its queries fast and keeps taking writes.

import importlib

from django.db import migrations, models

_0007 = importlib.import_module("queueapp.migrations.0007_fewer_index_entries_per_job")


class Migration(migrations.Migration):
    atomic = False  # CREATE and DROP INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("queueapp", "0010_queue_depth_samples"),
    ]

    operations = [
        _0007.AddIndexConcurrentlyIfMissing(
            model_name="job",
            index=models.Index(
                condition=models.Q(("owner__isnull", False)),
                fields=["owner", "workspace", "-created_at"],
                name="job_owner_ws_created",
            ),
        ),
        _0007.RemoveIndexConcurrentlyOnPostgres(model_name="job", name="job_ws_owner_created"),
        _0007.RemoveIndexConcurrentlyOnPostgres(model_name="job", name="job_owner"),
    ]
