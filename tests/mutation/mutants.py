"""The small bugs that tests/mutation/run.py puts into a copy of the project, one at a time.

Each Mutant names the file it changes, its edits, and the test files (or test ids,
file::name) that must fail with it; run.py runs them in that order and stops at the first
failure, so the likeliest killer comes first. An edit is (old, new), old a text that occurs
exactly once in the file, or (anchor, old, new): the first old after the one occurrence of
anchor (a distinctive line), for a text that is not unique on its own. A mutant whose texts
no longer match so is reported as stale (the code moved), never silently skipped.
`explained` is None for a bug the tests must catch, or the reason why surviving is right
(an equivalent change, one only a speed test could see).

Areas: layers, snip, criteria, optimiser, training (the loop, the schedule, evaluation),
data, checkpoints.
"""

from typing import NamedTuple, Optional


class Mutant(NamedTuple):
    name: str  # short, unique: what the bug is
    area: str
    path: str  # the file it changes, relative to the repository
    edits: list  # [(old, new)] or [(anchor, old, new)]: see above
    tests: list  # pytest arguments: test files or test ids, likeliest killer first
    explained: Optional[str] = None  # why it may survive; None: it must be caught


SM = "snip_min.py"
ORACLES = "tests/test_oracles.py"

MUTANTS = [
    # --- layers --------------------------------------------------------------------------
    Mutant(
        "same-padding-odd-row-at-the-top-left",
        "layers",
        SM,
        [("return total // 2, total - total // 2", "return total - total // 2, total // 2")],
        [ORACLES, "tests/test_layers.py"],
    ),
    Mutant(
        "same-padding-floor-not-ceil",
        "layers",
        SM,
        [("max((-(-size // stride) - 1) * stride", "max((size // stride - 1) * stride")],
        ["tests/test_layers.py", ORACLES],
    ),
    Mutant(
        "max-pool-pads-with-zero",
        "layers",
        SM,
        [("x_pad = pad_image(x, pads, value=-xp.inf)", "x_pad = pad_image(x, pads)")],
        ["tests/test_layers.py"],
    ),
    Mutant(
        "max-pool-ties-all-take-the-gradient",
        "layers",
        SM,
        [
            (
                "xp.logical_and(winner, unrouted, out=winner)",
                "xp.logical_and(winner, True, out=winner)",
            )
        ],
        ["tests/test_layers.py"],
    ),
    Mutant(
        "col2im-overwrites-overlapping-taps",
        "layers",
        SM,
        [("                pixels += block", "                pixels[...] = block")],
        ["tests/test_layers.py"],
    ),
    Mutant(
        "conv-bias-repeated-not-tiled",
        "layers",
        SM,
        [
            (
                "per_example += xp.tile(self.bias.masked(), out_h * out_w)",
                "per_example += xp.repeat(self.bias.masked(), out_h * out_w)",
            )
        ],
        ["tests/test_layers.py"],
    ),
    Mutant(
        "conv-input-gradient-cropped-at-the-corner",
        "layers",
        SM,
        [
            (
                "return dx_pad[:, top : top + height, left : left + width, :]  # (N, H, W, C)",
                "return dx_pad[:, :height, :width, :]  # (N, H, W, C)",
            )
        ],
        ["tests/test_layers.py"],
    ),
    Mutant(
        "linear-bias-gradient-is-a-mean",
        "layers",
        SM,
        [
            (
                "self.bias.grad = sum_rows(dout)  # (D_out,)",
                "self.bias.grad = dout.mean(axis=0)  # (D_out,)",
            )
        ],
        ["tests/test_layers.py"],
    ),
    Mutant(
        "cross-entropy-gradient-not-divided-by-n",
        "layers",
        SM,
        [("    dlogits /= n\n", "    dlogits /= 1\n")],
        ["tests/test_layers.py"],
    ),
    Mutant(
        "im2col-single-channel-branch-never-taken",
        "layers",
        SM,
        [("    if channels == 1:\n        col_t", "    if channels == 0:\n        col_t")],
        ["tests/test_layers.py", "tests/test_snip.py"],
        explained=(
            "equivalent: the single-channel branch is only for speed, and the plain path "
            "builds the same col matrix; only a timing could tell"
        ),
    ),
    Mutant(
        "batch-norm-running-variance-biased",
        "layers",
        "extensions/zoo_layers.py",
        [("count / max(count - 1, 1)", "count / max(count, 1)")],
        ["tests/test_zoo_layers.py"],
    ),
    Mutant(
        "batch-norm-backward-uses-the-shift-gradient",
        "layers",
        "extensions/zoo_layers.py",
        [
            (
                "dx -= x_hat * (self.scale.grad / count)",
                "dx -= x_hat * (self.shift.grad / count)",
            )
        ],
        ["tests/test_zoo_layers.py"],
    ),
    Mutant(
        "average-pool-counts-the-padding",
        "layers",
        "extensions/zoo_layers.py",
        [
            (
                "        return total / count\n",
                "        return total / (self.kernel * self.kernel)\n",
            )
        ],
        ["tests/test_zoo_layers.py", ORACLES],
    ),
    Mutant(
        "lstm-cell-gradient-skips-the-forget-gate",
        "layers",
        "extensions/recurrent.py",
        [("dc_next = dc * f  # (N, U)", "dc_next = dc  # (N, U)")],
        ["tests/test_recurrent.py"],
    ),
    # --- SNIP ----------------------------------------------------------------------------
    Mutant(
        "sensitivity-is-the-gradient-not-w-times-it",
        "snip",
        SM,
        [
            (
                "    return [p.value * p.grad for p in params]\n\n\ndef normalised_scores",
                "    return [p.grad for p in params]\n\n\ndef normalised_scores",
            )
        ],
        ["tests/test_snip.py"],
    ),
    Mutant(
        "scores-without-absolute-value",
        "snip",
        SM,
        [("xp.concatenate([xp.abs(a).ravel() for a", "xp.concatenate([a.ravel() for a")],
        ["tests/test_snip.py"],
    ),
    Mutant(
        "kappa-floored-not-rounded",
        "snip",
        SM,
        [
            (
                "return int(round((1.0 - float(sparsity)) * m))",
                "return int((1.0 - float(sparsity)) * m)",
            )
        ],
        ["tests/test_snip.py"],
    ),
    Mutant(
        "top-k-takes-one-tie-too-few",
        "snip",
        SM,
        [("keep |= ties & (count <= missing)", "keep |= ties & (count < missing)")],
        ["tests/test_snip.py"],
    ),
    Mutant(
        "top-k-keeps-every-tie",
        "snip",
        SM,
        [("keep = scores > threshold  # fewer", "keep = scores >= threshold  # fewer")],
        ["tests/test_snip.py"],
    ),
    Mutant(
        "scored-with-batch-statistics",
        "snip",
        SM,
        [
            (
                "def connection_sensitivity(",
                "forward(images, train=False)",
                "forward(images, train=True)",
            )
        ],
        ["tests/test_snip.py"],
    ),
    Mutant(
        "pruned-weights-not-zeroed",
        "snip",
        SM,
        [("        p.value = p.value * mask\n", "        p.value = p.value\n")],
        ["tests/test_snip.py"],
    ),
    Mutant(
        "prune-weights-gates-biases-too",
        "snip",
        SM,
        [('"weights": ("weight",)}', '"weights": ("weight", "bias")}')],
        ["tests/test_snip.py"],
    ),
    # --- criteria ------------------------------------------------------------------------
    Mutant(
        "iterative-rounds-may-revive-pruned-entries",
        "criteria",
        "extensions/criteria.py",
        [
            (
                "chosen = sm.xp.where(alive, chosen, -sm.xp.inf)",
                "chosen = sm.xp.where(alive, chosen, chosen)",
            )
        ],
        [ORACLES, "tests/test_criteria.py"],
    ),
    Mutant(
        "iterative-rounds-do-not-pass-the-alive-set",
        "criteria",
        "extensions/criteria.py",
        [
            (
                "select(scores, kappa, invert, alive=keep, ties=ties)",
                "select(scores, kappa, invert, alive=None, ties=ties)",
            )
        ],
        [ORACLES, "tests/test_criteria.py"],
    ),
    Mutant(
        "iterative-schedule-linear-not-exponential",
        "criteria",
        "extensions/criteria.py",
        [("(1 - sparsity) ** (r / rounds) * m", "(1 - (1 - (1 - sparsity)) * r / rounds) * m")],
        ["tests/test_criteria.py"],
    ),
    Mutant(
        "iterative-rounds-rescore-the-dense-network",
        "criteria",
        "extensions/criteria.py",
        [("p.value = w * mask  # the network pruned so far", "p.value = w  # the network")],
        ["tests/test_criteria.py"],
    ),
    Mutant(
        "invert-ignored",
        "criteria",
        "extensions/criteria.py",
        [("chosen = -scores if invert else scores", "chosen = scores")],
        ["tests/test_criteria.py"],
    ),
    Mutant(
        "synflow-on-signed-weights",
        "criteria",
        "extensions/criteria.py",
        [
            (
                "with dense_float64(model, params, sm.xp.abs):",
                "with dense_float64(model, params):",
            )
        ],
        ["tests/test_criteria.py"],
    ),
    Mutant(
        "grasp-keeps-the-lowest",
        "criteria",
        "extensions/criteria.py",
        [("            p.value * h if p.kind", "            -p.value * h if p.kind")],
        [ORACLES, "tests/test_criteria.py"],
    ),
    Mutant(
        "hessian-by-central-differences",
        "criteria",
        "extensions/criteria.py",
        [
            (
                "products.append(sm.xp.where(bend_plus <= bend_minus, forward, backward))",
                "products.append((forward + backward) / 2)",
            )
        ],
        [ORACLES, "tests/test_criteria.py"],
    ),
    Mutant(
        "shuffle-gives-new-entries-no-initial-value",
        "criteria",
        "extensions/sanity.py",
        [("        p.value = w * mask\n", "        p.value = p.value * mask\n")],
        ["tests/test_criteria.py"],
    ),
    # --- optimiser -----------------------------------------------------------------------
    Mutant(
        "momentum-applied-after-the-gradient",  # v = momentum * (v + g)
        "optimiser",
        SM,
        [
            ("            v *= self.momentum\n", ""),
            (
                "            p.value -= xp.multiply(v, lr, out=scratch)",
                "            v *= self.momentum\n"
                "            p.value -= xp.multiply(v, lr, out=scratch)",
            ),
        ],
        [ORACLES, "tests/test_snip.py"],
    ),
    Mutant(
        "weight-decay-on-batch-norm-too",
        "optimiser",
        SM,
        [
            (
                'if p.kind in ("weight", "bias") and self.weight_decay:',
                "if self.weight_decay:",
            )
        ],
        [ORACLES, "tests/test_snip.py", "tests/test_zoo_layers.py"],
    ),
    Mutant(
        "weight-decay-with-the-wrong-sign",
        "optimiser",
        SM,
        [
            (
                "v += xp.multiply(p.value, self.weight_decay, out=scratch)",
                "v -= xp.multiply(p.value, self.weight_decay, out=scratch)",
            )
        ],
        [ORACLES, "tests/test_snip.py"],
    ),
    Mutant(
        "gradient-not-masked",
        "optimiser",
        SM,
        [
            (
                "v += xp.multiply(p.grad, p.mask, out=scratch)  # dL/dw",
                "v += p.grad  # dL/dw",
            )
        ],
        ["tests/test_snip.py"],
    ),
    Mutant(
        "sgd-never-moves-the-weights",
        "optimiser",
        SM,
        [
            (
                "            p.value -= xp.multiply(v, lr, out=scratch)",
                "            xp.multiply(v, lr, out=scratch)",
            )
        ],
        ["tests/test_snip.py"],
    ),
    Mutant(
        "clipping-also-scales-up",
        "optimiser",
        SM,
        [
            (
                "factor = xp.minimum(1.0, max_norm / (norm + 1e-6))",
                "factor = max_norm / (norm + 1e-6)",
            )
        ],
        ["tests/test_recurrent.py"],
    ),
    # --- training loop, schedule, evaluation ---------------------------------------------
    Mutant(
        "every-epoch-in-the-same-order",
        "training",
        SM,
        [("state.rng.permutation(examples), 0", "numpy.arange(examples), 0")],
        [ORACLES],
    ),
    Mutant(
        "boundary-compared-with-greater-than",
        "training",
        SM,
        [("sum(iteration >= b for b in boundaries)", "sum(iteration > b for b in boundaries)")],
        [ORACLES, "tests/test_snip.py"],
    ),
    Mutant(
        "loop-uses-the-next-iterations-rate",
        "training",
        SM,
        [
            (
                "lr = learning_rate(state.iteration, base_lr",
                "lr = learning_rate(state.iteration + 1, base_lr",
            )
        ],
        [ORACLES],
    ),
    Mutant(
        "warm-up-starts-at-zero",
        "training",
        SM,
        [("rate *= (iteration + 1) / warmup", "rate *= iteration / warmup")],
        ["tests/test_snip.py", ORACLES],
    ),
    Mutant(
        "evaluation-weights-the-last-batch-by-the-batch-size",
        "training",
        SM,
        [
            (
                "total_loss = total_loss + loss * len(labels)",
                "total_loss = total_loss + loss * batch_size",
            )
        ],
        [ORACLES],
    ),
    Mutant(
        "evaluation-in-training-mode",
        "training",
        SM,
        [
            (
                "def evaluate(model, split",
                "forward(images, train=False)",
                "forward(images, train=True)",
            )
        ],
        [ORACLES],
    ),
    # --- data ----------------------------------------------------------------------------
    Mutant(
        "validation-split-overlaps-training",
        "data",
        SM,
        [
            (
                "val_index, train_index = order[:n_val], order[n_val:]",
                "val_index, train_index = order[:n_val], order[: n - n_val]",
            )
        ],
        [ORACLES],
    ),
    Mutant(
        "standardisation-forgets-the-std-in-the-offset",
        "data",
        SM,
        [
            (
                "self.offset = xp.asarray(-mean / std, dtype=xp.float32)",
                "self.offset = xp.asarray(-mean, dtype=xp.float32)",
            )
        ],
        ["tests/test_data.py"],
    ),
    Mutant(
        "flip-off-by-one-column",
        "data",
        "data.py",
        [
            (
                "xp.where(flips[:, None], width - 1 - columns",
                "xp.where(flips[:, None], width - columns",
            )
        ],
        ["tests/test_data.py"],
    ),
    Mutant(
        "translation-the-wrong-way",
        "data",
        "data.py",
        [
            (
                "rows = xp.arange(height)[None, :] - shifts_y",
                "rows = xp.arange(height)[None, :] + shifts_y",
            )
        ],
        ["tests/test_data.py"],
    ),
    Mutant(
        "shifts-never-reach-the-maximum",
        "data",
        "data.py",
        [
            (
                "shifts_y = rng.integers(-max_shift, max_shift + 1, size=count)",
                "shifts_y = rng.integers(-max_shift, max_shift, size=count)",
            )
        ],
        ["tests/test_data.py"],
    ),
    Mutant(
        "pixel-variance-unbiased",
        "data",
        "data.py",
        [("** 2).sum(axis=1) / totals", "** 2).sum(axis=1) / (totals - 1)")],
        ["tests/test_data.py"],
    ),
    Mutant(
        "idx-dimensions-little-endian",
        "data",
        "data.py",
        [('dims_bytes[4 * i : 4 * i + 4], "big")', 'dims_bytes[4 * i : 4 * i + 4], "little")')],
        ["tests/test_data.py"],
    ),
    Mutant(
        "label-equal-to-the-class-count-accepted",
        "data",
        "data.py",
        [("if labels.max() >= num_classes:", "if labels.max() > num_classes:")],
        ["tests/test_data.py"],
    ),
    # --- checkpoints ---------------------------------------------------------------------
    Mutant(
        "momentum-not-restored",
        "checkpoints",
        "extensions/checkpoints.py",
        [("velocity[...] = saved[p.name]", "velocity[...] = 0")],
        ["tests/test_reliability.py"],
    ),
    Mutant(
        "position-in-the-epoch-not-restored",
        "checkpoints",
        "extensions/checkpoints.py",
        [('        "epoch",\n        "position",\n', '        "epoch",\n')],
        ["tests/test_reliability.py"],
    ),
    Mutant(
        "epoch-order-not-restored",
        "checkpoints",
        "extensions/checkpoints.py",
        [("state.order, state.moves = order, moves", "state.order, state.moves = None, moves")],
        ["tests/test_reliability.py"],
    ),
    Mutant(
        "shuffle-stream-not-saved",
        "checkpoints",
        "extensions/checkpoints.py",
        [
            (
                "    rng = numpy.random.default_rng()\n"
                '    rng.bit_generator.state = record["rng"]\n',
                "    rng = numpy.random.default_rng()\n",
            )
        ],
        ["tests/test_reliability.py"],
    ),
    Mutant(
        "masks-not-restored",
        "checkpoints",
        "extensions/checkpoints.py",
        [
            (
                "p.mask = sm.xp.asarray(mask, dtype=p.value.dtype)",
                "p.mask = sm.xp.ones_like(p.value)",
            )
        ],
        ["tests/test_reliability.py"],
    ),
]
