"""The Kubernetes path, checked without a cluster: the executor's config against dagster-k8s's
schema, the Helm values against what the code location reads, the Dockerfile against the package.

No cluster, Helm or Docker runs here: the chart is not rendered and the image is not built.
"""

from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "annotation_pipeline" / "deploy"


def _values() -> dict:
    return yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())


def test_the_k8s_executor_config_satisfies_the_executors_schema():
    from dagster._config import process_config
    from dagster_k8s import k8s_job_executor

    config = yaml.safe_load((DEPLOY / "k8s_executor.yaml").read_text())
    result = process_config(k8s_job_executor.config_schema.as_field().config_type, config)
    assert result.success, [e.message for e in result.errors]
    assert result.value["volume_mounts"][0]["mount_path"] == "/data"


def test_a_misspelled_executor_key_is_caught_by_the_same_check():
    from dagster._config import process_config
    from dagster_k8s import k8s_job_executor

    config = {**yaml.safe_load((DEPLOY / "k8s_executor.yaml").read_text()), "max_concurent": 4}
    assert not process_config(k8s_job_executor.config_schema.as_field().config_type, config).success


def test_the_production_profile_on_k8s_runs_steps_with_the_k8s_job_executor(monkeypatch):
    from annotation_pipeline.definitions import build_definitions

    env = {e["name"]: e["value"] for e in _values()["dagster-user-deployments"]["deployments"][0]["env"]}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    defs = build_definitions(root="/tmp/annotation-pipeline-unused-root")
    assert defs.resolve_job_def("annotation_lifecycle").executor_def.name == "k8s"
    monkeypatch.setenv("ANNOTATION_PIPELINE_EXECUTOR", "celery")
    assert build_definitions(root="/tmp/annotation-pipeline-unused-root").resolve_job_def(
        "annotation_lifecycle").executor_def.name == "celery"


def test_the_helm_values_point_the_chart_at_this_code_location_and_its_shared_volume():
    values = _values()
    deployment = values["dagster-user-deployments"]["deployments"][0]
    args = deployment["dagsterApiGrpcArgs"]
    module = args[args.index("--module-name") + 1]
    assert module == "annotation_pipeline.definitions" and args[args.index("--attribute") + 1] == "defs"
    env = {e["name"]: e["value"] for e in deployment["env"]}
    assert env["ANNOTATION_PIPELINE_PROFILE"] == "production" and env["ANNOTATION_PIPELINE_ROOT"] == "/data"
    executor = yaml.safe_load((DEPLOY / "k8s_executor.yaml").read_text())
    claim = {v["persistentVolumeClaim"]["claimName"] for v in executor["volumes"]}
    assert claim == {v["persistentVolumeClaim"]["claimName"] for v in deployment["volumes"]}
    assert values["runLauncher"]["type"] == "K8sRunLauncher" and values["postgresql"]["enabled"] is False
    # secrets come from Kubernetes secrets, never as values
    assert "ANNOTATION_PIPELINE_PSEUDONYM_SECRET" not in env and "annotation-pipeline-secrets" in {
        s["name"] for s in deployment["envSecrets"]}


@pytest.mark.parametrize("path", ["annotation_pipeline", "data", "pyproject.toml", "README.md"])
def test_the_dockerfile_copies_what_the_code_location_needs(path):
    copied = [line.split()[1:-1] for line in (DEPLOY / "Dockerfile").read_text().splitlines()
              if line.startswith("COPY ")]
    assert any(path in sources for sources in copied)
    assert (DEPLOY.parents[1] / path).exists()
