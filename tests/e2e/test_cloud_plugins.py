"""A cloud stack needs its provider plugin: benchctl installs the exact one its SDK was made for.

Here (no internet) the download fails: `create` must say so clearly, exit 1 and create no stack.
"""

from __future__ import annotations

import json
from importlib import metadata

import pytest

from benchctl.automation import required_plugin
from tests.conftest import Project

SDKS = {"aws": "pulumi-aws", "gcp": "pulumi-gcp", "scaleway": "pulumiverse-scaleway"}


@pytest.mark.parametrize("provider", sorted(SDKS))
def test_required_plugin_matches_the_installed_sdk(provider: str) -> None:
    plugin = required_plugin(provider)
    assert plugin is not None
    assert plugin["name"] == provider
    assert plugin["version"] == metadata.version(SDKS[provider])
    assert ("server" in plugin) == (provider == "scaleway")  # pulumiverse plugins come from GitHub
    assert required_plugin("local") is None


def test_create_without_the_plugin_and_without_internet_fails_clearly(project: Project) -> None:
    project.write_config("""
        bench_id = "no-plugin"
        model = "Qwen/Qwen2.5-0.5B-Instruct"
        provider = "aws"

        [aws]
        region = "us-east-1"
        instance_type = "g4dn.xlarge"
        launcher_instance_type = "t3.micro"
        ssh_cidr = "203.0.113.7/32"
    """)
    result = project.cli("create", timeout=180)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "could not install the Pulumi aws plugin" in result.stderr
    listed = json.loads(project.cli("ls", "--json", check=True).stdout)
    assert listed == [] or all(row.get("bench_id") != "no-plugin" for row in listed)
