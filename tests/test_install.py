"""`pip install .` (here: a wheel built from the checkout) gives a working app: installed into a fresh virtual
environment outside the checkout, `kefu db upgrade`, `kefu serve` and the pages, styles and scripts all work from
another directory (templates, static files and migrations travel inside the package)."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import httpx

from tests.support import ROOT, TEST_SECRET, free_port


def run(*command: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_a_wheel_installed_elsewhere_migrates_serves_and_shows_its_pages(tmp_path: Path) -> None:
    dist, elsewhere = tmp_path / "dist", tmp_path / "elsewhere"
    elsewhere.mkdir()
    run(sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "-q", "-w", dist, cwd=ROOT)
    [wheel] = dist.glob("kefu-*.whl")
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    site = Path(run(venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                    cwd=tmp_path).strip())
    # the dependencies from this test's environment (no network here); the app itself only from the wheel
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run(venv / "bin" / "python", "-m", "pip", "install", "--no-deps", "--no-index", "-q", wheel, cwd=tmp_path)
    where = run(venv / "bin" / "python", "-c", "import app; print(app.__file__)", cwd=elsewhere)
    assert where.strip().startswith(str(venv)), where

    env = {k: v for k, v in os.environ.items() if not k.startswith("KEFU_")}
    env |= {"KEFU_DATABASE_URL": f"sqlite:///{tmp_path / 'kefu.db'}", "KEFU_SECRET_KEY": TEST_SECRET,
            "KEFU_VAR_DIR": str(tmp_path / "var")}
    run(venv / "bin" / "kefu", "db", "upgrade", cwd=elsewhere, env=env)
    port = free_port()
    server = subprocess.Popen([str(venv / "bin" / "kefu"), "serve", "--port", str(port)], cwd=elsewhere, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx.get(base + "/healthz", timeout=2)
                break
            except httpx.HTTPError:
                assert server.poll() is None and time.monotonic() < deadline, "the installed server did not start"
                time.sleep(0.1)
        assert health.status_code == 200 and health.json()["database"] == "ok"
        login = httpx.get(base + "/login", timeout=10)
        assert login.status_code == 200 and "csrf-token" in login.text
        for asset in ("css/kefu.css", "js/kefu.js", "vendor/htmx-2.0.11.min.js"):
            assert f"/static/{asset}?v=" in login.text
            assert httpx.get(f"{base}/static/{asset}", timeout=10).status_code == 200, asset
        assert httpx.get(base + "/api/docs", timeout=10, follow_redirects=True).status_code == 200
    finally:
        server.terminate()
        server.wait(10)
