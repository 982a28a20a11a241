"""The README's examples run as written, in a real shell, so they never drift."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

README = (Path(__file__).resolve().parents[1] / "README.md").read_text("utf-8")
BIN = Path(sys.executable).parent


def block(after: str, fence: str = "```sh") -> str:
    return README.split(after, 1)[1].split(fence, 1)[1].split("```", 1)[0]


def run(script: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SAKSI_")}
    environment.update(PATH=f"{BIN}:{environment['PATH']}", **env)
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def test_using_it_runs_as_written(tmp_path: Path) -> None:
    result = run(block("## Using it"), tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "ok: 4 entries" in result.stdout
    assert "ok: selective bundle, 4 entries" in result.stdout
    assert len([line for line in result.stdout.splitlines() if " sha256:" in line]) == 6


def listens(pid: int, port: int) -> bool:
    """Whether process ``pid`` itself holds the listening socket on ``port`` (another
    test's server may have taken the port between our choosing it and binding it)."""
    try:
        ours = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
        table = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return False
    return any(f"socket:[{fields[9]}]" in ours for fields in (line.split() for line in table)
               if fields[1].endswith(f":{port:04X}") and fields[3] == "0A")  # 0A: LISTEN


def demo_server(cwd: Path) -> tuple[subprocess.Popen[bytes], int]:
    """``saksi serve --demo`` in ``cwd`` on a free port, answering; tried on another
    port when the chosen one was taken meanwhile (the server then exits)."""
    for _ in range(3):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = subprocess.Popen([str(BIN / "saksi"), "serve", "--demo", "--port", str(port)], cwd=cwd,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + 120
        while server.poll() is None and time.monotonic() < deadline:
            if listens(server.pid, port):
                httpx.get(f"http://127.0.0.1:{port}/v1/log/key", timeout=10).raise_for_status()
                return server, port
            time.sleep(0.5)
        server.kill()
        server.wait()
    raise AssertionError("saksi serve --demo did not come up on any of three ports")


def test_walkthrough_runs_against_the_demo_server(tmp_path: Path) -> None:
    server, port = demo_server(tmp_path)
    try:
        script = block("## Walkthrough", "```sh walkthrough").replace("127.0.0.1:8000", f"127.0.0.1:{port}")
        result = run(script, tmp_path)
        assert result.returncode == 0, result.stderr[-2000:]
        assert "ok: entry 800" in result.stdout
        assert '"receiver":"kpps-18.72.01.1001.001"' in result.stdout
    finally:
        server.terminate()
        server.wait(timeout=30)
