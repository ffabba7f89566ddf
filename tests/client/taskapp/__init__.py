"""A task module shared by HQ (installed as a plugin app, HQ_PLUGINS) and a separate Django project
(which enqueues through hq_client.django.RemoteBackend): it imports Django's task API only."""
