"""``scalelab kubernetes --out DIR``: writes the base with no stack and no cluster, and says what to run next."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from scalelab.cli.main import cli
from scalelab.generate.kubernetes import KUSTOMIZATION, SECRETS_ENV_FILE, manifests


def run(tmp_path: Path, *args: str) -> int:
    return cli(["--run-dir", str(tmp_path / "run"), *args])


def test_it_writes_the_base_and_prints_the_next_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = tmp_path / "deeper" / "base"
    assert run(tmp_path, "kubernetes", "--out", str(base)) == 0
    resources = yaml.safe_load((base / KUSTOMIZATION).read_text())["resources"]
    assert resources == list(manifests())
    assert all((base / name).is_file() for name in resources)
    assert not (base / SECRETS_ENV_FILE).exists(), "the secrets are the user's to write"
    out = capsys.readouterr().out
    for command in (
        "kind create cluster",
        "kind load docker-image",
        f"scalelab secrets --env-file {base / SECRETS_ENV_FILE}",
        f"kubectl apply -k {base}",
        "kubectl --namespace=scalelab port-forward service/dashboard 8050:8050",
        "http://127.0.0.1:8050/",
    ):
        assert command in out


def test_it_keeps_the_users_secrets_when_writing_again(tmp_path: Path) -> None:
    (tmp_path / SECRETS_ENV_FILE).write_text("SCALELAB_JWT_SECRET=mine\n")
    assert run(tmp_path, "kubernetes", "--out", str(tmp_path)) == 0
    assert run(tmp_path, "kubernetes", "--out", str(tmp_path)) == 0
    assert (tmp_path / SECRETS_ENV_FILE).read_text() == "SCALELAB_JWT_SECRET=mine\n"


def test_a_file_in_the_way_fails_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    taken = tmp_path / "taken"
    taken.write_text("")
    assert run(tmp_path, "kubernetes", "--out", str(taken)) == 1
    assert "is a file" in capsys.readouterr().err


def test_it_needs_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        run(tmp_path, "kubernetes")
    assert info.value.code == 2
    assert "--out" in capsys.readouterr().err
