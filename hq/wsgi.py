"""WSGI entry point (granian and gunicorn serve `hq.wsgi:application`)."""

import gc
import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hq.settings")
application = get_wsgi_application()
# Import every view now rather than on the first request, then move everything loaded so far out
# of the garbage collector's sight (it lives as long as the process). A full collection otherwise
# walks all of Django and HQ's modules, about 170,000 objects: 50-300 ms each, run every few batch
# submits of 1,000 jobs (their many short-lived objects trigger it).
get_resolver().url_patterns  # noqa: B018 - loads the URLconf and its views
gc.freeze()
# A young-generation pass every 7,000 net allocations instead of 700: a batch submit holds a few
# thousand objects alive for its whole request, which each pass walked again and which were promoted
# until they set off a full collection. In-process, six batches of 1,000 took 65 ms of CPU each
# instead of 83-87 ms; a cycle of garbage waits a little longer to be freed.
gc.set_threshold(7000, 10, 10)
