"""Command line: `python -m lab book|rerun|bench|data|train|fisher|distill|crosscheck|sweep|archive|sync ...`.

A wrong first step (an unknown chapter, a missing raw-data folder, a chapter run before the one that makes its input,
a chapter that fails) ends with one line saying what is missing and the command that makes it, and a non-zero exit
status: 2 for what is caught before any chapter runs, 1 for a chapter that failed.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .constants import HEADS
from .profiles import PROFILES


def check_real_data() -> None:
    """With `$LAB_RAW_DIR` set (real Amazon Reviews 2023 data): the folder exists, `$LAB_CATEGORY` names a valid
    category, and its review file is there. Raises ValueError (DataError) naming what is missing; checked before any
    chapter runs, and again by the data loader (`lab.data.raw_files`)."""
    raw = os.environ.get("LAB_RAW_DIR")
    if not raw:
        return
    from .config import real_data_from_env
    from .data import raw_files

    # the folder first: a missing folder is the likelier mistake, and its message says what to put there
    category = real_data_from_env()[1] if Path(raw).is_dir() else os.environ.get("LAB_CATEGORY", "")
    raw_files(category, raw)


def run_chapters(cmd: str, run) -> int:
    """Run chapters through `run()` (which returns the JSON summary to print): exit 0 when they ran, 1 when a chapter
    failed (its message, no traceback), 2 when a wrong first step was caught before any chapter ran."""
    from .notebooks import ChapterFailed

    try:
        check_real_data()
        out = run()
    except ChapterFailed as e:
        print(f"python -m lab {cmd}: {e}", file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError) as e:  # caught before any chapter ran
        print(f"python -m lab {cmd}: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(out))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command line's arguments, one sub-command per `COMMANDS` entry."""
    ap = argparse.ArgumentParser(prog="python -m lab", description="Layerwise Adapter book tools")
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("book", help="execute the chapters with papermill")
    b.add_argument("--profile", default="default", choices=PROFILES)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--artefacts", default=None, help="artefact root (default: ./artefacts)")
    b.add_argument("--only", nargs="*", help="chapter prefixes to run, e.g. 01 02")
    b.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                   help="extra chapter parameter (UPPERCASE name of a parameters-cell constant); repeatable")
    bench = sub.add_parser("bench", help="run a benchmark; its last line is a JSON object")
    bench.add_argument("what", choices=["fisher", "compact", "train", "depth", "data"])
    bench.add_argument("--profile", default="default", choices=PROFILES)
    bench.add_argument("--seed", type=int, default=0)
    bench.add_argument("--artefacts", default=None)
    bench.add_argument("--seeds", type=int, nargs="*", help="depth: seeds of the sweep (default: --seed)")
    bench.add_argument("--depths", type=int, nargs="*", help="depth: model depths (default: the profile's)")
    bench.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", dest="knobs",
                       help="depth: a DataConfig field of the world for a tuning run, e.g. induction_strength=0.8; "
                            "repeatable (its data and models get their own folder)")
    bench.add_argument("--against", default=None, metavar="JSON",
                       help="train: another device's `bench train` JSON (its last line, saved); adds epoch-time ratios")
    bench.add_argument("--variants", nargs="+", default=None, metavar="NAME",
                       help="train: the CUDA variants to time (default: all of lab.bench.train.CUDA_VARIANTS)")
    bench.add_argument("--scales", type=float, nargs="+", default=[1, 10],
                       help="data: multiples of the profile's users and items (default: 1 10)")
    d = sub.add_parser("data", help="data tools: convert other data sets to the Amazon Reviews 2023 format")
    dsub = d.add_subparsers(dest="data_cmd", required=True)
    cv = dsub.add_parser("convert", help="write <OUT_DIR>/<Category>.jsonl.gz and meta_<Category>.jsonl.gz from a "
                                         "RecBole .inter, a 'user item item ...' sequence file or a CSV; "
                                         "last line JSON")
    cv.add_argument("--from", dest="fmt", required=True, choices=["recbole", "seq", "csv"])
    cv.add_argument("src", metavar="IN")
    cv.add_argument("out_dir", metavar="OUT_DIR")
    cv.add_argument("--category", default=None, help="file stem (letters, digits, '_'); default: from IN's name")
    cv.add_argument("--strict", action="store_true", help="stop at the first bad row instead of skipping it")
    cv.add_argument("--user-col", default=None, help="recbole/csv: the user column (default: found by name)")
    cv.add_argument("--item-col", default=None, help="recbole/csv: the item column (default: found by name)")
    cv.add_argument("--time-col", default=None, help="recbole/csv: the timestamp column (default: found by name)")
    cv.add_argument("--rating-col", default=None, help="recbole/csv: the rating column (default: found by name; "
                                                       "none: every rating 5.0)")
    cv.add_argument("--delimiter", default=None, help="recbole/csv field separator (default: tab / ',')")
    cv.add_argument("--time-unit", default="s", choices=["s", "ms"], help="recbole/csv timestamps (default: s)")
    r = sub.add_parser("rerun", help="run the book for several seeds, skipping chapters whose inputs did not change")
    r.add_argument("--profile", default="default", choices=PROFILES)
    r.add_argument("--seeds", type=int, nargs="+", default=[0])
    r.add_argument("--artefacts", default=None, help="artefact root (default: ./artefacts)")
    r.add_argument("--only", nargs="*", help="chapter prefixes to run, e.g. 01 02")
    r.add_argument("--headlines", action="store_true", help="run nothing: each chapter's headline numbers of the "
                                                            "seeds, with commit, date and minutes (markdown)")
    r.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                   help="extra chapter parameter (UPPERCASE name of a parameters-cell constant); repeatable")
    cc = sub.add_parser("crosscheck", help="a peer cross-check by hand, not in CI; its last line is a JSON object")
    cc.add_argument("what", choices=["recbole"])
    cc.add_argument("--profile", default="default", choices=PROFILES)
    cc.add_argument("--seed", type=int, default=0)
    cc.add_argument("--artefacts", default=None, help="artefact root (default: ./artefacts)")
    cc.add_argument("--epochs", type=int, default=None, help="RecBole's training epochs (default: the profile's)")
    tr = sub.add_parser("train", help="train the profile's teacher into --out (1 process, or N under "
                                      "`accelerate launch --num_processes N -m lab train ...`); last line JSON")
    tr.add_argument("--profile", default="default", choices=PROFILES)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--out", required=True, help="folder for the model, history.csv and loss_curve.json")
    tr.add_argument("--artefacts", default=None, help="artefact root for the data cache (default: ./artefacts)")
    tr.add_argument("--epochs", type=int, default=None, help="default: the profile's")
    tr.add_argument("--batch-size", type=int, default=None, help="global batch, split across processes "
                                                                 "(default: the profile's)")
    tr.add_argument("--dropout", type=float, default=None, help="override the model's dropout (0: comparable runs)")
    tr.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the profile's)")
    tr.add_argument("--head", default=None, choices=HEADS, help="an LLM teacher's scoring head (default: the "
                                                                "profile's; lab.constants.HEADS)")
    tr.add_argument("--max-minutes", type=float, default=None, help="wall-clock budget of one process (default: the "
                                                                   "profile's; not applied under N processes)")
    fi = sub.add_parser("fisher", help="chapter 03's Fisher of the teacher over the profile's Fisher users into --out "
                                       "(1 process, or N under `accelerate launch`); last line JSON")
    ds = sub.add_parser("distill", help="distil the teacher into one student into --out (1 process, or N under "
                                        "`accelerate launch`); last line JSON")
    for p_ in (fi, ds):
        p_.add_argument("--profile", default="default", choices=PROFILES)
        p_.add_argument("--seed", type=int, default=0)
        p_.add_argument("--out", required=True, help="output folder")
        p_.add_argument("--artefacts", default=None, help="artefact root of the run (default: ./artefacts)")
        p_.add_argument("--teacher", default=None, help="a save_pretrained teacher folder (default: the run's "
                                                        "chapter 02 teacher)")
    fi.add_argument("--estimator", default="fisher_empirical", choices=["fisher_empirical", "fisher_true"])
    fi.add_argument("--method", default="hooks", choices=["hooks", "loop", "vmap"])
    fi.add_argument("--users", type=int, default=None, help="Fisher users (default: the profile's; 0: all)")
    ds.add_argument("--layers", type=int, nargs="+", default=None, help="teacher layers kept (default: --rule's)")
    ds.add_argument("--rule", default="fisher_topk", help="chapter 04's selection rule when --layers is not given")
    ds.add_argument("--k", type=int, default=None, help="layers the rule keeps (default: L/4)")
    ds.add_argument("--variant", default="kd+fisher", help="ce | kd | kd+uniform | kd+depth | kd+fisher | tinybert")
    ds.add_argument("--adapter", default="full", choices=["full", "lora", "qlora"])
    ds.add_argument("--epochs", type=int, default=None, help="default: the profile's distillation budget")
    ds.add_argument("--importance", default=None, help="importance rows (parquet; e.g. `python -m lab fisher`'s "
                                                      "fisher_layers.parquet); default: the run's chapter 03 table")
    sw = sub.add_parser("sweep", help="the compression sweep (issue 27): every budget k and selection rule, zero-shot "
                                      "and distilled, the k-layer model from scratch, measured speed-ups; resumable")
    sw.add_argument("what", choices=["compression"])
    sw.add_argument("--profile", default="default", choices=PROFILES)
    sw.add_argument("--seeds", type=int, nargs="+", default=[0])
    sw.add_argument("--artefacts", default=None)
    sw.add_argument("--ks", type=int, nargs="*", help="budgets (default: lab.bench.sweep.default_ks of the teacher)")
    sw.add_argument("--rules", nargs="*", help="selection rules (default: SweepConfig.rules); random draws apart")
    sw.add_argument("--n-random", type=int, default=None, help="random layer sets per k (default: 3)")
    sw.add_argument("--variant", default=None, help="distillation variant (default: chapter 05's choice)")
    sw.add_argument("--no-scratch", action="store_true", help="skip the k-layer models from scratch")
    sw.add_argument("--report", action="store_true", help="train nothing: the tests, headline and figure of the "
                                                          "seeds' saved sweep tables")
    ar = sub.add_parser("archive", help="keep a run's summaries in the repository's archive/, or copy them back into "
                                        "an artefacts folder (lab.archive)")
    ar.add_argument("action", choices=("save", "restore"))
    ar.add_argument("--profile", default="default", choices=PROFILES)
    ar.add_argument("--seeds", type=int, nargs="+", default=None, help="default: the profile's seeds")
    ar.add_argument("--artefacts", default=None, help="artefact root (default: ./artefacts)")
    sub.add_parser("sync", help="regenerate every notebooks/*.ipynb from its .py (no outputs)")
    return ap


def chapter_params(a) -> dict:
    """`-p NAME=VALUE` pairs as {NAME: value}, each value read as JSON when it parses (`null` is None), else text."""
    extra = {}
    for kv in getattr(a, "param", []):
        name, _, value = kv.partition("=")
        try:
            extra[name] = json.loads(value)
        except json.JSONDecodeError:
            extra[name] = value
    return extra


def book_cmd(a) -> int:
    """`book`: run the chapters with papermill (`lab.notebooks.run_book`)."""
    from .notebooks import run_book
    from .rerun import record_chapter

    def book():
        extra = chapter_params(a)
        times = run_book(a.profile, a.seed, a.artefacts, a.only, extra=extra,
                         on_chapter=lambda stem, s: record_chapter(a.profile, a.seed, a.artefacts, stem, s, extra))
        return {"profile": a.profile, "seconds": times, "total_s": sum(times.values())}
    return run_chapters("book", book)


def rerun_cmd(a) -> int:
    """`rerun`: the book over several seeds, skipping what did not change (issue 15, `lab.rerun`); with
    `--headlines`, each chapter's headline numbers of the seeds as markdown, and nothing runs."""
    from .rerun import headlines, headlines_markdown, rerun

    if a.headlines:
        print(headlines_markdown(headlines(a.profile, a.seeds, a.artefacts)))
        return 0
    return run_chapters("rerun", lambda: {"profile": a.profile, "seconds": rerun(a.profile, a.seeds, a.artefacts,
                                                                                   a.only, extra=chapter_params(a))})


def bench_cmd(a) -> int:
    """`bench`: one benchmark (`lab.bench`); the depth sweep (issue 12) and the data pipeline (issue 16) have their
    own arguments."""
    if a.what == "depth":
        from .bench import depth

        knobs = dict(kv.split("=", 1) for kv in a.knobs)
        out = depth.run(a.profile, seeds=a.seeds or [a.seed], depths=a.depths, artefacts=a.artefacts, knobs=knobs)
    elif a.what == "data":
        from .bench import data as bench_data

        out = bench_data.run(a.profile, [int(s) if float(s).is_integer() else s for s in a.scales], a.seed)
    else:
        from . import bench as bench_mod

        against = json.loads(Path(a.against).read_text().strip().splitlines()[-1]) if a.against else None
        out = bench_mod.main(a.what, profile=a.profile, seed=a.seed, artefacts=a.artefacts, against=against,
                             variants=a.variants)
    print(json.dumps(out))
    return 0


def data_cmd(a) -> int:
    """`data convert`: another data set in the Amazon Reviews 2023 format (issue 16, `lab.data.convert`)."""
    from .data import DataError
    from .data.convert import convert

    cols = {"user": a.user_col, "item": a.item_col, "timestamp": a.time_col, "rating": a.rating_col}
    try:
        out = convert(a.fmt, a.src, a.out_dir, a.category, strict=a.strict, columns=cols, delimiter=a.delimiter,
                      time_unit=a.time_unit)
    except (DataError, ValueError) as e:
        print(f"python -m lab data convert: error: {e}", file=sys.stderr)
        return 2
    print(f"[data convert] {out['format']} {a.src} -> {out['reviews']}: {out['interactions']:,} interactions, "
          f"{out['users']:,} users, {out['items']:,} items; {out['rows_skipped']:,} of {out['rows_read']:,} rows "
          f"skipped {out['skipped']} (details in {out['report']}). Use it: LAB_RAW_DIR={a.out_dir} "
          f"LAB_CATEGORY={out['category']}", file=sys.stderr)
    print(json.dumps(out))
    return 0


def crosscheck_cmd(a) -> int:
    """`crosscheck recbole`: the book's numbers against RecBole 1.2.1 in .venv-recbole/ (issue 14)."""
    from .crosscheck import recbole as crosscheck_recbole

    print(json.dumps(crosscheck_recbole.main(a.profile, a.seed, a.artefacts, a.epochs), default=str))
    return 0


def launched_cmd(a) -> int:
    """`train`, `fisher`, `distill`: one code path for 1 process and N (issue 16, `lab.launch`); rank 0 prints."""
    from . import launch
    from .train import is_main_process

    common = dict(profile=a.profile, out=a.out, seed=a.seed, artefacts=a.artefacts)
    try:
        if a.cmd == "train":
            out = launch.train_run(**common, epochs=a.epochs, dropout=a.dropout, batch_size=a.batch_size,
                                   lr=a.lr, max_minutes=a.max_minutes, head=a.head)
            out = {k: v for k, v in out.items() if k != "history"}
        elif a.cmd == "fisher":
            out = launch.fisher_run(**common, teacher=a.teacher, estimator=a.estimator, method=a.method,
                                    n_samples=a.users)
        else:
            out = launch.distill_run(**common, teacher=a.teacher, layers=a.layers, rule=a.rule, k=a.k,
                                     variant=a.variant, adapter=a.adapter, epochs=a.epochs,
                                     importance=a.importance)
    except (FileNotFoundError, ValueError) as e:
        print(f"python -m lab {a.cmd}: error: {e}", file=sys.stderr)
        return 2
    if is_main_process():
        print(json.dumps(out))
    return 0


def sweep_cmd(a) -> int:
    """`sweep compression`: `lab.bench.sweep.run` over the seeds; its last line is a JSON object."""
    from .bench import sweep

    try:
        out = sweep.run(a.profile, a.seeds, a.artefacts, ks=a.ks, rules=a.rules, n_random=a.n_random,
                        variant=a.variant, scratch=not a.no_scratch, train=not a.report)
    except (FileNotFoundError, ValueError) as e:
        print(f"python -m lab sweep: error: {e}", file=sys.stderr)
        return 2
    from .chapters.c05_distillation import save_sweep_figure

    out["figure"] = save_sweep_figure(a.profile, out["seeds"], a.artefacts)
    print(json.dumps(out, default=str))
    return 0


def archive_cmd(a) -> int:
    """`archive save|restore`: a run's summaries into archive/<run>/, or back where the artefacts lack them."""
    from . import archive
    from .profiles import get_profile

    seeds = a.seeds if a.seeds is not None else list(get_profile(a.profile).seeds)
    try:
        rows = (archive.save if a.action == "save" else archive.restore)(a.profile, seeds, a.artefacts)
    except ValueError as e:
        print(f"python -m lab archive: error: {e}", file=sys.stderr)
        return 2
    for r in rows:
        print("  ".join(str(v) for v in r.values()), file=sys.stderr)
    print(json.dumps({"action": a.action, "profile": a.profile, "seeds": seeds, "files": rows}))
    return 0


def sync_cmd(a) -> int:
    """`sync`: regenerate every notebooks/*.ipynb from its .py."""
    from .notebooks import sync_all

    for p in sync_all():
        print(p)
    return 0


COMMANDS = {"book": book_cmd, "rerun": rerun_cmd, "bench": bench_cmd, "data": data_cmd,
            "crosscheck": crosscheck_cmd, "train": launched_cmd, "fisher": launched_cmd, "distill": launched_cmd,
            "sweep": sweep_cmd, "archive": archive_cmd, "sync": sync_cmd}


def main(argv=None) -> int:
    """Parse the command line and run its command; the exit status."""
    a = build_parser().parse_args(argv)
    return COMMANDS[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
