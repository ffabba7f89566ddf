from django.apps import AppConfig


class TaskAppConfig(AppConfig):
    name = "tests.client.taskapp"
    label = "client_taskapp"
