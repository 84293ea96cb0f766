"""`flask db upgrade` builds the whole schema from nothing, and `flask db check` finds no drift."""

from sqlalchemy import inspect

from portal import create_app
from portal.extensions import db


def test_upgrade_then_check_reports_no_drift(empty_database, tmp_path):
    app = create_app(
        {"INSTANCE_PATH": str(tmp_path), "SECRET_KEY": "x", "DATABASE_URL": empty_database}
    )
    runner = app.test_cli_runner()
    upgrade = runner.invoke(args=["db", "upgrade"])
    assert upgrade.exit_code == 0, upgrade.output
    check = runner.invoke(args=["db", "check"])
    assert check.exit_code == 0, check.output
    with app.app_context():
        tables = set(inspect(db.engine).get_table_names())
        db.engine.dispose()
    assert set(db.metadata.tables) <= tables


def test_downgrade_to_base_and_back(empty_database, tmp_path):
    app = create_app(
        {"INSTANCE_PATH": str(tmp_path), "SECRET_KEY": "x", "DATABASE_URL": empty_database}
    )
    runner = app.test_cli_runner()
    for args in (["db", "upgrade"], ["db", "downgrade", "base"], ["db", "upgrade"]):
        result = runner.invoke(args=args)
        assert result.exit_code == 0, result.output
    with app.app_context():
        assert "devices" in inspect(db.engine).get_table_names()
        db.engine.dispose()
