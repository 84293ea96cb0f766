"""Flask extensions, created without an app and bound in ``create_app``."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData

if TYPE_CHECKING:
    from flask_migrate import Migrate
    from flask_wtf import CSRFProtect

# A naming convention makes constraint names predictable, so Alembic's batch mode on SQLite and
# plain ALTERs on PostgreSQL refer to the same names.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

db = SQLAlchemy(metadata=MetaData(naming_convention=NAMING_CONVENTION))
login_manager = LoginManager()
limiter = Limiter(key_func=get_remote_address, default_limits=[])
# Made on first use (see __getattr__ below).
migrate: Migrate
csrf: CSRFProtect


def __getattr__(name: str) -> Any:
    """Make ``migrate`` and ``csrf`` on first use. Flask-Migrate imports Alembic (~0.15 s) and
    only ``flask db`` needs it; Flask-WTF imports WTForms and only the web side needs it. So
    ``flask scheduler tick`` and the other commands start without either."""
    if name == "migrate":
        from flask_migrate import Migrate

        made: Any = Migrate()
    elif name == "csrf":
        from flask_wtf import CSRFProtect

        made = CSRFProtect()
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = made
    return made
