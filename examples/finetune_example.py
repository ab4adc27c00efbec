"""Convert a trained CNN to a spiking network, then fine-tune it at few timesteps: one call, or your own loop.

    python examples/finetune_example.py                       # sklearn digits (8x8), < 2 min on 2 CPU cores
    python examples/finetune_example.py --data ../shared/datasets/mnist.npz --timesteps 2 --limit 10000
    python examples/finetune_example.py --data ../shared/datasets/cifar10_jpeg.npz --timesteps 4 --ann-epochs 10

Steps (each prints a line):

1. A small CNN is trained in PyTorch (seeded; no TensorFlow needed here: a Keras model or its file converts
   the same way) and converted with ``convert2snn.convert`` (rate coding, λ from the training split).
2. **One call**: ``snn.fine_tune(x, y, timesteps=T, epochs=..., validation_data=...)`` trains a copy by
   backpropagation through time with SpikingJelly's surrogate gradients (ATan) and prints the accuracy at T
   after every epoch; the result is still a `SpikingModel` (evaluate, save, load, NIR export).
3. **Your own loop**: the same, written as a plain PyTorch / SpikingJelly training loop over ``snn.network``:
   multi-step input [T, B, ...], ``functional.reset_net`` after every batch, the readout's last step as the
   logits. Then the trained network runs in single-step mode (``functional.set_step_mode(net, "s")``,
   one call per step) and gives the multi-step predictions.
4. The fine-tuned model is saved, loaded back, and predicts identically.

The table: accuracy at T of the ANN, the converted SNN, and both fine-tuned SNNs on the test split.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_example import load_data  # noqa: E402  (digits or an MNIST / CIFAR-style .npz, NHWC float32)


def train_ann(x: np.ndarray, y: np.ndarray, epochs: int, seed: int):
    """A small CNN (Conv-BN-ReLU, Conv-ReLU, AvgPool, Dense) trained with Adam on NHWC images."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    channels, size = x.shape[-1], x.shape[1]
    width = 16 if size <= 8 else 32
    net = nn.Sequential(
        nn.Conv2d(channels, width, 3, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, padding=1),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Conv2d(2 * width, 2 * width, 3, padding=1),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(2 * width * (size // 4) ** 2, 64),
        nn.ReLU(),
        nn.Linear(64, int(y.max()) + 1),
    )
    xt, yt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(y)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(xt), generator=g).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(net(xt[idx]), yt[idx]).backward()
            opt.step()
    return net.eval()


def own_loop(snn, x: np.ndarray, y: np.ndarray, timesteps: int, epochs: int, lr: float, seed: int) -> None:
    """Fine-tune ``snn.network`` in place with a plain PyTorch / SpikingJelly training loop."""
    import torch
    from spikingjelly.activation_based import functional
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(seed)
    net = snn.network  # a torch.fx.GraphModule of SpikingJelly nodes, multi-step ("m") by default
    inputs = snn.network_inputs(x)  # the model's layout (NHWC for Keras) → what the network takes, [N, C, H, W]
    loader = DataLoader(TensorDataset(inputs, torch.from_numpy(y)), batch_size=64, shuffle=True)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    net.train()  # the neurons take their surrogate-gradient path
    for epoch in range(epochs):
        total = 0.0
        for xb, yb in loader:
            x_seq = xb.unsqueeze(0).expand(timesteps, *xb.shape)  # the analog input held for T steps
            logits = net(x_seq)[-1]  # the readout after T steps: the mean of the output layer's currents
            loss = torch.nn.functional.cross_entropy(logits, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            functional.reset_net(net)  # membranes back to their initial potentials before the next batch
            total += loss.item() * len(xb)
        print(f"  own loop, epoch {epoch + 1}/{epochs}: loss {total / len(inputs):.4f}", flush=True)
    net.eval()


def single_step_predictions(snn, x: np.ndarray, timesteps: int) -> np.ndarray:
    """Scores after ``timesteps`` steps with the network in SpikingJelly's single-step mode (one call per step)."""
    import torch
    from spikingjelly.activation_based import functional

    net = snn.network
    functional.set_step_mode(net, "s")
    try:
        with torch.no_grad():
            xt = snn.network_inputs(x)
            for _ in range(timesteps):
                out = net(xt)  # [N, classes]: the readout's running mean after this step
        functional.reset_net(net)
    finally:
        functional.set_step_mode(net, "m")
    return out.numpy()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data", default=None, help="an MNIST- or CIFAR-style .npz (default: sklearn digits)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N training images")
    p.add_argument("--timesteps", type=int, default=2, help="T to fine-tune and test at")
    p.add_argument("--epochs", type=int, default=None, help="fine-tuning epochs (default 5 on digits, 1 otherwise)")
    p.add_argument(
        "--ann-epochs", type=int, default=None, help="ANN training epochs (default 20 on digits, 2 otherwise)"
    )
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    import torch

    import convert2snn

    digits = args.data is None
    epochs = args.epochs or (5 if digits else 1)
    d = load_data(args.data, args.seed)
    x_tr, y_tr, x_te, y_te = d["x_train"], d["y_train"], d["x_test"], d["y_test"]
    if args.limit:
        x_tr, y_tr = x_tr[: args.limit], y_tr[: args.limit]
    t = args.timesteps
    start = time.perf_counter()
    ann = train_ann(x_tr, y_tr, args.ann_epochs or (20 if digits else 2), args.seed)
    print(f"[1] trained the ANN on {len(x_tr)} images in {time.perf_counter() - start:.0f} s", flush=True)
    # the network was trained on NHWC arrays permuted to NCHW: convert it with NCHW calibration data
    to_nchw = lambda a: np.ascontiguousarray(a.transpose(0, 3, 1, 2))  # noqa: E731
    x_tr, x_te = to_nchw(x_tr), to_nchw(x_te)
    snn = convert2snn.convert(ann, calibration_data=x_tr[:5000], seed=args.seed, progress=False)
    converted = snn.evaluate(x_te, y_te, timesteps=t, correlation=False)
    print(f"[1] converted: ANN {converted.ann_accuracy:.2%}, SNN at T = {t}: {converted.accuracy[0]:.2%}", flush=True)

    one_call = copy.deepcopy(snn)
    start = time.perf_counter()
    result = one_call.fine_tune(x_tr, y_tr, timesteps=t, epochs=epochs, lr=args.lr, validation_data=(x_te, y_te))
    print(f"[2] snn.fine_tune ({time.perf_counter() - start:.0f} s):\n{result}", flush=True)

    mine = copy.deepcopy(snn)
    start = time.perf_counter()
    own_loop(mine, x_tr, y_tr, t, epochs, args.lr, args.seed)
    own = mine.evaluate(x_te, y_te, timesteps=t, correlation=False).accuracy[0]
    single = single_step_predictions(mine, x_te, t)
    agree = float((single.argmax(1) == mine.predict(x_te, timesteps=t).argmax(1)).mean())
    print(
        f"[3] own loop ({time.perf_counter() - start:.0f} s): accuracy at T = {t}: {own:.2%}; single-step mode "
        f"predicts as multi-step on {agree:.2%} of the test images",
        flush=True,
    )

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fine_tuned.c2s"
        one_call.save(path)
        loaded = convert2snn.load(path)
        same = np.array_equal(loaded.predict(x_te, timesteps=t), one_call.predict(x_te, timesteps=t))
    print(f"[4] saved and loaded: identical predictions: {same}", flush=True)

    print(f"\naccuracy at T = {t} on {len(x_te)} test images")
    print(f"  ANN                      {converted.ann_accuracy:.2%}")
    print(f"  converted                {converted.accuracy[0]:.2%}")
    print(f"  fine-tuned (one call)    {result.accuracy_after:.2%}")
    print(f"  fine-tuned (own loop)    {own:.2%}")
    print(f"\n{one_call.report}")
    return 0 if same and agree == 1.0 and torch.isfinite(torch.tensor(own)) else 1


if __name__ == "__main__":
    sys.exit(main())
