"""Render the kustomize trees under deploy/k8s and look up what they hold.

Rendering uses ``kubectl kustomize`` (kustomize built into kubectl), so the tests check the
manifests a cluster would receive, generated ConfigMap names and overlay patches included.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
K8S_DIR = REPO_ROOT / "deploy" / "k8s"
TREES = ("base", "overlays/cpu", "overlays/gpu")
"""The kustomize trees under K8S_DIR, each renderable on its own."""

Doc = dict[str, Any]


class KubectlMissing(Exception):
    """kubectl is not on PATH, so nothing can be rendered."""


def render(tree: str) -> list[Doc]:
    """The documents ``kubectl kustomize`` renders for ``tree`` (a folder under K8S_DIR).

    Raises KubectlMissing without kubectl, AssertionError (with kustomize's message) when
    the tree does not render.
    """
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise KubectlMissing("kubectl is not on PATH (its built-in kustomize renders deploy/k8s)")
    result = subprocess.run(
        [kubectl, "kustomize", str(K8S_DIR / tree)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if result.returncode != 0:
        raise AssertionError(f"kubectl kustomize {tree} failed:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """Whether a matchLabels ``selector`` selects an object with ``labels``."""
    return all(labels.get(key) == value for key, value in selector.items())


@dataclass(frozen=True)
class Rendered:
    """One rendered tree, with look-ups by kind and name."""

    tree: str
    docs: list[Doc]

    def of_kind(self, kind: str) -> list[Doc]:
        """Every document of ``kind``."""
        return [doc for doc in self.docs if doc["kind"] == kind]

    def get(self, kind: str, name: str) -> Doc:
        """The one ``kind`` named ``name``; AssertionError when there is none."""
        for doc in self.of_kind(kind):
            if doc["metadata"]["name"] == name:
                return doc
        raise AssertionError(f"{self.tree}: no {kind} named {name!r}")

    def deployments_selected_by(self, selector: Mapping[str, str]) -> list[Doc]:
        """The Deployments whose pods carry every label of ``selector``."""
        return [
            deployment
            for deployment in self.of_kind("Deployment")
            if selects(selector, pod_labels(deployment))
        ]

    def config_map_data(self, name: str) -> dict[str, str]:
        """The data of ConfigMap ``name`` (its generated name, hash suffix included)."""
        data: dict[str, str] = self.get("ConfigMap", name).get("data", {})
        return data

    def secret_data(self, name: str) -> dict[str, str]:
        """The decoded data of Secret ``name`` (its generated name, hash suffix included)."""
        encoded: dict[str, str] = self.get("Secret", name).get("data", {})
        return {key: base64.b64decode(value).decode() for key, value in encoded.items()}


def pod_spec(deployment: Doc) -> Doc:
    """The pod spec of a Deployment's template."""
    spec: Doc = deployment["spec"]["template"]["spec"]
    return spec


def pod_labels(deployment: Doc) -> dict[str, str]:
    """The labels of a Deployment's pods."""
    labels: dict[str, str] = deployment["spec"]["template"]["metadata"].get("labels", {})
    return labels


def containers(deployment: Doc) -> Iterator[Doc]:
    """Every container (init containers included) of a Deployment's pods."""
    spec = pod_spec(deployment)
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def container_ports(deployment: Doc) -> dict[str, int]:
    """Container port numbers of a Deployment's pods, by port name (unnamed under the
    number itself, as text)."""
    return {
        port.get("name", str(port["containerPort"])): port["containerPort"]
        for container in containers(deployment)
        for port in container.get("ports", [])
    }


def resolve_port(deployment: Doc, port: int | str) -> int | None:
    """The container port a Service targetPort or NetworkPolicy port (a number or a port
    name) means in ``deployment``; None when no container has it."""
    ports = container_ports(deployment)
    if isinstance(port, str):
        return ports.get(port)
    return port if port in ports.values() else None


def environment(rendered: Rendered, container: Doc) -> dict[str, str]:
    """The variables ``container`` gets from its envFrom ConfigMaps and its env list (a
    value taken from a rendered Secret's or ConfigMap's key, as the pod would get it; one
    taken from elsewhere, valueFrom a field, reads as an empty string)."""
    variables: dict[str, str] = {}
    for source in container.get("envFrom", []):
        variables.update(rendered.config_map_data(source["configMapRef"]["name"]))
    for variable in container.get("env", []):
        source = variable.get("valueFrom", {})
        if "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            value = rendered.secret_data(ref["name"])[ref["key"]]
        elif "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            value = rendered.config_map_data(ref["name"])[ref["key"]]
        else:
            value = variable.get("value", "")
        variables[variable["name"]] = value
    return variables
