"""DistributedDataParallel training, launched by torchrun (or run alone: one process).

    torchrun --standalone --nproc_per_node=2 -m helpers.ddp --data-dir data/shapes --epochs 2

Notebook 04's `train_ddp.py` hardened for the CLI and multi-node runs: DDP detected from
RANK/LOCAL_RANK/WORLD_SIZE (so it runs without torchrun too); nccl on GPUs, gloo on CPUs; a
process-group timeout; checkpoints and `--resume` for torchrun's `--max-restarts`; per-rank
weight digests. Rank 0 alone logs, writes results and checkpoints.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.elastic.multiprocessing.errors import record
from torch.nn.parallel import DistributedDataParallel

from helpers import datasets, params, train
from helpers.env import pick_device
from helpers.files import write_json_atomic


def ranks() -> tuple[int, int, int]:
    """(rank, local rank, world size) from torchrun's environment; (0, 0, 1) without it."""
    env = os.environ
    return int(env.get("RANK", 0)), int(env.get("LOCAL_RANK", 0)), int(env.get("WORLD_SIZE", 1))


def resolve_backend(backend: str, device: torch.device) -> str:
    """'auto' -> nccl on CUDA, gloo on CPU; refuses what cannot work."""
    params.one_of("backend", backend, ("auto", "gloo", "nccl"))
    if backend == "nccl" and device.type != "cuda":
        raise ValueError("backend='nccl' needs CUDA GPUs; on a CPU use 'gloo' (or 'auto')")
    return backend if backend != "auto" else ("nccl" if device.type == "cuda" else "gloo")


def ddp_setup(device: str, backend: str, timeout_s: float,
              threads: int = 0) -> tuple[torch.device, bool]:
    """This rank's device (GPU: LOCAL_RANK, set before init) and whether it joined a group."""
    _, local_rank, world = ranks()
    dev = pick_device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)  # before init_process_group: one GPU per process
    elif threads or world > 1:  # N processes share the CPU: `threads` each, 0: a fair share
        torch.set_num_threads(threads or max(1, (os.cpu_count() or 1) // int(
            os.environ.get("LOCAL_WORLD_SIZE", world))))
    if world == 1:
        return dev, False
    # a lost peer fails the next collective after `timeout` instead of hanging the job
    _init_group(resolve_backend(backend, dev), timedelta(seconds=timeout_s))
    return dev, True


def _init_group(backend: str, timeout: timedelta) -> None:
    """init_process_group on torchrun's store, under a prefix per restart attempt."""
    env, (rank, _, world) = os.environ, ranks()
    agent_store = env.get("TORCHELASTIC_USE_AGENT_STORE") == "True"  # torchrun hosts it
    store = dist.TCPStore(env["MASTER_ADDR"], int(env["MASTER_PORT"]), world,
                          is_master=rank == 0 and not agent_store, timeout=timeout)
    # torchrun's one store outlives a `--max-restarts` restart and `env://` does not prefix keys:
    # gloo could read a dead worker's address and fail "Connection refused" (seen, torch 2.14)
    attempt = env.get("TORCHELASTIC_RESTART_COUNT", "0")
    dist.init_process_group(backend, store=dist.PrefixStore(f"helpers/attempt{attempt}", store),
                            rank=rank, world_size=world, timeout=timeout)


def weights_digest(model: torch.nn.Module) -> str:
    """sha256 over every parameter and buffer: equal digests mean identical weights."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class FailOnce:
    """Test hook: this rank raises (or SIGKILLs itself) at a global step, on one attempt."""

    def __init__(self, rank: int, at_step: int, how: str) -> None:
        self.rank, self.at_step, self.how, self.step = rank, at_step, how, 0
        self.armed = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", 0)) == 0

    def __call__(self, module: torch.nn.Module, _args: tuple) -> None:
        """Forward pre-hook: count steps, fail at the chosen one."""
        if module.training:
            self.step += 1
        if self.armed and self.step == self.at_step and ranks()[0] == self.rank:
            if self.how == "kill":
                os.kill(os.getpid(), 9)  # as a lost node dies: no cleanup at all
            raise RuntimeError(f"injected failure on rank {self.rank} at step {self.step}")


@record  # a failing rank's traceback reaches torchrun's error summary
def main(args: argparse.Namespace) -> int:
    """Train with DDP (or alone) and, on rank 0, write results; always leave the group."""
    dev, distributed = ddp_setup(args.device, args.backend, args.timeout, args.threads)
    rank, _, world = ranks()
    try:
        tl, vl = datasets.loaders(args.data_dir, args.image_size, args.batch_size // world, dev,
                                  workers=args.workers, seed=args.seed, augment=False, rank=rank,
                                  world_size=world, distributed=True)
        model = train.build_model(args.model, len(tl.dataset.classes), args.seed).to(dev)
        if args.fail_rank is not None:
            model.register_forward_pre_hook(FailOnce(args.fail_rank, args.fail_at_step,
                                                     args.fail_how))
        if distributed:  # gradients are all-reduced (averaged) during backward
            model = DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda"
                                            else None)
        config = train.FitConfig(args.epochs, args.lr, args.precision, resume=args.resume,
                                 checkpoint_dir=args.checkpoint_dir, write_checkpoints=rank == 0)
        r = train.fit(model, tl, vl, config, device=dev,
                      progress=rank == 0 and not args.no_progress)
        _write(args.out, rank, world, r, getattr(model, "module", model))
    finally:
        if distributed:
            dist.destroy_process_group()
    return 0


def _write(out: str | None, rank: int, world: int, r: train.FitResult,
           model: torch.nn.Module) -> None:
    """Every rank records its weights digest; rank 0 also results, weights and a log line."""
    if not out:
        return
    folder, digest = Path(out), weights_digest(model)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"rank{rank}.json").write_text(json.dumps({"rank": rank, "digest": digest}))
    if rank == 0:
        rate = r.images_per_sec * world  # ranks step in lockstep on equal shards: world x rank 0
        write_json_atomic(folder / "result.json", {
            **r.to_dict(), "world_size": world, "weights_digest": digest,
            "images_per_sec_per_rank": r.images_per_sec, "images_per_sec": rate})
        torch.save(model.state_dict(), folder / "weights.pt")
        print(f"world {world}: {rate:.1f} images/s, {sum(r.epoch_s):.1f} s, "
              f"val accuracy {r.val_accuracy[-1]:.1%}, resumed from epoch {r.resumed_from_epoch}",
              flush=True)


def parser() -> argparse.ArgumentParser:
    """Arguments of the entry point (the global batch is split across ranks)."""
    p = argparse.ArgumentParser(prog="python -m helpers.ddp", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", required=True, help="ImageFolder with train/ and val/")
    p.add_argument("--model", default="tiny", help="b0..b7, tiny or tiny-gn")
    p.add_argument("--batch-size", type=int, default=32, help="global batch, split over ranks")
    for flag, default in (("--epochs", 2), ("--image-size", 32), ("--lr", 3e-3), ("--workers", 0),
                          ("--seed", 0), ("--precision", "fp32"), ("--device", "auto")):
        p.add_argument(flag, type=type(default), default=default)
    p.add_argument("--backend", default="auto", help="auto, gloo or nccl")
    p.add_argument("--timeout", type=float, default=60.0,
                   help="seconds a collective may wait for a lost peer before failing")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads per process (0: the cores / processes on this node)")
    p.add_argument("--checkpoint-dir")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--out", help="folder for result.json and per-rank weight digests")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--fail-rank", type=int, help=argparse.SUPPRESS)
    p.add_argument("--fail-at-step", type=int, default=3, help=argparse.SUPPRESS)
    p.add_argument("--fail-how", default="raise", choices=("raise", "kill"), help=argparse.SUPPRESS)
    return p


if __name__ == "__main__":
    sys.exit(main(parser().parse_args()))
