"""``portal-agent`` starts without the server's libraries: importing ``portal`` imports no Flask."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_agent_imports_neither_flask_nor_sqlalchemy():
    code = (
        "import sys, portal_agent.cli; "
        "print(sorted(m for m in ('flask', 'sqlalchemy', 'werkzeug') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
