"""The plugin host: built-ins, entry points, broken plugins, conflicts, blocking."""

from __future__ import annotations

import json

import pluggy
import pytest

from fixtures.fake_dists import install_fake_plugin, run_lian
from lian_build import api, hookimpl
from lian_build.errors import PluginError
from lian_build.plugins import PluginHost

SIX = {"hcloud", "proxmox", "docker-local", "zot", "harbor", "ghcr"}


def test_builtins_go_through_the_same_manager():
    host = PluginHost.load(entry_points=False)
    names = {r.name for r in host.records}
    assert {"builtin-builders", "builtin-secrets", "builtin-sizing"} <= names
    assert all(r.builtin for r in host.records)
    assert {"buildkit", "buildah"} <= set(host.names("builder"))
    assert {"env", "file"} <= set(host.names("secret"))
    # Registered in pluggy like any plugin.
    assert host.pm.get_plugin("builtin-secrets") is not None


def test_installed_provider_plugins_are_listed():
    host = PluginHost.load()
    loaded = {r.name for r in host.records if not r.builtin and r.status == "loaded"}
    assert loaded >= SIX
    assert {"hcloud", "proxmox", "docker-local"} <= set(host.names("compute"))
    assert {"zot", "harbor", "ghcr"} <= set(host.names("registry"))


class _Extra(api.ComputeProvider):
    name = "docker-local"  # collides with the real plugin

    def tiers(self):
        return []

    def spawn(self, request):
        raise NotImplementedError

    def destroy(self, runner_id):
        pass


class _ConflictPlugin:
    @hookimpl
    def lian_register_compute_providers(self, register):
        register(_Extra)


def test_conflict_names_both_distributions():
    host = PluginHost.load(extra=[("dup", _ConflictPlugin())])
    with pytest.raises(PluginError) as err:
        host.compute_provider("docker-local", {}, lambda ref: "")
    assert err.value.code == "PLUGIN_CONFLICT"
    assert "lian-build-docker-local" in err.value.message
    assert "(in-process)" in err.value.message


def test_unknown_provider_lists_installed():
    host = PluginHost.load()
    with pytest.raises(PluginError) as err:
        host.compute_provider("nope", {}, lambda ref: "")
    assert err.value.code == "PLUGIN_NOT_FOUND"
    assert "docker-local" in err.value.message


class _Misspelt:
    @hookimpl
    def lian_register_compute_provider(self, register):  # missing "s"
        pass


class _WrongArgs:
    @hookimpl
    def lian_register_builders(self, register, surprise):
        pass


@pytest.mark.parametrize("plugin", [_Misspelt(), _WrongArgs()])
def test_invalid_hookimpl_is_recorded_and_skipped(plugin):
    host = PluginHost.load(entry_points=False, extra=[("bad", plugin)])
    record = next(r for r in host.records if r.name == "bad")
    assert record.status == "error"
    assert record.error
    assert host.pm.get_plugin("bad") is None
    assert "buildkit" in host.names("builder")  # the rest still works


def test_settings_are_validated_with_field_names():
    host = PluginHost.load()
    from lian_build.errors import InvalidInput

    with pytest.raises(InvalidInput) as err:
        host.compute_provider("docker-local", {"no_such_setting": 1}, lambda ref: "")
    assert "no_such_setting" in err.value.message


def test_broken_installed_plugin_is_reported_not_fatal(tmp_path):
    site = tmp_path / "site"
    install_fake_plugin(
        site, "lian-build-broken", "broken", "lian_broken_mod", "raise ImportError('kaboom')\n"
    )
    install_fake_plugin(
        site,
        "lian-build-wrong",
        "wrong",
        "lian_wrong_mod",
        """
        from lian_build import hookimpl
        @hookimpl
        def lian_register_builders(register, nonsense):
            pass
        """,
    )
    proc = run_lian(["plugins", "--json"], site=site)
    assert proc.returncode == 0, proc.stderr
    env = json.loads(proc.stdout)
    by_name = {p["name"]: p for p in env["result"]["plugins"]}
    assert by_name["broken"]["status"] == "error"
    assert "kaboom" in by_name["broken"]["error"]
    assert by_name["broken"]["distribution"] == "lian-build-broken"
    assert by_name["wrong"]["status"] == "error"
    assert by_name["docker-local"]["status"] == "loaded"
    assert "broken" in proc.stderr and "Traceback" not in proc.stderr
    # Unrelated commands still work.
    help_proc = run_lian(["--help"], site=site)
    assert help_proc.returncode == 0


def test_disable_plugins_env_blocks_by_name(tmp_path):
    proc = run_lian(["plugins", "--json"], env={"LIAN_DISABLE_PLUGINS": "hcloud,lian-build-zot"})
    env = json.loads(proc.stdout)
    by_name = {p["name"]: p for p in env["result"]["plugins"]}
    assert by_name["hcloud"]["status"] == "disabled"
    assert by_name["zot"]["status"] == "disabled"
    assert by_name["proxmox"]["status"] == "loaded"


def test_conflict_from_installed_distribution(tmp_path):
    site = tmp_path / "site"
    install_fake_plugin(
        site,
        "lian-build-shadow",
        "shadow",
        "lian_shadow_mod",
        """
        from lian_build import hookimpl
        from lian_build.api import RegistryProvider

        class Shadow(RegistryProvider):
            name = "zot"
            host = "x"
            def check(self): pass
            def manifest_digest(self, reference): return None

        @hookimpl
        def lian_register_registries(register):
            register(Shadow)
        """,
    )
    proc = run_lian(["plugins", "--json"], site=site)
    env = json.loads(proc.stdout)
    owners = env["result"]["conflicts"]["registry:zot"]
    assert set(owners) == {"lian-build-zot", "lian-build-shadow"}


def test_hookspecs_are_all_prefixed_and_documented():
    from lian_build import hookspecs

    pm = pluggy.PluginManager("lian_build")
    pm.add_hookspecs(hookspecs)
    names = [n for n in dir(hookspecs) if n.startswith("lian_")]
    assert names
    for name in names:
        assert getattr(hookspecs, name).__doc__, name
        assert hasattr(pm.hook, name)


class _RotSink(api.EventSink):
    name = "rot13"

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def emit(self, event):
        pass


class _ThirdPartyEvents:
    @hookimpl
    def lian_register_event_sinks(self, register, settings):
        register(_RotSink(settings.subject_prefix))


class _BrokenEvents:
    @hookimpl
    def lian_register_event_sinks(self, register):
        raise RuntimeError("sink backend down")


def test_third_party_event_sink_registration_and_a_broken_one():
    host = PluginHost.load(
        entry_points=False, extra=[("events", _ThirdPartyEvents()), ("broken", _BrokenEvents())]
    )
    sinks = host.event_sinks(api.EventSettings(subject_prefix="ci"))
    assert [(s.name, s.prefix) for s in sinks] == [("rot13", "ci")]


class _VaultLike(api.SecretResolver):
    scheme = "mem"

    def resolve(self, reference):
        return {"db/password": "s3cr3t-from-mem"}[reference]


class _ThirdPartySecrets:
    @hookimpl
    def lian_register_secret_resolvers(self, register):
        register(_VaultLike)


def test_third_party_secret_resolver_is_used_by_the_store():
    from lian_build.secrets import SecretStore

    host = PluginHost.load(entry_points=False, extra=[("mem", _ThirdPartySecrets())])
    store = SecretStore(host.secret_resolvers())
    assert store("mem:db/password") == "s3cr3t-from-mem"
    assert store.redact("pw=s3cr3t-from-mem") == "pw=***"
    assert set(host.names("secret")) == {"env", "file", "mem"}
