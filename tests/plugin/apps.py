"""An example plugin app: registers job functions through `hq_plugin`, exactly as a real plugin does."""

from django.apps import AppConfig


class TestPluginConfig(AppConfig):
    name = "tests.plugin"
    label = "hq_test_plugin"
