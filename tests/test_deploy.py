"""deploy/ checked where it can be without a cluster: every YAML file against its schema (the
Helm values against deploy/helm/values.schema.json, whose Kubernetes objects refer to the
Kubernetes API's own definitions, read offline from the kubernetes-validate package; the
k8s_job_executor config against dagster-k8s's own config schema, its containers' resources
against the Kubernetes definitions too; both instance files against Dagster's instance schema),
and the Dockerfile against the repository it copies from."""
from __future__ import annotations

import copy
import json
import re
import tomllib
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from referencing import Registry, Resource
from dagster._config import process_config
from dagster._core.errors import DagsterInvalidConfigError
from dagster._core.instance.config import dagster_instance_config
from dagster_k8s import k8s_job_executor

from bemp_assets.executor import build_executor, k8s_executor_config
from bemp_assets.lake_server import write_instance

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"


def load(path: Path):
    return yaml.safe_load(path.read_text())


KUBERNETES = "1.34.0"  # the Kubernetes API version the values are checked against


def kubernetes_definitions() -> Resource:
    """The Kubernetes API's JSON schema definitions (strict: unknown keys are errors), from the
    kubernetes-validate package's files; their $id is what our schema's $refs name."""
    folder = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / f"v{KUBERNETES}-local-strict"
    return Resource.from_contents(json.loads((folder / "_definitions.json").read_text()))


def errors_against(schema: dict, document) -> list[str]:
    definitions = kubernetes_definitions()
    registry = Registry().with_resource(definitions.id(), definitions)
    validator = jsonschema.Draft202012Validator(schema, registry=registry)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


def helm_errors(values) -> list[str]:
    return errors_against(json.loads((DEPLOY / "helm" / "values.schema.json").read_text()), values)


def test_helm_values_match_the_schema_and_the_schema_bites():
    values = load(DEPLOY / "helm" / "values.yaml")
    assert helm_errors(values) == []
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    deployment = values["dagster-user-deployments"]["deployments"][0]
    assert {"name": "bemp-lake"} in deployment["envSecrets"]  # catalog URL and data path from the secret
    assert {"name": "BEMP_EXECUTOR", "value": "k8s"} in deployment["env"]
    wrong = copy.deepcopy(values)
    wrong["runLauncher"]["type"] = "K8sLauncher"
    wrong["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]["maxConcurent"] = 8
    errors = helm_errors(wrong)
    assert any("K8sLauncher" in e for e in errors) and any("maxConcurent" in e for e in errors)


def test_helm_values_kubernetes_objects_are_checked_against_the_kubernetes_api():
    """Mistakes only the Kubernetes definitions know of: a misspelt resources key, an env entry
    with a number for a value, a secret reference with an unknown field."""
    values = load(DEPLOY / "helm" / "values.yaml")
    wrong = copy.deepcopy(values)
    deployment = wrong["dagster-user-deployments"]["deployments"][0]
    deployment["resources"]["limit"] = deployment["resources"].pop("limits")
    deployment["env"].append({"name": "BEMP_WORKERS", "value": 2})
    wrong["dagsterWebserver"]["envSecrets"][0]["optinal"] = True
    errors = helm_errors(wrong)
    assert any(e.startswith("dagster-user-deployments/deployments/0/resources:") and "'limit'" in e for e in errors)
    assert any(e.startswith("dagster-user-deployments/deployments/0/env/1/value:") for e in errors)
    assert any(e.startswith("dagsterWebserver/envSecrets/0:") and "'optinal'" in e for e in errors)
    assert len(errors) == 3


def test_executor_config_matches_dagster_k8s_schema():
    config = k8s_executor_config(DEPLOY / "k8s" / "executor.yaml")
    result = process_config(k8s_job_executor.config_schema.config_type, config)
    assert result.success, [e.message for e in result.errors]
    limits = config["per_step_k8s_config"]["raw__steel_plant"]["container_config"]["resources"]["limits"]
    assert limits == {"cpu": "2", "memory": "4Gi"}
    broken = {**config, "per_step_k8s_config": {"raw__steel_plant": {"container": {}}}}
    assert not process_config(k8s_job_executor.config_schema.config_type, broken).success


def test_executor_step_resources_match_the_kubernetes_api():
    """dagster-k8s takes container_config as a free dict: its resources are checked against the
    Kubernetes ResourceRequirements definition here (a typo would only fail in the cluster)."""
    config = k8s_executor_config(DEPLOY / "k8s" / "executor.yaml")
    schema = {"$ref": "https://kubernetes.io/api/_definitions.json#/$defs/io.k8s.api.core.v1.ResourceRequirements"}
    steps = {"default": config["step_k8s_config"], **config["per_step_k8s_config"]}
    assert len(steps) == 4
    assert {name: errors_against(schema, step["container_config"]["resources"]) for name, step in steps.items()} == \
        {name: [] for name in steps}
    assert errors_against(schema, {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": [4]}) != []


def test_k8s_executor_is_chosen_only_on_the_lake_in_a_cluster(monkeypatch):
    assert build_executor(False).name == "in_process"
    assert build_executor(True).name == "multi_or_in_process_executor"
    monkeypatch.setenv("BEMP_EXECUTOR", "k8s")
    assert build_executor(True).name == "bemp_k8s_job_executor"
    assert build_executor(False).name == "in_process"  # the embedded file keeps one writer


@pytest.mark.parametrize("source", ["deploy", "generated"])
def test_instance_files_match_dagster_instance_schema(tmp_path, monkeypatch, source):
    for name in ("DAGSTER_PG_HOST", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB"):
        monkeypatch.setenv(name, "x")
    if source == "deploy":
        home = tmp_path
        (home / "dagster.yaml").write_text((DEPLOY / "lake" / "dagster.yaml").read_text())
    else:
        home = write_instance(tmp_path / "home", "postgresql://postgres@/dagster?host=/tmp/socket")
    config, _ = dagster_instance_config(str(home))
    assert "postgres" in config["storage"]
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert config["concurrency"]["pools"]["default_limit"] > 1  # no one-writer limit on DuckLake
    (home / "dagster.yaml").write_text((home / "dagster.yaml").read_text().replace("run_coordinator:", "run_coordinater:"))
    with pytest.raises(DagsterInvalidConfigError):
        dagster_instance_config(str(home))


def test_dockerfile_copies_what_exists_and_serves_the_code_location():
    text = (DEPLOY / "Dockerfile").read_text()
    copied = [line.split()[1:-1] for line in text.splitlines() if line.startswith("COPY ")]
    sources = [s for sources in copied for s in sources]
    assert sources and all((ROOT / s).exists() for s in sources), [s for s in sources if not (ROOT / s).exists()]
    module = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["dagster"]["module_name"]
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", text, re.M).group(1))
    assert cmd[:3] == ["dagster", "api", "grpc"] and cmd[cmd.index("-m") + 1] == module
    executor_path = re.search(r"BEMP_K8S_EXECUTOR_CONFIG=(\S+)", text).group(1)
    assert executor_path == "/opt/bemp/deploy/k8s/executor.yaml" and "COPY deploy deploy" in text
