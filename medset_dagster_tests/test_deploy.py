"""deploy/ lints offline: the Helm values against our schema of the keys we rely on, every
Kubernetes manifest against the Kubernetes API schemas that kubernetes-validate ships (strict: an
unknown field fails), and the names that tie them together."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from medset_dagster.defs.executors import executor_from_env, k8s_executor_config
from medset_dagster.defs.generation import TASKS
from medset_dagster.defs.resources import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"
# A Kubernetes version still widely served; its strict schemas ship in kubernetes-validate.
KUBERNETES_VERSION = "1.30.0"
MANIFESTS = sorted((DEPLOY / "k8s").glob("*.yaml"))


def _documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _values() -> dict:
    return yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())


def _resources() -> dict[tuple[str, str], dict]:
    return {(doc["kind"], doc["metadata"]["name"]): doc for path in MANIFESTS for doc in _documents(path)}


def test_the_helm_values_have_the_keys_we_rely_on():
    schema = json.loads((DEPLOY / "helm" / "values.keys.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(_values(), schema, cls=jsonschema.Draft202012Validator)


def test_the_schema_catches_a_wrong_launcher_and_a_floating_image_tag():
    schema = json.loads((DEPLOY / "helm" / "values.keys.schema.json").read_text())
    values = _values()
    values["runLauncher"]["type"] = "CeleryK8sRunLauncher"
    with pytest.raises(jsonschema.ValidationError, match="K8sRunLauncher"):
        jsonschema.validate(values, schema)
    values = _values()
    values["dagster-user-deployments"]["deployments"][0]["image"]["tag"] = "latest"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(values, schema)


@pytest.mark.parametrize("path", MANIFESTS, ids=[p.name for p in MANIFESTS])
def test_every_manifest_is_valid_kubernetes(path):
    documents = _documents(path)
    assert documents, path
    for doc in documents:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_strict_validation_rejects_an_unknown_field():
    (pvc,) = _documents(DEPLOY / "k8s" / "data-volume.yaml")
    pvc["spec"]["accesModes"] = pvc["spec"].pop("accessModes")  # a typo
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(pvc, KUBERNETES_VERSION, strict=True)


def test_the_values_and_the_manifests_name_the_same_things():
    values, resources = _values(), _resources()
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    env = {item["name"]: item["value"] for item in deployment["env"]}
    # The data folder: one ReadWriteMany claim, mounted where MEDSET_DATA_DIR points.
    (volume,) = deployment["volumes"]
    claim = resources[("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert {m["mountPath"] for m in deployment["volumeMounts"] if m["name"] == volume["name"]} == {env["MEDSET_DATA_DIR"]}
    # The instance: the chart reaches our Postgres, whose password is the chart's secret key.
    postgres = values["postgresql"]
    service = resources[("Service", postgres["postgresqlHost"])]
    assert service["spec"]["ports"][0]["port"] == postgres["service"]["port"]
    container = resources[("StatefulSet", "medset-postgres")]["spec"]["template"]["spec"]["containers"][0]
    container_env = {item["name"]: item for item in container["env"]}
    assert container_env["POSTGRES_USER"]["value"] == postgres["postgresqlUsername"]
    assert container_env["POSTGRES_DB"]["value"] == postgres["postgresqlDatabase"]
    assert container_env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": values["global"]["postgresqlSecretName"], "key": "postgresql-password"}
    # The object store mirrors the same claim.
    mirror = resources[("CronJob", "medset-data-mirror")]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert mirror["volumes"][0]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    # The code server serves our definitions module.
    workspace = yaml.safe_load((REPO_ROOT / "workspace.yaml").read_text())
    assert deployment["dagsterApiGrpcArgs"] == ["--module-name", workspace["load_from"][0]["python_module"]["module_name"]]


def test_the_code_location_env_selects_the_k8s_executor_with_llm_nodes():
    (deployment,) = _values()["dagster-user-deployments"]["deployments"]
    env = {item["name"]: item["value"] for item in deployment["env"]}
    assert env["MEDSET_EXECUTOR"] == "k8s"
    assert executor_from_env(env).name == "k8s"
    config = k8s_executor_config(env)
    assert config["max_concurrent"] == int(env["MEDSET_K8S_MAX_CONCURRENT"])
    assert set(config["per_step_k8s_config"]) == set(TASKS)
