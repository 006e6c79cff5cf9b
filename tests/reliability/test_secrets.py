"""Hostile secrets: a single-line and a multi-line marker, printed by a RUN step raw,
base64-encoded (wrapped) and JSON-escaped, must appear nowhere: stdout, stderr, the
NATS events (a real subscriber), the state directory, $TMPDIR, the pushed image and
cache layers (every blob pulled back from the registry), and the runner's disk after
lian's cleanup, looked at just before the runner (its container) is removed."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import httpx
from reliability.harness import Case

ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)


def _registry_blobs(registry_url: str, repos: list[str]) -> dict[str, bytes]:
    """Every manifest, config and layer (decompressed) of these repositories."""
    blobs: dict[str, bytes] = {}
    for repo in repos:
        tags = httpx.get(f"{registry_url}/v2/{repo}/tags/list").json().get("tags") or []
        pending = list(tags)
        while pending:
            ref = pending.pop()
            got = httpx.get(f"{registry_url}/v2/{repo}/manifests/{ref}", headers={"Accept": ACCEPT})
            got.raise_for_status()
            blobs[f"{repo}@{ref}"] = got.content
            manifest = got.json()
            pending += [m["digest"] for m in manifest.get("manifests", [])]
            for desc in [manifest.get("config"), *manifest.get("layers", [])]:
                if not desc:
                    continue
                data = httpx.get(f"{registry_url}/v2/{repo}/blobs/{desc['digest']}").content
                if data[:2] == b"\x1f\x8b":
                    data = gzip.decompress(data)
                blobs[f"{repo}/{desc['digest']}"] = data
    return blobs


def test_no_secret_anywhere(
    new_case: Any, e2e: Any, nats_server: Any, nats_collector: Any, tmp_path: Path
) -> None:
    case: Case = new_case()
    collector = nats_collector(nats_server.url, "lian.>")
    on_disk: dict[str, list[str]] = {}
    forms = case.markers.forms()

    def look(container: str) -> None:
        # After lian's own cleanup (rm -rf of its work dir), before the removal.
        grep = ["grep", "-rlF", "--exclude-dir=proc", "--exclude-dir=sys", "--exclude-dir=dev"]
        for form in forms:
            grep += ["-e", form]
        found = e2e.docker.containers.get(container).exec_run([*grep, "/"])
        on_disk[container] = found.output.decode().split()

    with case.provider.watch_removal(e2e, tmp_path, look) as flags:
        case.extra += ["--nats-url", nats_server.url, *flags]
        case.run()
    assert case.returncode == 0, case.stderr
    assert "***" in case.stderr  # the RUN step did print them, scrubbed
    assert case.leaked() == []  # stdout, stderr, state dir, $TMPDIR

    events = collector.wait_for(4)
    kinds = {subject.rsplit(".", 1)[1] for subject, _ in events}
    assert {"started", "completed"} <= kinds, kinds
    assert [s for s, data in events if case.markers.leaks(data)] == []

    result = case.envelope["result"]
    caches = [ref.split("/", 1)[1].rsplit(":", 1)[0] for ref in result["cache"]["exports"]]
    assert caches, result["cache"]  # the cache layers are checked too
    blobs = _registry_blobs(e2e.registry.url, [f"apps/{case.workspace}", *caches])
    assert any("/sha256:" in name for name in blobs), list(blobs)
    assert [name for name, data in blobs.items() if case.markers.leaks(data)] == []

    assert on_disk, "the runner was never removed through the engine"
    assert all(files == [] for files in on_disk.values()), on_disk
