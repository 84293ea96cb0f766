"""The production path: wheels built from the repository, installed into scratch virtualenvs with
no source tree beside them, serve the whole portal under gunicorn; the agent installs without the
server's libraries."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

pytestmark = pytest.mark.install

ROOT = Path(__file__).resolve().parents[2]
CONSTRAINTS = ROOT / "constraints.txt"
AGENT_PYTHON = "/root/.pyenv/versions/3.9.18/bin/python"  # Raspberry Pi OS bullseye's Python
SERVER_LIBRARIES = {"flask", "sqlalchemy", "psycopg", "werkzeug", "flask-admin", "alembic"}


def run(*args, timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kwargs)
    assert result.returncode == 0, f"{args}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def build_env() -> dict[str, str]:
    # Byte-compiling off (as some shells set it) makes setuptools warn about that, not our files.
    return {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def source_copy(dest: Path) -> Path:
    """The files of the tree that git does not ignore (what a fresh clone has, plus files not
    added yet), without this tree's build leftovers."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    )
    for name in listed.stdout.decode().split("\0"):
        if name and (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    return dest


def build_wheel(project: Path, outdir: Path) -> tuple[Path, str]:
    """``python -m build`` (an sdist, then the wheel from it); the wheel and the build's output."""
    result = run(
        sys.executable, "-m", "build", "--outdir", str(outdir), str(project), env=build_env()
    )
    wheels = list(outdir.glob("*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0], result.stdout + result.stderr


@pytest.fixture(scope="module")
def wheels(tmp_path_factory):
    src = source_copy(tmp_path_factory.mktemp("src"))
    server, server_log = build_wheel(src, tmp_path_factory.mktemp("dist"))
    agent, agent_log = build_wheel(src / "agent", tmp_path_factory.mktemp("dist-agent"))
    return {"server": server, "agent": agent, "logs": server_log + agent_log}


@pytest.fixture(scope="module")
def server_venv(wheels, tmp_path_factory):
    venv = tmp_path_factory.mktemp("server-venv")
    run(sys.executable, "-m", "venv", str(venv))
    run(
        str(venv / "bin/pip"), "install", "--quiet", "-c", str(CONSTRAINTS),
        f"{wheels['server']}[postgres,prod]",
    )  # fmt: skip
    return venv


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Installed:
    """One installed portal: its venv, a database, an instance folder, a gunicorn."""

    def __init__(self, venv: Path, database_url: str, workdir: Path) -> None:
        self.venv, self.workdir = venv, workdir
        self.env = {
            **os.environ,
            "PORTAL_DATABASE_URL": database_url,
            "PORTAL_INSTANCE_PATH": str(workdir / "instance"),
            "FLASK_APP": "portal",
        }
        self.env.pop("PORTAL_SECRET_KEY", None)  # generated into the instance folder
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def flask(self, *args: str) -> str:
        result = run(str(self.venv / "bin/flask"), *args, cwd=self.workdir, env=self.env)
        return result.stdout

    def serve(self) -> None:
        log = open(self.workdir / "gunicorn.log", "wb")  # noqa: SIM115  (closed by stop())
        self.process = subprocess.Popen(
            [str(self.venv / "bin/gunicorn"), "-w", "2", "-b", f"127.0.0.1:{self.port}",
             "portal:create_app()"],
            cwd=self.workdir, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        self._log = log
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log_tail()
            try:
                if requests.get(self.base + "/healthz", timeout=30).status_code == 200:
                    return
            except requests.RequestException:  # not listening yet, or a slow first answer
                pass
            time.sleep(0.2)
        raise AssertionError("gunicorn did not answer /healthz in 120 s\n" + self.log_tail())

    def log_tail(self) -> str:
        return (self.workdir / "gunicorn.log").read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)
        if self.process:
            self._log.close()


@pytest.fixture
def installed(server_venv, empty_database, tmp_path):
    portal = Installed(server_venv, empty_database, tmp_path)
    portal.flask("db", "upgrade")
    portal.flask("users", "create", "admin", "--role", "admin", "--password", "s3cret-pass")
    try:
        portal.serve()
        yield portal
    finally:
        portal.stop()


def test_the_wheels_build_without_warnings(wheels):
    warnings = [line for line in wheels["logs"].splitlines() if re.search("warn", line, re.I)]
    assert warnings == []


def test_the_server_wheel_carries_templates_static_files_and_migrations(wheels):
    import zipfile

    names = set(zipfile.ZipFile(wheels["server"]).namelist())
    tracked = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "portal"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert {name for name in tracked if not name.endswith(".py")} <= names
    assert {name for name in tracked if name.endswith(".py")} <= names
    assert not any(name.startswith(("tests/", "bench/", "portal_agent/")) for name in names)


def test_an_installed_portal_migrates_and_serves_login_health_and_static_files(installed):
    assert not (installed.workdir / "wsgi.py").exists()  # nothing from the source tree
    for path in ("/login", "/healthz", "/static/portal.css", "/static/vendor/uplot/uPlot.min.css"):
        response = requests.get(installed.base + path, timeout=30)
        assert response.status_code == 200, (path, response.text[:300])
    assert requests.get(installed.base + "/healthz", timeout=30).json() == {"status": "ok"}


def login(portal: Installed) -> requests.Session:
    session = requests.Session()
    page = session.get(portal.base + "/login", timeout=30).text
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    response = session.post(
        portal.base + "/login",
        data={"username": "admin", "password": "s3cret-pass", "csrf_token": token},
        allow_redirects=False,
        timeout=30,
    )
    assert response.status_code == 302, response.text[:500]
    return session


def admin_links(html: str) -> set[str]:
    return {link for link in re.findall(r'href="(/admin/[^"#?]*)', html) if "/static/" not in link}


def test_an_installed_portal_serves_every_admin_page_and_the_device_api(installed):
    person = installed.flask("users", "token", "admin").strip()
    device = json.loads(installed.flask("devices", "create", "pump-1", "--owner", "admin"))
    person_headers = {"Authorization": f"Bearer {person}"}
    device_headers = {"Authorization": f"Bearer {device['token']}"}
    api = installed.base + "/api/v1"

    upload = requests.post(
        api + "/device/readings",
        json={"readings": [{"metric": "temperature", "value": 21.5}]},
        headers=device_headers,
        timeout=30,
    )
    assert upload.status_code == 201, upload.text
    command = requests.post(
        f"{api}/devices/{device['id']}/commands",
        json={"action": "relay.on", "payload": {"seconds": 5}},
        headers=person_headers,
        timeout=30,
    )
    assert command.status_code == 201, command.text
    polled = requests.get(api + "/device/commands", headers=device_headers, timeout=30).json()
    assert [c["action"] for c in polled["commands"]] == ["relay.on"]
    assert requests.get(api + "/openapi.json", timeout=30).json()["openapi"].startswith("3.1")

    session = login(installed)
    seen, queue = set(), ["/admin/", f"/admin/devices/details/?id={device['id']}"]
    while queue and len(seen) < 60:
        path = queue.pop()
        if path in seen:
            continue
        seen.add(path)
        response = session.get(installed.base + path, timeout=20)
        assert response.status_code == 200, (path, response.text[:500])
        queue.extend(link for link in admin_links(response.text) if "/delete/" not in link)
    views = ("devices", "schedules", "commands", "readings", "users", "tokens", "audit", "account")
    assert {f"/admin/{view}/" for view in views} <= seen
    assert any("/new/" in path for path in seen)


def site_packages_bytes(venv: Path) -> int:
    """What the installed distributions take, besides the pip and setuptools venv brings."""
    (site,) = venv.glob("lib/python*/site-packages")
    venv_own = ("pip", "setuptools", "_distutils_hack", "pkg_resources", "distutils-precedence")
    return sum(
        f.stat().st_size
        for f in site.rglob("*")
        if f.is_file() and not f.relative_to(site).parts[0].startswith(venv_own)
    )


@pytest.mark.skipif(not os.path.exists(AGENT_PYTHON), reason=f"needs {AGENT_PYTHON}")
def test_the_agent_installs_on_python_3_9_without_the_servers_libraries(
    wheels, installed, tmp_path
):
    venv = tmp_path / "agent-venv"
    run(AGENT_PYTHON, "-m", "venv", str(venv))
    # No constraints file here: it pins what CI tested on the server's Python 3.11 (requests
    # 2.34 needs 3.10); on 3.9 pip picks the newest versions the agent's ranges allow there.
    run(str(venv / "bin/pip"), "install", "--quiet", str(wheels["agent"]))
    names = installed_names_from(venv)
    assert "portal-agent" in names and "requests" in names
    assert names & SERVER_LIBRARIES == set()

    device = json.loads(installed.flask("devices", "create", "board-1", "--owner", "admin"))
    result = subprocess.run(
        [str(venv / "bin/portal-agent"), "--url", installed.base, "--token", device["token"],
         "--state-dir", str(tmp_path / "state"), "--once"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    readings = requests.get(
        f"{installed.base}/api/v1/devices/{device['id']}/readings",
        headers={"Authorization": f"Bearer {installed.flask('users', 'token', 'admin').strip()}"},
        timeout=30,
    ).json()["items"]
    assert readings, "the agent's readings reached the portal"
    print(f"agent venv site-packages: {site_packages_bytes(venv) / 1e6:.1f} MB")


def installed_names_from(venv: Path) -> set[str]:
    """Distributions in a venv made without pip (so nothing but what was installed)."""
    (site,) = venv.glob("lib/python*/site-packages")
    return {re.sub(r"[-_.]+", "-", d.name.split("-")[0]).lower() for d in site.glob("*.dist-info")}
