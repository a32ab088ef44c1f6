"""What a training step and an evaluation ask of a GPU, counted on the strict CPU stand-in for
CuPy (tests/strict_cupy), which sees every array operation: kernel launches per training
step, and the peak device memory of a training step against that of an evaluation.

    python scripts/device_counts.py launches --models lstm-s gru-s lstm-s-pixels gru-s-pixels
    python scripts/device_counts.py memory --models resnet18 --batch-size 128

launches: one training step of each model (after one untimed step, at --batch-size, default
the paper's: 100 for MNIST), the launches of the whole step and of its recurrent layer's
forward and backward pass, also per time step, and the copies CuPy would add for an input
that overlaps its output. memory: the device memory in use at the peak of one training step
(weights, masks, gradients and momentum included, after one untimed step) and at the peak of
snip_min.evaluate over --evaluation-examples random images in batches of --evaluation-batch
(default: the training batch, as fit passes it), in GiB. The stand-in counts memory as CuPy's
pool hands it out (every array rounded up to 512 bytes), not what a real card reports. Both
run on random images and labels; only the shapes matter.
"""

import gc
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from extensions import flags  # (it imports no NumPy and no CuPy)

STAND_IN = os.path.join(ROOT, "tests", "strict_cupy")  # holds the stand-in package `cupy`


def main(argv=None):
    parser = flags.OneLineParser(
        description=__doc__.split("\n\n")[0], formatter_class=flags.HelpFormatter
    )
    parser.add_argument("what", choices=("launches", "memory"), help="what to count")
    parser.add_argument("--models", nargs="+", required=True, help="models of models.py")
    parser.add_argument(
        "--batch-size", type=flags.positive_int, default=None, help="default: the paper's"
    )
    parser.add_argument(
        "--evaluation-batch",
        type=flags.positive_int,
        default=None,
        help="memory: evaluate()'s batch_size (default: --batch-size)",
    )
    parser.add_argument(
        "--evaluation-examples",
        type=flags.positive_int,
        default=None,
        help="memory: the evaluated split's size (default: twice the evaluation batch)",
    )
    parser.add_argument("--sparsity", type=flags.sparsity_value, default=0.95)
    args = parser.parse_args(argv)
    sys.path.insert(0, STAND_IN)  # `import cupy` finds the stand-in
    import models
    import snip_min as sm

    unknown = [name for name in args.models if name not in models.MODELS]
    if unknown:
        parser.error(f"unknown model {unknown[0]!r} (see models.py)")
    sm.use_device("gpu")
    if not getattr(sm.xp, "STAND_IN", False):
        parser.error("a real CuPy was imported instead of the stand-in")
    for name in args.models:
        row = (count_launches if args.what == "launches" else measure_memory)(
            sm, models, name, args
        )
        print("  ".join(f"{key} {value}" for key, value in row.items()), flush=True)
    return 0


def training_set_up(sm, models, name, batch_size, sparsity):
    """(model, optimiser, images, labels) after SNIP and one training step, on random data."""
    import numpy

    from extensions import cli

    dataset = models.MODELS[name].dataset
    batch_size = batch_size or cli.PAPER_SETUP[dataset]["batch_size"]
    rng = numpy.random.default_rng(0)
    model = models.build(name, dataset)
    sm.initialise(model, "vs-h", rng)
    shape, classes = models.INPUT_SHAPE[dataset], models.NUM_CLASSES[dataset]
    images = sm.xp.asarray(rng.standard_normal((batch_size, *shape)), dtype=sm.xp.float32)
    labels = sm.xp.asarray(rng.integers(0, classes, batch_size))
    sm.snip(model, images, labels, sparsity)
    optimiser = sm.SGD(sm.parameters_of(model))
    sm.train_step(model, optimiser, images, labels, 0.01)  # the first step makes the buffers
    return model, optimiser, images, labels


def count_launches(sm, models, name, args):
    from extensions.recurrent import GRU, LSTM

    model, optimiser, images, labels = training_set_up(
        sm, models, name, args.batch_size, args.sparsity
    )
    strict = sm.xp.strict
    layers = [layer for layer in sm.layers_of(model) if isinstance(layer, (LSTM, GRU))]
    counted = {}

    def counted_pass(label, function):
        def wrapper(*arguments):
            with strict.counting(launches=True) as record:
                result = function(*arguments)
            counted[label] = counted.get(label, 0) + record.launches
            return result

        return wrapper

    for layer in layers:  # on these objects only, for this one step
        layer.forward = counted_pass("forward", layer.forward)
        layer.backward = counted_pass("backward", layer.backward)
    with strict.counting(launches=True) as step:
        sm.train_step(model, optimiser, images, labels, 0.01)
    for layer in layers:
        del layer.forward, layer.backward
    copies = sum(1 for event in step.events if event.what == "copy: input overlaps out=")
    row = {"model": name, "batch": len(labels), "step_launches": step.launches}
    if layers:
        steps = images.shape[1] * images.shape[2] if "pixels" in name else images.shape[1]
        row.update(
            T=steps,
            recurrent_forward=counted.get("forward", 0),
            recurrent_backward=counted.get("backward", 0),
            per_time_step=f"{counted.get('forward', 0) / steps:.1f}+"
            f"{counted.get('backward', 0) / steps:.1f}",
        )
    row["overlap_copies"] = copies
    return row


class Peak:
    """The device memory in use at its highest while installed (the pool's bytes at the start
    plus the most the hook saw added since)."""

    def __init__(self, sm):
        hooks = sm.xp.cuda.memory_hook

        class Hook(hooks.MemoryHook):
            name = "DeviceCountsPeak"

            def __init__(hook):
                hook.in_use = hook.peak = 0

            def malloc_postprocess(hook, device_id, size, mem_size, mem_ptr, pmem_id):
                hook.in_use += mem_size
                hook.peak = max(hook.peak, hook.in_use)

            def free_postprocess(hook, device_id, mem_size, mem_ptr, pmem_id):
                hook.in_use -= mem_size

        self.sm, self.hook = sm, Hook()

    def __enter__(self):
        gc.collect()
        self.start = self.sm.xp.get_default_memory_pool().used_bytes()
        self.hook.__enter__()
        return self

    def __exit__(self, *exc):
        self.hook.__exit__(*exc)
        self.bytes = self.start + self.hook.peak


def measure_memory(sm, models, name, args):
    import numpy

    model, optimiser, images, labels = training_set_up(
        sm, models, name, args.batch_size, args.sparsity
    )
    batch = args.evaluation_batch or len(labels)
    examples = args.evaluation_examples or 2 * batch
    rng = numpy.random.default_rng(1)
    dataset = models.MODELS[name].dataset
    pixels = rng.integers(0, 256, (examples, *models.INPUT_SHAPE[dataset]), dtype=numpy.uint8)
    channels = pixels.shape[-1]
    split = sm.DeviceSplit(
        pixels,
        rng.integers(0, models.NUM_CLASSES[dataset], examples),
        [0.5] * channels,
        [0.25] * channels,
    )
    with Peak(sm) as training:
        sm.train_step(model, optimiser, images, labels, 0.01)
    with Peak(sm) as evaluation:
        sm.evaluate(model, split, batch_size=batch)
    gib = 2**30
    return {
        "model": name,
        "batch": len(labels),
        "training_step_GiB": f"{training.bytes / gib:.3f}",
        "evaluation_batch": batch,
        "evaluation_GiB": f"{evaluation.bytes / gib:.3f}",
    }


if __name__ == "__main__":
    sys.exit(main())
