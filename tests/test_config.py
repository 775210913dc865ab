from pathlib import Path

import pytest

from fraudkit.config import ConfigError, load_settings, with_service_endpoints

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[1]


def test_defaults_come_from_config_yaml_and_paths_are_absolute():
    s = load_settings(ROOT / "config.yaml", env={}, use_state=False)
    assert s.kafka.topic == "creditcard_topic"
    assert s.kafka.bootstrap_servers is None
    assert s.run_dir == ROOT / "runs"
    assert s.stream.checkpoint_dir == ROOT / "runs" / "checkpoints" / "scoring"
    assert s.model.dir == ROOT / "runs" / "model"


def test_one_run_dir_moves_every_output(tmp_path):
    s = load_settings(ROOT / "config.yaml", env={"FRAUDKIT_RUN_DIR": str(tmp_path)})
    for folder in (s.model.dir, s.stream.output_dir, s.stream.checkpoint_dir, s.state_file):
        assert folder.is_relative_to(tmp_path)
    assert s.data.full_path == ROOT / "data" / "creditcard.csv"


def test_environment_overrides_nested_keys_and_usual_names():
    env = {
        "FRAUDKIT_KAFKA__PARTITIONS": "8",
        "FRAUDKIT_LLM__PROVIDER": "openai",
        "KAFKA_BOOTSTRAP_SERVERS": "broker.internal:9092",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:4566",
        "OPENAI_API_KEY": "from-the-environment",
    }
    s = load_settings(ROOT / "config.yaml", env=env, use_state=False)
    assert s.kafka.partitions == 8
    assert s.llm.provider == "openai"
    assert s.kafka.bootstrap_servers == "broker.internal:9092"
    assert s.aws.endpoint_url == "http://127.0.0.1:4566"
    assert s.secret("OPENAI_API_KEY") == "from-the-environment"
    assert "from-the-environment" not in repr(s)
    assert "from-the-environment" not in s.model_dump_json()


def test_bad_values_name_the_key():
    with pytest.raises(ConfigError, match="kafka.partitions"):
        load_settings(ROOT / "config.yaml", env={"FRAUDKIT_KAFKA__PARTITIONS": "zero"})
    with pytest.raises(ConfigError, match="llm.provider"):
        load_settings(ROOT / "config.yaml", env={"FRAUDKIT_LLM__PROVIDER": "oracle"})


def test_unknown_key_in_config_file_is_refused(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text("kafka:\n  topik: creditcard_topic\n")
    with pytest.raises(ConfigError, match="topik"):
        load_settings(cfg, env={})


def test_missing_config_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.yaml", env={})


def test_aws_mode_refuses_placeholders():
    s = load_settings(ROOT / "config.yaml", env={"FRAUDKIT_MODE": "aws"}, use_state=False)
    with pytest.raises(ConfigError, match="placeholder address"):
        s.check_deployable()
    ok = load_settings(
        ROOT / "config.yaml",
        env={
            "FRAUDKIT_MODE": "aws",
            "FRAUDKIT_AWS__SES_SENDER": "alerts@bank.test",
            "FRAUDKIT_AWS__ALERT_RECIPIENT": "team@bank.test",
        },
        use_state=False,
    )
    ok.check_deployable()


def test_state_file_fills_only_unset_endpoints(tmp_path):
    run_dir = tmp_path / "runs"
    run_dir.mkdir()
    (run_dir / "services.json").write_text(
        '{"kafka": {"url": "127.0.0.1:1111"}, "llm": {"url": "http://127.0.0.1:2222"}}'
    )
    s = load_settings(
        ROOT / "config.yaml",
        env={"FRAUDKIT_RUN_DIR": str(run_dir), "FRAUDKIT_LLM_URL": "http://elsewhere:80"},
    )
    assert s.kafka.bootstrap_servers == "127.0.0.1:1111"
    assert s.llm.url == "http://elsewhere:80"
    assert s.aws.endpoint_url is None
    assert with_service_endpoints(s) == s
