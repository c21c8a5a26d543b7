"""Command line: `python -m lab book|bench|sync ...`."""
from __future__ import annotations

import argparse
import json
import sys


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lab", description="Layerwise Adapter book tools")
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("book", help="execute the chapters with papermill")
    b.add_argument("--profile", default="default", choices=["smoke", "default", "full"])
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--artefacts", default=None, help="artefact root (default: ./artefacts)")
    b.add_argument("--only", nargs="*", help="chapter prefixes to run, e.g. 01 02")
    b.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                   help="extra chapter parameter (UPPERCASE name of a parameters-cell constant); repeatable")
    bench = sub.add_parser("bench", help="run a benchmark; its last line is a JSON object")
    bench.add_argument("what", choices=["fisher", "compact"])
    bench.add_argument("--profile", default="default", choices=["smoke", "default", "full"])
    bench.add_argument("--seed", type=int, default=0)
    bench.add_argument("--artefacts", default=None)
    sub.add_parser("sync", help="regenerate every notebooks/*.ipynb from its .py (no outputs)")
    a = ap.parse_args(argv)

    if a.cmd == "book":
        from .notebooks import run_book

        extra = {}
        for kv in a.param:
            name, _, value = kv.partition("=")
            try:
                extra[name] = json.loads(value)
            except json.JSONDecodeError:
                extra[name] = value
        times = run_book(a.profile, a.seed, a.artefacts, a.only, extra=extra)
        print(json.dumps({"profile": a.profile, "seconds": times, "total_s": sum(times.values())}))
    elif a.cmd == "bench":
        from . import bench as bench_mod

        out = bench_mod.main(a.what, profile=a.profile, seed=a.seed, artefacts=a.artefacts)
        print(json.dumps(out))
    elif a.cmd == "sync":
        from .notebooks import sync_all

        for p in sync_all():
            print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
