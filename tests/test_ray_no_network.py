"""Starting local Ray makes no connection off the machine (issue 16 item 7): Ray's dashboard asks the
cloud metadata address 169.254.169.254 which cloud it runs on; the planner's local start routes that
request to a refused loopback port, and the job's workers still see the user's own proxy settings.

Observed, not faked: every Python process Ray starts loads a ``sitecustomize`` that logs each socket
connect and name lookup to a file (the processes inherit PYTHONPATH); Ray itself runs unchanged.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

HOOK = '''
import os, socket
_log = os.environ.get("CONNECT_LOG")
if _log:
    def _note(kind, what):
        try:
            with open(_log, "a") as f:
                f.write(f"{os.getpid()} {kind} {what!r}\\n")
        except OSError:
            pass
    _connect, _connect_ex, _gai = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo
    def connect(self, addr):
        _note("connect", addr)
        return _connect(self, addr)
    def connect_ex(self, addr):
        _note("connect", addr)
        return _connect_ex(self, addr)
    def getaddrinfo(host, *a, **k):
        _note("lookup", host)
        return _gai(host, *a, **k)
    socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = connect, connect_ex, getaddrinfo
'''

DRIVER = textwrap.dedent('''
    import os, sys, time
    from scaling_planner.measure.ray_session import ray_session, DEAD_PROXY

    log = os.environ["CONNECT_LOG"]
    with ray_session() as ray:
        env = lambda: {k: os.environ.get(k) for k in ("http_proxy", "no_proxy", "HTTPS_PROXY")}
        print("driver", env())
        print("worker", ray.get(ray.remote(env).remote()))
        # wait (bounded) until the dashboard's usage module has asked which cloud this is: a connect to
        # the metadata address (the fault) or to the refused proxy (the fix)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            text = open(log).read() if os.path.exists(log) else ""
            if "169.254.169.254" in text or repr(("127.0.0.1", int(DEAD_PROXY.rsplit(":", 1)[1]))) in text:
                break
            time.sleep(0.5)
        else:
            print("the usage module never ran", file=sys.stderr)
            sys.exit(3)
''')


@pytest.mark.slow
def test_local_ray_makes_no_connection_to_the_cloud_metadata_address(tmp_path):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(HOOK)
    log = tmp_path / "connections.log"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "CONNECT_LOG": str(log),
           "PYTHONPATH": os.pathsep.join([str(hook), *filter(None, [os.environ.get("PYTHONPATH")])]),
           "http_proxy": "http://user-proxy.example:3128"}
    env.pop("HTTPS_PROXY", None)
    env.pop("no_proxy", None)
    proc = subprocess.run([sys.executable, "-c", DRIVER], capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    seen = log.read_text()
    assert "169.254.169.254" not in seen and "metadata.google.internal" not in seen, [
        line for line in seen.splitlines() if "169.254" in line or "metadata" in line]
    # the user's proxy settings are what this process and the job's workers see
    user = "'http_proxy': 'http://user-proxy.example:3128'"
    assert f"driver {{{user}, 'no_proxy': None, 'HTTPS_PROXY': None}}" in proc.stdout
    assert f"worker {{{user}, 'no_proxy': '', 'HTTPS_PROXY': ''}}" in proc.stdout
