"""`python -m bench` (what `make bench` runs): measure, write bench/results.md, print the figures.

Options: `--smoke` (tiny sizes, seconds: what tests/test_bench_smoke.py runs), `--out FILE`
(default bench/results.md; with --smoke nothing is written unless --out is given),
`--profile program_start,request_open,report|none`, `--only dev,sla,rss,inbox,period,reports,whatif`,
`--keep DIR` (keep the work directory: logs, databases, profiles).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import shutil
import sys
import tempfile
from pathlib import Path

from bench.harness import Bench
from bench.report import write_results
from bench.results import Results, Sizes

HERE = Path(__file__).resolve().parent


async def run_bench(sizes: Sizes, workdir: Path, out: Path | None) -> Results:
    results = await Bench(sizes, workdir).run()
    if out is not None:
        write_results(results, out, artefacts=HERE.parent / ".artefacts" / "bench", workdir=workdir)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks the bench code in seconds")
    parser.add_argument("--out", type=Path, default=None, help="results file (default bench/results.md)")
    parser.add_argument("--profile", default=None,
                        help="comma-separated paths to profile: program_start, request_open, report; or none")
    parser.add_argument("--keep", type=Path, default=None, help="work directory to keep (logs, databases, profiles)")
    parser.add_argument("--only", default=None, help="comma-separated parts: dev (figures 1, 2), sla (7), rss (6), "
                                                      "inbox (issue 16's lists), period (3, 4), reports (5), whatif")
    args = parser.parse_args(argv)
    sizes = Sizes.smoke() if args.smoke else Sizes()
    if args.profile is not None:
        chosen = () if args.profile == "none" else tuple(p.strip() for p in args.profile.split(","))
        sizes = dataclasses.replace(sizes, profiles=chosen)
    if args.only:
        sizes = dataclasses.replace(sizes, parts=tuple(p.strip() for p in args.only.split(",")))
    out = args.out if args.out is not None else (None if args.smoke else HERE / "results.md")
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="tc-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        results = asyncio.run(run_bench(sizes, workdir, out))
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print()
    for figure in results.figures:
        print(figure.line())
    if out is not None:
        print(f"(written to {out})")
    failed = [f.name for f in results.figures if f.error is not None]
    if failed:
        print(f"bench: {len(failed)} figure(s) could not be measured: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
