#!/usr/bin/env python3
"""The study's whole recipe end to end, its Python code against `genrelab run`, on the same clips
in one run.

    PY=$(bench/venv.sh) && $PY bench/study_bench.py                  (gtzan-mini, the study's recipe)
    $PY bench/study_bench.py --synthetic 100 --skip-python            (a GTZAN-sized synthetic set:
                                                                       the protocol's full cost)

1. The study's Python pipeline (bench/study_python.py, one process): librosa features for every
   clip, a stratified 80/20 split, the three models x `--seeds` trained for `--epochs` epochs by a
   plain PyTorch loop one after another, the test part scored every epoch.
2. genrelab on the same clips from an empty work folder (`genrelab --config ... run`: download
   (listing and hashing), features, descriptors, split, train, evaluate), the same recipe,
   `jobs` runs side by side (`--jobs`, default 2 on a machine of 2 or more cores).
3. genrelab again after a training tweak (`--set train.learning_rate=0.0002`): what an iteration
   costs once the features are cached (only train and evaluate rerun).
Writes bench/results/study_<set>.md with date, machine and command. Clips: --clips DIR (GTZAN's
layout, genre from the file name) or ../shared/data/gtzan-mini, or --synthetic N (N clips per genre
of genrelab's synthetic set, 30 s each, generated first and not timed).
"""
import argparse
import datetime
import glob
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

from machine import cpu_line

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "debug", "genrelab")
MINI = os.path.join(ROOT, "..", "shared", "data", "gtzan-mini")



def timed(cmd, **kw):
    t0 = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
    secs = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return secs, p.stdout


def stage_seconds(work):
    """Seconds per stage of the last `run` (genrelab's events log)."""
    out = {}
    for line in open(os.path.join(work, ".genrelab", "events.jsonl")):
        e = json.loads(line)
        if e.get("action") == "ran" and "seconds" in e:
            out[e["stage"]] = e["seconds"]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", help="a folder of GTZAN-layout WAVs (default: ../shared/data/gtzan-mini)")
    ap.add_argument("--synthetic", type=int, help="N clips per genre of genrelab's synthetic set instead")
    ap.add_argument("--epochs", type=int, default=150)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--skip-python", action="store_true", help="genrelab only (the study's Python side takes as long again)")
    args = ap.parse_args()
    subprocess.run(["make", "--no-print-directory", "build"], cwd=ROOT, check=True)
    tmp = tempfile.mkdtemp(prefix="study_bench.")

    if args.synthetic:
        gen = os.path.join(tmp, "gen.toml")
        with open(gen, "w") as f:
            f.write(f'workdir = "gen"\n[download]\nsource = "synthetic"\n[download.synthetic]\ngenres = 10\n'
                    f'clips_per_genre = {args.synthetic}\nseconds = 30.0\nseed = 7\n')
        timed([BIN, "--config", gen, "run", "download"])
        clips_dir = os.path.join(tmp, "gen", "download", "synthetic")
        set_name = f"synthetic{10 * args.synthetic}"
    else:
        clips_dir = os.path.abspath(args.clips or MINI)
        set_name = "mini" if not args.clips else os.path.basename(clips_dir.rstrip("/"))
    clips = sorted(glob.glob(os.path.join(clips_dir, "**", "*.wav"), recursive=True))
    clips = [[p, os.path.basename(p).split(".")[0]] for p in clips]
    if not clips:
        sys.exit(f"no clips under {clips_dir}")

    py = None
    if not args.skip_python:
        listing = os.path.join(tmp, "clips.json")
        json.dump(clips, open(listing, "w"))
        secs, out = timed([sys.executable, os.path.join(ROOT, "bench", "study_python.py"), listing, str(args.epochs), str(args.seeds)])
        py = json.loads(out.strip().splitlines()[-1])
        py["total_s"] = secs
        py["max_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024

    cfg = os.path.join(tmp, "genrelab.toml")
    with open(cfg, "w") as f:
        f.write(f'workdir = "work"\nthreads = 0\njobs = {args.jobs}\n[download]\nsource = "folder"\npath = "{clips_dir}"\n'
                f'[split]\nprotocol = "study"\n[train]\nmodels = ["linear", "simple_cnn", "complex_cnn"]\n'
                f'seeds = {args.seeds}\nepochs = {args.epochs}\n')
    g_secs, _ = timed([BIN, "--config", cfg, "--quiet", "run"])
    stages = stage_seconds(os.path.join(tmp, "work"))
    tweak_secs, _ = timed([BIN, "--config", cfg, "--quiet", "--set", "train.learning_rate=0.0002", "run"])
    tweak_stages = stage_seconds(os.path.join(tmp, "work"))
    _, res = timed([BIN, "--config", cfg, "--quiet", "results", "--json"])
    results = json.loads(res)

    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cmd = "python3 bench/study_bench.py" + "".join(
        f" {k} {v}" for k, v in [("--clips", args.clips), ("--synthetic", args.synthetic)] if v) + (
        f" --epochs {args.epochs}" if args.epochs != 150 else "") + (f" --seeds {args.seeds}" if args.seeds != 5 else "") + (
        " --skip-python" if args.skip_python else "")
    lines = [f"# The study's recipe end to end: {set_name}", "", f"- date: {date}",
             f"- machine: {cpu_line()}",
             f"- command: `{cmd}` (with bench/venv.sh's python)",
             f"- clips: {len(clips)} from `{clips_dir if not args.synthetic else 'genrelab synthetic set, seed 7'}`; "
             f"recipe: the study's (80/20 split, 3 models x {args.seeds} seeds x {args.epochs} epochs, Adam 1e-4, batch 128, "
             f"test part scored every epoch); genrelab with jobs = {args.jobs}", ""]
    lines += ["| | wall time | features | training (+ evaluation) |", "|---|---:|---:|---:|"]
    if py:
        lines.append(f"| the study's Python (librosa {py['librosa']} + PyTorch {py['torch']}, {py['threads']} threads, one run at a time) | "
                     f"{py['total_s']:.1f} s | {py['features_s']:.1f} s | {py['train_s']:.1f} s |")
    g_train = stages.get("train", 0) + stages.get("evaluate", 0)
    g_feat = stages.get("download", 0) + stages.get("features", 0) + stages.get("split", 0)
    lines.append(f"| genrelab run, empty work folder | {g_secs:.1f} s | {g_feat:.1f} s (download listing + features + split) | {g_train:.1f} s |")
    lines.append(f"| genrelab run after a training tweak (features cached) | {tweak_secs:.1f} s | 0 (current) | "
                 f"{tweak_stages.get('train', 0) + tweak_stages.get('evaluate', 0):.1f} s |")
    if py:
        lines += ["", f"genrelab is {py['total_s'] / g_secs:.1f}x as fast from nothing and {py['total_s'] / tweak_secs:.1f}x per "
                  f"iteration on the training recipe (the Python pipeline recomputes its features every time; the study's did)."]
    lines += ["", "Mean test accuracy at the last epoch (a check that both sides train the same recipe, not a result:"
              + (" synthetic clips" if args.synthetic else " a few clips") + "):", "",
              "| model | study's Python | genrelab |", "|---|---:|---:|"]
    for m in ["linear", "simple_cnn", "complex_cnn"]:
        g = next((r for r in results.get("models", []) if r.get("model") == m), None)
        gacc = f"{100 * g['accuracy']['mean']:.1f} %" if g else "not trained"
        pacc = f"{100 * py['test_accuracy'][m]:.1f} %" if py else "not run"
        lines.append(f"| {m} | {pacc} | {gacc} |")
    lines += ["", f"genrelab's stages (seconds): {json.dumps({k: round(v, 1) for k, v in stages.items()})}"]
    text = "\n".join(lines) + "\n"
    with open(os.path.join(ROOT, "bench", "results", f"study_{set_name}.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
