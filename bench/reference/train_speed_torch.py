"""PyTorch CPU training throughput for the models of bench/threads.ts (the optional PyTorch column).

Same models, batch sizes and optimizer (Adam 1e-3, cross-entropy on logits) on random inputs of the same
shapes, measured with torch.set_num_threads(--threads): warm-up steps, then the median of timed rounds.
Prints one JSON object: {"mlp64": ex/s, "mlp256": …, "cnn64": …, "lstm64": …}.
Run by bench/torch.ts once per thread count, each in its own process with OPENBLAS_NUM_THREADS and
OMP_NUM_THREADS set to that count and OMP_WAIT_POLICY=PASSIVE (OpenBLAS keeps its own thread pool, which torch.set_num_threads does not
size: one process measuring both counts ran "1 thread" on two cores and "2 threads" on four, oversubscribed)
and OPENBLAS_CORETYPE removed; without PASSIVE, OpenMP's spinning idle threads made 2 threads 0.3-0.8x of one here.

Usage: OPENBLAS_NUM_THREADS=2 OMP_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 bench/reference/train_speed_torch.py --threads 2 [--quick]
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn as nn

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument('--quick', action='store_true')
parser.add_argument('--threads', type=int, default=1)
args = parser.parse_args()
torch.manual_seed(1)


class LastState(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(28, 128, batch_first=True)
        self.out = nn.Linear(128, 10)

    def forward(self, x):
        _, (h, _) = self.lstm(x)
        return self.out(h[-1])


def models():
    return {
        'mlp64': (64, (784,), 120, lambda: nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))),
        'mlp256': (256, (784,), 40, lambda: nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))),
        'cnn64': (64, (1, 28, 28), 25, lambda: nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(32 * 7 * 7, 10))),
        'lstm64': (64, (28, 28), 8, LastState),
    }


def rate(batch, shape, steps, make, threads):
    torch.set_num_threads(threads)
    model = make()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    loss_fn = nn.CrossEntropyLoss()
    xs = [torch.rand(batch, *shape) for _ in range(steps)]
    ys = [torch.randint(0, 10, (batch,)) for _ in range(steps)]

    def run():
        for x, y in zip(xs, ys):
            opt.zero_grad()
            loss_fn(model(x), y).backward()
            opt.step()

    run()
    times = []
    for _ in range(3 if args.quick else 5):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return steps * batch / statistics.median(times)


result = {}
for name, (batch, shape, steps, make) in models().items():
    steps = (steps + 1) // 2 if args.quick else steps
    result[name] = rate(batch, shape, steps, make, args.threads)
print(json.dumps(result))
