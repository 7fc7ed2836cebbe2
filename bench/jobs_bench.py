#!/usr/bin/env python3
"""Do worker processes (`jobs`) still pay? One training process on every core against one process
per core side by side, for each model: the training loop's own step (the `train_throughput`
example, batches of 128), the total samples per second of the machine.

    python3 bench/jobs_bench.py [--steps 20] [--models simple_cnn,complex_cnn,resnet]

Alternates the two ways twice and keeps the best of each; writes bench/results/jobs.md.
"""
import argparse
import datetime
import json
import os
import subprocess

from machine import cpu_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXE = os.path.join(ROOT, "target", "debug", "examples", "train_throughput")



def run(procs, threads, model, steps):
    ps = [subprocess.Popen([EXE, str(steps), "128", model, str(threads)], stdout=subprocess.PIPE, text=True,
                           env=dict(os.environ, GENRELAB_DEVICE="cpu")) for _ in range(procs)]
    return sum(json.loads(p.communicate()[0].strip())["samples_per_s"] for p in ps)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--models", default="linear,simple_cnn,complex_cnn,resnet,short_chunk_cnn")
    args = ap.parse_args()
    subprocess.run(["make", "--no-print-directory", "libtorch"], cwd=ROOT, check=True)
    subprocess.run(["cargo", "build", "--quiet", "--example", "train_throughput", "-p", "genrelab-models"], cwd=ROOT, check=True)
    cores = os.cpu_count()
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = ["# One process on every core, or one per core (`jobs`)", "", f"- date: {date}",
             f"- machine: {cpu_model()}, {cores} cores",
             f"- command: `python3 bench/jobs_bench.py --steps {args.steps}` (the train_throughput example: forward + backward + Adam, batch 128; each way twice, alternating, best kept)",
             "", f"| model | 1 process x {cores} threads (samples/s) | {cores} processes x 1 thread, summed (samples/s) | ratio |",
             "|---|---:|---:|---:|"]
    for model in args.models.split(","):
        one = max(run(1, cores, model, args.steps), 0)
        many = max(run(cores, 1, model, args.steps), 0)
        one = max(one, run(1, cores, model, args.steps))
        many = max(many, run(cores, 1, model, args.steps))
        lines.append(f"| {model} | {one:.0f} | {many:.0f} | {many / one:.2f} |")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(ROOT, "bench", "results", "jobs.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
