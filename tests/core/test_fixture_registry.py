import httpx


def test_open_registry_answers_v2(oci_registry):
    r = httpx.get(f"{oci_registry.url}/v2/")
    assert r.status_code == 200


def test_auth_registry_needs_credentials(oci_registry_auth):
    r = httpx.get(f"{oci_registry_auth.url}/v2/")
    assert r.status_code == 401
    r = httpx.get(
        f"{oci_registry_auth.url}/v2/",
        auth=(oci_registry_auth.username, oci_registry_auth.password),
    )
    assert r.status_code == 200
