#!/usr/bin/env python3
"""Drives Hestia's AMP workspace API with the real `aws amp` CLI and boto3.

Usage: amp_cli.py ENDPOINT_URL   (a fresh control plane: no workspaces yet)

Credentials come from the environment's AWS profile (the test points AWS_SHARED_CREDENTIALS_FILE,
AWS_CONFIG_FILE and AWS_PROFILE at the files the control plane's first start wrote). Exits
non-zero on the first failed check and prints what it saw.
"""
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import boto3
import botocore.config
from botocore.exceptions import ClientError

ENDPOINT = sys.argv[1]
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


def check(cond, msg):
    if not cond:
        print(f"FAIL: {msg}", flush=True)
        sys.exit(1)
    print(f"ok: {msg}", flush=True)


def client(retries=10):
    cfg = botocore.config.Config(retries={"max_attempts": retries, "mode": "standard"})
    return boto3.client("amp", endpoint_url=ENDPOINT, region_name="us-east-1", config=cfg)


def cli(*args):
    out = subprocess.run(
        ["aws", "amp", "--endpoint-url", ENDPOINT, "--output", "json", *args],
        capture_output=True, text=True, check=False,
    )
    if out.returncode != 0:
        print(out.stdout, out.stderr)
    check(out.returncode == 0, "aws amp " + " ".join(args[:1]))
    return json.loads(out.stdout) if out.stdout.strip() else {}


def error_code(fn, *a, **kw):
    try:
        fn(*a, **kw)
    except ClientError as e:
        return e.response["Error"]["Code"], e.response
    return None, None


amp = client()
waiter_cfg = {"Delay": 1, "MaxAttempts": 30}

# CLI: create → wait active → describe.
created = cli("create-workspace", "--alias", "  cli-first  ", "--tags", "team=obs")
ws1 = created["workspaceId"]
check(ws1.startswith("ws-") and len(ws1) == 39, f"workspace id {ws1}")
check(created["arn"] == f"arn:aws:aps:us-east-1:000000000000:workspace/{ws1}", "arn")
check(created["status"]["statusCode"] in ("CREATING", "ACTIVE"), "create status")
subprocess.run(["aws", "amp", "--endpoint-url", ENDPOINT, "wait", "workspace-active",
                "--workspace-id", ws1], check=True)
desc = cli("describe-workspace", "--workspace-id", ws1)["workspace"]
check(desc["status"]["statusCode"] == "ACTIVE", "CLI waiter workspace-active")
check(desc["alias"] == "cli-first", "alias trimmed")
check(desc["prometheusEndpoint"].endswith(f"/workspaces/{ws1}/"), "prometheusEndpoint")
check(desc["tags"] == {"team": "obs"}, "tags on create")

# boto3: clientToken replay returns the same workspace.
a = amp.create_workspace(alias="boto-a", clientToken="token-1")
b = amp.create_workspace(alias="boto-a", clientToken="token-1")
check(a["workspaceId"] == b["workspaceId"], "clientToken replay returns the same workspace")
amp.get_waiter("workspace_active").wait(workspaceId=a["workspaceId"], WaiterConfig=waiter_cfg)
check(amp.describe_workspace(workspaceId=a["workspaceId"])["workspace"]["status"]["statusCode"] == "ACTIVE",
      "boto3 waiter workspace_active")
c = amp.create_workspace(alias="other-c")
ids = {ws1, a["workspaceId"], c["workspaceId"]}

# Pagination with maxResults=1 over 3 workspaces (CLI and boto3 paginator).
seen, token, pages = [], None, 0
while True:
    kw = {"maxResults": 1}
    if token:
        kw["nextToken"] = token
    page = amp.list_workspaces(**kw)
    pages += 1
    check(len(page["workspaces"]) <= 1, f"page {pages} has at most 1 workspace")
    seen += [w["workspaceId"] for w in page["workspaces"]]
    token = page.get("nextToken")
    if not token:
        break
check(set(seen) == ids and len(seen) == 3 and pages == 3, "list_workspaces pagination maxResults=1")
paged = [w["workspaceId"] for p in amp.get_paginator("list_workspaces").paginate(PaginationConfig={"PageSize": 1}) for w in p["workspaces"]]
check(sorted(paged) == sorted(ids), "boto3 paginator")
cli_list = cli("list-workspaces", "--max-results", "1")
check(len(cli_list["workspaces"]) == 1 and "nextToken" in cli_list, "CLI list-workspaces --max-results 1")
check(len(cli("list-workspaces", "--alias", "boto")["workspaces"]) == 1, "alias prefix filter")

# Alias update, tags.
cli("update-workspace-alias", "--workspace-id", ws1, "--alias", "renamed")
check(amp.describe_workspace(workspaceId=ws1)["workspace"]["alias"] == "renamed", "alias updated")
arn = desc["arn"]
cli("tag-resource", "--resource-arn", arn, "--tags", "env=dev,owner=me")
check(amp.list_tags_for_resource(resourceArn=arn)["tags"] == {"team": "obs", "env": "dev", "owner": "me"}, "tag-resource")
amp.untag_resource(resourceArn=arn, tagKeys=["team", "owner"])
check(cli("list-tags-for-resource", "--resource-arn", arn)["tags"] == {"env": "dev"}, "untag-resource")

# Workspace configuration.
amp.update_workspace_configuration(workspaceId=ws1, retentionPeriodInDays=30,
                                   limitsPerLabelSet=[{"limits": {"maxSeries": 100}, "labelSet": {"job": "a"}}])
conf = amp.describe_workspace_configuration(workspaceId=ws1)["workspaceConfiguration"]
check(conf["retentionPeriodInDays"] == 30 and conf["limitsPerLabelSet"][0]["limits"]["maxSeries"] == 100,
      "workspace configuration")

# Bad input.
code, resp = error_code(amp.describe_workspace, workspaceId="ws-00000000-0000-4000-8000-000000000000")
check(code == "ResourceNotFoundException" and resp["ResponseMetadata"]["HTTPStatusCode"] == 404, "unknown id → 404")
code, resp = error_code(amp.create_workspace, alias="x" * 101)
check(code == "ValidationException" and resp["Error"].get("Message"), "alias too long → ValidationException")
code, resp = error_code(amp.list_workspaces, maxResults=1001)
check(code == "ValidationException", "maxResults=1001 → ValidationException")

# The 11th workspace: ServiceQuotaExceededException.
for i in range(7):
    amp.create_workspace(alias=f"fill-{i}")
check(len(amp.list_workspaces()["workspaces"]) == 10, "10 workspaces")
code, resp = error_code(amp.create_workspace, alias="eleventh")
check(code == "ServiceQuotaExceededException" and resp["ResponseMetadata"]["HTTPStatusCode"] == 402,
      "11th workspace → ServiceQuotaExceededException")

# Delete → waiter workspace_deleted.
cli("delete-workspace", "--workspace-id", ws1)
amp.get_waiter("workspace_deleted").wait(workspaceId=ws1, WaiterConfig=waiter_cfg)
code, _ = error_code(amp.describe_workspace, workspaceId=ws1)
check(code == "ResourceNotFoundException", "waiter workspace_deleted")
code, _ = error_code(amp.update_workspace_alias, workspaceId=ws1, alias="late")
check(code == "ResourceNotFoundException", "alias update after deletion → 404")

# A burst of 20 calls in one second: ThrottlingException (429, Retry-After) without retries.
time.sleep(1.5)
noretry = client(retries=1)


def one(_):
    code, resp = error_code(noretry.describe_workspace, workspaceId=a["workspaceId"])
    if code is None:
        return ("ok", None)
    return (code, resp["ResponseMetadata"]["HTTPStatusCode"], resp["ResponseMetadata"]["HTTPHeaders"].get("retry-after"))


start = time.monotonic()
with ThreadPoolExecutor(max_workers=20) as pool:
    results = list(pool.map(one, range(20)))
elapsed = time.monotonic() - start
ok = sum(1 for r in results if r[0] == "ok")
throttled = [r for r in results if r[0] == "ThrottlingException"]
print(f"burst: {ok} ok, {len(throttled)} throttled in {elapsed:.2f}s")
check(elapsed < 1.0 or ok <= 10, "burst within a second")
check(ok >= 5 and len(throttled) >= 10 and ok + len(throttled) == 20, "burst of 20 → ThrottlingException")
check(all(r[1] == 429 and r[2] for r in throttled), "429 with Retry-After")

# Credentials are checked: a wrong secret and an unknown key are refused as AWS refuses them.
creds = boto3.Session().get_credentials()
forged = boto3.client("amp", endpoint_url=ENDPOINT, region_name="us-east-1",
                      aws_access_key_id=creds.access_key, aws_secret_access_key="wrong" * 8)
code, resp = error_code(forged.list_workspaces)
check(code == "InvalidSignatureException" and resp["ResponseMetadata"]["HTTPStatusCode"] == 403,
      f"wrong secret → 403 InvalidSignatureException ({code})")
unknown = boto3.client("amp", endpoint_url=ENDPOINT, region_name="us-east-1",
                       aws_access_key_id="AKIAIOSFODNN7EXAMPLE",
                       aws_secret_access_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
code, resp = error_code(unknown.list_workspaces)
check(code == "UnrecognizedClientException", f"unknown key → UnrecognizedClientException ({code})")
print("ALL OK")
