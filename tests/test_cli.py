import pytest
from typer.testing import CliRunner

from fraudkit.cli import app
from fraudkit.spark import JavaMissingError, check_java

pytestmark = pytest.mark.unit
runner = CliRunner()


def test_help_names_every_command():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("up", "down", "status", "produce", "stream", "demo", "train", "data"):
        assert command in result.output


def test_status_with_nothing_started(tmp_path, monkeypatch):
    monkeypatch.setenv("FRAUDKIT_RUN_DIR", str(tmp_path / "runs"))
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "AWS_ENDPOINT_URL", "FRAUDKIT_LLM_URL"):
        monkeypatch.delenv(name, raising=False)
    result = runner.invoke(app, ["status"])
    assert result.exit_code == 0
    assert result.output.count("down") == 3


def test_data_info_on_the_sample():
    result = runner.invoke(app, ["data", "info"])
    assert result.exit_code == 0, result.output
    assert "492 frauds" in result.output


def test_a_bad_setting_is_a_clear_error_not_a_traceback(monkeypatch):
    monkeypatch.setenv("FRAUDKIT_KAFKA__PARTITIONS", "many")
    result = runner.invoke(app, ["status"])
    assert result.exit_code == 2
    assert "kafka.partitions" in result.output


def test_produce_without_a_broker_says_how_to_get_one(tmp_path, monkeypatch):
    monkeypatch.setenv("FRAUDKIT_RUN_DIR", str(tmp_path / "runs"))
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    result = runner.invoke(app, ["produce", "--limit", "3"])
    assert result.exit_code == 1
    assert "fraudkit up" in result.output


def test_missing_java_is_named_with_the_fix(monkeypatch):
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(JavaMissingError, match="Java 17"):
        check_java()
