"""A loopback Hugging Face Hub for tests: the routes ``huggingface_hub`` uses to push and pull a model repository.

Reached through ``HF_ENDPOINT``, it speaks the Hub's protocol as huggingface_hub 2.x calls it:

  GET  /api/whoami-v2                                 the token's user, orgs and role (401 on a bad token)
  POST /api/repos/create                              {name, organization, private}: 200, 409 exists, 403 namespace
  DELETE /api/repos/delete                            {name, organization}: 200, 404 unknown, 403 not the owner's
  GET  /api/models/{repo}[/revision/{rev}]            repo info: id, sha, private, siblings
  GET  /api/models/{repo}/tree/{rev}                  the files of a commit (with lfs oid and size)
  POST /api/models/{repo}/preupload/{rev}             upload mode per file: "lfs" for weights and big files
  POST /api/models/{repo}/branch/{branch}             create a branch (409 when it exists)
  POST /{repo}.git/info/lfs/objects/batch             LFS batch API: upload and verify actions
  PUT  /lfs-objects/{oid}                             the LFS upload (sha256 checked); POST /lfs-verify/{oid}
  POST /api/models/{repo}/commit/{rev}                ndjson: header, file (base64), lfsFile (oid uploaded)
  HEAD/GET /{repo}/resolve/{rev}/{path}               a file, with X-Repo-Commit, ETag / X-Linked-Etag
  POST /api/validate-yaml                             a README's metadata: 400 with errors when malformed

It serves no Xet route: a client with hf_xet enabled gets 404 from ``/api/models/{repo}/xet-write-token/{rev}``, as
from a Hub or mirror without Xet storage (tests disable Xet with ``HF_HUB_DISABLE_XET`` to upload through LFS).

Every route checks the bearer token; a private repository is invisible (404) to anyone but its owner. Errors come
with the Hub's ``X-Error-Code``/``X-Error-Message`` headers and ``{"error": ...}`` bodies. ``fail`` injects
statuses: ``server.fail["create"] = [503, 503]`` answers the next two repository creations with 503. Requests are
recorded (method, path, headers) in ``requests``, so tests can see what a client sent.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from httpserver import in_thread

LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")
LFS_MIN_BYTES = 10 * 1024 * 1024  # the Hub stores files of 10 MB and more through LFS
GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.bin filter=lfs diff=lfs merge=lfs -text\n"


@dataclass
class User:
    name: str
    orgs: dict[str, str] = field(default_factory=dict)  # org name -> role ("read", "write", "admin")
    role: str = "write"  # the token's role: "read" tokens cannot write anywhere


@dataclass
class Repo:
    owner: str
    private: bool
    branches: dict[str, str] = field(default_factory=dict)  # branch -> commit sha
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # sha -> {path: content}
    messages: dict[str, str] = field(default_factory=dict)  # sha -> commit title


class HubServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, tokens: dict[str, User]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.tokens = tokens
        self.repos: dict[str, Repo] = {}
        self.lfs: dict[str, bytes] = {}
        self.fail: dict[str, list[int]] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        """A repository's files at a branch or commit."""
        repo = self.repos[repo_id]
        return repo.commits[repo.branches.get(revision, revision)]

    def commit_count(self, repo_id: str) -> int:
        return len(self.repos[repo_id].commits)


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.extra = status, message, code, extra


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    server: HubServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    # ------------------------------------------------------------------------------------------------ plumbing
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        path = unquote(urlsplit(self.path).path)
        self.server.requests.append((method, path, dict(self.headers.items())))
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            for pattern, verb, name in ROUTES:
                m = re.fullmatch(pattern, path)
                if m and (verb == method or (verb == "GET" and method == "HEAD")):
                    failures = self.server.fail.get(name)
                    if failures:
                        raise HubError(failures.pop(0), f"injected failure of {name}")
                    getattr(self, "_" + name)(method, body, **m.groupdict())
                    return
            raise HubError(404, f"no route {method} {path}")
        except HubError as exc:
            headers = {"X-Error-Message": exc.message}
            if exc.code:
                headers["X-Error-Code"] = exc.code
            self._json(exc.status, {"error": exc.message, **exc.extra}, headers)

    def _send(self, status: int, data: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(data).encode(), "application/json", headers)

    def _user(self, required: bool = True) -> User | None:
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            if required:
                raise HubError(401, "Invalid username or password.")
            return None
        user = self.server.tokens.get(auth[len("Bearer ") :])
        if user is None:
            raise HubError(401, "Invalid credentials in Authorization header")
        return user

    def _repo(self, repo_id: str, write: bool = False) -> Repo:
        user = self._user(required=write)
        repo = self.server.repos.get(repo_id)
        visible = repo is not None and (not repo.private or (user is not None and _may(user, repo.owner, "read")))
        if not visible:
            raise HubError(404, "Repository not found", "RepoNotFound")
        if write and (user is None or user.role == "read" or not _may(user, repo.owner, "write")):
            raise HubError(403, f"You don't have write access to {repo_id}")
        return repo

    def _commit_of(self, repo: Repo, revision: str) -> str:
        sha = repo.branches.get(revision, revision if revision in repo.commits else None)
        if sha is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return sha

    # ------------------------------------------------------------------------------------------------ routes
    def _whoami(self, method: str, body: bytes) -> None:
        user = self._user()
        self._json(
            200,
            {
                "type": "user",
                "name": user.name,
                "orgs": [{"name": o, "roleInOrg": r} for o, r in user.orgs.items()],
                "auth": {"type": "access_token", "accessToken": {"displayName": "test", "role": user.role}},
            },
        )

    def _create(self, method: str, body: bytes) -> None:
        user = self._user()
        req = json.loads(body)
        owner = req.get("organization") or user.name
        repo_id = f"{owner}/{req['name']}"
        with self.server.lock:
            if repo_id in self.server.repos:
                raise HubError(409, "You already created this model repo", url=f"{self.server.url}/{repo_id}")
            if user.role == "read" or not _may(user, owner, "write"):
                raise HubError(403, f'You don\'t have the rights to create a model under the namespace "{owner}"')
            private = req.get("private", req.get("visibility") == "private")
            repo = Repo(owner=owner, private=bool(private))
            self._new_commit(repo, "main", {".gitattributes": GITATTRIBUTES}, "initial commit", None)
            self.server.repos[repo_id] = repo
        self._json(200, {"url": f"{self.server.url}/{repo_id}", "name": repo_id, "id": repo_id})

    def _delete(self, method: str, body: bytes) -> None:
        user = self._user()
        req = json.loads(body)
        repo_id = f"{req.get('organization') or user.name}/{req['name']}"
        self._repo(repo_id, write=True)
        with self.server.lock:
            del self.server.repos[repo_id]
        self._json(200, {})

    def _validate_yaml(self, method: str, body: bytes) -> None:
        """The card metadata checks the Hub applies to the fields kinject writes."""
        import yaml

        content = json.loads(body)["content"]
        errors = []
        if content.startswith("---\n"):
            meta = yaml.safe_load(content.split("---\n", 2)[1])
            if not isinstance(meta, dict):
                errors.append("metadata must be a mapping")
            else:
                for key in ("base_model", "library_name", "pipeline_tag", "license"):
                    if key in meta and not isinstance(meta[key], (str, list)):
                        errors.append(f'"{key}" must be a string')
                bases = meta.get("base_model") or []
                for base in [bases] if isinstance(bases, str) else bases:
                    if not re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+|[\w.-]+", str(base)):
                        errors.append(f'"base_model" must be a model id, got {base!r}')
                if not isinstance(meta.get("tags", []), list):
                    errors.append('"tags" must be an array')
                if meta.get("base_model_relation", "adapter") not in ("adapter", "merge", "quantized", "finetune"):
                    errors.append('"base_model_relation" must be adapter, merge, quantized or finetune')
        self._json(400 if errors else 200, {"errors": [{"message": e} for e in errors], "warnings": []})

    def _info(self, method: str, body: bytes, repo: str, rev: str | None = None) -> None:
        r = self._repo(repo)
        sha = self._commit_of(r, rev or "main")
        files = r.commits[sha]
        self._json(
            200,
            {
                "id": repo,
                "modelId": repo,
                "author": r.owner,
                "sha": sha,
                "private": r.private,
                "siblings": [{"rfilename": p} for p in sorted(files)],
            },
        )

    def _tree(self, method: str, body: bytes, repo: str, rev: str) -> None:
        r = self._repo(repo)
        files = r.commits[self._commit_of(r, rev)]
        entries = []
        for path, data in sorted(files.items()):
            entry: dict[str, Any] = {"type": "file", "path": path, "size": len(data), "oid": _git_oid(data)}
            if _is_lfs(path, len(data)):
                entry["lfs"] = {"oid": _sha(data), "size": len(data), "pointerSize": 134}
            entries.append(entry)
        self._json(200, entries)

    def _preupload(self, method: str, body: bytes, repo: str, rev: str) -> None:
        r = self._repo(repo, write=True)
        sha = r.branches.get(rev, r.branches["main"])
        present = r.commits[sha]
        modes = []
        for f in json.loads(body)["files"]:
            lfs = _is_lfs(f["path"], f["size"])
            mode = {"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False}
            if f["path"] in present:  # as the Hub does: the file's oid there, so unchanged files are skipped
                data = present[f["path"]]
                mode["oid"] = _sha(data) if lfs else _git_oid(data)
            modes.append(mode)
        self._json(200, {"files": modes})

    def _branch(self, method: str, body: bytes, repo: str, branch: str) -> None:
        r = self._repo(repo, write=True)
        with self.server.lock:
            if branch in r.branches:
                raise HubError(409, f"Reference already exists: refs/heads/{branch}")
            r.branches[branch] = r.branches["main"]
        self._json(200, {})

    def _lfs_batch(self, method: str, body: bytes, repo: str) -> None:
        self._repo(repo, write=True)
        req = json.loads(body)
        objects = []
        for obj in req["objects"]:
            entry: dict[str, Any] = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if obj["oid"] not in self.server.lfs:
                entry["actions"] = {
                    "upload": {"href": f"{self.server.url}/lfs-objects/{obj['oid']}"},
                    "verify": {"href": f"{self.server.url}/lfs-verify/{obj['oid']}"},
                }
            objects.append(entry)
        self._send(200, json.dumps({"transfer": "basic", "objects": objects}).encode(), "application/vnd.git-lfs+json")

    def _lfs_put(self, method: str, body: bytes, oid: str) -> None:
        if _sha(body) != oid:
            raise HubError(400, "sha256 mismatch")
        self.server.lfs[oid] = body
        self._send(200, b"", "text/plain")

    def _lfs_verify(self, method: str, body: bytes, oid: str) -> None:
        if oid not in self.server.lfs:
            raise HubError(404, "object not uploaded")
        self._json(200, {"success": True})

    def _commit(self, method: str, body: bytes, repo: str, rev: str) -> None:
        r = self._repo(repo, write=True)
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        header = next(line["value"] for line in lines if line["key"] == "header")
        with self.server.lock:
            parent = self._commit_of(r, rev)
            files = dict(r.commits[parent])
            for line in lines:
                value = line["value"]
                if line["key"] == "file":
                    files[value["path"]] = base64.b64decode(value["content"])
                elif line["key"] == "lfsFile":
                    if value["oid"] not in self.server.lfs:
                        raise HubError(422, f"LFS object {value['oid']} of {value['path']} was not uploaded")
                    files[value["path"]] = self.server.lfs[value["oid"]]
                elif line["key"] == "deletedFile":
                    files.pop(value["path"], None)
            sha = self._new_commit(r, rev, files, header["summary"], parent)
        self._json(200, {"success": True, "commitOid": sha, "commitUrl": f"{self.server.url}/{repo}/commit/{sha}"})

    def _new_commit(self, repo: Repo, branch: str, files: dict[str, bytes], message: str, parent: str | None) -> str:
        sha = hashlib.sha1(f"{parent}:{message}:{len(repo.commits)}".encode() + b"".join(files.values())).hexdigest()
        repo.commits[sha] = files
        repo.messages[sha] = message
        repo.branches[branch] = sha
        return sha

    def _resolve(self, method: str, body: bytes, repo: str, rev: str, path: str) -> None:
        r = self._repo(repo)
        sha = self._commit_of(r, rev)
        data = r.commits[sha].get(path)
        if data is None:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound")
        headers = {"X-Repo-Commit": sha, "ETag": f'"{_git_oid(data)}"'}
        if _is_lfs(path, len(data)):
            headers |= {"X-Linked-Etag": f'"{_sha(data)}"', "X-Linked-Size": str(len(data))}
        self._send(200, data, "application/octet-stream", headers)


def _may(user: User, owner: str, need: str) -> bool:
    if owner == user.name:
        return True
    role = user.orgs.get(owner)
    # Contributors may create repositories in their organization (and write to those they created).
    return role is not None and (need == "read" or role in ("write", "admin", "contributor"))


def _is_lfs(path: str, size: int) -> bool:
    return path.endswith(LFS_SUFFIXES) or size >= LFS_MIN_BYTES


_REPO = r"(?P<repo>[^/]+/[^/]+)"
ROUTES = [
    (r"/api/whoami-v2", "GET", "whoami"),
    (r"/api/repos/create", "POST", "create"),
    (r"/api/repos/delete", "DELETE", "delete"),
    (r"/api/validate-yaml", "POST", "validate_yaml"),
    (rf"/api/models/{_REPO}", "GET", "info"),
    (rf"/api/models/{_REPO}/revision/(?P<rev>[^/]+)", "GET", "info"),
    (rf"/api/models/{_REPO}/tree/(?P<rev>[^/]+)", "GET", "tree"),
    (rf"/api/models/{_REPO}/preupload/(?P<rev>[^/]+)", "POST", "preupload"),
    (rf"/api/models/{_REPO}/branch/(?P<branch>[^/]+)", "POST", "branch"),
    (rf"/api/models/{_REPO}/commit/(?P<rev>[^/]+)", "POST", "commit"),
    (rf"/{_REPO}\.git/info/lfs/objects/batch", "POST", "lfs_batch"),
    (r"/lfs-objects/(?P<oid>[0-9a-f]{64})", "PUT", "lfs_put"),
    (r"/lfs-verify/(?P<oid>[0-9a-f]{64})", "POST", "lfs_verify"),
    (rf"/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", "GET", "resolve"),
]


def hub_server(tokens: dict[str, User]) -> AbstractContextManager[HubServer]:
    """A started loopback Hub; stopped on exit."""
    return in_thread(HubServer(tokens))
