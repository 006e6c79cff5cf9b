"""Put small test images into a registry with plain httpx (independent of the client
under test): two blobs by monolithic upload, then an OCI image manifest."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from urllib.parse import quote

import attrs
import httpx

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"


@attrs.frozen
class PushedImage:
    repository: str
    tag: str
    digest: str  # sha256 of the manifest bytes, computed here
    manifest: bytes


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_blob(
    client: httpx.Client, base_url: str, repository: str, data: bytes, media_type: str
) -> dict[str, object]:
    start = client.post(f"{base_url}/v2/{repository}/blobs/uploads/")
    assert start.status_code == 202, start.text
    location = str(httpx.URL(base_url).join(start.headers["Location"]))
    separator = "&" if "?" in location else "?"
    digest = _digest(data)
    done = client.put(
        f"{location}{separator}digest={quote(digest)}",
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert done.status_code == 201, done.text
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


def push_image(
    base_url: str,
    repository: str,
    tag: str,
    *,
    auth: tuple[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> PushedImage:
    """Push a unique tiny image to ``base_url`` (``http://host:port``) as repository:tag."""
    with httpx.Client(auth=auth, headers=dict(headers or {}), timeout=10) as client:
        config = json.dumps(
            {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
        ).encode()
        config_desc = push_blob(client, base_url, repository, config, OCI_CONFIG)
        layer_desc = push_blob(client, base_url, repository, uuid.uuid4().bytes, OCI_LAYER)
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": config_desc,
                "layers": [layer_desc],
            }
        ).encode()
        response = client.put(
            f"{base_url}/v2/{repository}/manifests/{tag}",
            content=manifest,
            headers={"Content-Type": OCI_MANIFEST},
        )
        assert response.status_code == 201, response.text
    return PushedImage(repository=repository, tag=tag, digest=_digest(manifest), manifest=manifest)


def tag_image(
    base_url: str, image: PushedImage, tag: str, *, auth: tuple[str, str] | None = None
) -> None:
    """Point another tag at an already pushed manifest."""
    response = httpx.put(
        f"{base_url}/v2/{image.repository}/manifests/{tag}",
        content=image.manifest,
        headers={"Content-Type": OCI_MANIFEST},
        auth=auth,
        timeout=10,
    )
    assert response.status_code == 201, response.text
