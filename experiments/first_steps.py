"""Why LeNet-5-Caffe diverges at the learning rate 0.1 under our defaults and not in the paper:
the training loss over the first 100 steps, dense and pruned to 90% by SNIP, with each piece
of the authors' protocol toggled on its own.

The pieces (protocol.py): the initialisation (vs-h, ours; lecun, the authors' code's 'vs';
vs-x), the momentum (0.9, ours and the paper's text; 0, the code's plain gradient descent),
two draws (the code scores on a copy whose biases are drawn like weights and trains a fresh
copy with zero biases), and the input scaling (standardised by the training set's mean and
standard deviation, as here and in the authors' code; or raw pixels in [0, 1]). Every
combination is trained from the same seed's weights, scoring batch and mini-batches, at the
learning rate 0.1, with snip_min's own pieces (initialise, snip, SGD, train_step).

Beside each curve, the sharpness where training starts: the dominant eigenvalue of the
loss's Hessian over the kept parameters, on the first batch (power iteration on criteria.py's
Hessian-vector product). Plain gradient descent on a quadratic of that curvature is stable
only while lr * sharpness < 2; networks survive larger products for a while (the loss
"catapults" and the curvature falls) but not arbitrarily large ones.

Where PyTorch is installed, a twin of a few settings (bench.to_torch: the same weights,
masks and batches; torch.optim.SGD with the same momentum and decay) shows the same curve,
so that a blow-up is the set-up's, not the implementation's.

    python experiments/first_steps.py --data-dir DIR

writes first_steps.csv (one row per setting and seed: the step at which the loss first went
above 100 or stopped being finite, if it did, the first and last loss, the sharpness and
lr * sharpness, and the loss every 10 steps), losses.json (every
curve), table.md and first_steps.png under results/first_steps/. --seeds, --steps, --lr and
--sparsities change the set-up, --power-iterations the sharpness estimates; --no-torch
leaves the twin out.
"""

import itertools
import math
import os
import sys

import common
from common import cli, criteria, data, failures, flags, models, sm
from extensions import (
    protocol,
    pytorch_twin,
)

INITS = ["vs-h", "lecun", "vs-x"]
MOMENTA = [0.9, 0.0]
SCALINGS = ["standardised", "[0,1]"]
BLOWN_UP = 100.0  # a loss above this (chance is ln 10 = 2.30) counts as a blow-up
# the settings the PyTorch twin repeats: ours, the authors' protocol, and each with the other's
# momentum
TWINS = [
    ("vs-h", 0.9, False, "standardised"),
    ("vs-h", 0.0, False, "standardised"),
    ("lecun", 0.0, True, "standardised"),
    ("lecun", 0.9, True, "standardised"),
]


def main(argv=None):
    parser = common.argument_parser(__doc__)
    common.add_data_dir_argument(parser)
    parser.add_argument("--seeds", type=flags.positive_int, default=3, help="seeds 0 ... N-1")
    parser.add_argument(
        "--steps", type=flags.positive_int, default=100, help="training steps per curve"
    )
    parser.add_argument("--lr", type=flags.positive_float, default=0.1, help="learning rate")
    parser.add_argument(
        "--sparsities",
        nargs="+",
        type=flags.sparsity_value,
        default=[0.0, 0.9],
        help="fractions of LeNet-5-Caffe's parameters SNIP prunes",
    )
    parser.add_argument(
        "--power-iterations",
        type=flags.positive_int,
        default=20,
        help="power iterations of each sharpness estimate",
    )
    parser.add_argument("--no-torch", action="store_true", help="leave out the PyTorch twin")
    parser.add_argument(
        "--out",
        type=flags.folder_name,
        default=os.path.join("results", "first_steps"),
        help="output folder",
    )
    args = parser.parse_args(argv)
    dataset = data.load_dataset("mnist", args.data_dir)
    torch = None if args.no_torch else optional_torch()
    rows, curves, sharpnesses = [], {}, {}
    for sparsity, seed in itertools.product(args.sparsities, range(args.seeds)):
        for init, momentum, two_draws, scaling in itertools.product(
            INITS, MOMENTA, [False, True], SCALINGS
        ):
            frameworks = ["snip-min"] + (
                ["pytorch"] if torch and (init, momentum, two_draws, scaling) in TWINS else []
            )
            for framework in frameworks:
                setting = dict(
                    sparsity=sparsity,
                    init=init,
                    momentum=momentum,
                    two_draws=two_draws,
                    scaling=scaling,
                    seed=seed,
                    framework=framework,
                )
                start = (
                    sparsity,
                    init,
                    two_draws,
                    scaling,
                    seed,
                )  # the momentum starts nowhere else
                measure = start not in sharpnesses
                losses, curvature = first_losses(
                    dataset,
                    setting,
                    args.steps,
                    args.lr,
                    torch,
                    args.power_iterations if measure else 0,
                )
                if measure:
                    sharpnesses[start] = curvature
                rows.append(row_of(setting, losses, args.steps, sharpnesses[start], args.lr))
                curves[name_of(setting)] = losses
                print(describe(rows[-1]), flush=True)
    os.makedirs(args.out, exist_ok=True)
    common.write_csv(os.path.join(args.out, "first_steps.csv"), rows)
    common.write_json(
        os.path.join(args.out, "losses.json"),
        {"data": dataset.description, "lr": args.lr, "steps": args.steps, "curves": curves},
    )
    data.write_file_atomically(
        os.path.join(args.out, "table.md"), (table(rows, dataset.description, args) + "\n").encode()
    )
    plot(curves, rows, dataset.description, args)
    return 0


def optional_torch():
    try:
        import torch
    except ImportError:
        print(
            "note: PyTorch is not installed: no twin (pip install -r requirements-dev.txt)",
            file=sys.stderr,
        )
        return None
    torch.set_num_threads(max(1, common.available_cpus()))
    return torch


def first_losses(dataset, s, steps, lr, torch=None, power_iterations=0):
    """(the training loss of each of the first `steps` steps of one setting, stopping early
    once it blows up; the sharpness where training starts, from `power_iterations`
    iterations, or None for 0):
    cli.run's streams and order of draws, and its pieces."""
    if s["scaling"] == "[0,1]":
        dataset = data.replace(dataset, mean=dataset.mean * 0, std=dataset.std * 0 + 1)
    init_rng, split_rng, score_rng, shuffle_rng = sm.seed_streams(s["seed"])
    train, _, _ = sm.split_dataset(dataset, 0.1, split_rng)
    model = models.build("lenet5", "mnist")
    sm.initialise(model, s["init"], init_rng)
    if s["two_draws"]:
        protocol.draw_scoring_biases(model, s["init"], init_rng)
    batch_size = cli.PAPER_SETUP["mnist"]["batch_size"]
    images, labels = train.batch(
        sm.xp.asarray(score_rng.choice(len(train), size=batch_size, replace=False))
    )
    gated = sm.snip(model, images, labels, s["sparsity"])
    if s["two_draws"]:
        protocol.draw_training_copy(model, gated, s["init"], s["seed"], log=lambda line: None)
    order = shuffle_rng.permutation(len(train))
    batches = (
        train.batch(sm.xp.asarray(order[i * batch_size : (i + 1) * batch_size]))
        for i in range(steps)
    )
    curvature = (
        sharpness(model, gated, *train.batch(sm.xp.asarray(order[:batch_size])), power_iterations)
        if power_iterations
        else None
    )
    if s["framework"] == "pytorch":
        return torch_losses(model, gated, batches, s["momentum"], lr, torch), curvature
    optimiser = sm.SGD(sm.parameters_of(model), momentum=s["momentum"])
    losses = []
    with sm.numpy.errstate(over="ignore", invalid="ignore"):
        for images, labels in batches:
            losses.append(float(sm.train_step(model, optimiser, images, labels, lr)[0]))
            if not losses[-1] <= BLOWN_UP:
                break
    return losses, curvature


def sharpness(model, gated, images, labels, iterations=20):
    """The dominant eigenvalue (largest in absolute value) of the Hessian of the loss over the
    kept parameters, where training starts, on its first batch: power iteration on H v
    (criteria's Hessian-vector product, in float64, at temperature 1). Gradient descent on a
    quadratic with this curvature is stable only for lr < 2 / sharpness."""
    start = [p.value for p in gated]
    for p in gated:
        p.value = p.value.astype(sm.xp.float64)
    images = images.astype(sm.xp.float64)
    rng = sm.numpy.random.default_rng(0)
    v = [sm.xp.asarray(rng.standard_normal(p.shape)) * p.mask for p in gated]
    estimate = math.nan
    for _ in range(iterations):
        norm = criteria.global_norm(v)
        v = [d / norm for d in v]
        product = criteria.hessian_vector_product(model, images, labels, gated, v, temperature=1.0)
        product = [h * p.mask for h, p in zip(product, gated)]
        estimate = float(sum((a * b).sum() for a, b in zip(v, product)))  # the Rayleigh quotient
        v = product
    for p, value in zip(gated, start):
        p.value = value
    return estimate


def torch_losses(model, gated, batches, momentum, lr, torch):
    """The same steps in PyTorch on the same weights: torch.optim.SGD (v <- m v + g + decay w,
    w <- w - lr v, as snip_min.SGD), the gradient of each pruned entry zeroed before the step."""
    twin, links = pytorch_twin.to_torch(model, torch)
    masks = {id(target): layout(p.mask) for p, target, layout in links if p.mask is not None}
    optimiser = torch.optim.SGD(twin.parameters(), lr=lr, momentum=momentum, weight_decay=5e-4)
    losses = []
    for images, labels in batches:
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(
            twin(torch.as_tensor(sm.to_host(images))), torch.as_tensor(sm.to_host(labels)).long()
        )
        loss.backward()
        for parameter in twin.parameters():
            if id(parameter) in masks:
                parameter.grad *= masks[id(parameter)]
        optimiser.step()
        losses.append(loss.item())
        if not losses[-1] <= BLOWN_UP:
            break
    return losses


def name_of(s):
    return (
        f"{100 * s['sparsity']:g}% {s['init']} momentum {s['momentum']:g} "
        f"{'two draws' if s['two_draws'] else 'one draw'} {s['scaling']} seed {s['seed']} "
        f"{s['framework']}"
    )


def row_of(s, losses, steps, sharpness, lr):
    blown = next((i + 1 for i, loss in enumerate(losses) if not loss <= BLOWN_UP), None)
    row = {
        **s,
        "blew_up_at": blown,
        "first_loss": losses[0],
        "last_loss": math.nan if blown else losses[-1],
        "sharpness": sharpness,
        "lr_times_sharpness": lr * sharpness,
    }
    for step in range(10, steps + 1, 10):
        row[f"loss_{step}"] = losses[step - 1] if step <= len(losses) else math.nan
    return row


def describe(row):
    outcome = (
        f"blew up at step {row['blew_up_at']}"
        if row["blew_up_at"]
        else f"loss {row['first_loss']:.2f} -> {row['last_loss']:.3f}"
    )
    return (
        f"{100 * row['sparsity']:g}% {row['init']:>5} momentum {row['momentum']:g} "
        f"{'two draws' if row['two_draws'] else 'one draw ':9} {row['scaling']:>12} "
        f"seed {row['seed']} {row['framework']:>8}: {outcome}"
    )


def table(rows, description, args):
    """One line per setting: how many seeds blew up (and when), the first and last loss, and
    lr * sharpness where training starts (means over the seeds)."""
    lines = [
        f"LeNet-5-Caffe, the first {args.steps} steps at lr {args.lr:g} ({description}): of "
        f"{args.seeds} seeds, how many blew up (loss above {BLOWN_UP:g} or not finite) and at "
        f"which steps; the loss at step 1 and at step {args.steps} (mean over the seeds that did "
        f"not blow up).",
        "",
        "| sparsity | init | momentum | draws | inputs | framework | blew up | steps | loss at 1 | "
        f"loss at {args.steps} | lr × sharpness |",
        "|---" * 11 + "|",
    ]
    groups = {}
    for row in rows:
        key = tuple(
            row[k] for k in ("sparsity", "init", "momentum", "two_draws", "scaling", "framework")
        )
        groups.setdefault(key, []).append(row)
    for (sparsity, init, momentum, two_draws, scaling, framework), group in groups.items():
        blown = [r["blew_up_at"] for r in group if r["blew_up_at"]]
        finished = [r["last_loss"] for r in group if not r["blew_up_at"]]
        lines.append(
            f"| {100 * sparsity:g}% | {init} | {momentum:g} | {2 if two_draws else 1} | "
            f"{scaling} | {framework} | {len(blown)} of {len(group)} | "
            f"{', '.join(map(str, blown)) or '—'} | "
            f"{common.mean_and_spread([r['first_loss'] for r in group])[0]:.2f} | "
            f"{'—' if not finished else f'{sum(finished) / len(finished):.3f}'} | "
            f"{common.mean_and_spread([r['lr_times_sharpness'] for r in group])[0]:.1f} |"
        )
    return "\n".join(lines)


def plot(curves, rows, description, args):
    plt = common.pyplot()
    if plt is None:
        return
    figure, axes = plt.subplots(
        1,
        len(args.sparsities),
        figsize=(6.4 * len(args.sparsities), 4.6),
        squeeze=False,
        sharey=True,
    )
    styles = {0.9: "-", 0.0: "--"}
    colours = {"vs-h": "tab:red", "lecun": "tab:blue", "vs-x": "tab:green"}
    for axis, sparsity in zip(axes[0], args.sparsities):
        for init, momentum, two_draws in itertools.product(INITS, MOMENTA, [False, True]):
            s = dict(
                sparsity=sparsity,
                init=init,
                momentum=momentum,
                two_draws=two_draws,
                scaling="standardised",
                seed=0,
                framework="snip-min",
            )
            losses = curves[name_of(s)]
            axis.plot(
                range(1, len(losses) + 1),
                losses,
                styles[momentum],
                color=colours[init],
                alpha=1.0 if two_draws else 0.45,
                linewidth=1.6 if two_draws else 1.0,
                label=f"{init}, momentum {momentum:g}, {'two draws' if two_draws else 'one draw'}",
            )
            twin = curves.get(name_of({**s, "framework": "pytorch"}))
            if twin:
                axis.plot(range(1, len(twin) + 1), twin, "x", color=colours[init], markersize=3)
        axis.set_yscale("log")
        axis.set_ylim(0.05, BLOWN_UP * 3)
        axis.axhline(math.log(10), color="grey", linewidth=0.8)
        axis.set_xlabel("step")
        axis.set_title(
            f"LeNet-5-Caffe, {'dense' if sparsity == 0 else f'{100 * sparsity:g}% pruned by SNIP'}",
            fontsize=10,
        )
        axis.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("training loss (a curve ends where it blew up)")
    axes[0][0].legend(fontsize=6.5, ncol=2)
    figure.suptitle(
        f"The first {args.steps} steps at lr {args.lr:g}, seed 0, standardised inputs "
        f"({description}); x: the PyTorch twin; grey: chance, ln 10",
        fontsize=9,
    )
    figure.tight_layout()
    common.save_figure(figure, os.path.join(args.out, "first_steps.png"))


if __name__ == "__main__":
    sys.exit(failures.run_script(main, __file__))
