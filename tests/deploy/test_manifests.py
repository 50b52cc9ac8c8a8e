"""Kubernetes manifests (deploy/k8s): schemas, KEDA resources, and agreement with the configs.

Offline: kubernetes-validate bundles the Kubernetes JSON schemas; the KEDA ScaledObject and
TriggerAuthentication are validated by cloudcoil-models-keda, typed models generated from
KEDA 2.16's CRDs, with unknown keys forbidden.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from cloudcoil.models.keda import v1alpha1 as keda
from pydantic import BaseModel, ValidationError

from lensflow.shared.config import load_cloud_config
from lensflow.shared.config.cloud import AmqpIntake, S3CropStoreConfig
from tests.deploy.support import DEPLOY, KUBERNETES_VERSION, k8s_documents, k8s_kind, parse_cli

DOCS = k8s_documents()
KEDA_MODELS: dict[str, type[BaseModel]] = {
    "ScaledObject": keda.ScaledObject,
    "TriggerAuthentication": keda.TriggerAuthentication,
}
CORE = [doc for doc in DOCS if doc["kind"] not in KEDA_MODELS]
ENV_PREFIX = "LENSFLOW_CLOUD__"


def _id(doc: dict[str, Any]) -> str:
    return f"{doc['kind']}/{doc['metadata']['name']}"


def _validate_keda(doc: dict[str, Any]) -> None:
    KEDA_MODELS[doc["kind"]].model_validate(doc, extra="forbid", by_alias=True)


def _pod_specs(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        doc["spec"]["template"]["spec"]
        for doc in docs
        if doc["kind"] in ("Deployment", "StatefulSet")
    ]


def _configmap_file(name: str, key: str) -> str:
    maps = {m["metadata"]["name"]: m for m in k8s_kind(DOCS, "ConfigMap")}
    text: str = maps[name]["data"][key]
    return text


def test_every_kind_the_issue_asks_for_is_there() -> None:
    kinds = {doc["kind"] for doc in DOCS}
    assert kinds >= {
        "Namespace", "ConfigMap", "Secret", "Deployment", "Service", "StatefulSet",
        "PodDisruptionBudget", "PersistentVolumeClaim", "ScaledObject", "TriggerAuthentication",
    }  # fmt: skip


@pytest.mark.parametrize("doc", CORE, ids=_id)
def test_resource_is_valid_against_the_kubernetes_schema(doc: dict[str, Any]) -> None:
    # strict: unknown fields are errors, not silently dropped by the API server
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize(
    ("mutate", "why"),
    [
        (lambda d: d["spec"]["template"]["spec"]["containers"][0].update(imagePullPolicyy="x"),
         "misspelled field"),
        (lambda d: d["spec"].update(replicas="two"), "wrong type"),
        (lambda d: d["spec"].pop("selector"), "missing required field"),
    ],
)  # fmt: skip
def test_kubernetes_validator_rejects_a_broken_deployment(mutate: Any, why: str) -> None:
    broken = copy.deepcopy(next(d for d in k8s_kind(DOCS, "Deployment")))
    mutate(broken)
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("doc", [d for d in DOCS if d["kind"] in KEDA_MODELS], ids=_id)
def test_keda_resource_is_valid_against_the_keda_crd_models(doc: dict[str, Any]) -> None:
    assert doc["apiVersion"] == "keda.sh/v1alpha1"
    _validate_keda(doc)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d["spec"].update(maxReplicaCountt=3),  # misspelled field
        lambda d: d["spec"].update(minReplicaCount="one"),  # wrong type
        lambda d: d["spec"].pop("scaleTargetRef"),  # required field
        lambda d: d["spec"]["triggers"][0].pop("type"),  # required trigger type
    ],
)
def test_keda_models_reject_a_broken_scaled_object(mutate: Any) -> None:
    broken = copy.deepcopy(next(k8s_kind(DOCS, "ScaledObject")))
    mutate(broken)
    with pytest.raises(ValidationError):
        _validate_keda(broken)


def test_keda_trigger_watches_the_queue_the_workers_consume() -> None:
    scaled = next(k8s_kind(DOCS, "ScaledObject"))
    (trigger,) = scaled["spec"]["triggers"]
    config_path = DEPLOY / "config" / "cloud.yaml"
    intake = load_cloud_config(config_path).intake
    assert isinstance(intake, AmqpIntake)
    assert trigger["type"] == "rabbitmq"
    assert trigger["metadata"]["queueName"] == intake.queue
    assert trigger["metadata"]["mode"] in ("QueueLength", "MessageRate")
    assert int(trigger["metadata"]["value"]) > 0
    # it scales the worker Deployment, which runs `lensflow cloud worker`
    target = scaled["spec"]["scaleTargetRef"]["name"]
    worker = next(d for d in k8s_kind(DOCS, "Deployment") if d["metadata"]["name"] == target)
    args = worker["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[:2] == ["cloud", "worker"]


def test_keda_reads_the_amqp_url_the_workers_use() -> None:
    scaled = next(k8s_kind(DOCS, "ScaledObject"))
    auth_name = scaled["spec"]["triggers"][0]["authenticationRef"]["name"]
    auth = next(d for d in k8s_kind(DOCS, "TriggerAuthentication"))
    assert auth["metadata"]["name"] == auth_name
    (ref,) = auth["spec"]["secretTargetRef"]
    assert ref["parameter"] == "host"
    worker = next(d for d in k8s_kind(DOCS, "Deployment") if "worker" in d["metadata"]["name"])
    env = {e["name"]: e for e in worker["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["LENSFLOW_CLOUD__INTAKE__URL"]["valueFrom"]["secretKeyRef"] == {
        "name": ref["name"],
        "key": ref["key"],
    }


def test_every_secret_and_configmap_reference_resolves() -> None:
    secrets = {s["metadata"]["name"]: s["stringData"] for s in k8s_kind(DOCS, "Secret")}
    maps = {m["metadata"]["name"]: m["data"] for m in k8s_kind(DOCS, "ConfigMap")}
    claims = {c["metadata"]["name"] for c in k8s_kind(DOCS, "PersistentVolumeClaim")}
    for spec in _pod_specs(DOCS):
        for container in spec.get("initContainers", []) + spec["containers"]:
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in secrets[ref["name"]], env["name"]
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                assert volume["configMap"]["name"] in maps
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims


def test_configmap_holds_the_same_configs_as_deploy_config() -> None:
    # one cloud config for compose and Kubernetes: the Services have the same names
    for key in ("cloud.yaml", "pipeline.yaml"):
        assert (
            _configmap_file("lensflow-cloud-config", key) == (DEPLOY / "config" / key).read_text()
        )
    for key in ("enabled_plugins", "rabbitmq.conf"):
        assert (
            _configmap_file("rabbitmq-config", key)
            == (DEPLOY / "config" / "rabbitmq" / key).read_text()
        )
    assert "rabbitmq_mqtt" in _configmap_file("rabbitmq-config", "enabled_plugins")


def test_cloud_config_loads_with_the_environment_the_pods_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "cloud.yaml"
    config.write_text(_configmap_file("lensflow-cloud-config", "cloud.yaml"))
    secrets = next(k8s_kind(DOCS, "Secret"))["stringData"]
    for spec in _pod_specs(DOCS):
        for container in spec.get("initContainers", []) + spec["containers"]:
            env = {
                e["name"]: secrets[e["valueFrom"]["secretKeyRef"]["key"]]
                for e in container.get("env", [])
                if e["name"].startswith(ENV_PREFIX)
            }
            if not env:
                continue
            with monkeypatch.context() as patch:
                for name, value in env.items():
                    patch.setenv(name, value)
                # an override naming no config field would be an "unknown key" error here
                loaded = load_cloud_config(config)
            if "LENSFLOW_CLOUD__DATABASE__URL" in env:
                assert loaded.database.url.get_secret_value().startswith("postgresql+psycopg://")


def test_container_commands_are_lensflow_commands() -> None:
    cloud_config = yaml.safe_load(_configmap_file("lensflow-cloud-config", "cloud.yaml"))
    for spec in _pod_specs(DOCS):
        for container in spec["containers"]:
            if container["image"].startswith("lensflow-"):
                parse_cli(container["args"])  # raises on an unknown command or option
    # the pipeline path in the config is where the ConfigMap is mounted
    assert cloud_config["pipeline"] == "/etc/lensflow/pipeline.yaml"


def test_every_container_sets_resource_requests_and_limits() -> None:
    for spec in _pod_specs(DOCS):
        for container in spec.get("initContainers", []) + spec["containers"]:
            assert {"requests", "limits"} <= set(container["resources"]), container["name"]


def test_disruption_budgets_select_existing_deployments() -> None:
    labels = [d["spec"]["template"]["metadata"]["labels"] for d in k8s_kind(DOCS, "Deployment")]
    for pdb in k8s_kind(DOCS, "PodDisruptionBudget"):
        selector = pdb["spec"]["selector"]["matchLabels"]
        assert any(selector.items() <= pod.items() for pod in labels), pdb["metadata"]["name"]


def test_no_pod_shares_a_crop_volume_the_crops_are_in_the_bucket() -> None:
    claims = list(k8s_kind(DOCS, "PersistentVolumeClaim"))
    assert all("ReadWriteMany" not in c["spec"]["accessModes"] for c in claims)
    store = load_cloud_config(DEPLOY / "config" / "cloud.yaml").crop_store
    assert isinstance(store, S3CropStoreConfig)
    services = {s["metadata"]["name"]: s for s in k8s_kind(DOCS, "Service")}
    host, _, port = (store.endpoint or "").removeprefix("http://").partition(":")
    assert int(port) in {p["port"] for p in services[host]["spec"]["ports"]}
    job = next(k8s_kind(DOCS, "Job"))
    assert f"store/{store.bucket}" in job["spec"]["template"]["spec"]["containers"][0]["args"][0]


def test_the_api_and_workers_get_the_keys_minio_is_started_with() -> None:
    minio = next(d for d in k8s_kind(DOCS, "StatefulSet") if d["metadata"]["name"] == "minio")
    minio_env = {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in minio["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    for name in ("lensflow-api", "lensflow-worker"):
        pod = next(d for d in k8s_kind(DOCS, "Deployment") if d["metadata"]["name"] == name)
        (container,) = pod["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e.get("valueFrom", {}).get("secretKeyRef") for e in container["env"]}
        assert env["AWS_ACCESS_KEY_ID"] == minio_env["MINIO_ROOT_USER"], name
        assert env["AWS_SECRET_ACCESS_KEY"] == minio_env["MINIO_ROOT_PASSWORD"], name
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert "/var/lib/lensflow/crops" not in mounts and "/tmp" in mounts, name
