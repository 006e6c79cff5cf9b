"""pytest plugin for plugin authors, loaded automatically when lian-build is installed.

Fixtures:
- ``lian_plugin_host``: a fresh PluginHost (built-ins plus installed plugins),
  independent of any other test.

Conformance suites live in ``lian_build.testing.conformance``: subclass
``ComputeProviderConformance``, ``RegistryProviderConformance``, ``BuilderConformance``
or ``SecretResolverConformance`` and supply the fixtures each one documents.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from lian_build.plugins import PluginHost

# Before any test module imports the suites: their plain asserts then explain failures.
pytest.register_assert_rewrite("lian_build.testing.conformance")


@pytest.fixture
def lian_plugin_host() -> PluginHost:
    from lian_build.plugins import PluginHost

    return PluginHost.load()
