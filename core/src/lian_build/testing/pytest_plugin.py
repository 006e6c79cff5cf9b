"""pytest plugin for plugin authors, loaded automatically when lian-build is installed.

Fixtures:
- ``lian_plugin_host``: a fresh PluginHost (built-ins plus installed plugins),
  independent of any other test.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from lian_build.plugins import PluginHost


@pytest.fixture
def lian_plugin_host() -> PluginHost:
    from lian_build.plugins import PluginHost

    return PluginHost.load()
