"""``scalelab kubernetes``: write the Kubernetes base (kustomize) for the lab, and say how to run it on kind.

It needs no running stack and no cluster: it only writes files, generated from the catalog by
:mod:`scalelab.generate.kubernetes`. The secrets are not among them; the next steps it prints
write them beside the base with ``scalelab secrets --env-file``.
"""

from __future__ import annotations

from pathlib import Path

from scalelab import catalog
from scalelab.cli import exitcodes
from scalelab.cli.context import Context
from scalelab.generate import kubernetes
from scalelab.generate.compose import CONTROL_BUILD, CONTROL_IMAGE, SERVICES_BUILD, SERVICES_IMAGE

CLUSTER = "scalelab"
WAIT_TIMEOUT = "300s"


def next_steps(directory: Path) -> list[str]:
    """Return the commands that run the base on a new kind cluster, from the checkout's top folder."""
    namespace = kubernetes.NAMESPACE
    images = (SERVICES_IMAGE, CONTROL_IMAGE)
    builds = (SERVICES_BUILD, CONTROL_BUILD)
    # The page, the entry and Grafana (which the page embeds) on loopback, on the ports they have everywhere.
    forwarded = [svc for svc in catalog.SERVICES if svc.entry or svc.runs in ("dashboard", "grafana")]
    return [
        f"kind create cluster --name {CLUSTER}",
        *(
            f"docker build -t {image} -f {build['dockerfile']} {build['context']}"
            for image, build in zip(images, builds, strict=True)
        ),
        f"kind load docker-image {' '.join(images)} --name {CLUSTER}",
        f"scalelab secrets --env-file {directory / kubernetes.SECRETS_ENV_FILE}",
        f"kubectl apply -k {directory}",
        f"kubectl --namespace={namespace} wait --for=condition=Available deployment --all --timeout={WAIT_TIMEOUT}",
        *(
            f"kubectl --namespace={namespace} port-forward service/{svc.name} {svc.ports[0]}:{svc.ports[0]} &"
            for svc in forwarded
        ),
    ]


def run(ctx: Context, out: str) -> exitcodes.ExitCode:
    """Write the base into ``out`` and print the commands that run it."""
    # Absolute in what it prints: the next steps run from the checkout, wherever this ran.
    directory = Path(out).resolve()
    if directory.exists() and not directory.is_dir():
        ctx.fail(f"{directory} is a file; name a folder for the Kubernetes base")
        return exitcodes.FAILED
    written = kubernetes.write(directory)
    resources = [path.name for path in written if path.suffix == ".yaml" and path.name != kubernetes.KUSTOMIZATION]
    ctx.say(
        f"wrote the Kubernetes base to {directory}: {kubernetes.KUSTOMIZATION} and {len(resources)} resource files."
    )
    ctx.say("To run it on kind, from the top folder of a ScaleLab checkout (docs/kubernetes.md has k3s too):")
    for command in next_steps(directory):
        ctx.say(f"  {command}")
    page = catalog.service("dashboard").ports[0]
    secrets = directory / kubernetes.SECRETS_ENV_FILE
    ctx.say(f"Then open http://127.0.0.1:{page}/ (user `scalelab`, password SCALELAB_DASHBOARD_PASSWORD in {secrets}).")
    return exitcodes.OK
