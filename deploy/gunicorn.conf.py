"""Gunicorn settings for the portal, read by portal-web.service from /etc/portal/gunicorn.conf.py.

Every top-level name is a gunicorn setting (gunicorn ignores names it does not know, so a typo
would pass silently; tests/deploy checks the names). GUNICORN_CMD_ARGS and the command line
override these values.
"""

import gc
import os

# A reverse proxy on this host (nginx, Caddy) terminates HTTPS and forwards here.
bind = "127.0.0.1:8000"

# Sync workers, two per core this process may run on: the configuration `make bench` measures.
worker_class = "sync"
workers = 2 * len(os.sched_getaffinity(0))

# A worker silent this long is killed and replaced; no portal page should come near it.
timeout = 30
# On SIGTERM or HUP, workers get this long to finish the requests they hold. TimeoutStopSec in
# portal-web.service is longer, so systemd never kills a graceful stop halfway.
graceful_timeout = 20
# The workers' heartbeat file on tmpfs: on a disk-backed /tmp its fchmod calls can stall a worker.
worker_tmp_dir = "/dev/shm"

# Both logs go to the journal. The access log adds the client address the proxy saw (the
# peer address is the proxy's) and the time taken, in microseconds.
accesslog = "-"
errorlog = "-"
access_log_format = '%(h)s "%({x-forwarded-for}i)s" %(t)s "%(r)s" %(s)s %(b)s %(D)sus "%(a)s"'

# gunicorn takes X-Forwarded-Proto (HTTPS or not) only from these addresses; its default,
# 127.0.0.1 and ::1, fits a proxy on this host. For a proxy elsewhere, name it:
# forwarded_allow_ips = "10.0.0.5"

# gunicornc's control socket (gunicorn 25.1 and newer) goes in the unit's RuntimeDirectory,
# /run/portal-web. Elsewhere it is off, rather than gunicorn's default under $HOME, which every
# gunicorn of one user shares.
if "RUNTIME_DIRECTORY" in os.environ:
    control_socket = os.path.join(os.environ["RUNTIME_DIRECTORY"], "gunicorn.ctl")
else:
    control_socket_disable = True

# Build the app once, in the master, then fork the workers from it:
# - a bad setting stops the master at once with one message naming it, instead of every worker
#   failing to boot in turn;
# - workers start in a moment, and share the master's memory for the code and data they only
#   read (pre_fork freezes those objects, as wsgi.py does, so a collection in a worker neither
#   walks them nor copies their pages);
# - create_app runs once, so workers cannot race each other to generate the secret key.
# The cost: `systemctl reload portal-web` (HUP) re-reads this file and replaces the workers but
# keeps the loaded code. After upgrading the portal, `systemctl restart portal-web`.
preload_app = True


def pre_fork(server, worker):
    gc.freeze()


def post_fork(server, worker):
    """Give each worker a database pool of its own.

    create_app touches ``db.engine``, so the engine exists in the master before the fork. It opens
    no connection there today, but a pooled connection inherited by several workers would mix
    their queries on one socket. Disposing with close=False drops the inherited pool without
    closing connections the master may still use.
    """
    if not server.cfg.preload_app:
        return  # each worker builds its own app, engine and pool after the fork
    from portal.extensions import db

    with worker.app.wsgi().app_context():
        db.engine.dispose(close=False)
