"""The catalogue's `layers.auto.tfvars.json` read by the real `terraform` (skipped where there is none).

The configuration has no providers (the tests run offline): the example's own variable declaration
(examples/terraform/variables.tf) and outputs that read it, beside `filebase64sha256` of the zip.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from layerforge.cli import main
from tests.project.test_publish_catalogue import built_cell, project, publish  # noqa: F401
from tests.support.aws import AwsServer

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "terraform"
TERRAFORM = shutil.which("terraform")
CELL = "web-python3.12-x86_64"
OUTPUTS = f"""
variable "zip_path" {{
  type = string
}}

output "arn" {{
  value = var.layerforge_layers["{CELL}"].layer_version_arns["eu-west-1"]
}}

output "source_code_hash" {{
  value = var.layerforge_layers["{CELL}"].source_code_hash
}}

output "s3_key" {{
  value = var.layerforge_layers["{CELL}"].s3_key
}}

output "zip_hash" {{
  value = filebase64sha256(var.zip_path)
}}
"""


def terraform(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, CHECKPOINT_DISABLE="1", TF_IN_AUTOMATION="1", TF_INPUT="0")
    env["TF_CLI_CONFIG_FILE"] = os.devnull  # no plugin cache or mirror of the host's
    return subprocess.run(
        [str(TERRAFORM), f"-chdir={folder}", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=True,
    )


@pytest.mark.skipif(TERRAFORM is None, reason="no terraform binary on PATH")
def test_terraform_reads_the_catalogue_and_gives_the_same_arn_and_hash(
    aws_server: AwsServer,
    project: Path,  # noqa: F811
) -> None:
    assert publish(aws_server, project, str(project / "dist")).exit_code == 0
    config = project / "terraform"
    config.mkdir()
    result = CliRunner().invoke(main, ["catalogue", str(project / "dist"), "--out", str(config)])
    assert result.exit_code == 0, result.stderr
    shutil.copy(EXAMPLE / "variables.tf", config / "variables.tf")
    (config / "outputs.tf").write_text(OUTPUTS)
    zip_path = project / "dist" / f"{CELL}.zip"

    terraform(config, "init", "-no-color")
    # layers.auto.tfvars.json is read by terraform itself: no -var-file.
    terraform(config, "apply", "-auto-approve", "-no-color", f"-var=zip_path={zip_path}")
    outputs = json.loads(terraform(config, "output", "-json").stdout)

    catalogue = json.loads((config / "catalogue.json").read_text())["cells"][CELL]
    assert outputs["arn"]["value"] == catalogue["regions"]["eu-west-1"]["layer_version_arn"]
    assert outputs["arn"]["value"].startswith("arn:aws:lambda:eu-west-1:")
    assert outputs["source_code_hash"]["value"] == outputs["zip_hash"]["value"]
    assert outputs["s3_key"]["value"] == catalogue["s3_key"]
