"""lian-build plugin: zot / OCI distribution registry."""
