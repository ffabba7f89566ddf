"""The tasks bench's plugin app: its no-op Django task, discovered at start-up like any plugin's.

bench/tasks_bench.py puts `bench.taskapp` in HQ_PLUGINS for every process it starts (the worker,
the web server) and for itself, so the in-process backend, the REST batch route and the worker all
know `bench.taskapp.tasks.noop`.
"""
