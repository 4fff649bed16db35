"""deploy/iam/<service>.json: valid least-privilege policies that allow every AWS call the service's code makes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.deploy import iam_scan

IAM_DIR = iam_scan.ROOT / "deploy" / "iam"
ROLES = (*iam_scan.SERVICES, "bootstrap")
# AWS offers no resource-level permission for these, so they take "*" with a Condition narrowing them.
UNSCOPABLE = {"cloudwatch:PutMetricData", "elasticmapreduce:RunJobFlow"}
ACTION = re.compile(r"^[a-z0-9-]+:[A-Za-z0-9]+$")


def _policy(role: str) -> dict:
    return json.loads((IAM_DIR / f"{role}.json").read_text())


def _allowed(policy: dict) -> set[str]:
    return {action for statement in policy["Statement"] for action in statement["Action"]}


def test_one_policy_per_service_and_bootstrap() -> None:
    assert sorted(p.stem for p in IAM_DIR.glob("*.json")) == sorted(ROLES)


@pytest.mark.parametrize("role", ROLES)
def test_policy_is_a_valid_scoped_document(role: str) -> None:
    policy = _policy(role)
    assert set(policy) == {"Version", "Statement"} and policy["Version"] == "2012-10-17"
    sids = [statement["Sid"] for statement in policy["Statement"]]
    assert len(sids) == len(set(sids))
    for statement in policy["Statement"]:
        assert set(statement) <= {"Sid", "Effect", "Action", "Resource", "Condition"}
        assert statement["Effect"] == "Allow"
        assert all(ACTION.match(action) and "*" not in action for action in statement["Action"]), statement
        resources = statement["Resource"]
        if resources == "*":
            assert set(statement["Action"]) <= UNSCOPABLE and statement.get("Condition"), statement
            continue
        for resource in resources:
            assert resource.startswith("arn:aws:"), resource
            # Every data resource is inside the deployment's prefix (EMR clusters are named by id, not by us).
            assert (
                "${Prefix}-" in resource
                or ":cluster/" in resource
                or "/aws-glue/" in resource
                or (":identity/" in resource)
                # The Glue Data Catalog: the account's catalog and the deployment's database (no '-' in Glue names).
                or resource.endswith(":catalog")
                or "${Prefix}_curated" in resource
            ), resource


@pytest.mark.parametrize("role", ROLES)
def test_every_aws_call_in_the_code_is_allowed(role: str) -> None:
    files = iam_scan.code_files(role)
    _, unmapped = iam_scan.client_calls(files)
    assert not unmapped, f"AWS client calls with no IAM mapping in the scanner: {sorted(unmapped)}"
    needed = iam_scan.required_actions(role)
    missing = {action: method for action, method in needed.items() if action not in _allowed(_policy(role))}
    assert not missing, f"{role} calls these without permission: {missing}"


@pytest.mark.parametrize("role", iam_scan.SERVICES)
def test_no_service_is_granted_more_than_its_code_calls(role: str) -> None:
    extra = _allowed(_policy(role)) - set(iam_scan.required_actions(role))
    assert not extra, f"{role} is granted actions its code never calls: {sorted(extra)}"


def test_scanner_sees_calls_through_shared_helpers() -> None:
    # The loader consumes SQS through shared.queues and replay reads Kinesis through shared.kinesis.
    assert {"sqs:ReceiveMessage", "sqs:DeleteMessage"} <= set(iam_scan.required_actions("loader"))
    assert "kinesis:GetRecords" in iam_scan.required_actions("replay")
    assert Path(iam_scan.ROOT / "shared/queues.py") in iam_scan.code_files("loader")
