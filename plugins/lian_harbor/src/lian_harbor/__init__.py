"""lian-build plugin: Harbor registry."""
