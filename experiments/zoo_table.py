"""Experiment B: SNIP on every architecture - the model-zoo table, generated, never typed.

    python experiments/zoo_table.py                          # counts only
    python experiments/zoo_table.py --results results/zoo    # with errors from results.json files

For every model and dataset: the published parameter count, the count SNIP keeps at the
sparsity the paper (or the student reproduction) used, and the test error of any run found
under --results (files written by `snip_min.py --out DIR`, matched on model, dataset
and sparsity; runs that augmented their training images otherwise than the authors,
e.g. with --translate, and --compact runs, which train the same masks another way and
are reported beside the masked ones in docs/compaction.md, are left out). Rows without a
measurement say so. Prints a Markdown table; --json prints rows.
"""

import glob
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import data
import models
import snip_min as sm
from extensions import failures, flags

# The sparsity each model was pruned to in the paper's Tables 1, 2 and 4 and the student
# reproduction's Table I.
PAPER_SPARSITY = {
    "lenet300": 0.98,
    "lenet5": 0.99,
    "alexnet-s": 0.90,
    "alexnet-b": 0.90,
    "vgg-c": 0.95,
    "vgg-d": 0.95,
    "vgg-like": 0.97,
    "resnet18": 0.95,
    "resnet34": 0.95,
    "squeezenet": 0.95,
    "squeezenet-bypass": 0.95,
    "googlenet": 0.95,
    "googlenet-full": 0.95,
    "densenet121": 0.95,
    "densenet169": 0.95,
    "densenet201": 0.95,
    "densenet264": 0.95,
    "wrn-16-8": 0.95,
    "wrn-16-10": 0.95,
    "wrn-22-8": 0.95,
    "lstm-s": 0.95,
    "lstm-b": 0.95,
    "gru-s": 0.95,
    "gru-b": 0.95,
    "lstm-s-pixels": 0.95,
    "lstm-b-pixels": 0.95,
    "gru-s-pixels": 0.95,
    "gru-b-pixels": 0.95,
}
PUBLISHED_ERRORS = {
    ("lenet300", "mnist"): "2.4% (paper, 54,000 training images)",
    ("lenet5", "mnist"): "1.1% (paper, 54,000 training images)",
    ("lstm-s", "mnist"): "1.88 → 1.57% (paper, sequential MNIST)",
    ("lstm-b", "mnist"): "1.15 → 1.35% (paper, sequential MNIST)",
    ("gru-s", "mnist"): "1.87 → 2.41% (paper, sequential MNIST)",
    ("gru-b", "mnist"): "1.71 → 1.52% (paper, sequential MNIST)",
    ("resnet18", "cifar10"): "8.32 → 8.47% (student reproduction)",
}


def counts(name, dataset, sparsity):
    """(before, after): the published count, and what SNIP keeps: kappa of the gated
    conv/linear weights and biases, plus anything the published count has that is never
    gated (the Wide ResNets' batch norms)."""
    model = models.build(name, dataset)
    info = models.MODELS[name]
    before = models.count_parameters(model, info.counts_batch_norm)
    gated = sum(p.size for p in sm.prunable_parameters(model))
    return before, sm.kappa_for(sparsity, gated) + (before - gated)


def augmented_as_the_authors(result):
    """Whether a run augmented its training images as the authors did (data.py's
    AUTHORS_AUGMENTATION). A file without the field counts as theirs; older files say
    true (theirs) or false (none)."""
    theirs = data.AUTHORS_AUGMENTATION[result["dataset"]]
    recorded = result.get("augment", theirs is not None)
    if isinstance(recorded, bool):  # an older file
        return recorded == (theirs is not None)
    return recorded == (None if theirs is None else theirs._asdict())


def measured_runs(folder):
    """{(model, dataset, sparsity): [results dicts]} from every results.json under folder
    that pruned with SNIP (not the random baseline), trained the masked network (not
    --compact) and augmented its training images as the authors did."""
    runs = {}
    for path in sorted(glob.glob(os.path.join(folder, "**", "results.json"), recursive=True)):
        with open(path) as f:
            result = json.load(f)
        if (
            result.get("method", "snip") != "snip"
            or result.get("compact")
            or not augmented_as_the_authors(result)
        ):
            continue
        runs.setdefault((result["model"], result["dataset"], result["sparsity"]), []).append(result)
    return runs


def table_rows(results_folder=None, why_missing="not trained here"):
    runs = measured_runs(results_folder) if results_folder else {}
    rows = []
    for name, info in models.MODELS.items():
        for dataset in info.datasets:
            sparsity = PAPER_SPARSITY[name]
            before, after = counts(name, dataset, sparsity)
            found = runs.get((name, dataset, sparsity), [])
            errors = [r["test_error"] for r in found]
            rows.append(
                {
                    "model": name,
                    "title": info.title,
                    "dataset": dataset,
                    "sparsity": sparsity,
                    "params_before": before,
                    "params_after": after,
                    "test_errors": errors,
                    "seeds": [r["seed"] for r in found],
                    "data": found[0]["data"] if found else None,
                    "published": PUBLISHED_ERRORS.get((name, dataset)),
                    "note": "" if found else why_missing,
                }
            )
    return rows


def markdown(rows):
    lines = [
        "| model | dataset | sparsity | parameters before → after | test error (ours) "
        "| published |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["test_errors"]:
            mean = sum(r["test_errors"]) / len(r["test_errors"])
            ours = (
                " / ".join(f"{e:.2f}" for e in r["test_errors"])
                + "%"
                + (f" (mean {mean:.2f}%)" if len(r["test_errors"]) > 1 else "")
                + f", {r['data']}"
            )
        else:
            ours = r["note"]
        lines.append(
            f"| {r['title']} | {r['dataset']} | {100 * r['sparsity']:g}% | "
            f"{r['params_before']:,} → {r['params_after']:,} | {ours} | {r['published'] or ''} |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = flags.OneLineParser(
        description=__doc__.split("\n\n")[0], formatter_class=flags.HelpFormatter
    )
    failures.add_debug_argument(parser)
    parser.add_argument(
        "--results",
        type=flags.folder_name,
        default=None,
        help="folder searched for results.json files",
    )
    parser.add_argument(
        "--why-missing", default="not trained here", help="what a row without a measurement says"
    )
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args(argv)
    rows = table_rows(args.results, args.why_missing)
    print(json.dumps(rows, indent=2) if args.json else markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(failures.run_script(main, __file__))
