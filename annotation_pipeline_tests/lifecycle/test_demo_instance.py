"""The demo's Dagster instance carries the repository's dagster.yaml (run retries, run monitoring,
telemetry off), so the README's `dagster dev` on ROOT/dagster_home has them too."""

from annotation_pipeline.cli.lifecycle import _instance
from annotation_pipeline.layout import INSTANCE_YAML


def test_the_demo_instance_has_the_repositorys_run_retries_and_run_monitoring(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))  # recorded, so undone after the test
    monkeypatch.delenv("DAGSTER_HOME")
    instance = _instance(tmp_path)
    try:
        assert (tmp_path / "dagster_home" / "dagster.yaml").read_bytes() == INSTANCE_YAML.read_bytes()
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 2
        assert instance.run_monitoring_enabled
        assert not instance.get_settings("telemetry")["enabled"]
    finally:
        instance.dispose()
