"""Kubernetes manifests in deploy/k8s: schema-valid (the Kubernetes JSON schemas shipped by the
`kubernetes-validate` package, strict: unknown fields fail) and shaped as the runbook says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from agents import REGISTRY

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
#: Oldest Kubernetes minor the manifests must work on (autoscaling/v2, policy/v1 are GA there).
KUBERNETES_VERSION = "1.29.0"
SECRET_KEYS = {"VIGIL_SIGNING_KEY", "VIGIL_WEBHOOK_SECRET", "VIGIL_PAGERDUTY_ROUTING_KEY",
               "VIGIL_FORUM_WEBHOOK_SECRET"}


def objects() -> list[tuple[Path, dict[str, Any]]]:
    found = []
    for path in sorted(K8S.rglob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        found.extend((path, doc) for doc in yaml.safe_load_all(path.read_text()) if doc)
    return found


def of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for _, doc in objects() if doc["kind"] == kind}


@pytest.mark.parametrize("path,doc", objects(),
                         ids=lambda x: x.name if isinstance(x, Path) else x["kind"])
def test_object_is_valid_against_the_kubernetes_schema(path: Path, doc: dict[str, Any]) -> None:
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(f"{path.relative_to(ROOT)} {doc['kind']}/{doc['metadata']['name']}: "
                    f"{exc.message} at {'/'.join(map(str, exc.path))}")


def test_kustomization_lists_every_manifest_of_the_app() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    app = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == app


def test_one_deployment_per_role_with_probes_and_config_from_configmap_and_secret() -> None:
    deployments = of_kind("Deployment")
    by_name = {f"vigil-{role.replace('_', '-')}": role for role in REGISTRY}
    assert set(deployments) == set(by_name)
    for name, deployment in deployments.items():
        role = by_name[name]
        spec = deployment["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        assert container["args"] == ["worker", "--agents", role]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        sources = {next(iter(s)): next(iter(s.values()))["name"] for s in container["envFrom"]}
        assert sources == {"configMapRef": "vigil-config", "secretRef": "vigil-secrets"}
        assert not SECRET_KEYS & {e["name"] for e in container.get("env", [])}
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert deployment["spec"]["selector"]["matchLabels"] == (
            deployment["spec"]["template"]["metadata"]["labels"])


def test_no_secret_values_are_committed() -> None:
    assert not of_kind("Secret")
    for name, config in of_kind("ConfigMap").items():
        assert not SECRET_KEYS & set(config.get("data", {})), name


def test_every_role_has_a_pdb_and_lag_autoscaling_targets_real_deployments() -> None:
    deployments = of_kind("Deployment")
    pdbs = of_kind("PodDisruptionBudget")
    for name, deployment in deployments.items():
        assert pdbs[name]["spec"]["selector"]["matchLabels"] == (
            deployment["spec"]["selector"]["matchLabels"])
    hpas = of_kind("HorizontalPodAutoscaler")
    assert hpas
    for name, hpa in hpas.items():
        assert hpa["spec"]["scaleTargetRef"]["name"] in deployments
        (metric,) = hpa["spec"]["metrics"]
        assert metric["external"]["metric"]["name"] == "vigil_consumer_lag"
        assert metric["external"]["metric"]["selector"]["matchLabels"]["role"] == (
            name.removeprefix("vigil-"))


def test_adapter_serves_the_lag_metric_from_the_recording_rule() -> None:
    adapter = of_kind("ConfigMap")["prometheus-adapter-vigil"]
    rules = yaml.safe_load(adapter["data"]["config.yaml"])["externalRules"]
    assert rules[0]["name"]["as"] == "vigil_consumer_lag"
    recorded = {r.get("record") for p in (ROOT / "deploy/prometheus/rules").glob("*.yml")
                for g in yaml.safe_load(p.read_text())["groups"] for r in g["rules"]}
    assert rules[0]["seriesQuery"].split("{")[0] in recorded


def test_ingest_service_selects_intake() -> None:
    service = of_kind("Service")["vigil-ingest"]
    intake = of_kind("Deployment")["vigil-intake"]
    labels = intake["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
