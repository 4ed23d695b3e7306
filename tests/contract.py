"""The classic lab's contract, checked through an entry on 127.0.0.1 the same way for every engine."""

from __future__ import annotations

import requests

from scalelab import catalog
from tests.stack import wait_for

T = 10


def _port(service: str) -> int:
    return catalog.service(service).ports[0]


def check_lab_contract(key: str) -> None:
    """Check through the published ports: token, miss then hit, both gateways, every microservice, 202 tasks, flush."""
    lb = f"http://127.0.0.1:{catalog.entry().ports[0]}"
    headers = {"Authorization": requests.get(lb + "/token", timeout=T).json()["token"]}
    first = requests.get(lb + "/data", params={"key": key}, headers=headers, timeout=T).json()
    second = requests.get(lb + "/data", params={"key": key}, headers=headers, timeout=T).json()
    assert (first["cached"], second["cached"]) == (False, True) and first["gateway_id"] in {"1", "2"}
    gateways = {requests.get(lb + "/data", params={"key": key}, headers=headers, timeout=T).json()["gateway_id"]
                for _ in range(6)}  # fmt: skip
    assert gateways == {"1", "2"}
    ids = {requests.get(lb + "/process", headers=headers, timeout=T).json()["service_id"] for _ in range(12)}
    assert ids == {"1", "2", "3"}
    accepted = requests.post(lb + "/longtask", json={"duration": 0.1}, headers=headers, timeout=T)
    assert accepted.status_code == 202
    task = f"http://127.0.0.1:{_port('worker')}/task/{accepted.json()['task_id']}"
    wait_for(lambda: requests.get(task, timeout=T).json()["status"] == "completed")
    assert requests.post(f"http://127.0.0.1:{_port('cache')}/cache/flush", timeout=T).status_code == 200
    assert requests.get(lb + "/data", params={"key": key}, headers=headers, timeout=T).json()["cached"] is False
