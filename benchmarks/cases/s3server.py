"""moto's S3 server on 127.0.0.1 for the archive cases, and s3fs clients of it.

The server (``moto.server.ThreadedMotoServer``) runs in a child process, so that its Python
threads do not compete with the measured code for this process's interpreter lock; everything
talks HTTP to 127.0.0.1 only, with fake credentials and the EC2 metadata lookup disabled.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from benchmarks.runner import Context, Skip

_SERVER = """
import logging, os, sys
os.nice(NICENESS)
from moto.server import ThreadedMotoServer
logging.getLogger("werkzeug").setLevel(logging.ERROR)
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()  # until the parent closes our stdin (or dies)
server.stop()
"""

NICENESS = 19
"""moto's server stands in for S3, whose CPU time is spent on other machines: it runs at the
lowest priority here, so that it takes a core from the measured process as little as it can
(``WALSHIP_BENCH_MOTO_NICE`` sets another value; docs/PERFORMANCE.md shows both)."""

FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "walship-bench",
    "AWS_SECRET_ACCESS_KEY": "walship-bench",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


class MotoServer:
    """A running moto server; :meth:`stop` ends it."""

    def __init__(self) -> None:
        env = {**os.environ, **FAKE_ENV}
        nice = int(os.environ.get("WALSHIP_BENCH_MOTO_NICE", NICENESS))
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _SERVER.replace("NICENESS", str(nice))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline().strip()
        if not line.isdigit():
            self.stop()
            raise RuntimeError(f"moto server did not start (said {line!r})")
        self.endpoint_url = f"http://127.0.0.1:{int(line)}"

    @property
    def storage_options(self) -> dict[str, Any]:
        """fsspec/s3fs options that reach this server (and nothing else)."""
        return {
            "key": FAKE_ENV["AWS_ACCESS_KEY_ID"],
            "secret": FAKE_ENV["AWS_SECRET_ACCESS_KEY"],
            "endpoint_url": self.endpoint_url,
        }

    def filesystem(self) -> Any:
        import s3fs

        return s3fs.S3FileSystem(**self.storage_options, skip_instance_cache=True)

    def stop(self) -> None:
        if self._proc.poll() is None:
            assert self._proc.stdin is not None
            self._proc.stdin.close()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()


def server(ctx: Context) -> MotoServer:
    """The run's one moto server, started on first use and stopped when the run ends.

    Raises:
        Skip: s3fs or moto is not installed.
    """
    if "moto" not in ctx.shared:
        try:
            import moto.server  # noqa: F401
            import s3fs  # noqa: F401
        except ImportError as e:
            raise Skip(f"s3fs and moto[s3] are needed ({e}); pip install 'walship[test]'") from e
        for k, v in FAKE_ENV.items():
            os.environ[k] = v  # this process talks to the local server only
        ctx.say("starting moto's S3 server on 127.0.0.1")
        srv = MotoServer()
        # botocore reads this too: a client built without our storage options still lands here
        os.environ["AWS_ENDPOINT_URL"] = srv.endpoint_url
        ctx.shared["moto"] = srv
        ctx.on_exit(srv.stop)
    return ctx.shared["moto"]  # type: ignore[no-any-return]


def bucket(ctx: Context, name: str = "walship-bench") -> str:
    """Create (once) and return a bucket on the run's server."""
    key = f"bucket-{name}"
    if key not in ctx.shared:
        fs = server(ctx).filesystem()
        if not fs.exists(name):
            fs.mkdir(name)
        ctx.shared[key] = name
    return name
