"""Pages in the user's language: Flask-Admin's strings and the portal's, chosen from the user's
setting, else the browser's Accept-Language, else English; complete German and French catalogues.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path

import flask_admin
import jinja2
import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import read_mo, write_mo
from babel.messages.pofile import read_po
from flask_babel import refresh
from sqlalchemy import select

import portal
from portal import create_app
from portal.config import ConfigError
from portal.models import AuditEvent, SchedulerPass, User, utcnow
from portal.services.errors import InvalidInput
from portal.services.users import update_own_settings
from tests import factories
from tests.conftest import csrf_token

ROOT = Path(__file__).resolve().parents[2]
TRANSLATIONS = Path(portal.__file__).parent / "translations"
# The keywords of babel.cfg's extract command: Babel's defaults and ``_l`` (lazy_gettext).
KEYWORDS = {**DEFAULT_KEYWORDS, "_l": None}
GERMAN = "de-DE,de;q=0.9,en;q=0.5"
FRENCH = "fr-CH,fr;q=0.9"


@pytest.fixture
def client(app):
    """The app fixture holds one app context, so one ``g``, around all of a test's requests, and
    Flask-Babel keeps the chosen locale in ``g``: this client's app chooses it again for each
    request, as in production, where every request has an app context of its own."""
    app.before_request(refresh)
    return app.test_client()


def browser_language(client, accept_language: str):
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = accept_language
    return client


def html_of(client, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200, path
    return response.get_data(as_text=True)


def post_form(client, path, data):
    data = {**data, "csrf_token": csrf_token(client, path)}
    return client.post(path, data=data, follow_redirects=True)


# ---- the language of a page -----------------------------------------------------------------


@pytest.mark.parametrize(
    "accept_language,lang,flask_admin_words,portal_words",
    [
        (
            GERMAN,
            "de",
            ["Liste", "Erstellen", "Filter hinzufügen", "Mit Auswahl", "Suche", "Löschen"],
            ["Geräte", "Standort", "Zuletzt gesehen", "Tokens erneuern", "Übersicht"],
        ),
        (
            FRENCH,
            "fr",
            ["Liste", "Créer", "Ajouter un filtre", "Avec la sélection", "Chercher"],
            ["Appareils", "Emplacement", "Dernier contact", "Renouveler les jetons"],
        ),
        (
            "es-ES,es;q=0.9",
            "en",
            ["List", "Create", "Add Filter", "With selected", "Search", "Delete"],
            ["Devices", "Location", "Last seen", "Rotate tokens", "Dashboard"],
        ),
    ],
    ids=["german", "french", "spanish-is-not-offered"],
)
def test_the_device_list_follows_the_browsers_language(
    client, login_as, admin, device, accept_language, lang, flask_admin_words, portal_words
):
    login_as(admin)
    html = html_of(browser_language(client, accept_language), "/admin/devices/")
    assert f'<html lang="{lang}">' in html
    for word in flask_admin_words + portal_words:
        assert word in html, word


def test_a_browser_without_accept_language_gets_english(client, login_as, admin):
    login_as(admin)
    html = html_of(client, "/admin/")
    assert '<html lang="en">' in html
    assert "Commands in the last 24 h" in html


@pytest.mark.parametrize(
    "path,words",
    [
        ("/admin/", ["Befehle der letzten 24 Std.", "Handlungsbedarf", "Nie gesehen"]),
        ("/admin/devices/new/", ['value="Speichern"', "Abbrechen", "Beschreibung", "Eigentümer"]),
        ("/admin/schedules/", ["Zeitpläne", "Nächste Ausführung", "Jetzt ausführen"]),
        ("/admin/commands/", ["Befehle", "Versuche", "Läuft ab", "Gerätename"]),
        ("/admin/readings/", ["Messwerte", "Messgröße", "Wert", "Gemessen"]),
        ("/admin/users/", ["Benutzername", "Rolle", "Sprache", "Wie im Browser"]),
        ("/admin/tokens/", ["Tokens", "Bezeichnung", "Beginnt mit", "Widerrufen"]),
        ("/admin/audit/", ["Audit-Protokoll", "Wer", "Herkunft"]),
        ("/admin/account/", ["Mein Konto", "Zeitzone", "Sprache", "Aktuelles Passwort"]),
    ],
)
def test_every_admin_page_speaks_german_to_a_german_browser(client, login_as, admin, path, words):
    login_as(admin)
    html = html_of(browser_language(client, GERMAN), path)
    assert '<html lang="de">' in html
    for word in words:
        assert word in html, word


def test_the_device_page_speaks_german(client, login_as, operator, device):
    login_as(operator)
    html = html_of(browser_language(client, GERMAN), f"/admin/devices/details/?id={device.id}")
    for word in ["Token erneuern", "Befehl senden", "Letzte Befehle", "Verlauf", "Alle Felder"]:
        assert word in html, word
    assert 'data-testid="device-status">nie<' in html


@pytest.mark.parametrize(
    "accept_language,lang,words",
    [
        (GERMAN, "de", ["Benutzername", "Passwort", "Anmelden"]),
        (FRENCH, "fr", ["Nom d’utilisateur", "Mot de passe", "Se connecter"]),
        ("nl", "en", ["Username", "Password", "Log in"]),
    ],
)
def test_the_login_page_follows_the_browsers_language(client, accept_language, lang, words):
    html = html_of(browser_language(client, accept_language), "/login")
    assert f'<html lang="{lang}">' in html
    for word in words:
        assert word in html, word


def test_a_failed_login_is_explained_in_german(client, operator):
    browser_language(client, GERMAN)
    response = client.post(
        "/login",
        data={"username": "oscar", "password": "wrong", "csrf_token": csrf_token(client)},
    )
    assert "Benutzername oder Passwort ist falsch." in response.get_data(as_text=True)


def test_a_refused_form_is_explained_in_german(client):
    response = browser_language(client, GERMAN).post("/login", data={"username": "x"})
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "Das Formular ist abgelaufen" in html and "Das CSRF-Token fehlt." in html


def test_form_validation_messages_are_german(client, login_as, operator):
    login_as(operator)
    response = post_form(browser_language(client, GERMAN), "/admin/devices/new/", {"name": ""})
    assert "Dieses Feld wird benötigt." in response.get_data(as_text=True)


def test_an_action_reports_in_german(client, login_as, operator, device):
    login_as(operator)
    data = {"action": "disable", "rowid": str(device.id), "csrf_token": csrf_token(client)}
    response = browser_language(client, GERMAN).post(
        "/admin/devices/action/", data=data, follow_redirects=True
    )
    assert "Geräte deaktiviert: 1." in response.get_data(as_text=True)


def test_the_json_api_stays_english(client, login_as, operator):
    login_as(operator)
    response = browser_language(client, GERMAN).get("/api/v1/devices/999999")
    assert response.status_code == 404
    assert response.get_json()["error"]["message"] == "No such device."


# ---- the user's own choice --------------------------------------------------------------------


def test_the_users_saved_language_beats_the_browsers(client, db, login_as, admin):
    admin.locale = "fr"
    db.session.commit()
    login_as(admin)
    html = html_of(browser_language(client, GERMAN), "/admin/devices/")
    assert '<html lang="fr">' in html
    assert "Appareils" in html and "Geräte" not in html


def test_a_saved_language_no_longer_offered_falls_back_to_the_browser(
    app, client, db, login_as, admin, monkeypatch
):
    admin.locale = "fr"
    db.session.commit()
    monkeypatch.setitem(app.config, "LANGUAGES", ["en", "de"])
    login_as(admin)
    assert '<html lang="de">' in html_of(browser_language(client, GERMAN), "/admin/")


def test_the_account_page_saves_the_language_and_answers_in_it(client, db, login_as, viewer):
    login_as(viewer)
    response = post_form(
        browser_language(client, "en"), "/admin/account/", {"timezone": "UTC", "locale": "de"}
    )
    html = response.get_data(as_text=True)
    assert db.session.get(User, viewer.id).locale == "de"
    assert '<html lang="de">' in html and "Einstellungen gespeichert." in html
    event = db.session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc())).first()
    assert event.changes == {"locale": [None, "de"]}


def test_the_account_page_can_go_back_to_following_the_browser(client, db, login_as, viewer):
    viewer.locale = "de"
    db.session.commit()
    login_as(viewer)
    response = post_form(
        browser_language(client, FRENCH), "/admin/account/", {"timezone": "UTC", "locale": ""}
    )
    assert db.session.get(User, viewer.id).locale is None
    assert "Paramètres enregistrés." in response.get_data(as_text=True)


def test_the_account_page_shows_the_saved_language(client, db, login_as, viewer):
    viewer.locale = "fr"
    db.session.commit()
    login_as(viewer)
    html = html_of(client, "/admin/account/")
    assert re.search(r'<option selected value="fr">Français</option>', html)


def test_the_account_page_refuses_an_unknown_language_naming_the_field(
    client, db, login_as, viewer
):
    login_as(viewer)
    response = post_form(client, "/admin/account/", {"timezone": "UTC", "locale": "xx"})
    html = response.get_data(as_text=True)
    assert db.session.get(User, viewer.id).locale is None
    assert "One of en, de, fr, or empty to follow the browser." in html


def test_an_admin_sets_a_users_language(client, db, login_as, admin, viewer):
    login_as(admin)
    post_form(
        client,
        f"/admin/users/edit/?id={viewer.id}",
        {"username": "vera", "role": "viewer", "active": "y", "timezone": "UTC", "locale": "fr"},
    )
    assert db.session.get(User, viewer.id).locale == "fr"


@pytest.mark.parametrize("locale,saved", [("de", "de"), ("", None)])
def test_update_own_settings_takes_an_offered_language_or_none(app, admin, locale, saved):
    update_own_settings(admin, locale=locale, languages=("en", "de"))
    assert admin.locale == saved


def test_update_own_settings_refuses_a_language_not_offered(app, admin):
    with pytest.raises(InvalidInput) as caught:
        update_own_settings(admin, locale="fr", languages=("en", "de"))
    assert set(caught.value.fields) == {"locale"}


# ---- times and numbers ------------------------------------------------------------------------


def test_times_stay_in_the_users_zone_on_a_german_page(client, db, login_as, operator):
    operator.timezone = "Europe/Berlin"
    db.session.commit()
    device = factories.DeviceFactory(
        owner=operator, created_at=datetime(2024, 7, 15, 12, 0, tzinfo=UTC)
    )
    login_as(operator)
    browser_language(client, GERMAN)
    for path in ("/admin/devices/", f"/admin/devices/details/?id={device.id}"):
        html = html_of(client, path)
        assert '<html lang="de">' in html
        assert "2024-07-15 14:00 CEST</time>" in html, path


@pytest.mark.parametrize(
    "accept_language,shown",
    [("en", "fired 1234, skipped 0, expired 0, lag 2.5 s"), (GERMAN, "Verzögerung 2,5 s")],
)
def test_numbers_on_the_dashboard_are_written_the_languages_way(
    client, db, login_as, admin, accept_language, shown
):
    now = utcnow()
    db.session.add(
        SchedulerPass(started_at=now, finished_at=now, fired=1234, lag_seconds=2.5, host="")
    )
    db.session.commit()
    login_as(admin)
    html = html_of(browser_language(client, accept_language), "/admin/")
    assert shown in html


# ---- filters: labels translated, URL arguments the same in every language ---------------------


def test_filter_urls_are_the_same_in_every_language(client, login_as, admin):
    factories.CommandFactory.create_batch(2, device=factories.DeviceFactory(name="boiler"))
    login_as(admin)
    path = "/admin/commands/?flt0_device_devices_name_equals=boiler&flt1_device_id_greater_than=0"
    english = html_of(client, path)
    german = html_of(browser_language(client, GERMAN), path)
    assert "List (2)" in english and "Liste (2)" in german
    assert "Gerätename" in german
    arguments = re.compile(r"flt\d_[a-z_]+")
    assert set(arguments.findall(german)) == set(arguments.findall(english))
    assert {"flt0_device_devices_name_equals", "flt1_device_id_greater_than"} <= set(
        arguments.findall(german)
    )


# ---- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value,expected",
    [("en,de", ["en", "de"]), (["de", "en", "fr"], ["de", "en", "fr"]), ("fr", ["fr"])],
)
def test_languages_are_read_from_a_list_or_a_comma_separated_string(tmp_path, value, expected):
    app = create_app({"INSTANCE_PATH": str(tmp_path), "SECRET_KEY": "x", "LANGUAGES": value})
    assert app.config["LANGUAGES"] == expected


@pytest.mark.parametrize("value", ["", "xx", "es", "de_DE", 42])
def test_an_unusable_language_setting_stops_the_start_naming_the_variable(tmp_path, value):
    with pytest.raises(ConfigError, match="PORTAL_LANGUAGES"):
        create_app({"INSTANCE_PATH": str(tmp_path), "SECRET_KEY": "x", "LANGUAGES": value})


# ---- the layout --------------------------------------------------------------------------------


def test_the_portal_layout_has_every_block_of_flask_admins(app):
    """portal_master.html copies Flask-Admin's base.html (for <html lang>): an upgrade that adds
    or drops a block there fails here."""

    def blocks(loader, name):
        environment = jinja2.Environment(loader=loader)
        source = loader.get_source(environment, name)[0]
        return set(environment.parse(source).find_all(jinja2.nodes.Block))

    flask_admin_templates = Path(flask_admin.__file__).parent / "templates" / "bootstrap4"
    theirs = blocks(jinja2.FileSystemLoader(flask_admin_templates), "admin/base.html")
    portal_templates = Path(app.root_path) / app.template_folder
    ours = blocks(jinja2.FileSystemLoader(portal_templates), "admin/portal_master.html")
    assert {block.name for block in ours} == {block.name for block in theirs}


# ---- the catalogues ----------------------------------------------------------------------------


def extracted_messages() -> set[tuple[str | None, str]]:
    """``(context, msgid)`` of every string marked in the portal, found as babel.cfg says."""
    with open(ROOT / "babel.cfg") as fh:
        method_map, options_map = parse_mapping_cfg(fh)
    found = extract_from_dir(
        Path(portal.__file__).parent, method_map, options_map, keywords=KEYWORDS
    )
    messages = set()
    for _filename, _lineno, message, _comments, context in found:
        msgid = message[0] if isinstance(message, tuple) else message
        messages.add((context, msgid))
    return messages


def catalogue(language: str):
    with open(TRANSLATIONS / language / "LC_MESSAGES" / "messages.po", "rb") as fh:
        return read_po(fh, locale=language)


def translations_of(catalog) -> dict[tuple[str | None, str], str | tuple[str, ...]]:
    """``(context, msgid)`` → translation; a plural entry is keyed by its singular and has a
    translation only when every form has one."""
    found: dict[tuple[str | None, str], str | tuple[str, ...]] = {}
    for m in catalog:
        if not m.id or m.fuzzy:
            continue
        if isinstance(m.id, list | tuple):
            forms = tuple(m.string) if isinstance(m.string, list | tuple) else (m.string,)
            found[(m.context, m.id[0])] = forms if all(forms) else ""
        else:
            found[(m.context, m.id)] = m.string
    return found


def test_the_extraction_finds_the_portals_strings():
    messages = extracted_messages()
    assert len(messages) > 150
    assert {(None, "Devices"), (None, "Follow the browser"), ("schedule", "disabled")} <= messages


@pytest.mark.parametrize("language", ["de", "fr"])
def test_every_marked_string_has_a_translation(language):
    translated = translations_of(catalogue(language))
    missing = sorted(
        msgid for key in extracted_messages() if not translated.get(key) for _, msgid in [key]
    )
    assert not missing, f"untranslated in {language}: {missing}"


@pytest.mark.parametrize("language", ["de", "fr"])
def test_the_catalogue_holds_no_string_the_code_no_longer_uses(language):
    stale = set(translations_of(catalogue(language))) - extracted_messages()
    assert not stale, f"run pybabel update (babel.cfg): {sorted(stale)}"


@pytest.mark.parametrize("language", ["de", "fr"])
def test_the_committed_mo_file_matches_its_po_file(language):
    compiled = BytesIO()
    write_mo(compiled, catalogue(language))
    compiled.seek(0)
    with open(TRANSLATIONS / language / "LC_MESSAGES" / "messages.mo", "rb") as fh:
        committed = read_mo(fh)
    assert translations_of(committed) == translations_of(read_mo(compiled))
