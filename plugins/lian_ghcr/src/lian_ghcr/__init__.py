"""lian-build plugin: GitHub Container Registry."""
