"""Click groups: ``flask users``, ``flask devices``, ``flask scheduler``, ``flask demo``; and the
app class the ``flask`` command builds, whose web side waits until something uses it."""
from __future__ import annotations

import functools
import threading
from typing import Any, Callable

import click
from flask import Flask
from flask.cli import ScriptInfo

from portal.extensions import db
from portal.services import audit
from portal.services.errors import DomainError


def register(app: Flask) -> None:
    from portal.cli.demo import demo
    from portal.cli.devices import devices
    from portal.cli.scheduler import scheduler
    from portal.cli.users import users

    app.cli.add_command(users)
    app.cli.add_command(devices)
    app.cli.add_command(demo)
    app.cli.add_command(scheduler)


def domain_command(func):
    """Run a CLI command as one transaction; a domain error is one line and exit 1."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        audit.set_origin("cli", "local")
        try:
            result = func(*args, **kwargs)
            db.session.commit()
            return result
        except DomainError as exc:
            db.session.rollback()
            message = exc.message
            if exc.fields:
                message += " (" + "; ".join(f"{k}: {v}" for k, v in exc.fields.items()) + ")"
            raise click.ClickException(message) from None

    return wrapper


class LazyCommand(click.Command):
    """A command (or group) loaded only when it runs: ``load`` returns the real one.

    ``flask --help`` lists it with ``help``, which must be the real command's one-line help.
    Click runs a subcommand through the context ``make_context`` returns, so handing over the
    real command's context makes its options, subcommands, help and callback the real ones.
    """

    def __init__(self, name: str, load: Callable[[], click.Command], help: str) -> None:
        super().__init__(name, help=help)
        self._load = load

    def make_context(self, info_name: str | None, args: list[str],
                     parent: click.Context | None = None, **extra: Any) -> click.Context:
        return self._load().make_context(info_name, args, parent=parent, **extra)


def loaded_by_flask_command() -> bool:
    """True while the ``flask`` command line loads the app (FLASK_APP=portal), as opposed to
    a WSGI server or a test building it."""
    ctx = click.get_current_context(silent=True)
    return ctx is not None and ctx.find_object(ScriptInfo) is not None


class _WebSide:
    """An attribute of ``CommandLineApp`` that holds routes: reading it first builds the
    deferred web side. Flask's own ``__init__`` sets and reads it before anything is deferred."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.slot = "_web_" + name

    def __get__(self, app: CommandLineApp | None, owner: type | None = None) -> Any:
        if app is None:
            return self
        if not app._web_ready:
            app._finish_web()
        return app.__dict__[self.slot]

    def __set__(self, app: CommandLineApp, value: Any) -> None:
        app.__dict__[self.slot] = value


class CommandLineApp(Flask):
    """The app as the ``flask`` command builds it: the web side is built on first use.

    Most commands (``scheduler tick``, ``users``, ``devices``, ``db``) never route a request,
    and building the web side (blueprints, the admin, the API and its pydantic models, request
    hooks) is most of their start-up time. ``create_app`` passes it to ``defer_web`` instead,
    and it is built the first time anything reads the URL map, the view functions or the
    blueprints: the first request (``flask run``), ``flask routes``, ``test_request_context()``,
    Flask-Limiter's commands, ``app.blueprints`` in ``flask shell``. Settings, the database and
    the commands are there from the start.
    """

    url_map = _WebSide()
    view_functions = _WebSide()
    blueprints = _WebSide()
    _web_ready = True

    def defer_web(self, build: Callable[[Flask], None]) -> None:
        self._build_web: Callable[[Flask], None] | None = build
        # Reentrant: building registers routes, which reads the URL map again.
        self._web_lock = threading.RLock()
        self._web_ready = False

    def _finish_web(self) -> None:
        # Another thread (`flask run` serves threaded) waits here until the web side is
        # complete; the building thread itself re-enters and finds ``_build_web`` taken.
        with self._web_lock:
            build, self._build_web = self._build_web, None
            if build is None:
                return
            try:
                build(self)
            except BaseException:
                # Not ready: the next use tries again and meets the same error, rather than
                # serving a half-built app without its hooks.
                self._build_web = build
                raise
            self._web_ready = True
