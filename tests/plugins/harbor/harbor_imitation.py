"""An imitation of Harbor (API v2.0 + its OCI endpoint), fronting a real OCI registry.

Documented shapes it follows: ``GET /api/v2.0/ping`` -> ``Pong``; basic auth (robot
accounts ``robot$<project>+<name>``); errors ``{"errors":[{"code","message"}]}``; an
``X-Request-Id`` on every response; ``DELETE /api/v2.0/projects/{p}/repositories/{r}/
artifacts/{digest|tag}`` with ``r`` URL-encoded twice; pushes only into existing projects;
``GET /api/v2.0/projects/{p}/repositories`` (``[{"name": "p/a/b"}]``) and ``GET .../
repositories/{r}/artifacts?with_tag=true`` (``[{"digest","size","push_time","tags":
[{"name"}]}]``), both paged with ``page``/``page_size``; a robot without the delete
permission gets 403 ``FORBIDDEN`` (``refuse_delete``).
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import uuid
from urllib.parse import unquote

import attrs

from fixtures.oci_content import OCI_MANIFEST
from fixtures.oci_front import Incoming, OciFront, Outgoing, json_response, oci_errors

REPO_PATH = re.compile(r"^/v2/(?P<name>.+?)/(?:manifests|blobs|tags)/")
ARTIFACT_PATH = re.compile(
    r"^/api/v2\.0/projects/(?P<project>[^/]+)/repositories/(?P<repo>[^/]+)"
    r"/artifacts/(?P<ref>[^/]+)$"
)
REPOSITORIES_PATH = re.compile(r"^/api/v2\.0/projects/(?P<project>[^/]+)/repositories$")
ARTIFACTS_PATH = re.compile(
    r"^/api/v2\.0/projects/(?P<project>[^/]+)/repositories/(?P<repo>[^/]+)/artifacts$"
)


class HarborImitation(OciFront):
    def __init__(self, backend_url: str, *, username: str, password: str, projects: set[str]):
        super().__init__(backend_url)
        self.credentials = (username, password)
        self.projects = projects
        self.refuse_delete = False  # a robot account without the delete permission
        self.pushed_at: dict[str, str] = {}  # digest -> push_time, first seen

    def handle(self, request: Incoming) -> Outgoing | None:
        outgoing = self._route(request)
        if outgoing is None:
            outgoing = self.proxy(request)
        return attrs.evolve(
            outgoing, headers={**outgoing.headers, "X-Request-Id": uuid.uuid4().hex}
        )

    def _route(self, request: Incoming) -> Outgoing | None:
        if request.path == "/api/v2.0/ping":
            return Outgoing(200, b"Pong", {"Content-Type": "text/plain"})
        if not self._authorized(request):
            return oci_errors(
                401,
                "UNAUTHORIZED",
                "unauthorized: authentication required",
                {"WWW-Authenticate": 'Basic realm="harbor"'},
            )
        # Like Harbor's router, match on the path decoded once: a name with "/" encoded
        # only once would split into extra segments and miss the route.
        artifact = ARTIFACT_PATH.match(unquote(request.path))
        if artifact and request.method == "DELETE":
            if self.refuse_delete:
                return oci_errors(403, "FORBIDDEN", "forbidden")
            return self._delete_artifact(artifact)
        if request.path == "/api/v2.0/projects" and request.method == "HEAD":
            # Harbor's documented existence check: 200 if the project exists, else 404.
            exists = request.query.get("project_name") in self.projects
            return Outgoing(200 if exists else 404)
        listing = REPOSITORIES_PATH.match(request.path)
        if listing and request.method == "GET":
            return self._repositories(request, listing["project"])
        artifacts = ARTIFACTS_PATH.match(unquote(request.path))
        if artifacts and request.method == "GET":
            return self._artifacts(request, artifacts)
        if request.path.startswith("/api/"):
            return oci_errors(404, "NOT_FOUND", "not found")
        match = REPO_PATH.match(request.path)
        if match and match["name"].split("/", 1)[0] not in self.projects:
            return oci_errors(404, "NOT_FOUND", f"project {match['name'].split('/')[0]} not found")
        return None  # OCI request for an existing project: proxied

    @staticmethod
    def _page(request: Incoming, items: list) -> list:
        size = int(request.query.get("page_size", "10"))
        page = int(request.query.get("page", "1"))
        return items[(page - 1) * size : page * size]

    def _repositories(self, request: Incoming, project: str) -> Outgoing:
        if project not in self.projects:
            return oci_errors(404, "NOT_FOUND", f"project {project} not found")
        names = self.catalog()
        mine = [{"name": n, "project_id": 1} for n in sorted(names) if n.startswith(project + "/")]
        return json_response(200, self._page(request, mine))

    def _artifacts(self, request: Incoming, match: re.Match[str]) -> Outgoing:
        repository = f"{match['project']}/{unquote(match['repo'])}"
        tags = self.backend("GET", f"/v2/{repository}/tags/list").json().get("tags") or []
        by_digest: dict[str, dict] = {}
        for tag in sorted(tags):
            got = self.backend(
                "GET", f"/v2/{repository}/manifests/{tag}", headers={"Accept": OCI_MANIFEST}
            )
            if got.status_code != 200:
                continue
            digest = got.headers["Docker-Content-Digest"]
            manifest = got.json()
            size = sum(p.get("size", 0) for p in [manifest["config"], *manifest["layers"]])
            pushed = self.pushed_at.setdefault(digest, dt.datetime.now(dt.UTC).isoformat())
            entry = by_digest.setdefault(
                digest, {"digest": digest, "size": size, "push_time": pushed, "tags": []}
            )
            entry["tags"].append({"name": tag, "repository_id": 1})
        return json_response(200, self._page(request, list(by_digest.values())))

    def _authorized(self, request: Incoming) -> bool:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        user, _, password = base64.b64decode(value).decode().partition(":")
        return (user, password) == self.credentials

    def _delete_artifact(self, match: re.Match[str]) -> Outgoing:
        project = match["project"]
        # Decoded once by the router, once more here: "a%252Fb" -> "a%2Fb" -> "a/b".
        repository = f"{project}/{unquote(match['repo'])}"
        reference = match["ref"]
        head = self.backend(
            "HEAD", f"/v2/{repository}/manifests/{reference}", headers={"Accept": OCI_MANIFEST}
        )
        if project not in self.projects or head.status_code != 200:
            return oci_errors(404, "NOT_FOUND", f"artifact {repository}:{reference} not found")
        digest = head.headers["Docker-Content-Digest"]
        self.backend("DELETE", f"/v2/{repository}/manifests/{digest}")
        return Outgoing(200)
