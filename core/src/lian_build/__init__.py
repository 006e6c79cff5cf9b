"""lian-build: container-image builds on ephemeral remote BuildKit runners.

Plugin authors need ``hookimpl`` from here and the types in ``lian_build.api``.
"""

from lian_build.hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["__version__", "hookimpl"]
