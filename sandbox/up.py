"""`ml-connector sandbox up`: serve sandboxes on their default ports until interrupted."""

from __future__ import annotations

import contextlib
import json
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ml_connector.sandbox.registry import SANDBOXES, create_sandbox, default_port
from ml_connector.sandbox.serve import SandboxServer
from ml_connector.sandbox.workspace import SANDBOX_ENV, refuse_to_overwrite, write_workspace

PUBSUB_PORT = 8705  # the Salesforce sandbox's Pub/Sub gRPC server (change data capture), beside its REST port
SIZE_OPTIONS = {"qad": ("customers", "items"),
                "zoho": ("vendors", "products", "accounts", "contacts", "purchase_orders", "sales_orders"),
                "salesforce": ("accounts", "contacts", "products", "orders")}


#: Server-side job clocks sped up for a local run (nothing else changes): Marketo moves an export job's status at
#: most every 60 s, so a first sync of its activity history would wait minutes for a simulator.
FAST_JOBS: dict[str, dict[str, Any]] = {"marketo": {"bulk_status_seconds": 0}}


def serve_sandboxes(names: list[str] | None, *, host: str = "127.0.0.1", workspace_dir: Path | None = None,
                    sizes: dict[str, int] | None = None, echo: Callable[[str], Any] = print,
                    random_ports: bool = False, as_json: bool = False) -> None:
    """Start the named sandboxes (default: all), print where they are, block until SIGINT/SIGTERM.

    ``as_json``: one JSON line (URLs, workspace, credentials' variable names) instead of the human lines.
    """
    if workspace_dir is not None:
        refuse_to_overwrite(workspace_dir, "sandbox up")  # before any port is taken
    server = SandboxServer(host=host)
    streams: list[Any] = []
    urls: dict[str, str] = {}
    try:
        for name in names or list(SANDBOXES):
            options = {key: value for key, value in (sizes or {}).items() if key in SIZE_OPTIONS.get(name, ())}
            sandbox = create_sandbox(name, **options, **FAST_JOBS.get(name, {}))
            served = server.start(name, sandbox, 0 if random_ports else default_port(name))
            urls[name] = served.url
            if not as_json:
                echo(f"{name:10} {served.url}   (admin: {served.url}/_admin/requests)")
            if name == "salesforce":  # its change events: the Pub/Sub gRPC API on a port of its own
                from ml_connector.sandbox.salesforce.pubsub import start_pubsub

                stream = start_pubsub(sandbox, host=host, port=0 if random_ports else PUBSUB_PORT)
                streams.append(stream)
                urls["salesforce_pubsub"] = f"{host}:{stream.port}"
                if not as_json:
                    echo(f"{'':10} {host}:{stream.port}   (Pub/Sub gRPC, plain text: change data capture)")
        path = write_workspace(workspace_dir, urls, overwrite=False) if workspace_dir is not None else None
        if as_json:
            echo(json.dumps({"urls": urls, "workspace": str(path) if path else None, "env": SANDBOX_ENV}))
        else:
            if path is not None:
                echo(f"workspace  {path}")
                echo("export the sandbox credentials before running the engine:")
                for key, value in SANDBOX_ENV.items():
                    echo(f"  export {key}='{value}'")
            echo("serving; press Ctrl-C to stop")
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    finally:
        for stream in streams:
            stream.stop()
        server.stop()
