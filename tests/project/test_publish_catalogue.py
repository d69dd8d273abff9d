"""`publish --project` and `catalogue` against a real S3 and Lambda API (moto in server mode, 127.0.0.1)."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from layerforge.cli import main
from layerforge.errors import InputError
from layerforge.project.config import load_project
from layerforge.project.publish_cells import find_built_cells
from tests.aws.test_publish import make_bucket, make_zip, write_manifest
from tests.support.aws import AwsServer

REGIONS = ("us-east-1", "eu-west-1")
CELLS = ("ml-python3.11-x86_64", "ml-python3.12-x86_64", "web-python3.11-x86_64", "web-python3.12-x86_64")
PROJECT = """\
bucket = "layers-{region}"
regions = ["us-east-1", "eu-west-1"]
prefix = "team"

[[layers]]
recipe = "ml.toml"
runtimes = ["python3.11", "python3.12"]

[[layers]]
recipe = "web.toml"
runtimes = ["python3.11", "python3.12"]
"""


def built_cell(dist: Path, cell: str, content: bytes = b"X = 1\n") -> Path:
    """A layer zip with a manifest as `build` writes them (the build itself is tested elsewhere)."""
    layer, runtime, arch = cell.split("-")
    dist.mkdir(parents=True, exist_ok=True)
    path = make_zip(dist / f"{cell}.zip", {f"python/{layer}.py": content + cell.encode()})
    write_manifest(path, recipe=layer)
    manifest_path = dist / f"{cell}.manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest |= {
        "runtime": runtime,
        "arch": arch,
        "compatible_runtimes": [runtime],
        "compatible_architectures": [arch],
        "unzipped_bytes": 1234,
        "packages": [{"name": layer, "version": "1.0"}],
    }
    manifest_path.write_text(json.dumps(manifest))
    return path


@pytest.fixture()
def project(tmp_path: Path, aws_server: AwsServer) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    for layer in ("ml", "web"):
        (root / f"{layer}.toml").write_text(f'name = "{layer}"\nrequirements = ["{layer}-pkg"]\n')
    (root / "layerforge.toml").write_text(PROJECT)
    for cell in CELLS:
        built_cell(root / "dist", cell)
    for region in REGIONS:
        make_bucket(aws_server, f"layers-{region}", region)
    return root


def run_publish(aws: AwsServer, *args: str) -> Result:
    """`layerforge publish ARGS --json` against the test server."""
    argv = ["publish", *args, "--endpoint-url", aws.endpoint_url, "--lambda-endpoint-url", aws.endpoint_url]
    return CliRunner().invoke(main, [*argv, "--json"], catch_exceptions=False)


def publish(aws: AwsServer, root: Path, *args: str) -> Result:
    return run_publish(aws, "--project", str(root / "layerforge.toml"), *args)


def catalogue(*paths: Path, out: Path) -> dict[str, Any]:
    result = CliRunner().invoke(
        main, ["catalogue", *map(str, paths), "--out", str(out)], catch_exceptions=False
    )
    assert result.exit_code == 0, result.stderr
    return {"json": json.loads((out / "catalogue.json").read_text()), "stderr": result.stderr}


def layer_versions(aws: AwsServer) -> list[str]:
    arns = []
    for region in REGIONS:
        client = aws.client("lambda", region)
        for layer in client.list_layers()["Layers"]:
            versions = client.list_layer_versions(LayerName=layer["LayerName"])["LayerVersions"]
            arns += [v["LayerVersionArn"] for v in versions]
    return sorted(arns)


def test_four_cells_in_two_regions_are_eight_layer_versions_once_and_a_catalogue_of_eight(
    aws_server: AwsServer, project: Path
) -> None:
    first = publish(aws_server, project, str(project / "dist"))
    assert first.exit_code == 0, first.stderr
    report = json.loads(first.stdout)
    assert (report["published"], report["layer_versions"], report["ok"]) == (8, 8, True)
    arns = layer_versions(aws_server)
    assert len(arns) == 8
    assert {r["layer_version_arn"] for c in report["cells"] for r in c["regions"]} == set(arns)
    key = report["cells"][0]["key"]
    assert key.startswith("team/ml-python311-x86_64/") and key.endswith(".zip")
    aws_server.client("s3", "eu-west-1").head_object(Bucket="layers-eu-west-1", Key=key)

    second = publish(aws_server, project, str(project / "dist"))
    assert second.exit_code == 0, second.stderr
    again = json.loads(second.stdout)
    assert (again["published"], again["layer_versions"]) == (0, 8)
    assert not any(c["uploaded"] for c in again["cells"])
    assert layer_versions(aws_server) == arns

    out = project / "catalogue"
    merged = catalogue(project / "dist", out=out)["json"]
    assert sorted(merged["layer_version_arns"]) == arns
    assert set(merged["cells"]) == set(CELLS)
    cell = merged["cells"]["web-python3.12-x86_64"]
    zip_bytes = (project / "dist" / "web-python3.12-x86_64.zip").read_bytes()
    assert cell["sha256"] == hashlib.sha256(zip_bytes).hexdigest()
    assert (cell["zipped_bytes"], cell["unzipped_bytes"]) == (len(zip_bytes), 1234)
    assert cell["packages"] == [{"name": "web", "version": "1.0"}]
    assert set(cell["regions"]) == set(REGIONS) and cell["regions"]["eu-west-1"]["version"] == 1
    markdown = (out / "catalogue.md").read_text()
    assert all(arn in markdown for arn in arns)
    assert "## python3.11 in eu-west-1" in markdown and "## python3.12 in us-east-1" in markdown
    tfvars = json.loads((out / "layers.auto.tfvars.json").read_text())["layerforge_layers"]
    entry = tfvars["web-python3.12-x86_64"]
    assert entry["source_code_hash"] == base64.b64encode(hashlib.sha256(zip_bytes).digest()).decode()
    assert entry["s3_buckets"] == {"us-east-1": "layers-us-east-1", "eu-west-1": "layers-eu-west-1"}
    assert entry["s3_key"] == cell["s3_key"] and entry["compatible_runtimes"] == ["python3.12"]
    assert entry["layer_version_arns"]["us-east-1"] == cell["regions"]["us-east-1"]["layer_version_arn"]


def test_a_cell_published_twice_keeps_its_newest_version_and_says_so(
    aws_server: AwsServer, project: Path
) -> None:
    assert publish(aws_server, project, str(project / "dist"), "--cells", "ml-python3.11-*").exit_code == 0
    old = project / "old"
    shutil.copytree(project / "dist", old)
    built_cell(project / "dist", "ml-python3.11-x86_64", b"X = 2\n")
    result = publish(aws_server, project, str(project / "dist"), "--cells", "ml-python3.11-*")
    assert json.loads(result.stdout)["published"] == 2
    merged = catalogue(old, project / "dist", out=project / "catalogue")
    cell = merged["json"]["cells"]["ml-python3.11-x86_64"]
    assert {r["version"] for r in cell["regions"].values()} == {2}
    assert (
        cell["sha256"]
        == hashlib.sha256((project / "dist" / "ml-python3.11-x86_64.zip").read_bytes()).hexdigest()
    )
    notes = " ".join(merged["json"]["notes"])
    assert "ml-python3.11-x86_64" in notes and "kept the newest, version 2" in notes
    assert "kept the newest" in " ".join(merged["stderr"].split())


def test_upload_only_puts_the_zip_in_s3_and_publishes_no_layer_version(
    aws_server: AwsServer, project: Path
) -> None:
    result = publish(aws_server, project, str(project / "dist"), "--upload-only")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["layer_versions"] == 0
    assert layer_versions(aws_server) == []
    record = json.loads((project / "dist" / "ml-python3.12-x86_64.publish.json").read_text())
    assert record["upload_only"] is True
    aws_server.client("s3").head_object(Bucket="layers-us-east-1", Key=record["key"])
    merged = catalogue(project / "dist", out=project / "catalogue")["json"]
    assert merged["layer_version_arns"] == []
    tfvars = json.loads((project / "catalogue" / "layers.auto.tfvars.json").read_text())["layerforge_layers"]
    assert tfvars["ml-python3.12-x86_64"]["s3_key"] == record["key"]
    assert tfvars["ml-python3.12-x86_64"]["layer_version_arns"] == {}
    assert "Uploaded, no layer version" in (project / "catalogue" / "catalogue.md").read_text()


def test_upload_only_refuses_grants(aws_server: AwsServer, project: Path) -> None:
    result = publish(aws_server, project, str(project / "dist"), "--upload-only", "--public")
    assert result.exit_code == 2 and "--upload-only" in result.stderr


def test_a_hostile_record_is_refused_naming_the_file(tmp_path: Path) -> None:
    record = {
        "kind": "publish",
        "zip": "x-python3.11-x86_64.zip",
        "sha256": "ab" * 32,
        "layer_name": "x",
        "zipped_bytes": 1,
        "regions": [
            {"region": "us-east-1", "status": "ok", "layer_version_arn": "arn | <script>", "version": 1}
        ],
    }
    path = tmp_path / "x-python3.11-x86_64.publish.json"
    path.write_text(json.dumps(record))
    result = CliRunner().invoke(main, ["catalogue", str(path), "--out", str(tmp_path / "c")])
    assert result.exit_code == 2 and str(path) in result.stderr and "not a layer version ARN" in result.stderr
    assert not (tmp_path / "c").exists()


def test_publish_project_dist_reads_layerforge_toml_here_and_takes_region_from_the_command_line(
    aws_server: AwsServer, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the example workflow runs in each region's job: `publish --project dist --region R`."""
    monkeypatch.chdir(project)
    result = run_publish(aws_server, "--project", "dist", "--region", "eu-west-1", "--cells", "web-*")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["published"] == 2
    assert {r["region"] for c in report["cells"] for r in c["regions"]} == {"eu-west-1"}
    assert [arn.split(":")[3] for arn in layer_versions(aws_server)] == ["eu-west-1", "eu-west-1"]


def test_publish_upload_only_of_one_zip_writes_a_record_terraform_can_use(
    aws_server: AwsServer, project: Path
) -> None:
    zip_path = project / "dist" / "ml-python3.11-x86_64.zip"
    args = ("--bucket", "layers-{region}", "--region", "us-east-1", "--upload-only")
    result = run_publish(aws_server, str(zip_path), *args)
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["upload_only"] is True and payload["uploaded"] is True
    assert payload["regions"][0]["layer_version_arn"] is None and payload["regions"][0]["status"] == "ok"
    assert layer_versions(aws_server) == []


def test_matrix_artifacts_are_found_one_folder_per_cell_and_hostile_manifests_are_passed_over(
    tmp_path: Path,
) -> None:
    root = tmp_path / "project"
    root.mkdir()
    for layer in ("ml", "web"):
        (root / f"{layer}.toml").write_text(f'name = "{layer}"\nrequirements = ["{layer}-pkg"]\n')
    (root / "layerforge.toml").write_text(PROJECT)
    project = load_project(root / "layerforge.toml")
    artifacts = tmp_path / "artifacts"
    for cell in CELLS[:3]:
        built_cell(artifacts / f"layer-{cell}", cell)
    built_cell(artifacts / "layer-other", "other-python3.11-x86_64")
    # A manifest that names a zip outside its folder, and one whose zip is a link elsewhere: not cells.
    evil = artifacts / "layer-evil"
    evil.mkdir()
    (evil / "web-python3.12-x86_64.manifest.json").write_text(
        json.dumps({"kind": "layer", "zip": "../x.zip"})
    )
    outside = built_cell(tmp_path / "elsewhere", "web-python3.12-x86_64")
    linked = artifacts / "layer-link"
    linked.mkdir()
    (linked / "web-python3.12-x86_64.zip").symlink_to(outside)
    shutil.copy(outside.with_name("web-python3.12-x86_64.manifest.json"), linked)

    found = find_built_cells(project, project.cells, [artifacts])
    assert [b.cell.name for b in found.cells] == list(CELLS[:3])
    assert found.missing == ("web-python3.12-x86_64",)
    assert [Path(p).name for p in found.foreign] == ["other-python3.11-x86_64.zip"]

    # The same cell built twice, differently, is refused rather than published at random.
    built_cell(tmp_path / "again", CELLS[0], b"X = 3\n")
    with pytest.raises(InputError, match="built twice"):
        find_built_cells(project, project.cells, [artifacts, tmp_path / "again"])
