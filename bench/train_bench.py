#!/usr/bin/env python3
"""Training throughput: genrelab's models in burn (flex, CPU) against the same models in PyTorch.

    python3 bench/train_bench.py [--steps 10]      (needs: pip install torch)
    python3 bench/train_bench.py --device cuda --burn-exe PATH   (a GPU; see bench/gpu_check.sh)

Both sides: batches of 128 random 64 x 100 inputs, forward + cross-entropy + backward + Adam step,
two warm-up steps, then `steps` timed steps, alternating frameworks in one run. Writes
bench/results/train.md (train_gpu.md with --device cuda) with samples/s, the burn / PyTorch ratio
and the study's full protocol (799 training clips x 150 epochs x 5 seeds, plus 200 test clips
evaluated every epoch) extrapolated from the measured training cost. With --device cuda, burn is
the `train_throughput` example built with `--features cuda` (PATH), PyTorch runs on the GPU, and the
crop models (burn only: 128 x 128 crops) are listed too.
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


def torch_throughput(steps, device="cpu"):
    import torch
    out = {}
    for name, model in torch_models().items():
        model = model.to(device)
        params = sum(p.numel() for p in model.parameters() if p.requires_grad)
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        loss_fn = torch.nn.CrossEntropyLoss()
        x = torch.randn(128, 1, 64, 100, device=device)
        y = torch.arange(128, device=device) % 10

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


def burn_throughput(steps, exe=None, names=("linear", "simple_cnn", "complex_cnn")):
    if exe is None:
        subprocess.run(["cargo", "build", "--quiet", "--example", "train_throughput", "-p", "genrelab-models"], cwd=ROOT, check=True)
        exe = os.path.join(ROOT, "target", "debug", "examples", "train_throughput")
    out = {}
    for name in names:
        line = subprocess.run([exe, str(steps), "128", name], check=True, stdout=subprocess.PIPE, text=True).stdout.strip()
        out[name] = json.loads(line)
    return out


def study_hours(samples_per_s):
    """The study's protocol at this throughput: 5 seeds x 150 epochs of 799 clips trained and 200
    evaluated (about a third of a training step each)."""
    return 5 * 150 * (799 + 200 / 3) / samples_per_s / 3600


def write_result(name, lines):
    text = "\n".join(lines) + "\n"
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", name), "w") as f:
        f.write(text)
    print(text)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--burn-exe", help="a prebuilt train_throughput example (else cargo builds it)")
    args = ap.parse_args()
    if args.device == "cuda":
        return main_cuda(args)
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
        hours = study_hours(b)
        if torch1:
            t = max(torch1[name]["samples_per_s"], torch2[name]["samples_per_s"])
            lines.append(f"| {name} | {b:.0f} | {t:.0f} | {b / t:.2f} | {hours:.1f} h |")
        else:
            lines.append(f"| {name} | {b:.0f} | not measured | - | {hours:.1f} h |")
    if torch1:
        lines += ["", f"PyTorch {torch1['linear']['torch']} with {torch1['linear']['threads']} threads."]
    else:
        lines += ["", "PyTorch was not installed on this machine: its column is empty, no ratio is claimed."]
    write_result("train.md", lines)


def gpu_name():
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                              check=True, stdout=subprocess.PIPE, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown GPU"


def main_cuda(args):
    import torch
    study = ("linear", "simple_cnn", "complex_cnn")
    crops = ("resnet", "resnet_wide", "short_chunk_cnn")
    runs = [burn_throughput(args.steps, args.burn_exe, study + crops), torch_throughput(args.steps, "cuda"),
            burn_throughput(args.steps, args.burn_exe, study + crops), torch_throughput(args.steps, "cuda")]
    for name in study + crops:
        fw = runs[0][name]["framework"]
        if fw != "burn-cuda":
            raise SystemExit(f"the burn example ran on {fw}, not CUDA: build it with --features cuda")
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = ["# Training throughput (GPU)", "", f"- date: {date}", f"- GPU: {gpu_name()}; host: {cpu_model()}, {os.cpu_count()} cores",
             f"- command: `python3 bench/train_bench.py --device cuda --burn-exe ... --steps {args.steps}` (run by `bench/gpu_check.sh`; alternating burn, PyTorch, burn, PyTorch; best of each); batch 128, forward + backward + Adam, float32",
             "", "| model | input | burn cuda (samples/s) | PyTorch cuda (samples/s) | burn / PyTorch | study protocol, extrapolated (burn) |",
             "|---|---|---:|---:|---:|---:|"]
    for name in study + crops:
        b = max(runs[0][name]["samples_per_s"], runs[2][name]["samples_per_s"])
        inp = runs[0][name]["input"]
        if name in study:
            t = max(runs[1][name]["samples_per_s"], runs[3][name]["samples_per_s"])
            hours = study_hours(b)
            lines.append(f"| {name} | {inp} | {b:.0f} | {t:.0f} | {b / t:.2f} | {hours * 60:.1f} min |")
        else:
            lines.append(f"| {name} | {inp} crops | {b:.0f} | not measured | - | - |")
    lines += ["", f"PyTorch {torch.__version__} (CUDA {torch.version.cuda}), default settings (cuDNN, no AMP, no compile)."]
    write_result("train_gpu.md", lines)


if __name__ == "__main__":
    main()
