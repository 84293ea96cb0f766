"""WSGI entry point: `gunicorn wsgi:app`."""

import gc

from portal import create_app

app = create_app()
# The app, its modules and their objects live as long as the worker: move them out of the
# collector's way, so a full collection during a request walks only what requests made.
gc.freeze()
