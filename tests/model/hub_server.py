"""A local HTTP server on 127.0.0.1 that answers file requests the way the Hugging Face Hub does, so the real
huggingface_hub client (HEAD for metadata, GET with Range for resumed downloads) runs against it via its endpoint.

Answers `HEAD|GET /{repo_id}/resolve/{revision}/{filename}` with X-Repo-Commit, ETag and Content-Length; unknown
repositories get 401 + `X-Error-Code: RepoNotFound`, unknown revisions 404 + `RevisionNotFound`, missing files
404 + `EntryNotFound` (the hub's error contract). Faults for tests: `truncate` / `always_truncate` send half of
a listed file's (remaining) body and drop the connection, on the next GET / on every GET.
"""
from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<revision>[^/]+)/(?P<filename>.+)$")


@dataclass
class HubRepo:
    files: dict[str, bytes]
    commit: str = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class FakeHub:
    repos: dict[str, HubRepo] = field(default_factory=dict)
    truncate: set[str] = field(default_factory=set)  # file names whose next GET is cut in half
    always_truncate: set[str] = field(default_factory=set)  # file names whose every GET is cut in half
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # (method, path, Range header)

    def add_folder(self, repo_id: str, folder: Path) -> HubRepo:
        repo = HubRepo({p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()})
        self.repos[repo_id] = repo
        return repo


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hub: FakeHub

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def do_GET(self) -> None:
        self._answer(body=True)

    def _error(self, status: int, code: str, commit: str | None = None) -> None:
        self.send_response(status)
        self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", code)
        if commit:
            self.send_header("X-Repo-Commit", commit)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _answer(self, body: bool) -> None:
        hub = self.hub
        hub.requests.append((self.command, self.path, self.headers.get("Range")))
        match = _RESOLVE.match(self.path)
        repo = hub.repos.get(match["repo"]) if match else None
        if repo is None:
            return self._error(401, "RepoNotFound")
        if match["revision"] not in ("main", repo.commit):
            return self._error(404, "RevisionNotFound")
        data = repo.files.get(match["filename"])
        if data is None:
            return self._error(404, "EntryNotFound", repo.commit)
        start = int(re.match(r"bytes=(\d+)-", self.headers.get("Range", "bytes=0-"))[1])
        self.send_response(206 if start else 200)
        self.send_header("X-Repo-Commit", repo.commit)
        self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        self.send_header("Accept-Ranges", "bytes")
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        if not body:
            return
        name = match["filename"]
        if name in hub.always_truncate or name in hub.truncate:
            hub.truncate.discard(name)
            self.wfile.write(data[start:start + (len(data) - start) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(data[start:])


class HubServer:
    """Serve a FakeHub on 127.0.0.1 (a free port) from a background thread; `url` is the endpoint."""

    def __init__(self, hub: FakeHub):
        handler = type("Handler", (_Handler,), {"hub": hub})
        self.hub = hub
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "HubServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
