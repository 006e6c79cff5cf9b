"""lian-build plugin: Hetzner Cloud compute provider."""
