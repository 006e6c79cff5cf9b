"""lian-build plugin: ``vault:`` secret references read from HashiCorp Vault / OpenBao KV v2."""
