#!/usr/bin/env python3
"""Where a cold build's time goes, from cargo's `--timings` report (standard library only).

    cargo test --workspace --no-run --timings      # what `make test` builds; writes target/cargo-timings/
    python3 bench/build_timings.py target/cargo-timings/cargo-timing-<stamp>.html [OTHER.html]

Prints each crate's compile time (seconds of one core, summed over its units: lib, test
harness, build script) for the 25 slowest, and the totals for polars (polars-* and sqlparser,
which only `genrelab query` uses), tch (and its C++ wrapper, torch-sys) and genrelab's own crates. With a second report, both
side by side (e.g. before and after a profile change; the second may be an incremental rebuild:
only the crates it rebuilt are compared).
"""
import json
import re
import sys
from collections import defaultdict

GROUPS = {
    "polars (polars-*, sqlparser)": lambda n: n.startswith("polars") or n == "sqlparser",
    "tch, torch-sys (libtorch binding)": lambda n: n in ("tch", "torch-sys"),
    "arrow, parquet": lambda n: n.startswith("arrow") or n == "parquet",
    "genrelab's crates": lambda n: n.startswith("genrelab"),
}


def load(path):
    html = open(path, encoding="utf-8").read()
    units = json.loads(re.search(r"const UNIT_DATA = (\[.*?\]);\n", html, re.S).group(1))
    per_crate = defaultdict(float)
    for u in units:
        per_crate[u["name"]] += u["duration"]
    return {n: t for n, t in per_crate.items() if t > 0}  # units listed but not rebuilt take 0 s


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    reports = [load(p) for p in sys.argv[1:]]
    first = reports[0]
    head = "".join(f" {'report ' + str(i + 1):>10}" for i in range(len(reports)))
    print(f"{'crate':<32}{head}")
    for name in sorted(first, key=lambda n: -first[n])[:25]:
        print(f"{name:<32}" + "".join(f" {r[name]:10.1f}" if r.get(name) else f" {'-':>10}" for r in reports))
    print()
    for label, is_in in GROUPS.items():
        names = [n for n in first if is_in(n) and all(r.get(n) for r in reports)]
        print(f"{label:<32}" + "".join(f" {sum(r[n] for n in names):10.1f}" for r in reports) + f"   ({len(names)} crates)")
    print(f"{'all crates':<32}" + "".join(f" {sum(r.values()):10.1f}" for r in reports))


if __name__ == "__main__":
    main()
