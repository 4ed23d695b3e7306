"""Microservice settings (environment variables and their defaults)."""

from __future__ import annotations

from dataclasses import dataclass

from ..kit import ServiceSettings, setting


@dataclass
class MicroserviceConfig(ServiceSettings):
    """Settings of one microservice instance."""

    port: int = setting(5001, "MICROSERVICE_PORT", "Port of this microservice instance.")
    service_id: str = setting("1", "MICROSERVICE_ID", "The id /process reports as service_id.")
    service_time_ms: float = setting(10.0, "MICROSERVICE_SERVICE_TIME_MS", "Time one /process call takes (ms).")
    error_rate: float = setting(0.0, "MICROSERVICE_ERROR_RATE", "Share of calls failing with 503 (0..1).")
    work: str = setting(
        "sleep",
        "MICROSERVICE_WORK",
        "What a /process call does: sleep (waits its service time), cpu (computes for cpu_work_ms of CPU time, "
        "holding one core) or both.",
    )
    concurrency: int = setting(
        0,
        "MICROSERVICE_CONCURRENCY",
        "Calls served at once, the rest waiting in line: with the service time, its capacity "
        "(concurrency / service time); 0: as many as its request threads.",
    )
    cpu_work_ms: float = setting(
        5.0, "MICROSERVICE_CPU_WORK_MS", "CPU time one /process call computes for, when work is cpu or both (ms)."
    )
