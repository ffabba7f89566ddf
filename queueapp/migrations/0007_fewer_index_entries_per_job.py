# Written by hand on 2026-12-05: each new index is built before the one it replaces is dropped, both
# concurrently on PostgreSQL, so a big jobs table keeps its queries fast and keeps taking writes.

import importlib

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

AddIndexConcurrentlyOnPostgres = importlib.import_module(
    "queueapp.migrations.0003_observability_indexes"
).AddIndexConcurrentlyOnPostgres


class AddIndexConcurrentlyIfMissing(AddIndexConcurrentlyOnPostgres):
    """0003's concurrent add, safe to run again after a failed attempt: a valid index of that name
    is kept, and an invalid one (a CREATE INDEX CONCURRENTLY that failed half way) is rebuilt."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            with schema_editor.connection.cursor() as cur:
                cur.execute(
                    "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = %s",
                    [self.index.name],
                )
                row = cur.fetchone()
            if row is not None and row[0]:
                return
            if row is not None:
                schema_editor.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{self.index.name}"')
        super().database_forwards(app_label, schema_editor, from_state, to_state)


def _drop_fk_index(table, column, name):
    """The foreign key's own index goes (concurrently, on PostgreSQL) while the key itself stays.

    `AlterField(db_index=False)` would have Django drop the foreign key and add it back, which
    checks the whole table under a lock that stops its writes."""

    def forwards(apps, schema_editor):
        concurrently = "CONCURRENTLY " if schema_editor.connection.vendor == "postgresql" else ""
        schema_editor.execute(f'DROP INDEX {concurrently}IF EXISTS "{name}"')

    def backwards(apps, schema_editor):
        concurrently = "CONCURRENTLY " if schema_editor.connection.vendor == "postgresql" else ""
        schema_editor.execute(f'CREATE INDEX {concurrently}IF NOT EXISTS "{name}" ON "{table}" ("{column}")')

    return migrations.RunPython(forwards, backwards)


class RemoveIndexConcurrentlyOnPostgres(migrations.RemoveIndex):
    """DROP INDEX CONCURRENTLY on PostgreSQL (no lock that stops the table's writes); plain elsewhere."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        model = from_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            index = from_state.models[app_label, self.model_name_lower].get_index_by_name(self.name)
            if schema_editor.connection.vendor == "postgresql":
                schema_editor.remove_index(model, index, concurrently=True)
            else:
                schema_editor.remove_index(model, index)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        model = to_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            index = to_state.models[app_label, self.model_name_lower].get_index_by_name(self.name)
            if schema_editor.connection.vendor == "postgresql":
                schema_editor.add_index(model, index, concurrently=True)
            else:
                schema_editor.add_index(model, index)


def _user_fk(**kwargs):
    return models.ForeignKey(
        blank=True,
        db_index=False,
        null=True,
        on_delete=django.db.models.deletion.SET_NULL,
        to=settings.AUTH_USER_MODEL,
        **kwargs,
    )


class Migration(migrations.Migration):
    atomic = False  # CREATE/DROP INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ('queueapp', '0006_relay_indexes'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        AddIndexConcurrentlyIfMissing(
            model_name='job',
            index=models.Index(condition=models.Q(('correlation_id', ''), _negated=True), fields=['workspace', 'correlation_id'], name='job_ws_corr_set'),
        ),
        AddIndexConcurrentlyIfMissing(
            model_name='job',
            index=models.Index(condition=models.Q(('owner__isnull', False)), fields=['owner'], name='job_owner'),
        ),
        AddIndexConcurrentlyIfMissing(
            model_name='job',
            index=models.Index(condition=models.Q(('state__in', ['queued', 'deferred'])), fields=['queue', 'state', 'due_at'], name='job_waiting_queue'),
        ),
        AddIndexConcurrentlyIfMissing(
            model_name='job',
            index=models.Index(condition=models.Q(('finished_at__isnull', False)), fields=['finished_at'], name='job_finished_at'),
        ),
        AddIndexConcurrentlyIfMissing(
            model_name='job',
            index=models.Index(condition=models.Q(('finished_at__isnull', False)), fields=['workspace', 'finished_at'], name='job_ws_finished_at'),
        ),
        AddIndexConcurrentlyIfMissing(
            model_name='jobevent',
            index=models.Index(condition=models.Q(('actor__isnull', False)), fields=['actor'], name='jobevent_actor'),
        ),
        RemoveIndexConcurrentlyOnPostgres(model_name='job', name='job_ws_corr'),
        RemoveIndexConcurrentlyOnPostgres(model_name='job', name='job_queue_state_due'),
        RemoveIndexConcurrentlyOnPostgres(model_name='job', name='job_finished'),
        RemoveIndexConcurrentlyOnPostgres(model_name='job', name='job_ws_finished'),
        RemoveIndexConcurrentlyOnPostgres(model_name='jobevent', name='jobevent_at'),
        # The foreign keys' own indexes (every row, mostly NULL) give way to the partial ones above.
        migrations.SeparateDatabaseAndState(
            database_operations=[
                _drop_fk_index("queueapp_job", "owner_id", "queueapp_job_owner_id_f54f1d10"),
                _drop_fk_index("queueapp_jobevent", "actor_id", "queueapp_jobevent_actor_id_ac85e1e6"),
            ],
            state_operations=[
                migrations.AlterField(
                    model_name='job',
                    name='owner',
                    field=_user_fk(help_text='Who submitted it; empty for system jobs (schedule fires, retention).', related_name='jobs'),
                ),
                migrations.AlterField(model_name='jobevent', name='actor', field=_user_fk(related_name='+')),
            ],
        ),
    ]
