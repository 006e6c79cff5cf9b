"""lian-build plugin: runners, sizing and metrics through a central orchestrator.

``plugin`` is the entry-point module; ``provider`` the client side (the ``orchestrator``
compute provider); ``server`` the reference server behind ``lian orchestrator serve``.
The protocol is described in docs/orchestrator.md and ``protocol``.
"""
