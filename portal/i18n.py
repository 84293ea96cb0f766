"""The language of each page: the user's choice, else the browser's, else the first offered.

Flask-Babel picks it once per request through ``select_locale``; Flask-Admin's own strings (its
``admin`` domain in flask_admin/translations) and the portal's (portal/translations) follow it.
The JSON API and the services' messages stay English.
"""

from __future__ import annotations

from babel import Locale
from flask import Flask, current_app, has_request_context, request
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_login import current_user

from portal.extensions import babel


def init_i18n(app: Flask) -> None:
    babel.init_app(app, default_locale=app.config["LANGUAGES"][0], locale_selector=select_locale)
    app.jinja_env.globals["current_language"] = current_language


def select_locale() -> str | None:
    """The saved language of the logged-in user, else the browser's best match, else None
    (Flask-Babel's default: the first of ``LANGUAGES``)."""
    if not has_request_context():
        return None  # a CLI command or a background job: English messages, the default
    languages = current_app.config["LANGUAGES"]
    chosen = getattr(current_user, "locale", None)  # anonymous users have none
    if chosen in languages:
        return chosen
    return request.accept_languages.best_match(languages)


def current_language() -> str:
    """The active language as a tag for ``<html lang>``: ``de``, ``fr``, ``en``."""
    locale = get_locale()
    return str(locale.language) if locale is not None else current_app.config["LANGUAGES"][0]


def language_choices() -> list[tuple[str, str]]:
    """``(code, name)`` for a language select: "" follows the browser, then each offered
    language, named in that language ("Deutsch", "Français")."""
    return [("", _("Follow the browser"))] + [
        (code, (Locale.parse(code).get_display_name(code) or code).capitalize())
        for code in current_app.config["LANGUAGES"]
    ]
