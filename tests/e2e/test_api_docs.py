"""/api/v1/docs in Chromium: the vendored Swagger UI renders the OpenAPI document, asks nothing
of other hosts and breaks no rule of the Content-Security-Policy."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import log_in


@pytest.fixture
def problems(page, live_server):
    """Console errors, uncaught script errors and requests to any other host, as they come."""
    seen: list[str] = []
    page.on("console", lambda msg: seen.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: seen.append(f"uncaught: {exc}"))
    page.on(
        "request",
        lambda request: (
            None if request.url.startswith((live_server, "data:")) else seen.append(request.url)
        ),
    )
    return seen


def open_docs(page, live_server) -> None:
    page.goto(f"{live_server}/api/v1/docs")
    # The first load parses a 1.7 MB bundle: more than the default 5 s on a busy machine.
    expect(page.locator('[data-path="/api/v1/devices"]').first).to_be_visible(timeout=30_000)
    page.wait_for_load_state("load")


@pytest.mark.parametrize("who", ["anonymous", "vera"])
def test_the_docs_render_every_tag_without_console_errors(page, live_server, problems, who):
    if who != "anonymous":
        log_in(page, live_server, who)
    open_docs(page, live_server)

    for tag in ("devices", "schedules", "commands", "rules", "alerts", "channels"):
        expect(page.locator(f"#operations-tag-{tag}")).to_be_visible()
    expect(page.locator('[data-path="/api/v1/rules/{rule_id}"]').first).to_be_visible()
    assert problems == []


def test_try_it_out_reads_the_api_with_the_login_session(page, live_server, problems):
    log_in(page, live_server, "vera")
    open_docs(page, live_server)

    page.locator("#operations-devices-list_devices").locator(".opblock-summary").click()
    page.get_by_role("button", name="Try it out").click()
    page.get_by_role("button", name="Execute").click()

    live = page.locator("#operations-devices-list_devices .live-responses-table")
    expect(live.locator("tr.response .response-col_status")).to_have_text("200")
    assert problems == []
