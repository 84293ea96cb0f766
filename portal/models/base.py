"""The declarative base every table derives from: ``db.Model``, under a name mypy can follow."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from portal.extensions import db

if TYPE_CHECKING:
    from flask_sqlalchemy.model import Model as FlaskModel
    from sqlalchemy import Table
    from sqlalchemy.orm import DeclarativeBase

    # mypy cannot subclass an attribute such as ``db.Model`` (python/mypy#8603), so it is told
    # what that class offers: a declarative base (``__init__(**kw)``, ``metadata``, mappers)
    # with Flask-SQLAlchemy's ``query``. Every model names its ``__tablename__``, so its
    # ``__table__`` is a Table.
    class Model(FlaskModel, DeclarativeBase):
        __table__: ClassVar[Table]

else:
    Model = db.Model
