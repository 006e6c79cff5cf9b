"""The built-in builders, registered through the same hook as third-party ones."""

from __future__ import annotations

from lian_build import api, hookimpl
from lian_build.builders.buildah import BuildahBuilder
from lian_build.builders.buildkit import BuildKitBuilder


@hookimpl
def lian_register_builders(register: api.Register) -> None:
    # The host instantiates each class with no arguments.
    register(BuildKitBuilder)
    register(BuildahBuilder)
