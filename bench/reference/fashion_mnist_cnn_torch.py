"""Independent reference for issue 4's accuracy target: the same CNN and recipe in PyTorch.

Not part of the library, CI or `npm run bench`: it exists so the accuracy of the specified recipe
can be checked against a second, widely used implementation on the same data. It reads the Debian
Fashion-MNIST IDX files (apt-get install dataset-fashion-mnist) and needs PyTorch
(apt-get install python3-torch gives 1.13 for the system python).

Recipe (examples/fashion-mnist-cnn.ts defaults): conv 16 3x3 relu -> maxpool 2 -> conv 32 3x3 relu ->
maxpool 2 -> flatten -> dense 10, Adam 1e-3 (epsilon 1e-7 as in Keras), batch 64, 5 epochs, inputs
standardised with the training mean and deviation, random whole-pixel translation by up to +-1 px
(shifted-in pixels get the background value), test accuracy after every epoch.

Usage:
  /usr/bin/python3 bench/reference/fashion_mnist_cnn_torch.py --seed 1
  /usr/bin/python3 bench/reference/fashion_mnist_cnn_torch.py --seed 2 --init glorot --shift 0 --padding valid
"""
import argparse
import gzip
import struct
import time

import numpy as np
import torch
import torch.nn as nn

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument('--seed', type=int, default=1)
parser.add_argument('--init', choices=['he', 'glorot', 'torch'], default='he',
                    help="conv kernels: He-normal (the example's default), Glorot uniform (Keras's default) or PyTorch's own")
parser.add_argument('--shift', type=int, default=1, help='largest random translation in pixels (0: no augmentation)')
parser.add_argument('--padding', choices=['same', 'valid'], default='same')
parser.add_argument('--epochs', type=int, default=5)
parser.add_argument('--data', default='/usr/share/datasets/fashion-mnist')
args = parser.parse_args()


def read_idx(name):
    with gzip.open(f'{args.data}/{name}.gz', 'rb') as f:
        data = f.read()
    dims = data[3]
    shape = struct.unpack('>' + 'I' * dims, data[4:4 + 4 * dims])
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


x_train = read_idx('train-images-idx3-ubyte').astype(np.float32) / 255
y_train = read_idx('train-labels-idx1-ubyte').astype(np.int64)
x_test = read_idx('t10k-images-idx3-ubyte').astype(np.float32) / 255
y_test = read_idx('t10k-labels-idx1-ubyte').astype(np.int64)
mean, std = x_train.mean(), x_train.std()
x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
background = float(-mean / std)

torch.manual_seed(args.seed)
rng = np.random.default_rng(args.seed)
torch.set_num_threads(2)
pad = 1 if args.padding == 'same' else 0
side = 7 if args.padding == 'same' else 5
model = nn.Sequential(
    nn.Conv2d(1, 16, 3, padding=pad), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(16, 32, 3, padding=pad), nn.ReLU(), nn.MaxPool2d(2),
    nn.Flatten(), nn.Linear(side * side * 32, 10),
)
for layer in model:
    if isinstance(layer, nn.Linear) and args.init != 'torch' or isinstance(layer, nn.Conv2d) and args.init == 'glorot':
        nn.init.xavier_uniform_(layer.weight)
        nn.init.zeros_(layer.bias)
    elif isinstance(layer, nn.Conv2d) and args.init == 'he':
        nn.init.kaiming_normal_(layer.weight, nonlinearity='relu')
        nn.init.zeros_(layer.bias)
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)

train_x, train_y = torch.from_numpy(x_train).unsqueeze(1), torch.from_numpy(y_train)
test_x, test_y = torch.from_numpy(x_test).unsqueeze(1), torch.from_numpy(y_test)


def translate(x):
    if args.shift == 0:
        return x
    s = args.shift
    padded = nn.functional.pad(x, (s, s, s, s), value=background)
    dy = rng.integers(-s, s + 1, len(x))
    dx = rng.integers(-s, s + 1, len(x))
    return torch.stack([padded[i, :, s + dy[i]:s + dy[i] + 28, s + dx[i]:s + dx[i] + 28] for i in range(len(x))])


for epoch in range(1, args.epochs + 1):
    started = time.time()
    model.train()
    order = torch.randperm(len(train_x))
    correct = 0
    for start in range(0, len(train_x), 64):
        rows = order[start:start + 64]
        logits = model(translate(train_x[rows]))
        loss = nn.functional.cross_entropy(logits, train_y[rows])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        correct += (logits.argmax(1) == train_y[rows]).sum().item()
    model.eval()
    with torch.no_grad():
        accuracy = (model(test_x).argmax(1) == test_y).float().mean().item()
    print(f'epoch {epoch}/{args.epochs}: train accuracy {100 * correct / len(train_x):.2f}%, '
          f'test accuracy {100 * accuracy:.2f}% ({time.time() - started:.1f} s)', flush=True)
