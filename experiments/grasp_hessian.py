"""How accurate GraSP's Hessian-gradient product is: criteria.hessian_vector_product's H g, and
the plain central difference at the same step, against PyTorch's double backward on the same
weights (PyTorch is needed: pip install -r requirements-dev.txt).

For each network and seed: a fresh He initialisation, a batch of random images, and GraSP's
score w * (H g) three ways; printed is the largest error over every weight, as a fraction of
the largest score. --step sets the difference step (relative: |h g| = step |w|; criteria.py
uses 1e-8); a larger step makes it likelier that a ReLU or a max-pool changes branch within
it, which the central difference does not survive (see docs/sanity_checks.md).

    python experiments/grasp_hessian.py --seeds 8 --step 1e-7
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy

import models
import snip_min as sm
from extensions import (
    criteria,
    failures,
    flags,
    pytorch_twin,
)


def central_difference(model, images, labels, params, directions):
    """(g(h) - g(-h)) / 2h along `directions`, with criteria.py's step."""
    moving = [(p, v) for p, v in zip(params, directions) if v is not None]
    start = [p.value for p, _ in moving]
    step = criteria.difference_step(start, [v for _, v in moving])
    gradients = []
    for sign in (1, -1):
        for (p, v), w in zip(moving, start):
            p.value = w + sign * step * v
        gradients.append(
            [
                g.copy()
                for g in criteria.loss_gradients(
                    model, images, labels, params, criteria.GRASP_TEMPERATURE
                )
            ]
        )
    for (p, _), w in zip(moving, start):
        p.value = w
    return [(a - b) / (2 * step) for a, b in zip(*gradients)]


def main(argv=None):
    parser = flags.OneLineParser(
        description=__doc__.split("\n\n")[0], formatter_class=flags.HelpFormatter
    )
    failures.add_debug_argument(parser)
    parser.add_argument(
        "--models", nargs="+", default=["lenet300", "lenet5"], choices=["lenet300", "lenet5"]
    )
    parser.add_argument("--seeds", type=flags.positive_int, default=4)
    parser.add_argument("--images", type=flags.positive_int, default=100)
    parser.add_argument("--step", type=flags.positive_float, default=criteria.HESSIAN_STEP)
    args = parser.parse_args(argv)
    try:
        import torch
    except ImportError:
        raise sm.UsageError(
            "grasp_hessian.py compares with PyTorch, which is not installed "
            "(pip install -r requirements-dev.txt)"
        ) from None

    torch.set_default_dtype(torch.float64)
    criteria.HESSIAN_STEP = args.step
    print(
        f"step {args.step:g}: the largest error of w * (H g) over every weight, as a fraction of "
        "the largest"
    )
    for name in args.models:
        for seed in range(args.seeds):
            rng = numpy.random.default_rng(seed)
            model = models.build(name)
            sm.initialise(model, "vs-h", rng)
            for p in sm.parameters_of(model):
                p.value = p.value.astype(numpy.float64)
            images = rng.standard_normal((args.images,) + models.INPUT_SHAPE["mnist"])
            labels = rng.integers(0, 10, args.images)
            params = sm.prunable_parameters(model)
            for p in params:
                p.mask = numpy.ones_like(p.value)
            gradient = [
                g.copy()
                for g in criteria.loss_gradients(
                    model, images, labels, params, criteria.GRASP_TEMPERATURE
                )
            ]
            directions = [g if p.kind == "weight" else None for p, g in zip(params, gradient)]
            ours = criteria.hessian_vector_product(
                model, images, labels, params, directions, gradient=gradient
            )
            central = central_difference(model, images, labels, params, directions)
            twin, links = pytorch_twin.to_torch(model, torch)
            twin.eval()
            loss = torch.nn.functional.cross_entropy(
                twin(torch.as_tensor(images)) / criteria.GRASP_TEMPERATURE, torch.as_tensor(labels)
            )
            weights = [target for p, target, _ in links if p.kind == "weight"]
            g = torch.autograd.grad(loss, weights, create_graph=True)
            exact = iter(torch.autograd.grad(sum((gi.detach() * gi).sum() for gi in g), weights))
            errors, scale = {"one-sided": 0.0, "central": 0.0}, 0.0
            for (p, _, layout), mine, plain in zip(links, ours, central):
                if p.kind != "weight":
                    continue
                w, truth = layout(p.value).numpy(), next(exact).numpy()
                scale = max(scale, numpy.abs(w * truth).max())
                errors["one-sided"] = max(
                    errors["one-sided"], numpy.abs(w * (layout(mine).numpy() - truth)).max()
                )
                errors["central"] = max(
                    errors["central"], numpy.abs(w * (layout(plain).numpy() - truth)).max()
                )
            print(
                f"{name:>9} seed {seed}: one-sided (criteria.py) "
                f"{errors['one-sided'] / scale:.1e}, central {errors['central'] / scale:.1e}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(failures.run_script(main, __file__))
