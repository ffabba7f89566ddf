"""App config of the tasks bench's plugin."""

from django.apps import AppConfig


class BenchTaskAppConfig(AppConfig):
    name = "bench.taskapp"
    label = "hq_bench_taskapp"
