"""lian-build plugin: Local Docker engine compute provider."""
