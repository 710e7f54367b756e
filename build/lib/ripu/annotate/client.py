"""A Label Studio server over its HTTP API, authenticated as its users are (``Token``).

Plain ``urllib``: the server's own package pins ~150 packages, so it runs in its own
environment and this project talks to it only over HTTP. Every failure (server down,
refused token, an unexpected answer) is one :class:`AnnotateError` line naming the URL.
The token is read from the environment or a file and never printed.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from ripu.config import AnnotateConfig
from ripu.errors import RipuError

TIMEOUT_S = 60.0


class AnnotateError(RipuError):
    """Label Studio is unreachable, refuses the token, or holds labels ripu refuses."""


def read_token(cfg: AnnotateConfig) -> str:
    """The API token from ``$token_env``, else from ``token_file``; AnnotateError if none."""
    token = os.environ.get(cfg.token_env, "").strip()
    if not token and cfg.token_file:
        path = Path(cfg.token_file).expanduser()
        try:
            token = path.read_text().strip()
        except OSError as err:
            raise AnnotateError(f"annotate.token_file {path}: cannot read it "
                                f"({err.strerror}); expected a file holding the Label Studio "
                                f"token") from None
    if not token:
        where = f"${cfg.token_env}" + (f" or {cfg.token_file}" if cfg.token_file else "")
        raise AnnotateError(f"no Label Studio token in {where}; expected the token of "
                            f"Account & Settings (set annotate.token_env / token_file)")
    return token


class Studio:
    """One server: ``call(method, path, body)`` -> parsed JSON."""

    def __init__(self, url: str, token: str) -> None:
        if urllib.parse.urlparse(url).scheme not in ("http", "https"):
            raise AnnotateError(f"annotate.url {url!r}: expected an http:// or https:// URL")
        self.url = url.rstrip("/")
        self._token = token

    def __repr__(self) -> str:  # never shows the token
        return f"Studio({self.url!r})"

    def call(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
             content_type: str = "application/json") -> Any:
        """``method path`` with ``body`` as JSON (or ``raw`` bytes); the answer's JSON."""
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 (scheme checked in __init__)
            self.url + path, data=data, method=method,
            headers={"Authorization": f"Token {self._token}",
                     "Content-Type": content_type, "Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as answer:  # noqa: S310
                text = answer.read()
        except urllib.error.HTTPError as err:
            raise self._refused(method, path, err) from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise AnnotateError(f"Label Studio at {self.url} is not reachable ({reason}); "
                                f"expected a running server (label-studio start)") from None
        try:
            return json.loads(text) if text else None
        except ValueError:
            raise AnnotateError(f"Label Studio at {self.url}: {method} {path} answered "
                                f"something other than JSON; expected its API") from None

    def _refused(self, method: str, path: str, err: urllib.error.HTTPError) -> AnnotateError:
        if err.code in (401, 403):
            return AnnotateError(f"Label Studio at {self.url} refused the token (HTTP "
                                 f"{err.code}); expected a valid token of a user of this "
                                 f"server")
        detail = err.read()[:200].decode(errors="replace").replace("\n", " ")
        return AnnotateError(f"Label Studio at {self.url}: {method} {path} failed with HTTP "
                             f"{err.code} ({detail})")

    def check(self) -> None:
        """Reachable and the token accepted (AnnotateError otherwise)."""
        self.call("GET", "/api/projects?page_size=1")

    def upload(self, project: int, filename: str, content: bytes) -> str:
        """Store a file in ``project`` without making a task of it; the URL tasks use."""
        boundary = uuid.uuid4().hex
        raw = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
               f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
               ).encode() + content + f"\r\n--{boundary}--\r\n".encode()
        made = self.call("POST", f"/api/projects/{project}/import?commit_to_project=false",
                         raw=raw, content_type=f"multipart/form-data; boundary={boundary}")
        ids = made.get("file_upload_ids") or []
        files = self.call("GET", f"/api/projects/{project}/file-uploads?ids={json.dumps(ids)}")
        if len(ids) != 1 or not files:
            raise AnnotateError(f"Label Studio at {self.url}: uploading {filename} gave "
                                f"{made}; expected one stored file")
        return "/data/" + files[0]["file"]

    def pages(self, path: str) -> list[dict[str, Any]]:
        """Every item of a paginated list endpoint (``results`` of each page)."""
        items, page = [], 1
        while True:
            sep = "&" if "?" in path else "?"
            answer = self.call("GET", f"{path}{sep}page={page}&page_size=100")
            items += answer["results"]
            if not answer.get("next"):
                return items
            page += 1


def connect(cfg: AnnotateConfig) -> Studio:
    """The server of ``cfg``, checked: reachable, and the token accepted."""
    studio = Studio(str(cfg.url), read_token(cfg))
    studio.check()
    return studio
