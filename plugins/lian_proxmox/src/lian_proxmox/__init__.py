"""lian-build plugin: Proxmox VE compute provider."""
