#!/usr/bin/env python3
"""The study's whole recipe as its Python code does it, for bench/study_bench.py: librosa
features (load at 22,050 Hz, mel spectrogram n_fft 2048 / hop 512 / 128 mels, power_to_db with
ref = max, pad or cut to 1,291 frames, resize to 64 x 100 with PIL), a stratified seeded 80/20
split, then each of the study's three models trained with a plain PyTorch loop (Adam 1e-4,
batches of 128, cross-entropy; the test part scored every epoch with batches of 64, as the study
tracked it) for every seed, one run after another in one process.

    python bench/study_python.py CLIPS_JSON EPOCHS SEEDS

CLIPS_JSON: a list of [path, genre]. Prints one JSON object: seconds for features and for
training, and each model's mean test accuracy at the last epoch.
"""
import json
import random
import sys
import time

import numpy as np


def features(path):
    import librosa
    from PIL import Image
    y, sr = librosa.load(path, sr=22050)
    mel = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=2048, hop_length=512, n_mels=128)
    db = librosa.power_to_db(mel, ref=np.max)
    if db.shape[1] < 1291:
        db = np.pad(db, ((0, 0), (0, 1291 - db.shape[1])))
    db = db[:, :1291]
    return np.asarray(Image.fromarray(db.astype(np.float32)).resize((100, 64), Image.BILINEAR), dtype=np.float32)


def models():
    import torch.nn as nn

    def cnn(ch, hidden):
        layers, cin = [], 1
        for c in ch:
            layers += [nn.Conv2d(cin, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(), nn.MaxPool2d(2)]
            cin = c
        return nn.Sequential(*layers, nn.AdaptiveAvgPool2d((1, 2)), nn.Flatten(), nn.Dropout(0.5),
                             nn.Linear(ch[-1] * 2, hidden), nn.ReLU(), nn.Linear(hidden, 10))

    return {"linear": lambda: nn.Sequential(nn.Flatten(), nn.Linear(6400, 10)),
            "simple_cnn": lambda: cnn([8, 16, 32], 128),
            "complex_cnn": lambda: cnn([16, 32, 64], 256)}


def stratified_split(labels, test_fraction=0.2, seed=42):
    rng = random.Random(seed)
    train, test = [], []
    for g in sorted(set(labels)):
        idx = [i for i, l in enumerate(labels) if l == g]
        rng.shuffle(idx)
        k = round(len(idx) * test_fraction)
        test += idx[:k]
        train += idx[k:]
    return sorted(train), sorted(test)


def main():
    clips = json.load(open(sys.argv[1]))
    epochs, seeds = int(sys.argv[2]), int(sys.argv[3])
    t0 = time.perf_counter()
    x = np.stack([features(p) for p, _ in clips])
    t_features = time.perf_counter() - t0

    import librosa
    import torch
    genres = sorted({g for _, g in clips})
    y = np.array([genres.index(g) for _, g in clips])
    train, test = stratified_split(list(y))
    xt = torch.from_numpy((x - -42.88) / 15.50).float().unsqueeze(1)
    yt = torch.from_numpy(y).long()
    x_train, y_train, x_test, y_test = xt[train], yt[train], xt[test], yt[test]
    t1 = time.perf_counter()
    acc = {}
    for name, make in models().items():
        accs = []
        for seed in range(seeds):
            torch.manual_seed(seed)
            model = make()
            opt = torch.optim.Adam(model.parameters(), lr=1e-4)
            loss_fn = torch.nn.CrossEntropyLoss()
            for _ in range(epochs):
                model.train()
                perm = torch.randperm(len(y_train))
                correct, total_loss = 0, 0.0
                for i in range(0, len(perm), 128):
                    b = perm[i:i + 128]
                    opt.zero_grad()
                    out = model(x_train[b])
                    loss = loss_fn(out, y_train[b])
                    loss.backward()
                    opt.step()
                    total_loss += loss.item() * len(b)
                    correct += (out.argmax(1) == y_train[b]).sum().item()
                model.eval()
                with torch.no_grad():
                    right, test_loss = 0, 0.0
                    for i in range(0, len(y_test), 64):
                        out = model(x_test[i:i + 64])
                        test_loss += loss_fn(out, y_test[i:i + 64]).item() * len(out)
                        right += (out.argmax(1) == y_test[i:i + 64]).sum().item()
            accs.append(right / len(y_test))
        acc[name] = sum(accs) / len(accs)
    t_train = time.perf_counter() - t1
    print(json.dumps({"features_s": t_features, "train_s": t_train, "clips": len(clips), "train_clips": len(train),
                      "test_clips": len(test), "threads": torch.get_num_threads(), "torch": torch.__version__, "librosa": librosa.__version__,
                      "test_accuracy": acc}))


if __name__ == "__main__":
    main()
