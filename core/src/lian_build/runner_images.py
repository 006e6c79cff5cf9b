"""``lian runner-image build|check --provider NAME``: runner images a compute provider
makes itself (a Hetzner snapshot, a Proxmox template), through
``ComputeProvider.build_runner_image`` / ``check_runner_image``.

The docker-local plugin owns the ``runner-image`` command and keeps its own behaviour
for ``--provider docker-local`` (the default); any other provider comes here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lian_build.errors import InvalidInput


def on_provider(
    command: str, provider: str, compute_opts: Sequence[str], options: Mapping[str, str]
) -> dict[str, Any]:
    """Run ``build`` or ``check`` on ``provider``; the dict is the envelope's result."""
    from lian_build.intent import key_values, opt_value
    from lian_build.plugins import PluginHost
    from lian_build.secrets import SecretStore

    host = PluginHost.load()
    store = SecretStore(host.secret_resolvers())
    settings = {
        k: opt_value(v) for k, v in key_values(compute_opts, "compute-opt", "compute").items()
    }
    compute = host.compute_provider(provider, settings, store)
    method = compute.build_runner_image if command == "build" else compute.check_runner_image
    try:
        result = method(options)
    except NotImplementedError:
        raise InvalidInput(
            f"compute provider {provider!r} makes no runner images of its own",
            field="provider",
        ) from None
    return {"provider": provider, **result}
