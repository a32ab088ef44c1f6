"""What each pruning criterion costs: the seconds it takes to score and prune a freshly
initialised network once, beside SNIP's, on LeNet-5-Caffe and VGG-D.

SNIP is one forward and backward pass; the criteria of criteria.py cost more: GraSP five
passes in float64 (the gradient, and four more for the Hessian-gradient product), SynFlow
and iterative SNIP one pass per round (100 rounds by default; SynFlow's on a single input of
ones, in float64). Each criterion is timed on the same network and the same batch of random
images (LeNet-5-Caffe: 100 of MNIST's shape; VGG-D: 128 of CIFAR-10's), from the same
initial values each time, after one untimed call (of one round) that warms up the thread
and memory pools (and on a GPU compiles the kernels); the median of --repeats calls is
reported.

    python experiments/criteria_costs.py

writes costs.json and costs.md under results/sanity_checks/. --threads sets the BLAS
threads (the variables are set before NumPy is imported); --device gpu times CuPy.
"""

import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from extensions import failures, flags  # (neither starts NumPy: see --threads)

MODELS = {"lenet5": "LeNet-5-Caffe", "vgg-d": "VGG-D"}
SPARSITY = {"lenet5": 0.99, "vgg-d": 0.95}


def main(argv=None):
    parser = flags.OneLineParser(
        description=__doc__.split("\n\n")[0], formatter_class=flags.HelpFormatter
    )
    failures.add_debug_argument(parser)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=sorted(MODELS))
    parser.add_argument(
        "--repeats",
        type=flags.positive_int,
        default=3,
        help="timed calls per criterion (the median is kept)",
    )
    parser.add_argument(
        "--rounds",
        type=flags.positive_int,
        default=100,
        help="rounds of synflow and iterative-snip",
    )
    parser.add_argument("--threads", type=flags.positive_int, default=2, help="BLAS threads")
    parser.add_argument("--device", default="cpu", choices=("cpu", "gpu"))
    parser.add_argument(
        "--out", type=flags.folder_name, default=os.path.join("results", "sanity_checks")
    )
    args = parser.parse_args(argv)
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(args.threads)  # before NumPy starts its thread pool
    import numpy

    import data
    import models
    import snip_min as sm
    from extensions import cli, criteria

    sm.use_device(args.device)
    rows = []
    for name in args.models:
        dataset = models.MODELS[name].dataset
        batch = cli.PAPER_SETUP[dataset]["batch_size"]
        rng = numpy.random.default_rng(0)
        images = sm.xp.asarray(
            rng.standard_normal((batch,) + models.INPUT_SHAPE[dataset]), dtype=sm.xp.float32
        )
        labels = sm.xp.asarray(rng.integers(0, models.NUM_CLASSES[dataset], batch))
        model = models.build(name, dataset)
        sm.initialise(model, "vs-h", numpy.random.default_rng(1))
        initial = {p.name: p.value for p in sm.parameters_of(model)}
        for method in criteria.METHODS:
            seconds = []
            for call in range(args.repeats + 1):  # the first call is not timed
                for p in sm.parameters_of(model):
                    p.value, p.mask, p.grad = initial[p.name], None, None
                sm.synchronise()
                started = time.perf_counter()
                criteria.prune_by(
                    method,
                    model,
                    images,
                    labels,
                    SPARSITY[name],
                    rng=numpy.random.default_rng(2),
                    rounds=args.rounds if call else 1,
                )  # one round warms up as well
                sm.synchronise()
                if call:
                    seconds.append(time.perf_counter() - started)
            median = float(numpy.median(seconds))
            rows.append({"model": name, "method": method, "seconds": median, "calls": len(seconds)})
            print(f"{MODELS[name]:>14} {method:>15}: {median:8.3f} s", flush=True)
    for row in rows:
        snip = next(
            r["seconds"] for r in rows if r["model"] == row["model"] and r["method"] == "snip"
        )
        row["times_snip"] = row["seconds"] / snip
    where = (
        f"{args.device}, {args.threads} BLAS thread(s); batch of random images: 100 for "
        f"LeNet-5-Caffe (99%), 128 for VGG-D (95%); {args.rounds} rounds for the iterative "
        f"criteria; median of {args.repeats} calls"
    )
    lines = [
        "| criterion | "
        + " | ".join(f"{MODELS[m]} (s)" for m in args.models)
        + " | "
        + " | ".join(f"{MODELS[m]} (× SNIP)" for m in args.models)
        + " |",
        "|---|" + "---|" * (2 * len(args.models)),
    ]
    for method in criteria.METHODS:
        cells = [
            next(r for r in rows if r["model"] == m and r["method"] == method) for m in args.models
        ]
        lines.append(
            f"| {method} | "
            + " | ".join(f"{c['seconds']:.3f}" for c in cells)
            + " | "
            + " | ".join(f"{c['times_snip']:.2f}" for c in cells)
            + " |"
        )
    text = "\n".join(lines) + f"\n\nScoring and pruning once: {where}.\n"
    print(text)
    os.makedirs(args.out, exist_ok=True)
    data.write_file_atomically(os.path.join(args.out, "costs.md"), text.encode())
    data.write_file_atomically(
        os.path.join(args.out, "costs.json"),
        (json.dumps({"setting": where, "rows": rows}, indent=2) + "\n").encode(),
    )
    return 0


if __name__ == "__main__":
    sys.exit(failures.run_script(main, __file__))
