"""``/healthz``: 200 ``{"status": "ok"}`` when the database answers a query, 503
``{"status": "unavailable"}`` when it does not.

It only reads. On a full disk or a read-only database (file or server) reads still work, so it
stays 200 while writes answer 507/503 with ``Retry-After`` and log a line each
(``api/errors.py``): the portal still serves its pages and lists, and a load balancer that
took every instance out would not free the disk. When SQLite cannot open the file at all (a
read-only disk without the database's -shm file) it is 503.
"""

from flask import Blueprint, jsonify
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from portal.extensions import csrf, db

bp = Blueprint("health", __name__)


@bp.get("/healthz")
@csrf.exempt
def healthz():
    try:
        db.session.execute(text("SELECT 1"))
    except SQLAlchemyError:
        db.session.rollback()
        return jsonify(status="unavailable"), 503
    return jsonify(status="ok")
