"""The spam example's model in PyTorch, on the same ids: a second implementation of the recipe.

Reads the split written by bench/reference/spam-ids.ts (the loader, seeded split, vocabulary and
front-padded ids of examples/spam.ts) and trains the seed's `embedding(V, 128) -> lstm(64) -> dense(2)`
with Keras' initialisers (embedding U(+-0.05) with the padding row 0, Glorot-uniform input kernel,
orthogonal recurrent kernel, forget-gate bias 1, Glorot-uniform dense), Adam, softmax cross-entropy,
batches of 32, global gradient norm clipped at 5 -- the rxgrad recipe. Options add the regularisers
tried here: spatial dropout on the embedding output (whole embedding channels per message, Keras
SpatialDropout1D), dropout before the dense layer, L2 weight decay, masking of the padding steps.

The epoch is chosen by validation accuracy (ties: lower validation loss); the test split is scored
only with --test (per epoch, for the curves, and at the end). With --refit a fresh model then learns
from fit + validation for the chosen number of epochs, and that model is the one tested.
Prints one line per epoch and a final JSON line ("# result {...}").

Usage:
  npx tsx bench/reference/spam-ids.ts --length 200 --out scratch/spam-ids-200.json
  /usr/bin/python3 bench/reference/spam_lstm_torch.py scratch/spam-ids-200.json --epochs 10 [--embedding-dropout 0.2] [--test]
"""
import argparse
import json
import math
import time

import torch
import torch.nn as nn

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument('ids', help='JSON written by bench/reference/spam-ids.ts')
parser.add_argument('--epochs', type=int, default=10)
parser.add_argument('--batch-size', type=int, default=32)
parser.add_argument('--learning-rate', type=float, default=2e-3)
parser.add_argument('--weight-decay', type=float, default=0.0, help='L2 coefficient added to the gradient (Adam, not AdamW)')
parser.add_argument('--embedding-dropout', type=float, default=0.0, help='spatial dropout rate on the embedding output')
parser.add_argument('--dropout', type=float, default=0.0, help='dropout rate on the LSTM output, before the dense layer')
parser.add_argument('--mask', action='store_true', help='skip the padding steps (the LSTM starts at the first real token)')
parser.add_argument('--ema', type=float, default=0.0, help='evaluate an exponential moving average of the weights with this momentum')
parser.add_argument('--reverse', action='store_true', help='read each message backwards (its first token last, right before the output)')
parser.add_argument('--refit', action='store_true', help='then train a fresh model on fit + validation for the chosen epochs (what is tested)')
parser.add_argument('--clip', type=float, default=5.0)
parser.add_argument('--seed', type=int, default=1)
parser.add_argument('--threads', type=int, default=1)
parser.add_argument('--test', action='store_true', help='also score the test split (curves and the chosen epoch)')
args = parser.parse_args()
torch.manual_seed(args.seed)
torch.set_num_threads(args.threads)

with open(args.ids) as f:
    data = json.load(f)
T = data['length']
V = data['vocabSize']
PAD = data['padId']


def tensors(part):
    ids = torch.tensor(data[part]['ids'], dtype=torch.long).view(-1, T)
    return ids, torch.tensor(data[part]['labels'], dtype=torch.long)


fit_x, fit_y = tensors('fit')
val_x, val_y = tensors('validation')
test_x, test_y = tensors('test')
if args.reverse:
    # Reverse the real tokens and keep the padding in front: [pad pad a b c] -> [pad pad c b a].
    def backwards(x):
        out = x.clone()
        for r in range(len(x)):
            n = int((x[r] != PAD).sum())
            if n:
                out[r, T - n:] = x[r, T - n:].flip(0)
        return out
    fit_x, val_x, test_x = backwards(fit_x), backwards(val_x), backwards(test_x)


class SpamLstm(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(V, 128, padding_idx=PAD)
        self.lstm = nn.LSTM(128, 64, batch_first=True)
        self.drop = nn.Dropout(args.dropout)
        self.out = nn.Linear(64, 2)
        with torch.no_grad():
            nn.init.uniform_(self.embedding.weight, -0.05, 0.05)
            self.embedding.weight[PAD].zero_()
            # Keras LSTM: kernel [F, 4U] Glorot uniform, recurrent kernel [U, 4U] orthogonal, bias zeros
            # with the forget block 1 (PyTorch has two biases: put it all in one).
            w_ih = torch.empty(128, 4 * 64)
            nn.init.xavier_uniform_(w_ih)
            self.lstm.weight_ih_l0.copy_(w_ih.t())
            w_hh = torch.empty(64, 4 * 64)
            nn.init.orthogonal_(w_hh)
            self.lstm.weight_hh_l0.copy_(w_hh.t())
            self.lstm.bias_ih_l0.zero_()
            self.lstm.bias_hh_l0.zero_()
            self.lstm.bias_ih_l0[64:128] = 1.0
            nn.init.xavier_uniform_(self.out.weight)
            self.out.bias.zero_()

    def forward(self, ids):
        e = self.embedding(ids)  # [B, T, 128]
        if self.training and args.embedding_dropout > 0:
            keep = 1 - args.embedding_dropout
            mask = torch.bernoulli(torch.full((e.shape[0], 1, e.shape[2]), keep)) / keep
            e = e * mask
        if args.mask:
            # Front padding: move the real tokens to the front and pack, so the LSTM never reads padding.
            lengths = (ids != PAD).sum(1).clamp(min=1)
            order = torch.arange(T).unsqueeze(0)
            src = (order + (T - lengths).unsqueeze(1)).clamp(max=T - 1)
            e = torch.gather(e, 1, src.unsqueeze(2).expand(-1, -1, e.shape[2]))
            packed = nn.utils.rnn.pack_padded_sequence(e, lengths, batch_first=True, enforce_sorted=False)
            _, (h, _) = self.lstm(packed)
        else:
            _, (h, _) = self.lstm(e)
        return self.out(self.drop(h[-1]))


def evaluate(model, x, y):
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(x[i:i + 256]) for i in range(0, len(x), 256)])
        loss = nn.functional.cross_entropy(logits, y).item()
        pred = logits.argmax(1)
    tp = int(((pred == 1) & (y == 1)).sum())
    fp = int(((pred == 1) & (y == 0)).sum())
    fn = int(((pred == 0) & (y == 1)).sum())
    return {
        'loss': loss, 'accuracy': float((pred == y).float().mean()),
        'precision': tp / (tp + fp) if tp + fp else 0.0, 'recall': tp / (tp + fn) if tp + fn else 0.0,
    }


def run(x, y, epochs, validate):
    """Trains a fresh model on (x, y); per epoch, the curves row (validation, and test with --test).
    Returns the curves, the best epoch by validation (accuracy, then lower loss) and its weights, and the final weights."""
    torch.manual_seed(args.seed)
    model = SpamLstm()
    averaged = torch.optim.swa_utils.AveragedModel(model, avg_fn=lambda avg, new, n: args.ema * avg + (1 - args.ema) * new) if args.ema > 0 else None
    scored = averaged.module if averaged else model
    optimizer = torch.optim.Adam(model.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay)
    generator = torch.Generator().manual_seed(args.seed)
    curves, best = [], None
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(len(x), generator=generator)
        total, correct, seen = 0.0, 0, 0
        for start in range(0, len(order), args.batch_size):
            batch = order[start:start + args.batch_size]
            logits = model(x[batch])
            loss = nn.functional.cross_entropy(logits, y[batch])
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), args.clip)
            optimizer.step()
            if averaged:
                averaged.update_parameters(model)
            total += loss.item() * len(batch)
            correct += int((logits.argmax(1) == y[batch]).sum())
            seen += len(batch)
        row = {'epoch': epoch, 'train_loss': total / seen, 'train_accuracy': correct / seen}
        line = f"epoch {epoch}: train loss {row['train_loss']:.4f} acc {100 * row['train_accuracy']:.2f}%"
        if validate:
            v = row['validation'] = evaluate(scored, val_x, val_y)
            line += f", validation loss {v['loss']:.4f} acc {100 * v['accuracy']:.2f}%"
            key = (v['accuracy'], -v['loss'])
            if best is None or key > best[0]:
                best = (key, epoch, {k: t.clone() for k, t in scored.state_dict().items()})
        if args.test:
            row['test'] = evaluate(scored, test_x, test_y)
            line += f", test acc {100 * row['test']['accuracy']:.2f}%"
        curves.append(row)
        print(line + f" ({time.time() - started:.0f} s)", flush=True)
    return curves, best, scored


started = time.time()
curves, best, scored = run(fit_x, fit_y, args.epochs, True)
scored.load_state_dict(best[2])
result = {'args': vars(args), 'chosen_epoch': best[1], 'validation': evaluate(scored, val_x, val_y), 'curves': curves}
if args.refit:
    # A fresh model on the whole training split (validation share included) for the chosen epochs.
    print(f'refit on fit + validation for {best[1]} epochs', flush=True)
    result['refit_curves'], _, scored = run(torch.cat([fit_x, val_x]), torch.cat([fit_y, val_y]), best[1], False)
if args.test:
    result['test'] = evaluate(scored, test_x, test_y)
result['seconds'] = time.time() - started
print('# result ' + json.dumps(result), flush=True)
