"""``flask users``: create people and their personal tokens."""

from __future__ import annotations

import secrets

import click
from flask.cli import with_appcontext

from portal.cli import domain_command
from portal.extensions import db
from portal.models import Role
from portal.services.second_factor import remove_second_factor
from portal.services.tokens import MAX_EXPIRES_DAYS, create_personal_token
from portal.services.users import create_user, find_user


@click.group(help="Manage people who log in.")
def users() -> None:
    pass


@users.command("create", help="Create a user; prompts for the password when not given.")
@click.argument("name")
@click.option("--role", type=click.Choice([r.value for r in Role]), required=True)
@click.option("--password", help="The password (prompted for, hidden, when omitted).")
@with_appcontext
@domain_command
def create(name: str, role: str, password: str | None) -> None:
    if find_user(name.strip()) is not None:
        raise click.ClickException(f"A user named {name.strip()!r} already exists.")
    if password is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    user = create_user(None, name, password, role)
    click.echo(f"Created {user.role.value} {user.username!r}.", err=True)


@users.command("token", help="Print a new personal API token for NAME, once.")
@click.argument("name")
@click.option("--label", default="", help="What the token is for.")
@click.option(
    "--expires-days",
    type=click.IntRange(1, MAX_EXPIRES_DAYS),
    default=None,
    help="Days until the token stops working (default: never).",
)
@click.option(
    "--scope",
    type=click.Choice(["full", "read"]),
    default="full",
    show_default=True,
    help="'read' allows only GET requests.",
)
@with_appcontext
@domain_command
def token(name: str, label: str, expires_days: int | None, scope: str) -> None:
    user = find_user(name.strip())
    if user is None:
        raise click.ClickException(f"No user named {name.strip()!r}.")
    _, clear = create_personal_token(None, user, label, expires_days=expires_days, scope=scope)
    db.session.commit()  # stored before the token is shown
    click.echo(clear)


@users.command(
    "reset-2fa", help="Turn off NAME's two-factor login (lost phone); ends their sessions."
)
@click.argument("name")
@with_appcontext
@domain_command
def reset_2fa(name: str) -> None:
    user = find_user(name.strip())
    if user is None:
        raise click.ClickException(f"No user named {name.strip()!r}.")
    if not user.has_second_factor and not user.totp_secret:
        raise click.ClickException(f"{user.username!r} has no second factor.")
    remove_second_factor(None, user, "second_factor_reset")
    click.echo(f"Two-factor login is off for {user.username!r}; they can enrol again.", err=True)


@users.command("ensure-admin", help="Create the 'admin' user if no admin exists yet.")
@with_appcontext
@domain_command
def ensure_admin() -> None:
    from sqlalchemy import select

    from portal.extensions import db
    from portal.models import User

    if db.session.execute(select(User.id).where(User.role == Role.admin).limit(1)).first():
        return
    password = secrets.token_urlsafe(12)
    create_user(None, "admin", password, Role.admin)
    click.echo(f"Created user 'admin' with password: {password}")
    click.echo("(shown this once: note it, or set another with the admin's Users page)")
