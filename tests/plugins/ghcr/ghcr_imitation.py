"""An imitation of ghcr.io and the GitHub Packages API, fronting a real OCI registry.

Follows the documented shapes: ``/token?scope=repository:o/n:pull,push&service=ghcr.io``
with basic ``user:PAT`` -> ``{"token"}``; ``/v2/*`` wants ``Authorization: Bearer`` and
answers 401 with ``WWW-Authenticate: Bearer realm=..,service="ghcr.io",scope=..``;
``tags/list`` pages with ``?n=`` and ``Link``; OCI DELETE is unsupported (GHCR deletes
through the Packages API: ``/user|/orgs/{org}/packages/container/{name}/versions``);
``GET /user|/orgs/{org}/packages?package_type=container`` lists packages (names may
hold "/"); a token without ``delete:packages`` gets 403 (``refuse_delete``).
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import secrets
from urllib.parse import quote, unquote

from fixtures.oci_content import OCI_MANIFEST
from fixtures.oci_front import Incoming, OciFront, Outgoing, json_response, oci_errors

REPO_PATH = re.compile(r"^/v2/(?P<name>.+?)/(?P<kind>manifests|blobs|tags)/(?P<rest>.*)$")
PACKAGES_PATH = re.compile(
    r"^/(?:user|orgs/(?P<org>[^/]+))/packages/container/(?P<name>[^/]+)/versions(?:/(?P<id>\d+))?$"
)
PACKAGES_LIST = re.compile(r"^/(?:user|orgs/(?P<org>[^/]+))/packages$")
PLACEHOLDER_SCOPE = "repository:user/image:pull"


class GhcrImitation(OciFront):
    def __init__(self, backend_url: str, *, username: str, pat: str, orgs: tuple[str, ...]):
        super().__init__(backend_url)
        self.username = username
        self.pat = pat
        self.orgs = set(orgs)
        self.tokens: dict[str, set[tuple[str, str]]] = {}  # token -> {(repository, action)}
        self.token_scopes: list[str] = []  # every scope a token was asked for
        self.version_ids: dict[str, int] = {}  # digest -> package version id
        self.advertised_realm: str | None = None  # the realm in challenges, when not ours
        self.refuse_delete = False  # a token without the delete:packages scope

    # ----------------------------------------------------------------- dispatch

    def handle(self, request: Incoming) -> Outgoing | None:
        if request.path == "/token":
            return self._token(request)
        if request.path.startswith("/v2/"):
            return self._registry(request)
        match = PACKAGES_PATH.match(request.path)
        if match:
            return self._packages(request, match)
        listing = PACKAGES_LIST.match(request.path)
        if listing and request.method == "GET":
            return self._package_list(request, listing)
        return json_response(404, {"message": "Not Found"})

    # ----------------------------------------------------------------- ghcr.io

    def _token(self, request: Incoming) -> Outgoing:
        if request.query.get("service") != "ghcr.io":
            return oci_errors(400, "BAD_REQUEST", "unknown service")
        user = self._basic_user(request)
        if user is None:
            return oci_errors(403, "DENIED", "requested access to the resource is denied")
        grants: set[tuple[str, str]] = set()
        for scope in request.query.get("scope", "").split():
            self.token_scopes.append(scope)
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            owner = name.split("/", 1)[0]
            if kind == "repository" and owner in self.orgs | {self.username}:
                grants |= {(name, action) for action in actions.split(",")}
        token = secrets.token_hex(16)
        self.tokens[token] = grants
        return json_response(200, {"token": token})

    def _basic_user(self, request: Incoming) -> str | None:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return None
        user, _, password = base64.b64decode(value).decode().partition(":")
        return user if (user, password) == (self.username, self.pat) else None

    def _registry(self, request: Incoming) -> Outgoing | None:
        match = REPO_PATH.match(request.path)
        name = match["name"] if match else None
        action = "pull" if request.method in {"GET", "HEAD"} else "push"
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        grants = self.tokens.get(token) if scheme.lower() == "bearer" else None
        allowed = grants is not None and (name is None or (name, action) in grants)
        if not allowed:
            scope = f"repository:{name}:{action}" if name else PLACEHOLDER_SCOPE
            realm = self.advertised_realm or f"{self.url}/token"
            challenge = f'Bearer realm="{realm}",service="ghcr.io",scope="{scope}"'
            return oci_errors(
                401, "UNAUTHORIZED", "authentication required", {"WWW-Authenticate": challenge}
            )
        if request.method == "DELETE":
            return oci_errors(405, "UNSUPPORTED", "The operation is unsupported.")
        if match and match["kind"] == "tags":
            return self._tags_page(request, match["name"])
        return None  # proxied to the real registry

    def _tags_page(self, request: Incoming, name: str) -> Outgoing:
        tags = sorted(self.backend("GET", f"/v2/{name}/tags/list").json().get("tags") or [])
        last = request.query.get("last")
        if last:
            tags = [t for t in tags if t > last]
        size = int(request.query.get("n", "0")) or len(tags)
        page, more = tags[:size], len(tags) > size
        headers = {}
        if more:
            headers["Link"] = f'</v2/{name}/tags/list?last={page[-1]}&n={size}>; rel="next"'
        return json_response(200, {"name": name, "tags": page}, headers)

    # ----------------------------------------------------------------- Packages API

    def _packages(self, request: Incoming, match: re.Match[str]) -> Outgoing:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() not in {"bearer", "token"} or token != self.pat:
            return json_response(401, {"message": "Requires authentication"})
        owner = match["org"] or self.username
        if match["org"] and owner not in self.orgs:
            return json_response(404, {"message": "Not Found"})
        repository = f"{owner}/{unquote(match['name'])}"
        versions = self._versions(repository)
        if not versions:
            return json_response(404, {"message": "Package not found."})
        if match["id"] is None and request.method == "GET":
            per_page = int(request.query.get("per_page", "30"))
            page = int(request.query.get("page", "1"))
            return json_response(200, versions[(page - 1) * per_page : page * per_page])
        if match["id"] is not None and request.method == "DELETE" and self.refuse_delete:
            return json_response(403, {"message": "You need at least delete:packages scope"})
        if match["id"] is not None and request.method == "DELETE":
            wanted = [v for v in versions if v["id"] == int(match["id"])]
            if not wanted:
                return json_response(404, {"message": "Not Found"})
            digest = wanted[0]["name"]
            self.backend("DELETE", f"/v2/{repository}/manifests/{digest}")
            return Outgoing(204)
        return json_response(405, {"message": "Method Not Allowed"})

    def _package_list(self, request: Incoming, match: re.Match[str]) -> Outgoing:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() not in {"bearer", "token"} or token != self.pat:
            return json_response(401, {"message": "Requires authentication"})
        if request.query.get("package_type") != "container":
            return json_response(422, {"message": "package_type is required"})
        owner = match["org"] or self.username
        if match["org"] and owner not in self.orgs:
            return json_response(404, {"message": "Not Found"})
        names = self.catalog()
        packages = [
            {"id": 500 + index, "name": name[len(owner) + 1 :], "package_type": "container"}
            for index, name in enumerate(sorted(names))
            if name.startswith(owner + "/")
        ]
        per_page = int(request.query.get("per_page", "30"))
        page = int(request.query.get("page", "1"))
        return json_response(200, packages[(page - 1) * per_page : page * per_page])

    def _versions(self, repository: str) -> list[dict[str, object]]:
        tags = self.backend("GET", f"/v2/{repository}/tags/list").json().get("tags") or []
        by_digest: dict[str, list[str]] = {}
        for tag in sorted(tags):
            head = self.backend(
                "HEAD", f"/v2/{repository}/manifests/{tag}", headers={"Accept": OCI_MANIFEST}
            )
            if head.status_code != 200:  # a deleted manifest's tag stays listed in registry:2
                continue
            by_digest.setdefault(head.headers["Docker-Content-Digest"], []).append(tag)
        now = dt.datetime.now(dt.UTC).isoformat()
        package = quote(repository, safe="")
        versions = []
        for digest, digest_tags in by_digest.items():
            version_id = self.version_ids.setdefault(digest, 1000 + len(self.version_ids))
            versions.append(
                {
                    "id": version_id,
                    "name": digest,
                    "url": f"{self.url}/packages/container/{package}/versions/{version_id}",
                    "created_at": now,
                    "updated_at": now,
                    "metadata": {"package_type": "container", "container": {"tags": digest_tags}},
                }
            )
        return sorted(versions, key=lambda v: -int(v["id"]))  # newest first
