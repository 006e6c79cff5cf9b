"""Server type shapes known without asking the API (``lian plan`` must not touch it)."""

from __future__ import annotations

from lian_build.api import Tier
from lian_build.errors import InvalidInput

DEFAULT_LADDER = ("cx23", "cx33", "cx43", "cx53")
# Ampere (arm64) servers: the ladder of arm64 runners in multi-platform builds.
ARM_LADDER = ("cax11", "cax21", "cax31", "cax41")
# OCI architecture -> Hetzner's name for it (server types' and images' ``architecture``).
HETZNER_ARCHITECTURES = {"amd64": "x86", "arm64": "arm"}

# vCPU, GB RAM, GB disk.
KNOWN_SHAPES: dict[str, tuple[int, float, int]] = {
    "cx23": (2, 4, 40),
    "cx33": (4, 8, 80),
    "cx43": (8, 16, 160),
    "cx53": (16, 32, 320),
    "cax11": (2, 4, 40),
    "cax21": (4, 8, 80),
    "cax31": (8, 16, 160),
    "cax41": (16, 32, 320),
    "ccx13": (2, 8, 80),
    "ccx23": (4, 16, 160),
    "ccx33": (8, 32, 240),
    "ccx43": (16, 64, 360),
    "ccx53": (32, 128, 600),
    "ccx63": (48, 192, 960),
    # Deprecated 2025-10-16, unorderable after 2025-12-31: spawn refuses them.
    "cx22": (2, 4, 40),
    "cx32": (4, 8, 80),
    "cx42": (8, 16, 160),
    "cx52": (16, 32, 320),
}

# Same shape, current generation: named when a deprecated type is refused.
REPLACEMENTS = {"cx22": "cx23", "cx32": "cx33", "cx42": "cx43", "cx52": "cx53"}


def ladder(server_types: list[str] | None) -> list[Tier]:
    """Tiers smallest first. An entry is a known name or ``name:cpu:memory_gb[:disk_gb]``."""
    tiers = [_tier(entry) for entry in (server_types or DEFAULT_LADDER)]
    return sorted(tiers, key=lambda t: (t.cpu, t.memory_gb))


def architecture_of(type_name: str) -> str:
    """OCI architecture of a server type by its family: cax is arm64, the rest x86."""
    return "arm64" if type_name.startswith("cax") else "amd64"


def ladder_for(server_types: list[str] | None, architecture: str) -> list[Tier]:
    """The configured ladder's types of one architecture; the default ladder of that
    architecture when the configuration names none of them."""
    if architecture not in HETZNER_ARCHITECTURES:
        raise InvalidInput(
            f"Hetzner has no {architecture} servers (it offers amd64 and arm64)",
            field="platforms",
        )
    mine = [t for t in ladder(server_types) if architecture_of(t.name) == architecture]
    if mine:
        return mine
    return ladder(list(ARM_LADDER if architecture == "arm64" else DEFAULT_LADDER))


def _tier(entry: str) -> Tier:
    name, *shape = entry.strip().split(":")
    if not shape:
        if name not in KNOWN_SHAPES:
            raise InvalidInput(
                f"server type {name!r} has no known shape; write it as "
                f"'{name}:<cpu>:<memory_gb>[:<disk_gb>]'",
                field="server_types",
            )
        cpu, memory, disk = KNOWN_SHAPES[name]
        return Tier(name=name, cpu=cpu, memory_gb=memory, disk_gb=disk)
    try:
        if len(shape) not in (2, 3) or not name:
            raise ValueError(entry)
        numbers = [int(part) for part in shape]
    except ValueError:
        raise InvalidInput(
            f"server type entry {entry!r} is not 'name' or 'name:cpu:memory_gb[:disk_gb]'",
            field="server_types",
        ) from None
    return Tier(
        name=name,
        cpu=numbers[0],
        memory_gb=numbers[1],
        disk_gb=numbers[2] if len(numbers) == 3 else None,
    )
