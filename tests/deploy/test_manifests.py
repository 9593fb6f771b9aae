"""The Kubernetes manifests under deploy/k8s, rendered and checked offline.

Every rendered document is validated against the Kubernetes API schemas (strict: unknown
fields fail), then the wiring a schema cannot see is checked: Services, probes,
NetworkPolicies, autoscalers and disruption budgets point at pods and ports that exist, and
every CHORUS_* variable a manifest sets is a real setting of that service.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml
from chorus.orchestrator.v1 import orchestrator_pb2

from services.common.api_keys import ApiKeys
from services.common.settings import ENV_PREFIX, ServerSettings, load_settings
from tests.deploy.chorus_services import METRICS_PORT, SETTINGS, default_port
from tests.deploy.conftest import rendered_tree
from tests.deploy.rendering import (
    Doc,
    Rendered,
    container_ports,
    containers,
    environment,
    pod_spec,
    resolve_port,
)

KUBERNETES_VERSION = "1.33.0"
"""The Kubernetes API the manifests are validated against (kubernetes-validate ships it)."""

INNER_SERVICES = ("tts", "prosody", "vision")
"""The services only the orchestrator calls, each behind a headless Service."""

MODEL_SERVICES = ("tts", "vision")
"""The services that load models: a startup probe, and on gpu a GPU and /models."""

OTEL_VARIABLES = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"}
"""The variables besides CHORUS_* that a Chorus service may be given."""

GPU = "nvidia.com/gpu"

LIVENESS_HEALTH = {
    "orchestrator": orchestrator_pb2.DESCRIPTOR.services_by_name["Orchestrator"].full_name
}
"""Health names liveness reads instead of the overall one: the orchestrator's overall
health follows tts, and a dependency that is down is no reason to restart it; its service's
own name follows only its lifecycle (tests/orchestrator/test_dependency_health.py)."""


def chorus_deployments(rendered: Rendered) -> dict[str, Doc]:
    """The four Chorus services' Deployments, by name (each must exist)."""
    return {name: rendered.get("Deployment", name) for name in SETTINGS}


def container_named(deployment: Doc, name: str) -> Doc:
    """The container called ``name`` in a Deployment's pods."""
    found: list[Doc] = [c for c in pod_spec(deployment)["containers"] if c["name"] == name]
    where = deployment["metadata"]["name"]
    assert len(found) == 1, f"{where} has {len(found)} containers named {name!r}"
    return found[0]


def server(deployment: Doc) -> Doc:
    """The server container of a Chorus Deployment."""
    return container_named(deployment, "server")


def setting_variables(settings_type: type[ServerSettings]) -> set[str]:
    """The CHORUS_* variables ``settings_type`` reads, one per dataclass field."""
    return {ENV_PREFIX + field.name.upper() for field in dataclasses.fields(settings_type)}


def service_port(service: Doc, port: int) -> Doc:
    """The entry of ``service``'s ports that listens on ``port``."""
    for entry in service["spec"]["ports"]:
        if entry["port"] == port:
            found: Doc = entry
            return found
    raise AssertionError(f"Service {service['metadata']['name']} has no port {port}")


def backing_deployment(rendered: Rendered, service: Doc) -> Doc:
    """The one Deployment whose pods ``service`` selects."""
    name = service["metadata"]["name"]
    matches = rendered.deployments_selected_by(service["spec"]["selector"])
    assert len(matches) == 1, f"{rendered.tree}: Service {name} selects {len(matches)} Deployments"
    return matches[0]


# --- schemas ---------------------------------------------------------------------------


def test_every_document_is_valid_kubernetes(rendered: Rendered) -> None:
    """Each rendered document passes the strict schema of its kind."""
    problems = []
    for doc in rendered.docs:
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(part) for part in error.path)
            problems.append(f"{where}: {path}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError as error:
            problems.append(f"{where}: {error.message}")
    assert not problems, f"{rendered.tree}:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    ("field", "value"),
    [("portz", []), ("imagePullPolicy", 3)],
    ids=["unknown field", "wrong type"],
)
def test_the_validator_rejects_a_broken_container(cpu: Rendered, field: str, value: object) -> None:
    """The schema check is live: a misspelt or mistyped field fails it."""
    broken = copy.deepcopy(cpu.get("Deployment", "tts"))
    server(broken)[field] = value
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_everything_is_in_the_chorus_namespace(rendered: Rendered) -> None:
    """Namespaced objects land in ``chorus``, labelled as part of Chorus."""
    for doc in rendered.docs:
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "chorus"
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "chorus", doc["metadata"]["name"]


# --- Services and ports ----------------------------------------------------------------


def test_services_select_one_deployment_with_their_target_ports(rendered: Rendered) -> None:
    """Every Service selects exactly one Deployment's pods, and each targetPort is one of
    their container ports."""
    for service in rendered.of_kind("Service"):
        deployment = backing_deployment(rendered, service)
        for entry in service["spec"]["ports"]:
            target = entry.get("targetPort", entry["port"])
            assert resolve_port(deployment, target) is not None, (
                f"{rendered.tree}: Service {service['metadata']['name']} targets port "
                f"{target!r}, which {deployment['metadata']['name']} does not expose"
            )


def test_each_service_listens_on_its_own_port(rendered: Rendered) -> None:
    """A Chorus container's port named grpc is its settings' default port, and its
    metrics port is 9464 (the port its pods' Prometheus annotations name)."""
    for name, deployment in chorus_deployments(rendered).items():
        ports = container_ports(deployment)
        assert ports["grpc"] == default_port(name), name
        assert ports["metrics"] == METRICS_PORT, name
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true", name
        assert annotations["prometheus.io/port"] == str(METRICS_PORT), name
        assert annotations["prometheus.io/path"] == "/metrics", name


def test_grpc_probes_check_overall_health_on_the_grpc_port(rendered: Rendered) -> None:
    """Readiness and liveness (and, for the model-loading services, startup) probes are
    there, and every probe is a native gRPC health check of the whole server on the
    container's grpc port, but for the liveness probes of LIVENESS_HEALTH."""
    for name, deployment in chorus_deployments(rendered).items():
        container = server(deployment)
        required = {"readinessProbe", "livenessProbe"}
        if name in MODEL_SERVICES:
            required.add("startupProbe")
        assert required <= set(container), f"{name} lacks {sorted(required - set(container))}"
        for probe_name in ("readinessProbe", "livenessProbe", "startupProbe"):
            probe = container.get(probe_name)
            if probe is not None:
                assert probe["grpc"]["port"] == container_ports(deployment)["grpc"], name
                expected = LIVENESS_HEALTH.get(name, "") if probe_name == "livenessProbe" else ""
                assert probe["grpc"].get("service", "") == expected, (name, probe_name)
        if name in MODEL_SERVICES:
            startup = container["startupProbe"]
            allowed_s = startup["failureThreshold"] * startup.get("periodSeconds", 10)
            assert allowed_s >= 120, f"{name} gets only {allowed_s} s to load its models"


def test_orchestrator_is_a_cluster_ip_service(rendered: Rendered) -> None:
    """Callers reach the orchestrator through a normal ClusterIP Service on its grpc port."""
    service = rendered.get("Service", "orchestrator")
    assert service["spec"].get("type", "ClusterIP") == "ClusterIP"
    assert service["spec"].get("clusterIP") != "None"
    assert backing_deployment(rendered, service)["metadata"]["name"] == "orchestrator"


def test_orchestrator_addresses_resolve_to_headless_services(rendered: Rendered) -> None:
    """CHORUS_<SERVICE>_ADDRESS is ``dns:///<headless Service>:<port>`` and that Service
    selects the service's own pods on their grpc port, so gRPC balances over every pod."""
    variables = environment(rendered, server(rendered.get("Deployment", "orchestrator")))
    for name in INNER_SERVICES:
        address = variables[f"CHORUS_{name.upper()}_ADDRESS"]
        match = re.fullmatch(r"dns:///([a-z0-9-]+):(\d+)", address)
        assert match, f"{name} address {address!r} is not dns:///<service>:<port>"
        service = rendered.get("Service", match[1])
        assert service["spec"].get("clusterIP") == "None", f"{match[1]} is not headless"
        entry = service_port(service, int(match[2]))
        deployment = backing_deployment(rendered, service)
        assert deployment["metadata"]["name"] == name
        assert resolve_port(deployment, entry["targetPort"]) == container_ports(deployment)["grpc"]


# --- configuration ---------------------------------------------------------------------


def test_config_map_references_exist(rendered: Rendered) -> None:
    """Every ConfigMap a pod reads (envFrom or a volume) is rendered alongside it."""
    names = {doc["metadata"]["name"] for doc in rendered.of_kind("ConfigMap")}
    for deployment in rendered.of_kind("Deployment"):
        referenced = [
            source["configMapRef"]["name"]
            for container in containers(deployment)
            for source in container.get("envFrom", [])
        ] + [
            volume["configMap"]["name"]
            for volume in pod_spec(deployment).get("volumes", [])
            if "configMap" in volume
        ]
        for name in referenced:
            assert name in names, f"{deployment['metadata']['name']} reads missing {name}"


def test_every_variable_set_is_a_setting_of_that_service(rendered: Rendered) -> None:
    """A CHORUS_* variable set for a service names a field of its settings class (a typo
    or a setting of another service would be silently ignored); nothing else is set but
    the OpenTelemetry exporter's endpoint."""
    for name, deployment in chorus_deployments(rendered).items():
        variables = set(environment(rendered, server(deployment)))
        chorus = {v for v in variables if v.startswith(ENV_PREFIX)}
        unknown = chorus - setting_variables(SETTINGS[name])
        assert not unknown, f"{rendered.tree}: {name} does not read {sorted(unknown)}"
        assert variables - chorus <= OTEL_VARIABLES, f"{name}: {sorted(variables - chorus)}"


def test_every_setting_value_parses(rendered: Rendered) -> None:
    """Each service's settings load from the variables the manifests give it, as its
    server loads them at start-up (a value of the wrong type would stop the server)."""
    for name, deployment in chorus_deployments(rendered).items():
        variables = environment(rendered, server(deployment))
        settings = load_settings(SETTINGS[name], argv=[], environ=variables)
        assert settings.redis_url == variables["CHORUS_REDIS_URL"], name


def test_every_service_gets_redis_metrics_and_the_collector(rendered: Rendered) -> None:
    """Each service is given the Redis Service, its metrics port (its container port
    named metrics) and the collector's OTLP port."""
    for name, deployment in chorus_deployments(rendered).items():
        variables = environment(rendered, server(deployment))

        redis = urlsplit(variables["CHORUS_REDIS_URL"])
        assert redis.scheme in ("redis", "rediss"), name
        assert redis.hostname is not None, name
        assert redis.port is not None, name
        redis_service = rendered.get("Service", redis.hostname)
        service_port(redis_service, redis.port)
        assert backing_deployment(rendered, redis_service)["metadata"]["name"] == "redis"

        assert int(variables["CHORUS_METRICS_PORT"]) == container_ports(deployment)["metrics"]

        collector = urlsplit(variables["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"])
        assert collector.scheme == "http", name
        assert collector.hostname is not None, name
        assert collector.port is not None, name
        service = rendered.get("Service", collector.hostname)
        assert backing_deployment(rendered, service)["metadata"]["name"] == "otel-collector"
        assert service_port(service, collector.port)["name"] == "otlp-grpc", name


def test_redis_requires_the_password_every_service_sends(rendered: Rendered) -> None:
    """Redis runs with --requirepass from a Secret, and each service's Redis URL, which
    comes from a Secret too (never a ConfigMap), carries that password."""
    redis = container_named(rendered.get("Deployment", "redis"), "redis")
    args = redis["args"]
    assert args[args.index("--requirepass") + 1] == "$(REDIS_PASSWORD)"
    redis_env = {variable["name"]: variable for variable in redis["env"]}
    assert "secretKeyRef" in redis_env["REDIS_PASSWORD"]["valueFrom"]
    password = environment(rendered, redis)["REDIS_PASSWORD"]
    assert password
    assert environment(rendered, redis)["REDISCLI_AUTH"] == password  # the probe's
    for config_map in rendered.of_kind("ConfigMap"):
        assert "CHORUS_REDIS_URL" not in config_map.get("data", {}), config_map["metadata"]
    for name, deployment in chorus_deployments(rendered).items():
        url = {variable["name"]: variable for variable in server(deployment).get("env", [])}[
            "CHORUS_REDIS_URL"
        ]
        assert "secretKeyRef" in url["valueFrom"], name
        parsed = urlsplit(environment(rendered, server(deployment))["CHORUS_REDIS_URL"])
        assert parsed.password == password, name


@pytest.mark.parametrize("tree", ["overlays/cpu", "overlays/gpu"])
def test_overlays_require_api_keys_at_the_orchestrator_alone(tree: str) -> None:
    """On a cluster the orchestrator reads its keys' digests from a mounted Secret (a file
    of entries that parse, none of them a plain key); the inner services require none."""
    rendered = rendered_tree(tree)
    orchestrator = rendered.get("Deployment", "orchestrator")
    variables = environment(rendered, server(orchestrator))
    assert "CHORUS_API_KEYS" not in variables
    path = variables["CHORUS_API_KEYS_FILE"]
    folder, _, file_name = path.rpartition("/")
    mounts = {mount["mountPath"]: mount for mount in server(orchestrator)["volumeMounts"]}
    assert mounts[folder]["readOnly"]
    volume = next(
        v for v in pod_spec(orchestrator)["volumes"] if v["name"] == mounts[folder]["name"]
    )
    keys_file = rendered.secret_data(volume["secret"]["secretName"])[file_name]
    ApiKeys.parse(keys_file, path)  # raises on anything but name:sha256hex entries
    for name in INNER_SERVICES:
        inner = environment(rendered, server(rendered.get("Deployment", name)))
        assert not {"CHORUS_API_KEYS", "CHORUS_API_KEYS_FILE"} & set(inner), name


def test_collector_sends_traces_to_jaeger_and_to_a_file(rendered: Rendered) -> None:
    """The collector listens for OTLP/gRPC on the port its Service targets, and exports
    traces to Jaeger's OTLP Service port and as OTLP JSON to a file on its traces volume."""
    deployment = rendered.get("Deployment", "otel-collector")
    [volume] = [v for v in pod_spec(deployment)["volumes"] if "configMap" in v]
    config = yaml.safe_load(rendered.config_map_data(volume["configMap"]["name"])["config.yaml"])

    receiver_port = int(config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].split(":")[1])
    assert receiver_port == container_ports(deployment)["otlp-grpc"]

    traces = config["service"]["pipelines"]["traces"]
    assert traces["receivers"] == ["otlp"]
    exporters = {name: config["exporters"][name] for name in traces["exporters"]}
    [jaeger] = [e for n, e in exporters.items() if n.split("/")[0] == "otlp_grpc"]
    host, port = jaeger["endpoint"].split(":")
    jaeger_service = rendered.get("Service", host)
    entry = service_port(jaeger_service, int(port))
    jaeger_pods = backing_deployment(rendered, jaeger_service)
    assert jaeger_pods["metadata"]["name"] == "jaeger"
    assert resolve_port(jaeger_pods, entry["targetPort"]) == 4317

    [file] = [e for n, e in exporters.items() if n.split("/")[0] == "file"]
    assert file.get("format", "json") == "json"
    mounts = {m["mountPath"]: m for m in container_named(deployment, "collector")["volumeMounts"]}
    folder = file["path"].rsplit("/", 1)[0]
    assert folder in mounts, f"{file['path']} is not on a volume"
    assert not mounts[folder].get("readOnly", False), f"{folder} is read-only"


# --- policies, autoscaling, disruption budgets -----------------------------------------


def test_network_policies_select_existing_pods_and_ports(rendered: Rendered) -> None:
    """Each NetworkPolicy, and each pod selector in its rules, selects some Deployment's
    pods, and every port it names is a container port of the pods it protects."""
    for policy in rendered.of_kind("NetworkPolicy"):
        name = policy["metadata"]["name"]
        protected = rendered.deployments_selected_by(policy["spec"]["podSelector"]["matchLabels"])
        assert protected, f"{rendered.tree}: NetworkPolicy {name} selects no pods"
        for rule in policy["spec"].get("ingress", []):
            for peer in rule.get("from", []):
                labels = peer.get("podSelector", {}).get("matchLabels", {})
                if labels:
                    assert rendered.deployments_selected_by(labels), f"{name}: {labels}"
            for port in rule.get("ports", []):
                for deployment in protected:
                    assert resolve_port(deployment, port["port"]) is not None, (
                        f"{name}: port {port['port']!r} not on {deployment['metadata']['name']}"
                    )


def test_inner_services_accept_grpc_only_from_the_orchestrator(rendered: Rendered) -> None:
    """tts, prosody and vision take gRPC from orchestrator pods alone; the orchestrator
    takes it from anywhere."""
    for name in INNER_SERVICES:
        policy = rendered.get("NetworkPolicy", name)
        grpc_rules = [
            rule
            for rule in policy["spec"]["ingress"]
            if any(p["port"] == "grpc" for p in rule.get("ports", []))
        ]
        assert grpc_rules, f"{name} admits no gRPC"
        for rule in grpc_rules:
            peers = rule.get("from", [])
            assert peers, f"{name} admits gRPC from anywhere"
            for peer in peers:
                assert set(peer) == {"podSelector"}, f"{name}: {peer}"
                selected = rendered.deployments_selected_by(peer["podSelector"]["matchLabels"])
                assert [d["metadata"]["name"] for d in selected] == ["orchestrator"]
    orchestrator = rendered.get("NetworkPolicy", "orchestrator")
    assert any(
        "from" not in rule and any(p["port"] == "grpc" for p in rule["ports"])
        for rule in orchestrator["spec"]["ingress"]
    )


@pytest.mark.parametrize("protected", ["redis", "otel-collector"])
def test_redis_and_collector_admit_only_chorus_services(rendered: Rendered, protected: str) -> None:
    """Redis accepts traffic only from the four Chorus services' pods, the collector from
    theirs and the gateway's."""
    expected = set(SETTINGS) | ({"gateway"} if protected == "otel-collector" else set())
    policy = rendered.get("NetworkPolicy", protected)
    for rule in policy["spec"]["ingress"]:
        selected = {
            deployment["metadata"]["name"]
            for peer in rule["from"]
            for deployment in rendered.deployments_selected_by(peer["podSelector"]["matchLabels"])
        }
        assert selected == expected, protected


def test_autoscalers_scale_deployments_on_cpu(rendered: Rendered) -> None:
    """tts and the orchestrator scale on CPU; each autoscaler's target exists, requests
    CPU (utilisation is measured against it) and leaves its replica count to it."""
    autoscalers = rendered.of_kind("HorizontalPodAutoscaler")
    assert {hpa["metadata"]["name"] for hpa in autoscalers} >= {"tts", "orchestrator"}
    for hpa in autoscalers:
        target = hpa["spec"]["scaleTargetRef"]
        assert target["kind"] == "Deployment"
        deployment = rendered.get("Deployment", target["name"])
        assert "replicas" not in deployment["spec"], f"{target['name']} fights its autoscaler"
        assert all("cpu" in c["resources"]["requests"] for c in containers(deployment))
        [metric] = hpa["spec"]["metrics"]
        assert metric["resource"]["name"] == "cpu"
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


def test_every_service_has_a_disruption_budget(rendered: Rendered) -> None:
    """Each Chorus service has a PodDisruptionBudget that selects its pods and only them."""
    budgets = {pdb["metadata"]["name"]: pdb for pdb in rendered.of_kind("PodDisruptionBudget")}
    for name in SETTINGS:
        budget = budgets[name]
        selected = rendered.deployments_selected_by(budget["spec"]["selector"]["matchLabels"])
        assert [d["metadata"]["name"] for d in selected] == [name]
        assert "maxUnavailable" in budget["spec"] or "minAvailable" in budget["spec"]


# --- hardening -------------------------------------------------------------------------


def test_every_container_has_requests_and_limits(rendered: Rendered) -> None:
    """Every container requests and is limited in CPU and memory."""
    for deployment in rendered.of_kind("Deployment"):
        for container in containers(deployment):
            where = f"{deployment['metadata']['name']}/{container['name']}"
            resources = container.get("resources", {})
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(kind, {})), f"{where} {kind}"


def test_every_container_runs_unprivileged(rendered: Rendered) -> None:
    """Non-root, no privilege escalation, no capabilities; the Chorus servers as uid
    10001 (the images' user) on a read-only root filesystem with a writable /tmp."""
    for deployment in rendered.of_kind("Deployment"):
        pod_context = pod_spec(deployment).get("securityContext", {})
        for container in containers(deployment):
            where = f"{deployment['metadata']['name']}/{container['name']}"
            context = {**pod_context, **container.get("securityContext", {})}
            assert context.get("runAsNonRoot") is True, where
            assert context.get("runAsUser", 0) != 0, where
            assert context.get("allowPrivilegeEscalation") is False, where
            assert context.get("capabilities", {}).get("drop") == ["ALL"], where
            assert context.get("readOnlyRootFilesystem") is True, where
    for name, deployment in chorus_deployments(rendered).items():
        assert pod_spec(deployment)["securityContext"]["runAsUser"] == 10001, name
        mounts = {m["mountPath"] for m in server(deployment)["volumeMounts"]}
        assert "/tmp" in mounts, f"{name} has no writable /tmp"


def test_chorus_images_are_tagged(rendered: Rendered) -> None:
    """Each service runs its own image, chorus/<name>, at a set tag (kustomize images:)."""
    for name, deployment in chorus_deployments(rendered).items():
        image, _, tag = server(deployment)["image"].partition(":")
        assert image == f"chorus/{name}"
        assert tag, f"{name} image has no tag"
        assert tag != "latest", f"{name} image runs latest"


# --- overlays --------------------------------------------------------------------------


def test_gpu_overlay_puts_model_services_on_gpus(gpu: Rendered) -> None:
    """On gpu, tts and vision each take a GPU on a GPU node (tolerating its taint) and read
    their models from the chorus-models claim, mounted read-only at /models."""
    claim = gpu.get("PersistentVolumeClaim", "chorus-models")
    assert claim["spec"]["accessModes"] == ["ReadOnlyMany"]
    for name in MODEL_SERVICES:
        deployment = gpu.get("Deployment", name)
        spec, container = pod_spec(deployment), server(deployment)
        assert int(container["resources"]["limits"][GPU]) == 1, name
        assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}, name
        assert {"key": GPU, "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
        [models] = [v for v in spec["volumes"] if "persistentVolumeClaim" in v]
        assert models["persistentVolumeClaim"] == {"claimName": "chorus-models", "readOnly": True}
        [mount] = [m for m in container["volumeMounts"] if m["name"] == models["name"]]
        assert mount["mountPath"] == "/models", name
        assert mount["readOnly"] is True, name
    for name in set(SETTINGS) - set(MODEL_SERVICES):
        assert GPU not in server(gpu.get("Deployment", name))["resources"]["limits"], name


def test_gpu_overlay_runs_the_neural_engines_from_models(gpu: Rendered) -> None:
    """On gpu, tts runs Coqui and vision YOLO and BiRefNet, on cuda, from files under
    /models, with downloads off."""
    tts = environment(gpu, server(gpu.get("Deployment", "tts")))
    assert tts["CHORUS_ENGINE"] == "coqui"
    assert tts["CHORUS_DEVICE"] == "cuda"
    assert tts["CHORUS_COQUI_MODEL"].startswith("/models/")
    assert tts["CHORUS_COQUI_MODELS_DIR"].startswith("/models/")
    assert tts["CHORUS_COQUI_ALLOW_DOWNLOAD"] == "false"
    vision = environment(gpu, server(gpu.get("Deployment", "vision")))
    assert vision["CHORUS_DETECTOR"] == "yolo"
    assert vision["CHORUS_MATTING"] == "birefnet"
    assert vision["CHORUS_DEVICE"] == "cuda"
    assert vision["CHORUS_YOLO_MODEL"].startswith("/models/")
    assert vision["CHORUS_BIREFNET_MODEL"].startswith("/models/")


def test_cpu_overlay_needs_no_gpu_and_no_models(cpu: Rendered) -> None:
    """On cpu nothing asks for a GPU, a GPU node or a models volume, and the engines are
    the ones whose models come with the images: Piper's packaged voice, OpenCV's."""
    for deployment in cpu.of_kind("Deployment"):
        spec = pod_spec(deployment)
        assert "nodeSelector" not in spec
        assert "tolerations" not in spec
        assert not any("persistentVolumeClaim" in v for v in spec.get("volumes", []))
        for container in containers(deployment):
            for kind in ("requests", "limits"):
                assert GPU not in container["resources"][kind], deployment["metadata"]["name"]
    assert not cpu.of_kind("PersistentVolumeClaim")
    tts = environment(cpu, server(cpu.get("Deployment", "tts")))
    assert tts["CHORUS_ENGINE"] == "piper"
    assert tts["CHORUS_DEVICE"] == "cpu"
    assert "CHORUS_PIPER_MODEL" not in tts  # the packaged voice
    # The sessions' threads fit the container's CPU limit.
    limit = float(server(cpu.get("Deployment", "tts"))["resources"]["limits"]["cpu"])
    sessions, threads = int(tts["CHORUS_PIPER_SESSIONS"]), int(tts["CHORUS_PIPER_THREADS"])
    assert sessions * threads <= limit
    assert int(tts["CHORUS_ENGINE_WORKERS"]) == sessions
    vision = environment(cpu, server(cpu.get("Deployment", "vision")))
    assert (vision["CHORUS_DETECTOR"], vision["CHORUS_MATTING"]) == ("opencv", "grabcut")
