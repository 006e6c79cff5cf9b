"""Built-in secret resolvers: ``env:NAME`` and ``file:/path``."""

from __future__ import annotations

import os
from pathlib import Path

from lian_build import api, hookimpl
from lian_build.errors import SecretError


class EnvSecretResolver(api.SecretResolver):
    scheme = "env"
    description = "an environment variable of the lian process: env:NAME"

    def resolve(self, reference: str) -> str:
        value = os.environ.get(reference)
        if not value:
            raise SecretError(f"environment variable {reference} is not set or empty")
        return value


class FileSecretResolver(api.SecretResolver):
    scheme = "file"
    description = "the contents of a local file, trailing newline stripped: file:/path"

    def resolve(self, reference: str) -> str:
        path = Path(reference).expanduser()
        try:
            return path.read_text().rstrip("\n")
        except OSError as exc:
            raise SecretError(f"cannot read secret file {path}: {exc.strerror}") from None


@hookimpl
def lian_register_secret_resolvers(register: api.Register) -> None:
    register(EnvSecretResolver)
    register(FileSecretResolver)
