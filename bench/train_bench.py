#!/usr/bin/env python3
"""Training throughput: genrelab's models (Rust, libtorch through tch) against the same models in
PyTorch, on the same libtorch (2.13.0), every model of the registry.

    PY=$(bench/venv.sh) && $PY bench/train_bench.py [--steps 10] [--threads N]
    $PY bench/train_bench.py --device cuda        (a GPU machine; see bench/gpu_check.sh)

Both sides: batches of 128 random inputs (64 x 100 for the study's three models, 128 x 128 crops
for the crop models, 77 descriptors for logreg), forward + cross-entropy + backward + Adam step
(PyTorch's `torch.optim.Adam` with its defaults; genrelab's training loop's own step, the
`train_throughput` example), two warm-up steps, then `steps` timed steps (times 100 for linear,
500 for logreg, 3 for the simple CNN, 2 for the complex CNN: seconds of work each). The frameworks alternate
(genrelab, PyTorch, PyTorch with genrelab's allocator settings, twice) and the best of each is
reported. Writes
bench/results/train.md (train_gpu.md with --device cuda), which the README quotes.
"""
import argparse
import datetime
import json
import os
import subprocess
import time

from machine import cpu_line, cpu_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = ["linear", "simple_cnn", "complex_cnn", "resnet", "resnet_wide", "short_chunk_cnn", "logreg"]
# Steps per model, as multiples of --steps, so that each timing lasts seconds rather than
# milliseconds (a logreg step takes 0.1 ms, a resnet_wide step a second).
STEPS = {"linear": 100, "logreg": 500, "simple_cnn": 3, "complex_cnn": 2}


def steps_of(name, steps):
    return steps * STEPS.get(name, 1)



def input_shape(name):
    if name in ("resnet", "resnet_wide", "short_chunk_cnn"):
        return (128, 128)
    if name == "logreg":
        return (1, 77)
    return (64, 100)


def torch_model(name):
    """The registry's architectures (models/src/nets.rs) in PyTorch, with PyTorch's own layers."""
    import torch
    import torch.nn as nn

    def block(cin, c):
        return [nn.Conv2d(cin, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(), nn.MaxPool2d(2)]

    def cnn(ch, hidden):
        layers, cin = [], 1
        for c in ch:
            layers += block(cin, c)
            cin = c
        return nn.Sequential(*layers, nn.AdaptiveAvgPool2d((1, 2)), nn.Flatten(), nn.Dropout(0.5),
                             nn.Linear(ch[-1] * 2, hidden), nn.ReLU(), nn.Linear(hidden, 10))

    class ResBlock(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.norm1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.norm2 = nn.BatchNorm2d(cout)
            self.short = None
            if cin != cout or stride != 1:
                self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            y = torch.relu(self.norm1(self.conv1(x)))
            y = self.norm2(self.conv2(y))
            return torch.relu(y + (x if self.short is None else self.short(x)))

    def resnet(w):
        a, b, c, d = w
        return nn.Sequential(nn.Conv2d(1, a, 3, 2, 1, bias=False), nn.BatchNorm2d(a), nn.ReLU(),
                             ResBlock(a, a, 1), ResBlock(a, b, 2), ResBlock(b, c, 2), ResBlock(c, d, 2),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.3), nn.Linear(d, 10))

    class GlobalMax(nn.Module):
        def forward(self, x):
            return x.flatten(2).amax(2)

    def short_chunk():
        layers, cin = [], 1
        for c in [16, 16, 32, 32, 64]:
            layers += block(cin, c)
            cin = c
        return nn.Sequential(*layers, GlobalMax(), nn.Linear(64, 64), nn.ReLU(), nn.Dropout(0.5), nn.Linear(64, 10))

    return {
        "linear": lambda: nn.Sequential(nn.Flatten(), nn.Linear(6400, 10)),
        "simple_cnn": lambda: cnn([8, 16, 32], 128),
        "complex_cnn": lambda: cnn([16, 32, 64], 256),
        "resnet": lambda: resnet([16, 32, 64, 128]),
        "resnet_wide": lambda: resnet([32, 64, 128, 256]),
        "short_chunk_cnn": short_chunk,
        "logreg": lambda: nn.Sequential(nn.Flatten(), nn.Linear(77, 10)),
    }[name]()


def torch_throughput(names, steps, device="cpu", threads=None, channels_last=False):
    import torch
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    out = {}
    for name in names:
        model = torch_model(name).to(device)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        params = sum(p.numel() for p in model.parameters() if p.requires_grad)
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        loss_fn = torch.nn.CrossEntropyLoss()
        mels, frames = input_shape(name)
        x = torch.randn(128, 1, mels, frames, device=device)
        y = torch.arange(128, device=device) % 10

        def step():
            opt.zero_grad()
            logits = model(x)
            loss = loss_fn(logits, y)
            loss.backward()
            opt.step()
            # As genrelab's loop and the study's: the loss and the batch's correct count read back.
            return loss.item(), (logits.argmax(1) == y).sum().item()

        for _ in range(2):
            step()
        if device == "cuda":
            torch.cuda.synchronize()
        n = steps_of(name, steps)
        t0 = time.perf_counter()
        for _ in range(n):
            step()
        if device == "cuda":
            torch.cuda.synchronize()
        secs = time.perf_counter() - t0
        out[name] = {"samples_per_s": n * 128 / secs, "params": params, "torch": torch.__version__,
                     "threads": torch.get_num_threads()}
    return out


# glibc's allocator with the settings genrelab applies at its start (models::keep_freed_memory).
SAME_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str(1 << 30)}


def torch_in_process(names, steps, device, threads, env=None):
    """torch_throughput in a fresh Python process (so that an allocator environment applies);
    with `env` (genrelab's settings) also the models in channels-last layout, as genrelab keeps
    them on the CPU."""
    import sys
    args = [sys.executable, os.path.abspath(__file__), "--torch-worker", "--models", ",".join(names), "--steps", str(steps),
            "--device", device] + (["--threads", str(threads)] if threads else []) + (["--channels-last"] if env and device == "cpu" else [])
    out = subprocess.run(args, check=True, stdout=subprocess.PIPE, text=True, env=dict(os.environ, **(env or {}))).stdout
    return json.loads(out.strip().splitlines()[-1])


def genrelab_throughput(names, steps, device="cpu", threads=None, exe=None):
    if exe is None:
        subprocess.run(["make", "--no-print-directory", "libtorch"], cwd=ROOT, check=True)
        subprocess.run(["cargo", "build", "--quiet", "--example", "train_throughput", "-p", "genrelab-models"], cwd=ROOT, check=True)
        exe = os.path.join(ROOT, "target", "debug", "examples", "train_throughput")
    env = dict(os.environ, GENRELAB_DEVICE=device)
    out = {}
    for name in names:
        args = [exe, str(steps_of(name, steps)), "128", name] + ([str(threads)] if threads else [])
        line = subprocess.run(args, check=True, stdout=subprocess.PIPE, text=True, env=env).stdout.strip()
        out[name] = json.loads(line)
    return out


def study_hours(samples_per_s):
    """The study's protocol at this throughput: 5 seeds x 150 epochs of 799 clips trained and 200
    evaluated (about a third of a training step each)."""
    return 5 * 150 * (799 + 200 / 3) / samples_per_s / 3600


def gpu_name():
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                              check=True, stdout=subprocess.PIPE, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown GPU"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--threads", type=int, help="intra-op threads on both sides (default: libtorch's, every physical core)")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--exe", help="a prebuilt train_throughput example (else cargo builds it)")
    ap.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--channels-last", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    names = args.models.split(",")
    if args.torch_worker:
        print(json.dumps(torch_throughput(names, args.steps, args.device, args.threads, args.channels_last)))
        return
    import torch
    runs, same = [], []
    for _ in range(2):
        runs.append(genrelab_throughput(names, args.steps, args.device, args.threads, args.exe))
        runs.append(torch_in_process(names, args.steps, args.device, args.threads))
        same.append(torch_in_process(names, args.steps, args.device, args.threads, SAME_MALLOC))
    for name in names:
        fw = runs[0][name]["framework"]
        if fw != f"genrelab-tch-{args.device}":
            raise SystemExit(f"genrelab ran on {fw}, not {args.device}")
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    where = gpu_name() + f"; host: {cpu_model()}" if args.device == "cuda" else cpu_line()
    cmd = f"python3 bench/train_bench.py --steps {args.steps}" + (f" --device {args.device}" if args.device != "cpu" else "") + (
        f" --threads {args.threads}" if args.threads else "")
    lines = [f"# Training throughput ({args.device.upper()})", "", f"- date: {date}", f"- machine: {where}",
             f"- command: `{cmd}` (with bench/venv.sh's python; alternating genrelab, PyTorch, PyTorch with genrelab's settings, twice; best of each); batch 128, forward + cross-entropy + backward + Adam",
             f"- genrelab: tch 0.26 on libtorch {torch.__version__.split('+')[0]}, {runs[0][names[0]]['threads']} threads; PyTorch {torch.__version__}, {runs[1][names[0]]['threads']} threads (the same libtorch files)",
             "- genrelab sets glibc's allocator to keep freed memory (`mallopt`, as `MALLOC_MMAP_THRESHOLD_` and `MALLOC_TRIM_THRESHOLD_` at 1 GiB do)"
             " and keeps convolution weights channels-last on the CPU. \"PyTorch, same settings\" runs PyTorch with that environment and"
             " `model.to(memory_format=torch.channels_last)`: kernel for kernel, the comparison of the engines; \"PyTorch, defaults\" is what"
             " the study's code gets.",
             "", "| model | input | genrelab (samples/s) | PyTorch, defaults (samples/s) | genrelab / PyTorch | PyTorch, same settings (samples/s) | genrelab / that |"
             " study protocol at this speed (genrelab) |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for name in names:
        g = max(runs[0][name]["samples_per_s"], runs[2][name]["samples_per_s"])
        t = max(runs[1][name]["samples_per_s"], runs[3][name]["samples_per_s"])
        m = max(same[0][name]["samples_per_s"], same[1][name]["samples_per_s"])
        hours = study_hours(g)
        study = f"{hours:.2f} h" if name in ("linear", "simple_cnn", "complex_cnn") else "-"
        lines.append(f"| {name} | {runs[0][name]['input']} | {g:.0f} | {t:.0f} | {g / t:.2f} | {m:.0f} | {g / m:.2f} | {study} |")
    lines += ["", "The study-protocol column is training throughput extrapolated (5 seeds x 150 epochs x 799 clips, and the",
              "200 test clips scored each epoch); `bench/study_bench.py` measures the whole protocol instead."]
    text = "\n".join(lines) + "\n"
    name = "train.md" if args.device == "cpu" else "train_gpu.md"
    with open(os.path.join(ROOT, "bench", "results", name), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
