"""A small stand-in for the Hugging Face Hub, served on 127.0.0.1 inside the tests.

The Hub path (``blemore push``, ``--push-to-hub``, ``load_dataset(repo)``, ``from_pretrained(repo,
trust_remote_code=True, revision=sha)``) has to be exercised through the real ``huggingface_hub``, ``datasets`` and
``transformers`` clients, without the network. This module answers the HTTP endpoints those clients call, stores
repositories on disk with a real commit history (so branch names and commit shas both resolve), and can be told to
fail a chosen request so that tests can check what a half-finished push leaves behind.

What it implements (model, dataset and space repos; ``{t}`` is ``models``/``datasets``/``spaces``, ``{p}`` the URL
prefix ``""``/``datasets/``/``spaces/``):

* ``POST /api/repos/create``, ``GET /api/whoami-v2``, ``POST /api/validate-yaml``
* ``GET /api/{t}/{repo}`` and ``.../revision/{rev}`` (repo info with ``sha`` and ``siblings``)
* ``GET /api/{t}/{repo}/tree/{rev}[/{path}]``, ``POST /api/{t}/{repo}/paths-info/{rev}``
* ``GET /api/{t}/{repo}/refs``, ``GET /api/{t}/{repo}/commits/{rev}``, ``POST /api/{t}/{repo}/branch/{name}``
* ``POST /api/{t}/{repo}/preupload/{rev}``, ``POST /api/{t}/{repo}/commit/{rev}`` (ndjson)
* ``POST /{p}{repo}.git/info/lfs/objects/batch`` and ``PUT /lfs-objects/{t}/{repo}/{sha256}`` (basic LFS transfer)
* ``GET``/``HEAD /{p}{repo}/resolve/{rev}/{path}`` with ``ETag``, ``X-Repo-Commit``, ``X-Linked-Etag``/``-Size``,
  ``Content-Length`` and single ``Range`` requests.

Xet storage is not spoken: clients must run with ``HF_HUB_DISABLE_XET=1`` (``LocalHub.environment`` sets it).
Any token is accepted; writes and private repos need one, as on the Hub. Standard library only (plus PyYAML, which
``huggingface_hub`` itself depends on, to validate README metadata).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime
import fnmatch
import hashlib
import json
import os
import re
import threading
import traceback
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

REPO_TYPES = ("model", "dataset", "space")
URL_PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/"}
DEFAULT_USER = "local-user"
#: Files at least this large must go through LFS, whatever their name (the Hub's limit for plain git files).
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024
#: What a new repo's first commit holds: the binary formats the Hub stores with LFS.
INITIAL_GITATTRIBUTES = "".join(
    f"{pattern} filter=lfs diff=lfs merge=lfs -text\n"
    for pattern in (
        "*.parquet", "*.arrow", "*.safetensors", "*.bin", "*.pt", "*.pth", "*.ckpt", "*.onnx", "*.npy", "*.npz",
        "*.h5", "*.msgpack", "*.zip", "*.gz", "*.tar", "*.mov", "*.mp4", "*.wav", "*.flac", "*.mp3",
    )
)


class HubError(Exception):
    """An HTTP error answer, with the ``X-Error-Code`` the clients map to their exception types."""

    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


def _now() -> str:
    """The Hub's timestamp format (the clients parse exactly this)."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


@dataclasses.dataclass
class Fault:
    """Answer the matching requests ``after``+1 … ``after``+``times`` of ``route`` with ``status``."""

    route: str
    status: int = 500
    times: int = 1
    after: int = 0
    seen: int = 0

    def trips(self, route: str) -> bool:
        if route != self.route:
            return False
        self.seen += 1
        return self.after < self.seen <= self.after + self.times


class RepoStore:
    """One repository on disk: content-addressed blobs, one JSON file per commit (a full snapshot), and refs.

    A commit maps every path to ``{"size", "sha256", "lfs"}``; keeping whole snapshots makes any old commit sha
    resolve without replaying history, which is all a pinned ``revision=`` needs.
    """

    def __init__(self, root: Path):
        self.root = root
        self.objects = root / "objects"
        self.commits = root / "commits"
        self.refs_file = root / "refs.json"

    @property
    def exists(self) -> bool:
        return self.refs_file.exists()

    def create(self, private: bool) -> None:
        for folder in (self.objects, self.commits):
            folder.mkdir(parents=True, exist_ok=True)
        self._write_refs({"private": private, "branches": {}})
        files = {".gitattributes": self.store_blob(INITIAL_GITATTRIBUTES.encode(), lfs=False)}
        self.write_commit("main", None, files, "initial commit", "")

    # -- refs and commits --------------------------------------------------------------------------------------

    def refs(self) -> dict:
        return json.loads(self.refs_file.read_text())

    def _write_refs(self, refs: dict) -> None:
        tmp = self.refs_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(refs, indent=1))
        os.replace(tmp, self.refs_file)

    @property
    def private(self) -> bool:
        return self.refs()["private"]

    def resolve(self, revision: str) -> str:
        """A branch name or a full commit sha → the commit sha; ``HubError`` 404 otherwise."""
        branches = self.refs()["branches"]
        if revision in branches:
            return branches[revision]
        if re.fullmatch(r"[0-9a-f]{40}", revision) and (self.commits / f"{revision}.json").exists():
            return revision
        raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    def commit(self, oid: str) -> dict:
        return json.loads((self.commits / f"{oid}.json").read_text())

    def files(self, revision: str) -> tuple[str, dict[str, dict]]:
        oid = self.resolve(revision)
        return oid, self.commit(oid)["files"]

    def write_commit(self, branch: str, parent: str | None, files: dict, title: str, message: str) -> str:
        record = {"parents": [parent] if parent else [], "title": title, "message": message, "date": _now(),
                  "authors": [DEFAULT_USER], "files": files}
        oid = hashlib.sha1(json.dumps(record, sort_keys=True).encode()).hexdigest()
        record["id"] = oid
        (self.commits / f"{oid}.json").write_text(json.dumps(record))
        refs = self.refs()
        refs["branches"][branch] = oid
        self._write_refs(refs)
        return oid

    def history(self, revision: str) -> Iterator[dict]:
        oid: str | None = self.resolve(revision)
        while oid:
            record = self.commit(oid)
            yield record
            oid = record["parents"][0] if record["parents"] else None

    # -- blobs -------------------------------------------------------------------------------------------------

    def store_blob(self, data: bytes, lfs: bool) -> dict:
        sha256 = hashlib.sha256(data).hexdigest()
        path = self.objects / sha256
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        return self.entry(sha256, len(data), lfs, data)

    def has_object(self, sha256: str, size: int) -> bool:
        path = self.objects / sha256
        return path.exists() and path.stat().st_size == size

    def entry(self, sha256: str, size: int, lfs: bool, data: bytes | None = None) -> dict:
        """What a commit records for one file; ``oid`` is the git blob id (of the pointer, for an LFS file)."""
        if lfs:
            oid = git_blob_oid(lfs_pointer(sha256, size))
        else:
            oid = git_blob_oid(data if data is not None else self.read(sha256))
        return {"sha256": sha256, "size": size, "lfs": lfs, "oid": oid}

    def read(self, sha256: str) -> bytes:
        return (self.objects / sha256).read_bytes()

    def is_lfs(self, path: str, size: int, sample: bytes, files: dict[str, dict]) -> bool:
        """The Hub's rule: LFS when ``.gitattributes`` says so, when the file is large, or when it looks binary."""
        if size >= LFS_SIZE_THRESHOLD or b"\0" in sample:
            return True
        attributes = files.get(".gitattributes")
        if attributes is None:
            return False
        name = path.rsplit("/", 1)[-1]
        for line in self.read(attributes["sha256"]).decode().splitlines():
            pattern, *attrs = line.split()
            if "filter=lfs" in attrs and (fnmatch.fnmatch(name, pattern) or fnmatch.fnmatch(path, pattern)):
                return True
        return False


class LocalHub:
    """The server. Use as a context manager (or ``start()``/``close()``); ``url`` is the endpoint.

    ``fail(route, status=500, times=1, after=0)`` makes the server answer requests of one route with an error,
    e.g. ``fail("lfs-upload", after=1)`` fails the second LFS object upload and ``fail("commit")`` the next commit.
    ``requests`` records ``(method, route, path)`` of everything served; ``unrouted`` the requests it did not know.
    """

    ROUTES = ("create-repo", "whoami", "validate-yaml", "repo-info", "tree", "paths-info", "refs", "commits",
              "branch", "preupload", "commit", "lfs-batch", "lfs-upload", "resolve")

    def __init__(self, root: str | os.PathLike, user: str = DEFAULT_USER):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.user = user
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str, str]] = []
        self.unrouted: list[str] = []
        self.lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def start(self) -> LocalHub:
        hub = self

        class Handler(_HubRequestHandler):
            pass

        Handler.hub = hub
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="local-hub", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> LocalHub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def environment(self, home: str | os.PathLike, token: str = "local-hub-dummy-token") -> dict[str, str]:
        """Environment variables that point every client at this server and keep all caches under ``home``.

        Every other host goes through a proxy address where nothing listens, so a client that reaches beyond the
        stand-in fails at once instead of touching the network (``datasets`` asks for the dataset viewer's
        ``/info`` on ``datasets-server.<endpoint host>``; it treats a failure there as "no viewer data").
        """
        home = Path(home)
        dead_proxy = "http://127.0.0.1:9"
        proxies = {name: value for key, value in (("http_proxy", dead_proxy), ("https_proxy", dead_proxy),
                                                  ("all_proxy", dead_proxy), ("no_proxy", "127.0.0.1,localhost"))
                   for name in (key, key.upper())}
        return proxies | {
            "HF_ENDPOINT": self.url,
            "HF_TOKEN": token,
            "HF_HOME": str(home),
            "HF_HUB_CACHE": str(home / "hub"),
            "HF_DATASETS_CACHE": str(home / "datasets"),
            "HF_MODULES_CACHE": str(home / "modules"),
            "HF_HUB_DISABLE_XET": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_OFFLINE": "0",
            "HF_DATASETS_OFFLINE": "0",
        }

    # -- test helpers ------------------------------------------------------------------------------------------

    def fail(self, route: str, status: int = 500, times: int = 1, after: int = 0) -> None:
        if route not in self.ROUTES:
            raise ValueError(f"unknown route {route!r}; one of {', '.join(self.ROUTES)}")
        self.faults.append(Fault(route, status, times, after))

    def repo(self, repo_id: str, repo_type: str = "model") -> RepoStore:
        namespace, name = repo_id.split("/")
        return RepoStore(self.root / f"{repo_type}s" / namespace / name)

    def branch_head(self, repo_id: str, repo_type: str = "model", branch: str = "main") -> str:
        return self.repo(repo_id, repo_type).resolve(branch)


def run_local_hub(tmp_path: str | os.PathLike) -> contextlib.AbstractContextManager[LocalHub]:
    """``with run_local_hub(tmp_path) as hub: ...`` serves repos stored under ``tmp_path/local_hub``."""
    return LocalHub(Path(tmp_path) / "local_hub")


class _HubRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hub: LocalHub
    server_version = "local-hub/1"

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's signature
        pass  # tests read `hub.requests` instead of a noisy access log

    # -- plumbing ----------------------------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline().strip():  # trailers
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None,
              content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _json(self, payload, status: int = 200, headers: dict | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), headers)

    def _error(self, error: HubError) -> None:
        headers = {"X-Error-Message": error.message.splitlines()[0][:500]}
        if error.code:
            headers["X-Error-Code"] = error.code
        self._json({"error": error.message}, error.status, headers)

    def _dispatch(self, method: str) -> None:
        hub = self.hub
        split = urlsplit(self.path)
        self.query = parse_qs(split.query)
        self.segments = [unquote(s) for s in split.path.split("/")[1:]]
        body = self._read_body() if method in ("POST", "PUT") else b""
        try:
            route, handler = self._route(method)
            hub.requests.append((method, route or "?", split.path))
            if route is None:
                hub.unrouted.append(f"{method} {self.path}")
                raise HubError(404, f"local hub: no route for {method} {split.path}")
            with hub.lock:
                tripped = [fault for fault in hub.faults if fault.trips(route)]
            if tripped:
                fault = tripped[0]
                raise HubError(fault.status, f"local hub: injected failure of {route} ({fault.status})")
            handler(body)
        except HubError as error:
            self._error(error)
        except Exception as error:  # a bug in the stand-in must show up, not hang the client
            traceback.print_exc()
            self._error(HubError(500, f"local hub crashed: {type(error).__name__}: {error}"))

    def _route(self, method: str):
        """(route name, bound handler) for the request, or (None, None)."""
        s = self.segments
        if s[:1] == ["api"]:
            if s[1:] == ["repos", "create"] and method == "POST":
                return "create-repo", self.create_repo
            if s[1:] == ["whoami-v2"] and method == "GET":
                return "whoami", self.whoami
            if s[1:] == ["validate-yaml"] and method == "POST":
                return "validate-yaml", self.validate_yaml
            if len(s) >= 4 and s[1].endswith("s") and s[1][:-1] in REPO_TYPES:
                self.repo_type, self.repo_id, rest = s[1][:-1], f"{s[2]}/{s[3]}", s[4:]
                action = rest[0] if rest else None
                table = {
                    ("GET", None): ("repo-info", self.repo_info),
                    ("GET", "revision"): ("repo-info", self.repo_info),
                    ("GET", "tree"): ("tree", self.tree),
                    ("POST", "paths-info"): ("paths-info", self.paths_info),
                    ("GET", "refs"): ("refs", self.list_refs),
                    ("GET", "commits"): ("commits", self.list_commits),
                    ("POST", "branch"): ("branch", self.create_branch),
                    ("POST", "preupload"): ("preupload", self.preupload),
                    ("POST", "commit"): ("commit", self.commit),
                }
                if (method, action) in table:
                    self.rest = rest[1:]
                    return table[(method, action)]
                if action and action.startswith("xet-"):
                    raise HubError(501, "local hub: Xet storage is not implemented; run the client with "
                                        "HF_HUB_DISABLE_XET=1")
            return None, None
        if s[:1] == ["lfs-objects"] and method == "PUT" and len(s) == 5:
            self.repo_type, self.repo_id, self.rest = s[1][:-1], f"{s[2]}/{s[3]}", s[4:]
            return "lfs-upload", self.lfs_upload
        repo_type = "model"
        if s and s[0] in ("datasets", "spaces"):
            repo_type, s = s[0][:-1], s[1:]
        if len(s) >= 2 and method == "POST" and s[1].endswith(".git") and s[2:] == ["info", "lfs", "objects", "batch"]:
            self.repo_type, self.repo_id = repo_type, f"{s[0]}/{s[1][:-4]}"
            return "lfs-batch", self.lfs_batch
        if len(s) >= 5 and s[2] == "resolve" and method in ("GET", "HEAD"):
            self.repo_type, self.repo_id, self.rest = repo_type, f"{s[0]}/{s[1]}", s[3:]
            return "resolve", self.resolve
        return None, None

    # -- helpers -----------------------------------------------------------------------------------------------

    @property
    def authorized(self) -> bool:
        return self.headers.get("Authorization", "").startswith("Bearer ") and len(self.headers["Authorization"]) > 7

    def require_token(self) -> None:
        if not self.authorized:
            raise HubError(401, "Invalid credentials in Authorization header (the local hub accepts any token)")

    def store(self, readable: bool = True) -> RepoStore:
        if self.repo_type not in REPO_TYPES:
            raise HubError(400, f"unknown repo type {self.repo_type!r}")
        repo = self.hub.repo(self.repo_id, self.repo_type)
        if not repo.exists or (readable and repo.private and not self.authorized):
            raise HubError(404, f"Repository not found: {self.repo_type} {self.repo_id}", "RepoNotFound")
        return repo

    def repo_url(self) -> str:
        return f"{self.hub.url}/{URL_PREFIXES[self.repo_type]}{self.repo_id}"

    @staticmethod
    def path_info(path: str, entry: dict) -> dict:
        info = {"type": "file", "oid": entry["oid"], "size": entry["size"], "path": path}
        if entry["lfs"]:
            pointer_size = len(lfs_pointer(entry["sha256"], entry["size"]))
            info["lfs"] = {"oid": entry["sha256"], "size": entry["size"], "pointerSize": pointer_size}
        return info

    @staticmethod
    def folder_info(path: str, commit_oid: str) -> dict:
        return {"type": "directory", "oid": hashlib.sha1(f"{commit_oid}:{path}".encode()).hexdigest(), "path": path}

    def expand(self, repo: RepoStore, revision: str, info: dict) -> dict:
        """``expand=True`` adds the last commit that touched the path and a (always clean) security scan."""
        path, last = info["path"], None
        for record in repo.history(revision):
            here = {p: e["oid"] for p, e in record["files"].items() if p == path or p.startswith(path + "/")}
            if last is not None and here != last[1]:
                break
            last = (record, here)
        record = last[0]
        info["lastCommit"] = {"id": record["id"], "title": record["title"], "date": record["date"]}
        if info["type"] == "file":
            info["securityFileStatus"] = {"status": "safe", "avScan": {"virusFound": False, "virusNames": None},
                                          "pickleImportScan": None}
        return info

    # -- endpoints: account and validation ---------------------------------------------------------------------

    def whoami(self, body: bytes) -> None:
        self.require_token()
        self._json({"type": "user", "name": self.hub.user, "fullname": self.hub.user, "orgs": [],
                    "auth": {"type": "access_token", "accessToken": {"displayName": "local", "role": "write"}}})

    def validate_yaml(self, body: bytes) -> None:
        import yaml  # a dependency of huggingface_hub, so always present where its clients are

        content = json.loads(body)["content"]
        match = re.match(r"^---\s*\n(.*?)\n---\s*\n", content, re.DOTALL)
        if match is None:
            self._json({"errors": [], "warnings": [{"message": "empty or missing yaml metadata in repo card"}]})
            return
        try:
            metadata = yaml.safe_load(match.group(1))
        except yaml.YAMLError as error:
            self._json({"errors": [{"message": f"invalid YAML: {error}"}], "warnings": []}, 400)
            return
        if metadata is not None and not isinstance(metadata, dict):
            self._json({"errors": [{"message": "YAML metadata must be a mapping"}], "warnings": []}, 400)
            return
        self._json({"errors": [], "warnings": []})

    # -- endpoints: repos --------------------------------------------------------------------------------------

    def create_repo(self, body: bytes) -> None:
        self.require_token()
        payload = json.loads(body)
        self.repo_type = payload.get("type") or "model"
        self.repo_id = f"{payload.get('organization') or self.hub.user}/{payload['name']}"
        if self.repo_type not in REPO_TYPES:
            raise HubError(400, f"unknown repo type {self.repo_type!r}")
        repo = self.hub.repo(self.repo_id, self.repo_type)
        with self.hub.lock:
            if repo.exists:
                self._json({"error": "You already created this repo", "url": self.repo_url()}, 409)
                return
            private = payload.get("visibility", "private" if payload.get("private") else "public") != "public"
            repo.create(private=private)
        self._json({"url": self.repo_url(), "name": self.repo_id, "id": self.repo_id})

    def repo_info(self, body: bytes) -> None:
        repo = self.store()
        revision = self.rest[0] if self.rest else "main"
        oid, files = repo.files(revision)
        record = repo.commit(oid)
        namespace, _ = self.repo_id.split("/")
        siblings = []
        for path, entry in sorted(files.items()):
            sibling = {"rfilename": path, "size": entry["size"], "blobId": entry["oid"]}
            if entry["lfs"]:
                sibling["lfs"] = self.path_info(path, entry)["lfs"] | {"sha256": entry["sha256"]}
            siblings.append(sibling)
        self._json({"id": self.repo_id, "author": namespace, "sha": oid, "lastModified": record["date"],
                    "createdAt": next(iter(reversed(list(repo.history(oid)))))["date"], "private": repo.private,
                    "gated": False, "disabled": False, "downloads": 0, "likes": 0, "tags": [], "siblings": siblings})

    def tree(self, body: bytes) -> None:
        repo = self.store()
        if not self.rest:
            raise HubError(400, "missing revision")
        revision, prefix = self.rest[0], "/".join(self.rest[1:]).strip("/")
        oid, files = repo.files(revision)
        recursive = self.query.get("recursive", ["false"])[0].lower() in ("1", "true")
        expand = self.query.get("expand", ["false"])[0].lower() in ("1", "true")
        if prefix and prefix in files:
            raise HubError(400, f"{prefix} is a file, not a folder")
        base = prefix + "/" if prefix else ""
        entries: dict[str, dict] = {}
        for path, entry in files.items():
            if not path.startswith(base):
                continue
            parts = path[len(base):].split("/")
            for depth in range(1, len(parts)):  # folders along the way
                folder = base + "/".join(parts[:depth])
                if recursive or depth == 1:
                    entries.setdefault(folder, self.folder_info(folder, oid))
            if recursive or len(parts) == 1:
                entries[path] = self.path_info(path, entry)
        if prefix and not entries:
            raise HubError(404, f"{prefix} does not exist at {revision}", "EntryNotFound")
        listing = [entries[p] for p in sorted(entries)]
        if expand:
            listing = [self.expand(repo, oid, info) for info in listing]
        self._json(listing)

    def paths_info(self, body: bytes) -> None:
        repo = self.store()
        form = parse_qs(body.decode())
        oid, files = repo.files(self.rest[0])
        expand = form.get("expand", ["False"])[0].lower() in ("1", "true")
        listing = []
        for path in form.get("paths", []):
            path = path.strip("/")
            if path in files:
                listing.append(self.path_info(path, files[path]))
            elif path == "" or any(p.startswith(path + "/") for p in files):
                listing.append(self.folder_info(path, oid))
        if expand:
            listing = [self.expand(repo, oid, info) for info in listing]
        self._json(listing)

    def list_refs(self, body: bytes) -> None:
        repo = self.store()
        branches = [{"name": name, "ref": f"refs/heads/{name}", "targetCommit": oid}
                    for name, oid in sorted(repo.refs()["branches"].items())]
        self._json({"branches": branches, "converts": [], "tags": [], "pullRequests": []})

    def list_commits(self, body: bytes) -> None:
        repo = self.store()
        self._json([{"id": r["id"], "title": r["title"], "message": r["message"], "date": r["date"],
                     "authors": [{"user": user} for user in r["authors"]]} for r in repo.history(self.rest[0])])

    def create_branch(self, body: bytes) -> None:
        self.require_token()
        repo = self.store()
        branch = self.rest[0]
        payload = json.loads(body or b"{}")
        with self.hub.lock:
            if branch in repo.refs()["branches"]:
                raise HubError(409, f"Reference refs/heads/{branch} already exists")
            start = repo.resolve(payload.get("startingPoint") or "main")
            refs = repo.refs()
            refs["branches"][branch] = start
            repo._write_refs(refs)
        self._json({})

    # -- endpoints: uploads and commits ------------------------------------------------------------------------

    def preupload(self, body: bytes) -> None:
        self.require_token()
        repo = self.store()
        _, files = repo.files(self.rest[0])
        answers = []
        for item in json.loads(body)["files"]:
            path, size = item["path"], item["size"]
            lfs = repo.is_lfs(path, size, base64.b64decode(item["sample"]), files)
            existing = files.get(path)
            remote_oid = None if existing is None else existing["sha256"] if existing["lfs"] else existing["oid"]
            answers.append({"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False,
                            "oid": remote_oid})
        self._json({"files": answers, "commitOid": repo.resolve(self.rest[0])})

    def lfs_batch(self, body: bytes) -> None:
        self.require_token()
        repo = self.store()
        payload = json.loads(body)
        if payload.get("operation") != "upload":
            raise HubError(400, "the local hub only answers LFS upload batches (downloads go through resolve)")
        objects = []
        for item in payload["objects"]:
            answer = {"oid": item["oid"], "size": item["size"], "authenticated": True}
            if not repo.has_object(item["oid"], item["size"]):  # already stored objects need no upload
                href = f"{self.hub.url}/lfs-objects/{self.repo_type}s/{self.repo_id}/{item['oid']}"
                answer["actions"] = {"upload": {"href": href, "header": {}}}
            objects.append(answer)
        self._send(200, json.dumps({"transfer": "basic", "objects": objects}).encode(),
                   content_type="application/vnd.git-lfs+json")

    def lfs_upload(self, body: bytes) -> None:
        repo = self.store(readable=False)
        sha256 = self.rest[0]
        if hashlib.sha256(body).hexdigest() != sha256:
            raise HubError(400, f"LFS object {sha256} does not match its content ({len(body)} bytes received)")
        repo.store_blob(body, lfs=True)
        self._send(200)

    def commit(self, body: bytes) -> None:
        self.require_token()
        repo = self.store()
        if self.query.get("create_pr"):
            raise HubError(400, "local hub: pull requests are not implemented")
        branch = self.rest[0]
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "the commit payload must start with a header line")
        header = lines[0]["value"]
        with self.hub.lock:
            if branch not in repo.refs()["branches"]:
                raise HubError(404, f"Invalid rev id: {branch} (commits go to an existing branch)", "RevisionNotFound")
            parent, files = repo.files(branch)
            if header.get("parentCommit") and header["parentCommit"] != parent:
                raise HubError(412, f"parent commit {header['parentCommit']} is not the head of {branch} ({parent})")
            files = dict(files)
            for line in lines[1:]:
                key, value = line["key"], line["value"]
                path = value["path"].strip("/")
                if key == "file":
                    data = base64.b64decode(value["content"])
                    if data and repo.is_lfs(path, len(data), data[:512], files):
                        raise HubError(400, f"Your push was rejected: {path} must be stored with LFS")
                    files[path] = repo.store_blob(data, lfs=False)
                elif key == "lfsFile":
                    size = value.get("size")
                    if size is None or not repo.has_object(value["oid"], size):
                        raise HubError(422, f"Your push was rejected: LFS object {value['oid']} of {path} was never "
                                            "uploaded")
                    files[path] = repo.entry(value["oid"], size, lfs=True)
                elif key == "deletedFile":
                    if files.pop(path, None) is None:
                        raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                elif key == "deletedFolder":
                    for p in [p for p in files if p.startswith(path + "/")]:
                        del files[p]
                else:
                    raise HubError(400, f"local hub: unknown commit operation {key!r}")
            oid = repo.write_commit(branch, parent, files, header["summary"], header.get("description", ""))
        self._json({"success": True, "commitOid": oid, "commitUrl": f"{self.repo_url()}/commit/{oid}",
                    "hookOutput": "", "pullRequestUrl": None})

    # -- endpoint: downloads -----------------------------------------------------------------------------------

    def resolve(self, body: bytes) -> None:
        repo = self.store()
        revision, path = self.rest[0], "/".join(self.rest[1:])
        oid, files = repo.files(revision)
        entry = files.get(path)
        if entry is None:
            raise HubError(404, f"Entry not found: {path} at {revision}", "EntryNotFound")
        data = repo.read(entry["sha256"])
        headers = {"X-Repo-Commit": oid, "Accept-Ranges": "bytes",
                   "ETag": f'"{entry["sha256"] if entry["lfs"] else entry["oid"]}"'}
        if entry["lfs"]:
            headers |= {"X-Linked-Etag": f'"{entry["sha256"]}"', "X-Linked-Size": str(entry["size"])}
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", ""))
        if match and data:
            first, last = match.groups()
            if first:
                start, end = int(first), min(int(last) if last else len(data) - 1, len(data) - 1)
            else:
                start, end = max(len(data) - int(last), 0), len(data) - 1
            if start >= len(data):
                raise HubError(416, f"range {self.headers['Range']} outside {len(data)} bytes")
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            self._send(206, data[start:end + 1], headers, "application/octet-stream")
            return
        self._send(200, data, headers, "application/octet-stream")


#: The token clients send to the stand-in (it accepts any; a real-looking one keeps the clients' checks happy).
TOKEN = "local-hub-dummy-token"


def run_client(hub: LocalHub, home: str | os.PathLike, code: str, *args: str) -> str:
    """Run ``code`` in a fresh Python whose Hub is ``hub`` and whose caches start empty under ``home``.

    A fresh process matters: huggingface_hub reads ``HF_ENDPOINT`` and ``HF_HUB_DISABLE_XET`` at import, and an
    empty cache proves the data came from the Hub, as it would for someone on another machine.
    """
    import subprocess
    import sys
    import textwrap

    env = {**os.environ, **hub.environment(home, token=TOKEN)}
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout
