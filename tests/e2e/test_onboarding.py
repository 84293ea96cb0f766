"""Connecting a new device in a real browser: the "connect it" panel after creating it, its copy
button, and the copied agent command run for real against the live portal, after which the
device counts as seen and the panel is gone."""

import shlex
import subprocess
import sys
from pathlib import Path

from playwright.sync_api import expect

from tests.e2e.conftest import log_in

AGENT = Path(sys.executable).with_name("portal-agent")


def agent_command(copied: str) -> list[str]:
    """The ``portal-agent …`` line of the copied text, split as a shell would."""
    lines = [line for line in copied.splitlines() if line.startswith("portal-agent ")]
    assert len(lines) == 1, copied
    return shlex.split(lines[0])


def test_the_copied_agent_command_connects_a_new_device(browser, live_server, tmp_path):
    context = browser.new_context(
        viewport={"width": 1280, "height": 800}, permissions=["clipboard-read", "clipboard-write"]
    )
    page = context.new_page()
    page.set_default_timeout(10_000)
    try:
        log_in(page, live_server, "oscar")
        page.goto(f"{live_server}/admin/devices/new/")
        page.get_by_label("Name").fill("porch-pi")
        page.get_by_role("button", name="Save", exact=True).click()

        token = page.get_by_test_id("new-token").text_content()
        panel = page.get_by_test_id("connect-panel")
        expect(panel.get_by_role("heading", name="Connect it")).to_be_visible()
        expect(page.get_by_test_id("connect-agent")).to_contain_text(f"--token {token}")

        # By its target: once clicked, its name is "Copied" and a role locator would move on.
        copy = panel.locator("button[data-copy='connect-agent']")
        copy.click()
        expect(copy).to_have_text("Copied")
        copied = page.evaluate("navigator.clipboard.readText()")
        assert f"--url {live_server} --token {token}" in copied

        command = [str(AGENT), *agent_command(copied)[1:], "--once", "--state-dir", str(tmp_path)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr

        page.reload()
        expect(page.get_by_test_id("device-status")).to_have_text("online")
        expect(page.get_by_test_id("connect-panel")).to_have_count(0)
    finally:
        context.close()


def test_a_never_seen_device_shows_the_panel_without_its_token(page, live_server):
    log_in(page, live_server, "oscar")
    page.goto(f"{live_server}/admin/devices/new/")
    page.get_by_label("Name").fill("shed-esp32")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_test_id("new-token")).to_be_visible()

    page.reload()
    expect(page.get_by_test_id("connect-token-hint")).to_be_visible()
    expect(page.get_by_test_id("connect-agent")).to_contain_text("--token pd_… --handler relay")
