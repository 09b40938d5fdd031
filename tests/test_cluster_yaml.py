"""The `ray up` files in cluster/ are valid for the installed Ray and keep the dashboard private.

Two validators, both offline:
- the JSON schema shipped inside the ray wheel (ray/autoscaler/ray-schema.json,
  draft-07), applied to the file as written;
- Ray's own checks, ``validate_config(prepare_config(cfg))``, the first steps of
  ``ray up``. ``prepare_config`` merges the provider's defaults.yaml from the
  wheel (aws, gcp) or derives the node types from head_ip/worker_ips (local);
  neither needs boto3, Google's client or credentials. The cloud "bootstrap"
  step that follows in ``ray up`` (key pairs, security groups, IAM) needs an
  account and is not run here. Both are private APIs, imported in one place.

Security checks run on the prepared config, i.e. after Ray's defaults are
merged in, so a default such as ``--dashboard-host=0.0.0.0`` inherited from
defaults.yaml would be caught too.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import pytest
import yaml

CLUSTER = Path(__file__).resolve().parents[1] / "cluster"
FILES = ["aws-gpu.yaml", "gcp-gpu.yaml", "local.yaml"]
PUBLIC = {"0.0.0.0/0", "::/0"}


def _schema() -> dict:
    import ray.autoscaler

    return json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


def _load(name: str) -> dict:
    return yaml.safe_load((CLUSTER / name).read_text())


def ray_validate(cfg: dict) -> dict:
    """Ray's validation as `ray up` runs it before touching a cloud; returns the prepared config."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(cfg))
    validate_config(prepared)
    return prepared


def _rule_opens_dashboard(rule: dict) -> bool:
    everyone = {r.get("CidrIp") for r in rule.get("IpRanges", [])} | \
               {r.get("CidrIpv6") for r in rule.get("Ipv6Ranges", [])}
    if not everyone & PUBLIC:
        return False
    if str(rule.get("IpProtocol")) == "-1":
        return True
    return rule.get("FromPort", 0) <= 8265 <= rule.get("ToPort", 65535)


def security_problems(prepared: dict) -> list[str]:
    problems = []
    head = prepared["head_start_ray_commands"]
    starts = [c for c in head if "ray start" in c and "--head" in c]
    if not starts:
        problems.append("no `ray start --head` command")
    for cmd in starts:
        if "--dashboard-host=127.0.0.1" not in cmd.split():
            problems.append(f"head start command does not bind the dashboard to 127.0.0.1: {cmd}")
    for key, value in prepared.items():
        if key.endswith("commands") and any("0.0.0.0" in c for c in value):
            problems.append(f"{key} mentions 0.0.0.0")
    for rule in prepared["provider"].get("security_group", {}).get("IpPermissions", []):
        if _rule_opens_dashboard(rule):
            problems.append(f"security group rule opens 8265 to everyone: {rule}")
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        if not any("RAY_AUTH_MODE=token" in c and "ray start" in c for c in prepared[key]):
            problems.append(f"{key}: Ray starts without token authentication")
    if "~/.ray/auth_token" not in prepared["file_mounts"]:
        problems.append("the auth token is not synced to the nodes")
    return problems


@pytest.mark.parametrize("name", FILES)
def test_matches_the_schema_shipped_with_ray(name):
    schema = _schema()
    assert schema["$schema"].startswith("http://json-schema.org/draft-07")
    jsonschema.Draft7Validator(schema).validate(_load(name))


@pytest.mark.parametrize("name", FILES)
def test_passes_rays_own_validation(name):
    prepared = ray_validate(_load(name))
    types = prepared["available_node_types"]
    assert prepared["head_node_type"] in types
    assert sum(t.get("min_workers", 0) for t in types.values()) <= prepared["max_workers"]


@pytest.mark.parametrize("name", FILES)
def test_dashboard_stays_private_and_token_auth_is_on(name):
    assert security_problems(ray_validate(_load(name))) == []


@pytest.mark.parametrize("name", FILES)
def test_installs_raygan_and_mounts_shared_storage(name):
    cfg = ray_validate(_load(name))
    assert cfg["file_mounts"]["~/raygan"] == "."
    assert any("pip install" in c and "-e ~/raygan" in c for c in cfg["worker_setup_commands"])
    assert any("pip install" in c and "-e ~/raygan" in c for c in cfg["head_setup_commands"])
    shared = "/mnt/shared" if name != "aws-gpu.yaml" else "/mnt/efs"
    assert any(shared in c for c in cfg["initialization_commands"])
    if "docker" in cfg and cfg["docker"]:
        assert f"-v {shared}:{shared}" in cfg["docker"]["run_options"]


def test_cloud_workers_have_gpus():
    aws = ray_validate(_load("aws-gpu.yaml"))["available_node_types"]["ray.worker.gpu"]
    assert aws["node_config"]["InstanceType"].startswith(("g4dn.", "g5.", "g6.", "p3.", "p4d.", "p5."))
    gcp = ray_validate(_load("gcp-gpu.yaml"))["available_node_types"]["ray_worker_t4"]
    assert gcp["node_config"]["guestAccelerators"][0]["acceleratorType"] == "nvidia-tesla-t4"
    assert gcp["resources"]["GPU"] == 1
    assert {"onHostMaintenance": "TERMINATE"} in gcp["node_config"]["scheduling"]
    for node_type in (aws, gcp):
        assert 0 <= node_type["min_workers"] <= node_type["max_workers"]


def test_local_placeholders_become_workers():
    prepared = ray_validate(_load("local.yaml"))
    (node_type,) = prepared["available_node_types"].values()
    assert node_type["max_workers"] == len(_load("local.yaml")["provider"]["worker_ips"]) == 2


# The checks above must be able to fail.

def test_schema_rejects_a_misspelt_key():
    cfg = _load("aws-gpu.yaml")
    cfg["idle_timeout_minute"] = cfg.pop("idle_timeout_minutes")
    with pytest.raises(jsonschema.ValidationError, match="idle_timeout_minute"):
        jsonschema.Draft7Validator(_schema()).validate(cfg)
    with pytest.raises(jsonschema.ValidationError):
        ray_validate(cfg)


def test_ray_rejects_an_unknown_head_type_and_too_many_min_workers():
    cfg = _load("gcp-gpu.yaml")
    cfg["head_node_type"] = "ray_head_missing"
    with pytest.raises(ValueError, match="head_node_type"):
        ray_validate(cfg)
    cfg = _load("aws-gpu.yaml")
    cfg["available_node_types"]["ray.worker.gpu"]["min_workers"] = cfg["max_workers"] + 1
    with pytest.raises(ValueError, match="max_workers"):
        ray_validate(cfg)


def test_security_check_catches_a_public_dashboard():
    cfg = _load("aws-gpu.yaml")
    cfg["head_start_ray_commands"] = [c.replace("--dashboard-host=127.0.0.1", "--dashboard-host=0.0.0.0")
                                      for c in cfg["head_start_ray_commands"]]
    assert len(security_problems(ray_validate(cfg))) == 2

    # Without its own start commands a file inherits Ray's default, which binds 0.0.0.0.
    cfg = _load("gcp-gpu.yaml")
    del cfg["head_start_ray_commands"]
    assert any("127.0.0.1" in p for p in security_problems(ray_validate(cfg)))

    cfg = _load("aws-gpu.yaml")
    cfg["provider"]["security_group"] = {"IpPermissions": [
        {"IpProtocol": "tcp", "FromPort": 8000, "ToPort": 9000, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]}
    jsonschema.Draft7Validator(_schema()).validate(cfg)
    assert any("8265" in p for p in security_problems(ray_validate(cfg)))

    cfg = _load("local.yaml")
    cfg["worker_start_ray_commands"] = [c.replace("export RAY_AUTH_MODE=token; ", "")
                                        for c in cfg["worker_start_ray_commands"]]
    assert security_problems(ray_validate(cfg)) == [
        "worker_start_ray_commands: Ray starts without token authentication"]
