"""`python -m helpers`: env, run, compare, bench, weights, data, train, strip."""

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
    """Run the notebooks with papermill and write report.md and report.html."""
    from helpers.runtime import nbparams
    from helpers.runtime.runner import DEFAULT_TIMEOUT_S, RunSpec, run_all

    spec = RunSpec(Path(args.notebooks_dir), Path(args.output_dir), args.device, args.quick,
                   tuple(args.only or ()), args.kernel, keep_going=args.keep_going,
                   parameters=nbparams.parse(args.parameters or []), verbose=args.verbose,
                   timeout_s=DEFAULT_TIMEOUT_S if args.timeout is None else args.timeout)
    outcome = run_all(spec)
    print(f"report: {outcome.report}\nhtml:   {outcome.html}")
    for failure in outcome.failures:
        print(f"error: {failure.message()}", file=sys.stderr)
    if outcome.not_run:
        print(f"not run: {', '.join(outcome.not_run)} (--keep-going runs them anyway)",
              file=sys.stderr)
    return 1 if outcome.failures else 0


def cmd_compare(args: argparse.Namespace) -> int:
    """Print two runs' metrics and claims side by side (and write them with --out)."""
    from helpers.runtime import compare

    text = compare.table(compare.load(Path(args.run_a)), compare.load(Path(args.run_b)))
    print(text)
    if args.out:
        Path(args.out).write_text(text)
        print(f"written: {args.out}")
    return 0


def cmd_strip(args: argparse.Namespace) -> int:
    """Strip outputs from notebooks (reference cells excepted); --check only reports."""
    from helpers.runtime import strip

    paths = [Path(p) for p in args.paths] or sorted(Path("notebooks").glob("*.ipynb"))
    dirty = strip.strip_files(paths, check=args.check, adopt_from=args.adopt)
    for p in dirty:
        print(f"{'needs stripping' if args.check else 'stripped'}: {p}")
    return 1 if (args.check and dirty) else 0


def cmd_bench(args: argparse.Namespace) -> int:
    """Benchmark EfficientNet inference and print a table (and JSON with --json)."""
    from helpers import allocator, bench, env
    from helpers.files import write_json_atomic

    if args.ladder and args.malloc == "both":
        return ladder_both_mallocs(args)
    print(f"memory allocator: {allocator.set_mode(args.malloc)}")  # before any tensor exists
    if args.ladder:
        return cmd_ladder(args)
    # 'all' means the CPU and, when there is one, the first GPU; else the one asked for
    devices = ([str(env.pick_device(args.device))] if args.device != "all" else
               ["cpu"] + (["cuda:0"] if env.pick_device("auto").type == "cuda" else []))
    specs = [bench.BenchSpec(args.model, d, args.batch_size, args.precision, args.channels_last,
                             args.compile, args.warmup, args.iters, args.image_size)
             for d in devices]  # every spec is validated before anything runs
    if args.device == "all" and len(devices) == 1:
        print("cuda: skipped, no usable GPU here")
    results = [bench.run(s) for s in specs]
    print(bench.table(results))
    if args.json:
        doc = {"environment": env.collect().to_dict(), "allocator": allocator.describe(),
               "results": [r.to_dict() for r in results]}
        print(f"json: {write_json_atomic(Path(args.json), doc)}")
    return 0


def parse_sizes(name: str, text: str) -> tuple[int, ...]:
    """'32,256' -> (32, 256), each a positive integer, else a ValueError naming `name`."""
    try:
        sizes = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise ValueError(f"{name}={text!r} is not allowed; give integers separated by commas, "
                         "e.g. 32,256") from None
    if not sizes or min(sizes) < 1:
        raise ValueError(f"{name}={text!r} is not allowed; every size must be >= 1")
    return sizes


def cmd_ladder(args: argparse.Namespace) -> int:
    """The speed ladder: every rung's speed and error vs rung 0; table, JSON, chart."""
    from helpers import env, ladder, ladder_bench

    device = env.pick_device("auto" if args.device == "all" else args.device)
    sizes = parse_sizes("batch_sizes", args.batch_sizes or str(args.batch_size))
    rungs = tuple(r for r in (args.rungs or "").split(",") if r) or None
    ladder.select(rungs)  # names checked before any training or timing
    model, info, kind = ladder_bench.model_for(args.weights, args.model, args.train_epochs,
                                               args.train_per_class, progress=not args.json)
    print(f"model: {args.model}, weights {kind} {info}")
    results = [ladder_bench.held_out_ladder(model, device, b, args.image_size, weights=kind,
                                            variant=args.model, rungs=rungs, warmup=args.warmup,
                                            iters=args.iters, budget_s=args.budget_s)
               for b in sizes]
    for r in results:
        print(f"\n{r.variant} batch {r.batch_size}, {r.device_name}:\n{r.table()}")
    out = ladder_bench.write_benchmark(results, Path(args.out) if args.out else None)
    print(f"\nwritten: {out}")
    if args.json:
        print(f"json: {ladder_bench.write_json(results, Path(args.json))}")
    return 0


def ladder_both_mallocs(args: argparse.Namespace) -> int:
    """The ladder per malloc mode, each in its own process, speedups side by side."""
    import subprocess
    import time

    from helpers import allocator, ladder_bench, paths

    if args.json:
        raise ValueError("--json is not allowed with --malloc both: each mode writes its own "
                         "ladder.json under --out")
    out = Path(args.out) if args.out else (paths.output_dir() / "benchmarks"
                                           / f"ladder-both-{time.strftime('%Y%m%d-%H%M%S')}")
    runs = {}  # a fresh process per mode: the mode is fixed at start-up
    for mode in allocator.MALLOC_MODES:  # the last --malloc and --out given are the ones used
        print(f"\n== ladder with malloc mode {mode!r}, in its own process", flush=True)
        child = subprocess.run([sys.executable, "-m", "helpers", *args.argv, "--malloc", mode,
                                "--out", str(out / f"malloc-{mode}")], check=False)
        runs[mode] = ladder_bench.child_outcome(child.returncode, out / f"malloc-{mode}")
    print(ladder_bench.write_both_mallocs(runs, out))
    return 0 if all(isinstance(r, Path) for r in runs.values()) else 1


def cmd_weights(args: argparse.Namespace) -> int:
    """Fetch, import or list pretrained weights in the local cache."""
    from helpers import weights

    if args.action == "list":
        for v in weights.VARIANTS:
            path = weights.cached_path(v)
            print(f"{v}: {'cached' if path.exists() else 'missing'}  {path}")
    elif args.action == "import":
        if len(args.variant) != 1 or not args.file:
            raise ValueError(f"variant={args.variant!r} with file={args.file!r} is not allowed; "
                             "import takes one variant and --file, e.g. import b0 --file b0.pth")
        print(f"imported: {weights.import_file(args.variant[0], Path(args.file))}")
    else:
        for v in args.variant or ["b0"]:
            try:
                print(f"{v}: {weights.fetch(v)}")
            except RuntimeError as e:
                print(f"error: {e}", file=sys.stderr)
                return 1
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    """Generate the shapes dataset (reused when an identical one exists)."""
    from helpers import datasets

    root = datasets.make_dataset(Path(args.root) if args.root else None, args.train_per_class,
                                 args.val_per_class, args.image_size, seed=args.seed)
    print(f"dataset: {root} {datasets.check_imagefolder(root)}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Train EfficientNet on an ImageFolder (default: the generated shapes) and report."""
    from helpers import datasets, env, memory, train
    from helpers.files import write_json_atomic
    from helpers.precision import resolve_precision

    config = train.FitConfig(args.epochs, args.lr, args.precision, channels_last=args.channels_last,
                             checkpoint_dir=args.checkpoint_dir, resume=args.resume, keep=args.keep)
    device = env.pick_device(args.device)
    resolve_precision(args.precision, device)  # refuse fp16 on a CPU before any work
    root = Path(args.data_dir) if args.data_dir else datasets.make_dataset(
        image_size=args.image_size)
    tl, vl = datasets.loaders(root, args.image_size, args.batch_size, device, workers=args.workers)
    model = train.build_model(args.model, len(tl.dataset.classes), args.seed)
    r = train.fit(model, tl, vl, config, device=device, progress=not args.no_progress)
    if r.resumed_from_epoch:
        print(f"resumed after epoch {r.resumed_from_epoch} from {args.checkpoint_dir}")
    print(f"{r.precision} on {r.device}: {r.images_per_sec:.1f} images/s, peak "
          f"{r.peak_memory_mib:.0f} MiB ({memory.kind_words(r.memory_kind)}), val accuracy "
          f"{', '.join(f'{a:.1%}' for a in r.val_accuracy)}, final loss {r.losses[-1]:.3f}")
    if args.json:
        print(f"json: {write_json_atomic(Path(args.json), r.to_dict())}")
    return 0


def add_train_parsers(sub: argparse._SubParsersAction) -> None:
    """`data make` and `train`: the training notebook's work without Jupyter."""
    p = sub.add_parser("data", help="generate the shapes dataset (ImageFolder, no download)")
    p.add_argument("action", choices=("make",))
    p.add_argument("--root", help="where (default: data/shapes)")
    p.add_argument("--train-per-class", type=int, default=100)
    p.add_argument("--val-per-class", type=int, default=30)
    p.add_argument("--image-size", type=int, default=64, help="pixels")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("train", help="train EfficientNet in fp32 / bf16 / fp16 and report")
    p.add_argument("--model", default="b0", help="b0..b7, or tiny (a small CNN, for demos)")
    p.add_argument("--precision", default="fp32", help="fp32, bf16 or fp16 (GPU, with scaler)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--data-dir", help="an ImageFolder with train/ and val/ (default: generated)")
    p.add_argument("--image-size", type=int, default=64, help="pixels")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    p.add_argument("--channels-last", action="store_true", help="NHWC memory format")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-dir", help="write a checkpoint after every epoch here")
    p.add_argument("--resume", action="store_true",
                   help="continue from the newest valid checkpoint in --checkpoint-dir")
    p.add_argument("--keep", type=int, default=3, help="checkpoints kept (newest)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--json", metavar="FILE", help="also write the result here")
    p.set_defaults(func=cmd_train)


def add_bench_parser(sub: argparse._SubParsersAction) -> None:
    """`bench`: the inference benchmark, runnable on a box with only torch."""
    p = sub.add_parser("bench", help="time EfficientNet inference (median, p10/p90, images/s)")
    p.add_argument("--model", default="b0", help="b0..b7 (default b0)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, auto or all")
    p.add_argument("--precision", default="fp32", help="fp32, bf16 or fp16 (GPU only)")
    p.add_argument("--channels-last", action="store_true", help="NHWC memory format")
    p.add_argument("--compile", action="store_true", help="torch.compile the model first")
    p.add_argument("--iters", type=int, default=10, help="timed batches")
    p.add_argument("--warmup", type=int, default=3, help="untimed batches first")
    p.add_argument("--image-size", type=int, default=224, help="input height = width, pixels")
    p.add_argument("--json", metavar="FILE", help="also write results (and environment) here")
    p.add_argument("--malloc", default="default",
                   help="reuse: glibc keeps freed memory (no fresh, kernel-zeroed pages per "
                   "large tensor), as jemalloc/TCMalloc do; default: leave malloc as it is; "
                   "both (--ladder): one process each, speedups side by side")
    g = p.add_argument_group("speed ladder (--ladder)")
    g.add_argument("--ladder", action="store_true",
                   help="every optimisation rung side by side, with its error vs rung 0")
    g.add_argument("--batch-sizes", help="comma-separated, e.g. 32,256 (default: --batch-size)")
    g.add_argument("--weights", default="trained", help="trained (here, on generated shapes; "
                   "cached), pretrained (ImageNet cache) or random")
    g.add_argument("--rungs", help="comma-separated rung keys (default: all; rung 0 always)")
    g.add_argument("--budget-s", type=float, default=20.0,
                   help="seconds of timed calls per rung before iters is cut (min 3 calls)")
    g.add_argument("--train-epochs", type=int, default=8)
    g.add_argument("--train-per-class", type=int, default=60)
    g.add_argument("--out", help="folder for ladder.json/.md/.png (default: "
                   "outputs/benchmarks/ladder-<device>-<time>)")
    p.set_defaults(func=cmd_bench)


def add_run_parser(sub: argparse._SubParsersAction) -> None:
    """`run`: every notebook headless with papermill, then report.md and report.html."""
    p = sub.add_parser("run", help="execute the notebooks headless (papermill) and write a report")
    p.add_argument("--only", nargs="+", metavar="NN", help="run only these notebooks (e.g. 00 02)")
    p.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("-p", "--parameters", nargs=2, action="append", metavar=("NAME", "VALUE"),
                   help="pass a parameter to every notebook that declares it, or NN:NAME to one "
                        "(repeatable; values parsed as papermill's -p does)")
    p.add_argument("--keep-going", action="store_true",
                   help="record a failing notebook and run the rest (exit code 1 at the end)")
    p.add_argument("--timeout", type=float, metavar="SECONDS",
                   help="per-cell limit (default 1800: 3x the slowest cell at default sizes "
                        "on a 2-core CPU)")
    p.add_argument("--verbose", action="store_true",
                   help="log each cell and its output as it runs (papermill's --log-output)")
    p.add_argument("--notebooks-dir", default="notebooks", help="where NN_*.ipynb live")
    p.add_argument("--output-dir", default="outputs",
                   help="run folders go here as <timestamp>/; 'latest' points at the last")
    p.add_argument("--kernel", default="python3", help="Jupyter kernel name (default python3)")
    p.set_defaults(func=cmd_run)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="python -m helpers",
        description="Measure PyTorch + CUDA on EfficientNet: the notebooks' logic as a CLI.",
        epilog="Examples: python -m helpers env --json | python -m helpers run --quick "
               "--only 00 01 | python -m helpers compare outputs/A outputs/B")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("env", help="report Python/torch/CUDA/cuDNN/GPU/CPU and known mismatches")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_env)

    add_run_parser(sub)
    p = sub.add_parser("compare", help="two runs' metrics and claims side by side, with ratios")
    p.add_argument("run_a", metavar="RUN_A", help="a run folder (outputs/<timestamp>), a results "
                   "folder (docs/results/...) or a results JSON file")
    p.add_argument("run_b", metavar="RUN_B", help="the same kinds; ratios are B / A")
    p.add_argument("--out", metavar="FILE", help="also write the table here (Markdown)")
    p.set_defaults(func=cmd_compare)

    add_bench_parser(sub)
    p = sub.add_parser("weights", help="fetch / import / list pretrained weights (data/weights)")
    p.add_argument("action", choices=("fetch", "import", "list"))
    p.add_argument("variant", nargs="*", help="b0..b7 (fetch: default b0; import: one)")
    p.add_argument("--file", help="with import: the .pth file downloaded elsewhere")
    p.set_defaults(func=cmd_weights)
    add_train_parsers(sub)

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
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return args.func(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
