"""`python -m helpers`: env, run, strip (bench, train, data and weights join as they land)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path


def cmd_env(args: argparse.Namespace) -> int:
    """Print the environment report as a table, or as JSON with --json."""
    from helpers import env

    report = env.collect()
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.table())
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Run the notebooks with papermill and write the report."""
    from helpers.runner import RunSpec, run_all

    spec = RunSpec(Path(args.notebooks_dir), Path(args.output_dir), args.device, args.quick,
                   tuple(args.only or ()), args.kernel)
    outcome = run_all(spec)
    print(f"report: {outcome.report}")
    if outcome.failure:
        print(f"error: {outcome.failure}", file=sys.stderr)
        return 1
    return 0


def cmd_strip(args: argparse.Namespace) -> int:
    """Strip outputs from notebooks (reference cells excepted); --check only reports."""
    from helpers import nbtools

    paths = [Path(p) for p in args.paths] or sorted(Path("notebooks").glob("*.ipynb"))
    dirty = nbtools.strip_files(paths, check=args.check, adopt_from=args.adopt)
    for p in dirty:
        print(f"{'needs stripping' if args.check else 'stripped'}: {p}")
    return 1 if (args.check and dirty) else 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="python -m helpers",
        description="Measure PyTorch + CUDA on EfficientNet: the notebooks' logic as a CLI.",
        epilog="Examples: python -m helpers env --json | python -m helpers run --quick "
               "--only 00 01")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("env", help="report Python/torch/CUDA/cuDNN/GPU/CPU and known mismatches")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_env)

    p = sub.add_parser("run", help="execute the notebooks headless (papermill) and write a report")
    p.add_argument("--only", nargs="+", metavar="NN", help="run only these notebooks (e.g. 00 02)")
    p.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--notebooks-dir", default="notebooks", help="where NN_*.ipynb live")
    p.add_argument("--output-dir", default="outputs",
                   help="run folders go here as <timestamp>/; 'latest' points at the last")
    p.add_argument("--kernel", default="python3", help="Jupyter kernel name (default python3)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("strip", help="strip notebook outputs (NBVAL_CHECK_OUTPUT cells kept)")
    p.add_argument("paths", nargs="*", help="notebooks (default: notebooks/*.ipynb)")
    p.add_argument("--check", action="store_true", help="only report; exit 1 if any is dirty")
    p.add_argument("--adopt", metavar="RUN_DIR", type=Path,
                   help="first copy NBVAL_CHECK_OUTPUT cells' outputs from executed copies "
                        "in RUN_DIR (e.g. outputs/latest)")
    p.set_defaults(func=cmd_strip)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse, dispatch, turn a ValueError into a one-line message and exit 2."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
