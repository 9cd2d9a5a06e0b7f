"""Which executor runs a run's steps, by warehouse backend and deployment.

- Embedded DuckDB file: the in-process executor. Every warehouse step holds the one `duckdb`
  pool slot, so steps run one at a time anyway; one process per run keeps them cheap and gives
  run hygiene one pid to watch.
- DuckLake: many writers, so a run's independent steps run in parallel processes
  (``multi_or_in_process_executor``; run config ``execution: {config: {in_process: {}}}`` keeps
  them in one process, as `bemp run` does).
- DuckLake on Kubernetes (``BEMP_EXECUTOR=k8s``): ``k8s_job_executor``, one pod per step, with
  the per-step resources of the YAML file ``BEMP_K8S_EXECUTOR_CONFIG`` (deploy/k8s/executor.yaml).
"""
from __future__ import annotations

import os
from pathlib import Path

import yaml
from dagster import ExecutorDefinition, in_process_executor, multi_or_in_process_executor

DEFAULT_K8S_CONFIG = Path(__file__).resolve().parents[1] / "deploy" / "k8s" / "executor.yaml"


def k8s_executor_config(path: Path | None = None) -> dict:
    """The k8s_job_executor config (per-step resources, env secrets) from its YAML file."""
    path = Path(path or os.environ.get("BEMP_K8S_EXECUTOR_CONFIG") or DEFAULT_K8S_CONFIG)
    return yaml.safe_load(path.read_text())


def build_executor(lake: bool) -> ExecutorDefinition:
    if not lake:
        return in_process_executor
    if os.environ.get("BEMP_EXECUTOR") == "k8s":
        from dagster_k8s import k8s_job_executor  # imported only here: it loads the Kubernetes client

        return k8s_job_executor.configured(k8s_executor_config(), name="bemp_k8s_job_executor")
    return multi_or_in_process_executor
