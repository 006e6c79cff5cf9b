"""Shared fixtures. Real services (sshd, an OCI registry, nats-server, dockerd) start
on 127.0.0.1 from the modules in tests/fixtures/."""

pytest_plugins = [
    "fixtures.sshd",
    "fixtures.registry",
    "fixtures.nats",
    "fixtures.docker",
]
