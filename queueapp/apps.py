"""The job queue: jobs, events, HITL requests, the worker."""

from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class QueueConfig(AppConfig):
    name = "queueapp"
    verbose_name = "Queue"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from hq import metrics
        from hq.services import on_member_departure
        from queueapp import builtin, retention, services, sidetasks  # noqa: F401  (registers functions and side tasks)
        from queueapp.observability import dashboard, depth, gauges, registry

        # A member who leaves (or is deactivated) takes their pending approval requests with them.
        on_member_departure(services.hitl_expire_departed)

        # The queue's part of the ops views and of retention; other apps add theirs in their ready().
        registry.register_dashboard_panels("queue", dashboard.queue_panels, order=10)
        metrics.register_gauge_source("queue", gauges.queue_gauges)
        retention.register_pruner("jobs", retention.prune_jobs)
        retention.register_pruner("depth_samples", depth.prune_depth_samples)

        # Plugins: every installed app's `hq_plugin` module registers functions and actions.
        autodiscover_modules("hq_plugin")
        # Django tasks (TASKS on HQBackend) defined in an installed app's `tasks` or `hq_plugin`
        # module become job functions named by their module path; only these ever run.
        from queueapp import tasks_backend

        autodiscover_modules("tasks")
        tasks_backend.discover()
