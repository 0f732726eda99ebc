"""Start recovery on every node of a Vertex AI custom job: read the cluster Vertex AI
describes, then ``exec`` ``accelerate launch`` with the matching rendezvous.

Vertex AI describes a custom job's cluster to every replica in ``CLUSTER_SPEC`` (JSON: the
``cluster`` maps each worker pool, ``workerpool0`` (the primary replica) and
``workerpool1`` (the other nodes), to its replicas' ``host:port``; ``task`` says which pool
and index this replica is). Its prebuilt PyTorch containers also set ``MASTER_ADDR``,
``MASTER_PORT``, ``WORLD_SIZE`` (nodes) and ``RANK`` (this node); a custom container such as
medprune's can rely only on ``CLUSTER_SPEC``, so :func:`cluster_env` uses the PyTorch
variables when all are set and derives them from ``CLUSTER_SPEC`` otherwise (one node when
neither is there).

    python -m medprune.recover.launch --processes-per-node 8 --multi-gpu -- --config-json @c.json ...
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping

from medprune.errors import RecoveryError

PYTORCH_VARS = ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK")
DEFAULT_PORT = "29500"


def cluster_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``{MASTER_ADDR, MASTER_PORT, WORLD_SIZE, RANK}`` of this node (ranks count nodes)."""
    env = os.environ if environ is None else environ
    if all(env.get(v) for v in PYTORCH_VARS):
        return {v: env[v] for v in PYTORCH_VARS}
    raw = env.get("CLUSTER_SPEC")
    if not raw:
        return {
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": DEFAULT_PORT,
            "WORLD_SIZE": "1",
            "RANK": "0",
        }
    try:
        spec = json.loads(raw)
        cluster, task = spec["cluster"], spec["task"]
        chief = cluster["workerpool0"][0]
        workers = list(cluster.get("workerpool1") or [])
        pool, index = task["type"], int(task["index"])
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise RecoveryError(
            f"CLUSTER_SPEC from Vertex AI is not readable ({exc!r}): {raw[:200]}"
        ) from None
    if pool == "workerpool0":
        rank = 0
    elif pool == "workerpool1":
        rank = 1 + index
    else:
        raise RecoveryError(
            f"CLUSTER_SPEC: this replica is in {pool}; recovery uses workerpool0 and workerpool1 only"
        )
    host, _, port = chief.rpartition(":")
    if not host:
        host, port = chief, DEFAULT_PORT
    return {
        "MASTER_ADDR": host,
        "MASTER_PORT": port or DEFAULT_PORT,
        "WORLD_SIZE": str(1 + len(workers)),
        "RANK": str(rank),
    }


def accelerate_command(
    processes_per_node: int,
    *,
    fsdp: bool,
    multi_gpu: bool,
    module_args: list[str],
    environ: Mapping[str, str] | None = None,
) -> list[str]:
    """The ``accelerate launch`` command line of this node."""
    c = cluster_env(environ)
    nodes = int(c["WORLD_SIZE"])
    cmd = [
        "accelerate",
        "launch",
        "--num_processes",
        str(processes_per_node * nodes),
        "--num_machines",
        str(nodes),
        "--machine_rank",
        c["RANK"],
        "--main_process_ip",
        c["MASTER_ADDR"],
        "--main_process_port",
        c["MASTER_PORT"],
    ]
    if fsdp:
        cmd += ["--use_fsdp", "--fsdp_version", "2"]
    elif multi_gpu and processes_per_node * nodes > 1:
        cmd += ["--multi_gpu"]
    return [*cmd, "-m", "medprune.recover", *module_args]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m medprune.recover.launch", description=__doc__)
    parser.add_argument("--processes-per-node", type=int, required=True)
    parser.add_argument("--fsdp", action="store_true")
    parser.add_argument("--multi-gpu", action="store_true")
    parser.add_argument(
        "module_args", nargs=argparse.REMAINDER, help="-- then the medprune.recover arguments"
    )
    args = parser.parse_args(argv)
    module_args = args.module_args[1:] if args.module_args[:1] == ["--"] else args.module_args
    cmd = accelerate_command(
        args.processes_per_node, fsdp=args.fsdp, multi_gpu=args.multi_gpu, module_args=module_args
    )
    print("launch: " + " ".join(cmd), flush=True)
    os.execvp(cmd[0], cmd)


if __name__ == "__main__":
    try:
        main()
    except RecoveryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
