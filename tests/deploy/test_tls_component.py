"""The TLS component (deploy/k8s/components/tls), rendered through overlays/cpu-tls and
checked offline: the Deployments stay valid, each mounts the Secret a cert-manager
Certificate fills, the settings name files in those mounts, certificates name the hosts
their clients check, and the probes run the TLS health check on the right port."""

from __future__ import annotations

import shlex
from urllib.parse import urlsplit

import kubernetes_validate
import pytest

from services.common import health_probe
from services.common.settings import load_settings
from services.gateway.settings import GatewaySettings
from tests.deploy.chorus_services import SETTINGS
from tests.deploy.conftest import rendered_tree
from tests.deploy.rendering import Doc, Rendered, container_ports, environment, pod_spec

KUBERNETES_VERSION = "1.33.0"
INNER_SERVICES = ("tts", "prosody", "vision")
TLS_SERVICES = ("orchestrator", *INNER_SERVICES)
PROBES = ("startupProbe", "readinessProbe", "livenessProbe")


@pytest.fixture(scope="module")
def tls() -> Rendered:
    return rendered_tree("overlays/cpu-tls")


def server(rendered: Rendered, name: str) -> Doc:
    container: Doc = next(
        c for c in pod_spec(rendered.get("Deployment", name))["containers"] if c["name"] == "server"
    )
    return container


def mounted_secrets(rendered: Rendered, name: str) -> dict[str, str]:
    """The server container's Secret volumes: mount path -> Secret name."""
    volumes = {
        volume["name"]: volume["secret"]["secretName"]
        for volume in pod_spec(rendered.get("Deployment", name))["volumes"]
        if "secret" in volume
    }
    return {
        mount["mountPath"]: volumes[mount["name"]]
        for mount in server(rendered, name).get("volumeMounts", [])
        if mount["name"] in volumes
    }


def certificates(rendered: Rendered) -> dict[str, Doc]:
    """cert-manager Certificates by the Secret each fills."""
    return {doc["spec"]["secretName"]: doc for doc in rendered.of_kind("Certificate")}


def test_deployments_stay_valid_kubernetes(tls: Rendered) -> None:
    for deployment in tls.of_kind("Deployment"):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_every_certificate_chains_to_the_internal_ca(tls: Rendered) -> None:
    issuers = {doc["metadata"]["name"]: doc["spec"] for doc in tls.of_kind("Issuer")}
    by_secret = certificates(tls)
    for certificate in by_secret.values():
        assert certificate["apiVersion"] == "cert-manager.io/v1"
        issuer = issuers[certificate["spec"]["issuerRef"]["name"]]
        if certificate["spec"].get("isCA"):
            assert "selfSigned" in issuer
        else:
            assert by_secret[issuer["ca"]["secretName"]]["spec"]["isCA"]


@pytest.mark.parametrize("name", TLS_SERVICES)
def test_tls_settings_name_files_of_a_mounted_certificate(tls: Rendered, name: str) -> None:
    variables = environment(tls, server(tls, name))
    settings = load_settings(SETTINGS[name], [], variables)
    mounts = mounted_secrets(tls, name)
    by_secret = certificates(tls)
    files = [settings.tls_cert_file, settings.tls_key_file]
    if name in INNER_SERVICES:
        assert settings.tls_require_client_cert
        files.append(settings.tls_ca_file)
    else:
        files += [
            settings.upstream_ca_file,  # type: ignore[attr-defined]
            settings.upstream_cert_file,  # type: ignore[attr-defined]
            settings.upstream_key_file,  # type: ignore[attr-defined]
        ]
    for path in files:
        folder, _, file_name = path.rpartition("/")
        assert file_name in {"tls.crt", "tls.key", "ca.crt"}, path
        assert mounts[folder] in by_secret, f"{name}: {path} is in no Certificate's Secret"


def test_the_orchestrator_presents_a_client_certificate_inner_services_accept(
    tls: Rendered,
) -> None:
    client = certificates(tls)[mounted_secrets(tls, "orchestrator")["/etc/chorus/upstream-tls"]]
    assert "client auth" in client["spec"]["usages"]
    variables = environment(tls, server(tls, "orchestrator"))
    for name in INNER_SERVICES:
        certificate = certificates(tls)[mounted_secrets(tls, name)["/etc/chorus/tls"]]
        assert certificate["spec"]["issuerRef"] == client["spec"]["issuerRef"], name
        assert "server auth" in certificate["spec"]["usages"], name
        # The orchestrator checks the certificate for the host it dials.
        host = urlsplit(variables[f"CHORUS_{name.upper()}_ADDRESS"]).path.lstrip("/")
        assert host.rpartition(":")[0] in certificate["spec"]["dnsNames"], name


@pytest.mark.parametrize("name", TLS_SERVICES)
def test_probes_run_the_tls_health_check_on_the_grpc_port(tls: Rendered, name: str) -> None:
    container = server(tls, name)
    port = container_ports(tls.get("Deployment", name))["grpc"]
    certificate = certificates(tls)[mounted_secrets(tls, name)["/etc/chorus/tls"]]
    for probe_name in PROBES:
        probe = container.get(probe_name)
        if probe is None:
            continue
        assert "grpc" not in probe, (name, probe_name)
        command = probe["exec"]["command"]
        assert command[:3] == ["python", "-m", health_probe.__name__], shlex.join(command)
        options = dict(zip(command[3::2], command[4::2], strict=True))
        assert int(options["--port"]) == port, (name, probe_name)
        assert options["--server-name"] in certificate["spec"]["dnsNames"], (name, probe_name)
        if name in INNER_SERVICES:
            # It presents the server's own certificate, which must be good for clients too.
            assert "client auth" in certificate["spec"]["usages"], name
        else:
            assert options["--ca-file"].rpartition("/")[0] in mounted_secrets(tls, name)


def test_the_gateway_checks_the_orchestrators_certificate_for_the_host_it_dials(
    tls: Rendered,
) -> None:
    variables = environment(tls, server(tls, "gateway"))
    settings = load_settings(GatewaySettings, [], variables)
    mounts = mounted_secrets(tls, "gateway")
    folder, _, file_name = settings.orchestrator_ca_file.rpartition("/")
    assert file_name == "ca.crt"
    gateway = certificates(tls)[mounts[folder]]
    orchestrator = certificates(tls)[mounted_secrets(tls, "orchestrator")["/etc/chorus/tls"]]
    assert gateway["spec"]["issuerRef"] == orchestrator["spec"]["issuerRef"]
    host = urlsplit(settings.orchestrator_address).path.lstrip("/").rpartition(":")[0]
    assert host in orchestrator["spec"]["dnsNames"]
    for path in (settings.orchestrator_cert_file, settings.orchestrator_key_file):
        assert path.rpartition("/")[0] == folder
