#!/usr/bin/env python3
"""Training throughput: genrelab's models in burn (flex, CPU) against the same models in PyTorch.

    python3 bench/train_bench.py [--steps 10]      (needs: pip install torch)

Both sides: batches of 128 random 64 x 100 inputs, forward + cross-entropy + backward + Adam step,
two warm-up steps, then `steps` timed steps, alternating frameworks in one run. Writes
bench/results/train.md with samples/s, the burn / PyTorch ratio and the study's full protocol
(799 training clips x 150 epochs x 5 seeds, plus 200 test clips evaluated every epoch)
extrapolated from the measured training cost.
"""
import argparse
import datetime
import json
import os
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cpu_model():
    try:
        return next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        return "unknown CPU"


def torch_models():
    import torch.nn as nn

    def cnn(ch, hidden):
        layers, cin = [], 1
        for c in ch:
            layers += [nn.Conv2d(cin, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(), nn.MaxPool2d(2)]
            cin = c
        return nn.Sequential(*layers, nn.AdaptiveAvgPool2d((1, 2)), nn.Flatten(), nn.Dropout(0.5),
                             nn.Linear(ch[-1] * 2, hidden), nn.ReLU(), nn.Linear(hidden, 10))

    return {
        "linear": nn.Sequential(nn.Flatten(), nn.Linear(6400, 10)),
        "simple_cnn": cnn([8, 16, 32], 128),
        "complex_cnn": cnn([16, 32, 64], 256),
    }


def torch_throughput(steps):
    import torch
    out = {}
    for name, model in torch_models().items():
        params = sum(p.numel() for p in model.parameters() if p.requires_grad)
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        loss_fn = torch.nn.CrossEntropyLoss()
        x = torch.randn(128, 1, 64, 100)
        y = torch.arange(128) % 10

        def step():
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            return loss.item()

        for _ in range(2):
            step()
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        secs = time.perf_counter() - t0
        out[name] = {"samples_per_s": steps * 128 / secs, "ms_per_sample": 1000 * secs / (steps * 128), "params": params,
                     "torch": torch.__version__, "threads": torch.get_num_threads()}
    return out


def burn_throughput(steps):
    subprocess.run(["cargo", "build", "--quiet", "--example", "train_throughput", "-p", "genrelab-models"], cwd=ROOT, check=True)
    exe = os.path.join(ROOT, "target", "debug", "examples", "train_throughput")
    out = {}
    for name in ["linear", "simple_cnn", "complex_cnn"]:
        line = subprocess.run([exe, str(steps), "128", name], check=True, stdout=subprocess.PIPE, text=True).stdout.strip()
        out[name] = json.loads(line)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10)
    args = ap.parse_args()
    try:
        import torch  # noqa: F401
        have_torch = True
    except ImportError:
        have_torch = False
        print("PyTorch is not installed (pip install torch): measuring burn alone")
    burn1 = burn_throughput(args.steps)
    torch1 = torch_throughput(args.steps) if have_torch else None
    burn2 = burn_throughput(args.steps)
    torch2 = torch_throughput(args.steps) if have_torch else None
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = ["# Training throughput (CPU)", "", f"- date: {date}", f"- machine: {cpu_model()}, {os.cpu_count()} cores",
             f"- command: `python3 bench/train_bench.py --steps {args.steps}` (alternating burn, PyTorch, burn, PyTorch; best of each); batch 128, forward + backward + Adam", "",
             "| model | burn flex (samples/s) | PyTorch (samples/s) | burn / PyTorch | study protocol, extrapolated (burn) |",
             "|---|---:|---:|---:|---:|"]
    for name in ["linear", "simple_cnn", "complex_cnn"]:
        b = max(burn1[name]["samples_per_s"], burn2[name]["samples_per_s"])
        # 799 clips trained + 200 evaluated (about a third of a training step each) per epoch.
        hours = 5 * 150 * (799 + 200 / 3) / b / 3600
        if torch1:
            t = max(torch1[name]["samples_per_s"], torch2[name]["samples_per_s"])
            lines.append(f"| {name} | {b:.0f} | {t:.0f} | {b / t:.2f} | {hours:.1f} h |")
        else:
            lines.append(f"| {name} | {b:.0f} | not measured | - | {hours:.1f} h |")
    if torch1:
        lines += ["", f"PyTorch {torch1['linear']['torch']} with {torch1['linear']['threads']} threads."]
    else:
        lines += ["", "PyTorch was not installed on this machine: its column is empty, no ratio is claimed."]
    text = "\n".join(lines) + "\n"
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", "train.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
