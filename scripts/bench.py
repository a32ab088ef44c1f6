"""Benchmark snip-min against PyTorch on the same work, side by side, each in its own process.

    python bench.py --model lenet5                      # batch 100, sparsity 0.99, 2 threads
    python bench.py --model lenet300 --json             # one JSON object
    python bench.py --model lenet5 --device gpu         # CuPy against PyTorch on CUDA
    python bench.py --model lenet5 --profile            # where snip-min's training step spends
                                                        # its time

For a model, batch size and sparsity it measures, after warm-up and over repeated runs
(median, min, max):
    training step    images/s for forward, loss, backward and the masked SGD-momentum update
    SNIP scoring     seconds for one batch: sensitivities, global top-k, masks
    inference        images/s for a forward pass in evaluation mode
    peak memory      how far one training step raises the process's peak memory
--profile instead times each layer's forward and backward pass, the loss and the update
inside snip-min's training step, prints them beside the whole step, and lists the
operators PyTorch's own profiler finds most costly in its step.
When PyTorch is installed, the same network (converted layer by layer, with the same weights
and masks), the same batch and the same thread count run in PyTorch. Each library runs in a
worker process of its own (two libraries in one process slow each other down: thread pools
and memory allocators compete), and the workers are timed in turn, A B A B ...: each repeat
times snip-min, then PyTorch (then, with --compact, the compacted network) on the same
operation, and gives one ratio snip-min / PyTorch.
A figure's ratio is the median of those pairwise ratios, with their min and max, so that
the machine's drift from one minute to the next cancels out. PyTorch is only a yardstick
here; snip-min itself never imports it.

Thread counts must be set before NumPy starts, so this script sets OMP/OpenBLAS/MKL thread
variables from --threads before importing anything numerical.
"""

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time

# snip_min and its neighbours live one folder up, wherever this script is run from
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from extensions import failures, flags  # (neither starts NumPy: see --threads)


def parse_arguments(argv=None):
    parser = flags.OneLineParser(
        description=__doc__.split("\n\n")[0], formatter_class=flags.HelpFormatter
    )
    parser.add_argument("--model", default="lenet5", help="any model in models.py")
    parser.add_argument(
        "--dataset", default=None, help="input shape and classes; default: the model's"
    )
    parser.add_argument(
        "--data-dir",
        type=flags.folder_name,
        default=None,
        help="score and train on the first batch of this dataset's training images "
        "(DIR/mnist/*.gz, as snip_min.py --data-dir; nothing is downloaded) "
        "instead of random ones, so that the masks, and with --compact the "
        "units left alive, are those of real data (default: random images)",
    )
    parser.add_argument(
        "--batch-size",
        type=flags.positive_int,
        default=None,
        help="default: 100 for MNIST models, 128 otherwise",
    )
    parser.add_argument("--sparsity", type=flags.sparsity_value, default=0.99)
    parser.add_argument(
        "--threads", type=flags.positive_int, default=2, help="CPU threads for both libraries"
    )
    parser.add_argument("--device", default="cpu", choices=("cpu", "gpu"))
    parser.add_argument(
        "--repeats", type=flags.positive_int, default=7, help="timed repeats of each measurement"
    )
    parser.add_argument(
        "--steps",
        type=flags.positive_int,
        default=None,
        help="training steps per repeat; default: enough for about a second",
    )
    parser.add_argument("--no-torch", action="store_true", help="measure snip-min only")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory measurement")
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object instead of a table"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="time snip-min's training step layer by layer instead, and "
        "PyTorch's with its own profiler",
    )
    parser.add_argument("--memory-probe", default=None, help=argparse.SUPPRESS)  # internal
    parser.add_argument(
        "--compact",
        action="store_true",
        help="also time the training step and inference of the compacted network "
        "(snip_min.py --compact: the smaller dense network the mask leaves)",
    )
    parser.add_argument(
        "--worker",
        default=None,
        choices=("snip-min", "snip-min-compact", "torch"),
        help=argparse.SUPPRESS,
    )  # internal
    failures.add_debug_argument(parser)
    return parser.parse_args(argv)


def set_threads(threads):
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(threads)


# ---------------------------------------------------------------------------------------
# The work, in snip-min
# ---------------------------------------------------------------------------------------


def real_batch(dataset_name, data_dir, batch_size, notice=lambda line: None):
    """(images, labels, description): the first batch_size training images of dataset_name in
    data_dir, standardised as snip_min.py does, and their labels, as host arrays; the
    dataset's notes go to notice. data.DataError if they are not there."""
    import data

    dataset = data.load_dataset(dataset_name, data_dir, download=False, notice=notice)
    if len(dataset.train_labels) < batch_size:
        raise data.DataError(f"{dataset.description} has fewer than {batch_size:,} training images")
    images = data.standardise(dataset.train_images[:batch_size], dataset.mean, dataset.std)
    return images, dataset.train_labels[:batch_size], dataset.description


class SnipMinWork:
    """One model, one batch, one mask: the three measured operations in snip-min. With
    compact=True, the training step and inference run on the compacted network (the smaller
    dense network the mask leaves, compaction.compact); SNIP itself is the same work."""

    name = "snip-min"

    def __init__(self, args, sm, models, numpy, compact=False):
        self.sm, self.args = sm, args
        info = models.MODELS[args.model]
        self.dataset = args.dataset or info.dataset
        self.model = models.build(args.model, self.dataset)
        shape, classes = models.INPUT_SHAPE[self.dataset], models.NUM_CLASSES[self.dataset]
        rng = numpy.random.default_rng(0)
        sm.initialise(self.model, "vs-h", rng)
        if args.data_dir:  # the first batch of the real training images, standardised
            images, labels, _ = real_batch(self.dataset, args.data_dir, args.batch_size)
        else:  # random images: as fast to compute with, but SNIP keeps other connections
            images = rng.standard_normal((args.batch_size,) + shape)
            labels = rng.integers(0, classes, args.batch_size)
        self.images = sm.xp.asarray(images, dtype=sm.xp.float32)
        self.labels = sm.xp.asarray(labels)
        # SNIP scores a dense initialisation: keep one to score again at every measurement
        self.dense = {p.name: p.value.copy() for p in sm.prunable_parameters(self.model)}
        self.gated = sm.snip(self.model, self.images, self.labels, args.sparsity)
        self.network = self.model
        self.multiply_adds = None
        if compact:
            from extensions import compaction

            self.name = "snip-min, compacted"
            self.network = compaction.compact(self.model, shape).network
            self.multiply_adds = [
                compaction.multiply_adds(self.model, shape),
                compaction.multiply_adds(self.network, shape),
            ]
        self.optimiser = sm.SGD(sm.parameters_of(self.network))

    def synchronise(self):
        self.sm.synchronise()

    def train_step(self):
        self.sm.train_step(self.network, self.optimiser, self.images, self.labels, lr=1e-3)

    def snip(self):
        # the whole of Algorithm 1's scoring on the dense initialisation: gates to 1,
        # sensitivities, global top-k, masks
        for p in self.gated:
            p.value = self.dense[p.name].copy()
        sensitivities = self.sm.connection_sensitivity(
            self.model, self.images, self.labels, self.gated
        )
        masks = self.sm.snip_masks(sensitivities, self.args.sparsity)
        self.sm.apply_masks(self.gated, masks)

    def infer(self):
        self.network.forward(self.images, train=False).argmax(axis=1)


# ---------------------------------------------------------------------------------------
# The same work, in PyTorch (the network converted by extensions/pytorch_twin.py)
# ---------------------------------------------------------------------------------------


class TorchWork:
    """The same three operations in PyTorch: masked SGD step, SNIP scoring, inference."""

    name = "PyTorch"

    def __init__(self, args, snip_min_work, sm, torch):
        from extensions import pytorch_twin

        self.torch, self.args = torch, args
        self.device = torch.device("cuda" if args.device == "gpu" else "cpu")
        self.model, links = pytorch_twin.to_torch(snip_min_work.model, torch)
        self.model.to(self.device)
        self.images = torch.as_tensor(sm.to_host(snip_min_work.images)).to(self.device)
        self.labels = torch.as_tensor(sm.to_host(snip_min_work.labels)).to(self.device)
        # the snip-min masks, in PyTorch's layout (None: not gated), and the dense weights
        self.masked = [
            (target, layout(p.mask).to(self.device) if p.mask is not None else None)
            for p, target, layout in links
        ]
        self.dense = [
            layout(snip_min_work.dense[p.name]).to(self.device)
            for p, _, layout in links
            if p.mask is not None
        ]
        self.optimiser = torch.optim.SGD(
            self.model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4
        )

    def synchronise(self):
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()

    def train_step(self):
        torch = self.torch
        self.model.train()
        self.optimiser.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(self.model(self.images), self.labels)
        loss.backward()
        with torch.no_grad():
            for q, mask in self.masked:
                if mask is not None:
                    q.grad.mul_(mask)  # dL/dw = c * dL/d(w * c)
        self.optimiser.step()

    def snip(self):
        torch = self.torch
        self.model.eval()
        gated = [(q, mask) for q, mask in self.masked if mask is not None]
        gates = [torch.ones_like(q, requires_grad=True) for q, _ in gated]
        originals = [dense.clone() for dense in self.dense]  # the dense initialisation
        # run the network on w * c by swapping the parameters for gated tensors
        params = dict(self.model.named_parameters())
        names = {id(q): name for name, q in params.items()}
        replaced = {
            names[id(q)]: original * c for (q, _), original, c in zip(gated, originals, gates)
        }
        logits = torch.func.functional_call(self.model, {**params, **replaced}, (self.images,))
        loss = torch.nn.functional.cross_entropy(logits, self.labels)
        grads = torch.autograd.grad(loss, gates)
        scores = torch.cat([g.abs().flatten() for g in grads])
        scores = scores / scores.sum()
        kappa = int(round((1.0 - self.args.sparsity) * scores.numel()))
        keep = torch.zeros_like(scores)
        keep[torch.topk(scores, kappa, sorted=False).indices] = 1.0
        masks, start = [], 0
        for q, _ in gated:
            masks.append(keep[start : start + q.numel()].view_as(q))
            start += q.numel()
        return masks

    def infer(self):
        with self.torch.no_grad():
            self.model.eval()
            self.model(self.images).argmax(dim=1)


# ---------------------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------------------


def seconds_per_call(work, operation, calls):
    work.synchronise()
    started = time.perf_counter()
    for _ in range(calls):
        operation()
    work.synchronise()
    return (time.perf_counter() - started) / calls


def summary(values):
    values = sorted(values)
    return {"median": values[len(values) // 2], "min": values[0], "max": values[-1]}


OPERATIONS = ("train", "snip", "infer")

# A pause before each timed call on the CPU: a library's worker threads keep spinning for a
# while after their last task (OpenBLAS's, and OpenMP's in PyTorch), and on a small machine
# they would take cores from the next worker's timed call.
SETTLE_SECONDS = 0.3


def operation_of(work, name):
    return {"train": work.train_step, "snip": work.snip, "infer": work.infer}[name]


def calls_per_repeat(name, steps):
    """SNIP's scoring costs about a training step and a half, and is timed fewer times."""
    return max(1, steps // 4) if name == "snip" else steps


class WorkerError(RuntimeError):
    """A worker could not build its work. usage: the one-line reason when the request itself
    cannot be met (snip_min's UsageError, e.g. a mask that disconnects the network, which
    compaction finds only after SNIP)."""

    def __init__(self, message, usage=None):
        super().__init__(message)
        self.usage = usage


class Worker:
    """A worker process that builds one library's work and times its operations on request.

    The parent writes one JSON command per line to the worker's stdin and reads one JSON
    answer per line from its stdout: {"op": "time", "operation": "train", "calls": k}
    -> {"seconds": s}, the mean seconds per call. While one worker is timed, the others
    wait on their stdin, idle."""

    def __init__(self, library, args):
        command = [
            sys.executable,
            os.path.abspath(__file__),
            "--worker",
            library,
        ] + forwarded_flags(args)
        self.library = library
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        ready = self.answer()
        self.name, self.version, self.multiply_adds = (
            ready["name"],
            ready["version"],
            ready["multiply_adds"],
        )

    def answer(self):
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(
                f"the {self.library} worker stopped (exit status {self.process.wait()})"
            )
        reply = json.loads(line)
        if "error" in reply:
            raise WorkerError(reply["error"], reply.get("usage"))
        return reply

    def ask(self, **command):
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        return self.answer()

    def seconds(self, operation, calls):
        return self.ask(op="time", operation=operation, calls=calls)["seconds"]

    def close(self):
        if self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait(timeout=60)


def forwarded_flags(args):
    """The flags that make a worker build the same work as every other worker."""
    flags = [
        "--model",
        args.model,
        "--batch-size",
        str(args.batch_size),
        "--sparsity",
        str(args.sparsity),
        "--threads",
        str(args.threads),
        "--device",
        args.device,
    ]
    flags += ["--dataset", args.dataset] if args.dataset else []
    return flags + (["--data-dir", args.data_dir] if args.data_dir else [])


def serve(args):
    """The body of a worker process (--worker snip-min|snip-min-compact|torch): build the work,
    then answer the parent's commands until its stdin closes."""
    import numpy

    import models
    import snip_min as sm

    try:
        sm.use_device(args.device)
        work = SnipMinWork(args, sm, models, numpy, compact=args.worker == "snip-min-compact")
        if args.worker == "torch":
            import torch

            torch.set_num_threads(args.threads)
            if args.device == "gpu" and not torch.cuda.is_available():
                raise RuntimeError("PyTorch has no CUDA device")
            work = TorchWork(args, work, sm, torch)  # the snip-min work is only its template
    except Exception as error:  # the parent reports it and goes on
        print(
            json.dumps(
                {
                    "error": f"{args.worker} worker: {type(error).__name__}: {error}",
                    "usage": str(error) if isinstance(error, sm.UsageError) else None,
                }
            ),
            flush=True,
        )
        return 0
    version = __import__("torch").__version__ if args.worker == "torch" else None
    print(
        json.dumps(
            {
                "name": work.name,
                "version": version,
                "multiply_adds": getattr(work, "multiply_adds", None),
            }
        ),
        flush=True,
    )
    for line in sys.stdin:
        command = json.loads(line)
        if command["op"] == "time":
            reply = {
                "seconds": seconds_per_call(
                    work, operation_of(work, command["operation"]), command["calls"]
                )
            }
        elif command["op"] == "torch-profile":
            reply = torch_profile(work, args)
        else:
            reply = {"error": f"unknown command {command['op']!r}"}
        print(json.dumps(reply), flush=True)
    return 0


def measure_speed(workers, args):
    """Time every worker's operations in turn, A B A B ..., and return per library the
    figures' median, min and max, and, for every pair of libraries (a, b), the pairwise
    ratios a / b of each figure with their median, min and max (speeds: a's images/s over
    b's; SNIP: a's seconds over b's)."""
    for worker in workers:  # warm-up: caches, allocator pools, thread pools, CUDA kernels
        for name in OPERATIONS:
            worker.seconds(name, 2)
    steps = args.steps
    if (
        steps is None
    ):  # a second of the fastest worker's training steps per repeat (probed warm), 2 to 1,000
        probe = min(worker.seconds("train", 3) for worker in workers)
        steps = max(2, min(1000, int(1.0 / max(probe, 1e-6))))
    timings = {worker.name: {name: [] for name in OPERATIONS} for worker in workers}
    for _ in range(args.repeats):
        for name in OPERATIONS:
            for worker in workers:
                time.sleep(SETTLE_SECONDS if args.device == "cpu" else 0.0)
                timings[worker.name][name].append(
                    worker.seconds(name, calls_per_repeat(name, steps))
                )
    batch = args.batch_size

    def figures(t):
        return {
            "train_images_per_second": [batch / x for x in t["train"]],
            "snip_seconds": t["snip"],
            "infer_images_per_second": [batch / x for x in t["infer"]],
        }

    per_library = {name: figures(t) for name, t in timings.items()}
    results = {
        name: {key: summary(values) for key, values in f.items()} for name, f in per_library.items()
    }
    ratios = {
        (a, b): {
            key: summary([x / y for x, y in zip(per_library[a][key], per_library[b][key])])
            for key in per_library[a]
        }
        for a in per_library
        for b in per_library
        if a != b
    }
    return results, ratios, steps


def peak_memory(framework, args):
    """Run a fresh process that builds the work and reports how much a few training steps
    raise its peak memory: peak resident memory on the CPU, the allocator's peak on a GPU."""
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--memory-probe",
        framework,
    ] + forwarded_flags(args)
    # A fixed mmap threshold makes glibc give every large array its own mapping, returned to
    # the system when freed (its default threshold grows to 32 MiB and keeps freed arrays in
    # the heap), so resident memory follows the bytes both libraries really hold.
    environment = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072", MALLOC_TRIM_THRESHOLD_="131072")
    result = subprocess.run(command, capture_output=True, text=True, timeout=3600, env=environment)
    if result.returncode != 0:
        raise RuntimeError(f"memory probe for {framework} failed: {result.stderr.strip()[-500:]}")
    return int(result.stdout.strip().splitlines()[-1])


def resident_bytes(field="VmRSS"):
    """The process's resident memory now (VmRSS) or at its peak (VmHWM), in bytes (Linux)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak_resident():
    """Make the peak (VmHWM) start again from the current resident memory (Linux >= 4.0).

    Needed because a child process can inherit its parent's peak through fork and exec."""
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")


def memory_probe(args):
    """The body of peak_memory's subprocess: prints one integer, bytes."""
    import numpy

    import models
    import snip_min as sm

    sm.use_device(args.device)
    work = SnipMinWork(args, sm, models, numpy)
    if args.memory_probe == "torch":
        import torch

        torch.set_num_threads(args.threads)
        work = TorchWork(args, work, sm, torch)
    gpu = args.device == "gpu"
    work.train_step()  # first step: lazily created buffers and thread pools
    if args.memory_probe == "snip-min":
        sm.forget_caches(work.model)  # start from parameters only, as PyTorch does
    work.synchronise()
    if gpu and args.memory_probe == "torch":
        import torch

        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    elif gpu:
        hook = CupyPeakHook(sm.xp)  # counts CuPy's allocations from here on
        hook.__enter__()
        before = 0
    else:
        reset_peak_resident()
        before = resident_bytes()
    for _ in range(3):
        work.train_step()
    work.synchronise()
    if gpu and args.memory_probe == "torch":
        import torch

        peak = torch.cuda.max_memory_allocated() - before
    elif gpu:
        peak = hook.peak - before
        hook.__exit__(None, None, None)
    else:
        peak = resident_bytes("VmHWM") - before
    print(max(peak, 0))


class CupyPeakHook:
    """Track the peak of CuPy's allocated bytes with a memory hook (CuPy keeps no peak)."""

    def __init__(self, cupy):
        from cupy.cuda import memory_hook

        class Hook(memory_hook.MemoryHook):
            name = "PeakHook"

            def __init__(hook):
                hook.in_use, hook.peak = 0, 0

            def malloc_postprocess(hook, device_id, size, mem_size, mem_ptr, pmem_id):
                hook.in_use += mem_size
                hook.peak = max(hook.peak, hook.in_use)

            def free_postprocess(hook, device_id, mem_size, mem_ptr, pmem_id):
                hook.in_use -= mem_size

        self.hook = Hook()

    @property
    def in_use(self):
        return self.hook.in_use

    @property
    def peak(self):
        return self.hook.peak

    def __enter__(self):
        self.hook.__enter__()
        return self

    def __exit__(self, *exc):
        self.hook.__exit__(*exc)


# ---------------------------------------------------------------------------------------
# Profile: where snip-min's training step spends its time
# ---------------------------------------------------------------------------------------


def layer_labels(model, sm):
    """A label for every computing layer (no containers), in forward order: the name of its
    parameters (conv1, fc2) or its type and position (MaxPool2D 3)."""
    labels = {}
    leaves = [layer for layer in sm.layers_of(model) if not layer.children]
    for position, layer in enumerate(leaves, 1):
        if layer.params:
            labels[layer] = layer.params[0].name.rsplit(".", 1)[0]
        else:
            labels[layer] = f"{type(layer).__name__} {position}"
    return labels


def profile(work, args):
    """Seconds per training step spent in each layer's forward and backward pass, the loss
    (reported as forward) and the SGD update (as backward: it runs after it), medians over
    repeats; and the whole step, timed without the probes.

    Each layer's forward and backward are wrapped, on that layer object only, by a timer
    that synchronises the device before reading the clock, so a GPU's asynchronous work is
    charged to the layer that queued it (and the step runs slower than it would unprobed).
    """
    sm = work.sm
    labels = layer_labels(work.model, sm)
    spent = {}

    def timed(key, function):
        def wrapper(*arguments):
            work.synchronise()
            started = time.perf_counter()
            result = function(*arguments)
            work.synchronise()
            spent[key] = spent.get(key, 0.0) + time.perf_counter() - started
            return result

        return wrapper

    steps = args.steps or 20
    seconds_per_call(work, work.train_step, 3)  # warm-up
    whole = [seconds_per_call(work, work.train_step, steps) for _ in range(args.repeats)]
    for layer, label in labels.items():
        layer.forward = timed((label, "forward"), layer.forward)
        layer.backward = timed((label, "backward"), layer.backward)
    loss_function, update = sm.softmax_cross_entropy, work.optimiser.step
    sm.softmax_cross_entropy = timed(("loss", "forward"), loss_function)
    work.optimiser.step = timed(("SGD update", "backward"), update)
    try:
        rounds = []
        for _ in range(args.repeats):
            spent.clear()
            seconds_per_call(work, work.train_step, steps)
            rounds.append({key: seconds / steps for key, seconds in spent.items()})
    finally:  # take the probes off again
        for layer in labels:
            del layer.forward, layer.backward
        sm.softmax_cross_entropy = loss_function
        del work.optimiser.step
    rows = []
    for label in list(labels.values()) + ["loss", "SGD update"]:
        rows.append(
            {
                "part": label,
                **{
                    pass_: summary([r[(label, pass_)] for r in rounds])["median"]
                    for pass_ in ("forward", "backward")
                    if (label, pass_) in rounds[0]
                },
            }
        )
    return {
        "model": args.model,
        "batch_size": args.batch_size,
        "sparsity": args.sparsity,
        "device": args.device,
        "threads": args.threads,
        "repeats": args.repeats,
        "steps_per_repeat": steps,
        "step_seconds": summary(whole)["median"],
        "parts": rows,
    }


def torch_profile(work, args, rows=8):
    """PyTorch's own profiler on the same training step: the operators that take the most
    time (their own time, without what they call), milliseconds per step."""
    torch = work.torch
    from torch.profiler import ProfilerActivity

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if args.device == "gpu" else [])
    steps = args.steps or 20
    seconds_per_call(work, work.train_step, 3)  # warm-up
    with torch.profiler.profile(activities=activities) as recording:
        seconds_per_call(work, work.train_step, steps)
    key = "self_device_time_total" if args.device == "gpu" else "self_cpu_time_total"
    operators = sorted(recording.key_averages(), key=lambda event: -getattr(event, key))
    return {
        "steps": steps,
        "operators": [
            {"operator": event.key, "milliseconds_per_step": getattr(event, key) / 1e3 / steps}
            for event in operators[:rows]
        ],
    }


def print_profile(report):
    print(
        f"{report['model']}, batch {report['batch_size']}, sparsity {report['sparsity']:g}, "
        f"{report['device']}, {report['threads']} threads: milliseconds per training step, "
        f"median of {report['repeats']} repeats of {report['steps_per_repeat']} steps"
    )
    print(f"{'':<16} {'forward':>9} {'backward':>9} {'share':>7}")
    probed = sum(row.get("forward", 0) + row.get("backward", 0) for row in report["parts"])
    for row in report["parts"]:
        both = row.get("forward", 0) + row.get("backward", 0)
        cells = [
            f"{row[p] * 1e3:9.2f}" if p in row else f"{'':>9}" for p in ("forward", "backward")
        ]
        print(f"{row['part']:<16} {cells[0]} {cells[1]} {both / probed:7.1%}")
    print(f"{'sum of the parts':<16} {probed * 1e3:19.2f}")
    print(f"{'whole step':<16} {report['step_seconds'] * 1e3:19.2f}   (timed without the probes)")
    if "torch" in report:
        print(
            f"PyTorch's profiler on the same step, the operators taking most time "
            f"(milliseconds per step, {report['torch']['steps']} steps):"
        )
        for row in report["torch"]["operators"]:
            print(f"  {row['operator']:<48} {row['milliseconds_per_step']:8.2f}")


# ---------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------


def main(argv=None):
    """The command: the benchmark's exit status, every failure one line (failures.py)."""
    args = parse_arguments(argv)
    set_threads(args.threads)  # before NumPy starts
    return failures.run_reported("bench.py", lambda: benchmark(args), args.debug)


def benchmark(args):
    """Measure, and print the report (or the profile)."""
    import numpy

    import models
    import snip_min as sm

    sm.use_device(args.device)
    if args.model not in models.MODELS:
        raise sm.UsageError(
            f"unknown model {args.model!r} (choose from {', '.join(sorted(models.MODELS))})"
        )
    info = models.MODELS[args.model]
    dataset = args.dataset or info.dataset
    if args.batch_size is None:
        args.batch_size = 100 if dataset == "mnist" else 128
    if args.memory_probe:
        memory_probe(args)
        return 0
    if args.worker:
        return serve(args)
    if args.compact:  # refused before any worker is built, as snip_min.py refuses it
        from extensions import compaction

        compaction.chain_of(models.build(args.model, dataset))
    data_description = "random images"
    if args.data_dir:
        import data

        data_description = (
            f"the first {args.batch_size:,} images of "
            + real_batch(dataset, args.data_dir, args.batch_size, data.print_to_stderr)[2]
        )

    with_torch = not args.no_torch and importlib.util.find_spec("torch") is not None
    if args.profile:
        report = profile(
            SnipMinWork(args, sm, models, numpy), args
        )  # snip-min alone in this process
        if with_torch:
            torch_worker = start_worker("torch", args)
            if torch_worker is not None:
                report["torch"] = torch_worker.ask(op="torch-profile")
                torch_worker.close()
        if args.json:
            print(json.dumps(report, indent=2))
        else:
            print_profile(report)
        return 0

    libraries = (
        ["snip-min"]
        + (["torch"] if with_torch else [])
        + (["snip-min-compact"] if args.compact else [])
    )
    workers = []
    try:
        for library in libraries:
            worker = start_worker(library, args, required=library != "torch")
            if worker is not None:
                workers.append(worker)
    except WorkerError as error:
        for worker in workers:
            worker.close()
        if error.usage is None:
            raise
        raise sm.UsageError(error.usage) from None
    try:
        speed, ratios, steps = measure_speed(workers, args)
    finally:
        for worker in workers:
            worker.close()
    torch_version = next((worker.version for worker in workers if worker.library == "torch"), None)
    memory = {}
    if not args.no_memory:
        memory["snip-min"] = peak_memory("snip-min", args)
        if torch_version:
            memory["PyTorch"] = peak_memory("torch", args)

    ours = speed["snip-min"]
    report = {
        "model": args.model,
        "dataset": dataset,
        "data": data_description,
        "batch_size": args.batch_size,
        "sparsity": args.sparsity,
        "device": args.device,
        "threads": args.threads,
        "repeats": args.repeats,
        "steps_per_repeat": steps,
        "method": "each library in its own worker process, timed in turn; ratios are the median "
        "(min, max) of the pairwise ratios of the repeats",
        "versions": {
            "python": platform.python_version(),
            "numpy": numpy.__version__,
            "cupy": sm.xp.__version__ if args.device == "gpu" else None,
            "torch": torch_version,
        },
        "machine": platform.processor() or platform.machine(),
        "train_images_per_second": ours["train_images_per_second"]["median"],
        "snip_seconds": ours["snip_seconds"]["median"],
        "infer_images_per_second": ours["infer_images_per_second"]["median"],
        "peak_memory_bytes": memory.get("snip-min"),
        "spread": ours,
    }
    if torch_version:
        theirs = speed["PyTorch"]
        report["torch"] = {
            "train_images_per_second": theirs["train_images_per_second"]["median"],
            "snip_seconds": theirs["snip_seconds"]["median"],
            "infer_images_per_second": theirs["infer_images_per_second"]["median"],
            "peak_memory_bytes": memory.get("PyTorch"),
            "spread": theirs,
        }
        report["ratio_spread"] = ratios[("snip-min", "PyTorch")]
        report["ratios"] = {key: spread["median"] for key, spread in report["ratio_spread"].items()}
        if memory.get("snip-min") is not None and memory.get("PyTorch"):
            report["ratios"]["peak_memory_bytes"] = memory["snip-min"] / memory["PyTorch"]
    if args.compact:
        compacted = speed["snip-min, compacted"]
        report["compact"] = {
            key: compacted[key]["median"]
            for key in ("train_images_per_second", "infer_images_per_second")
        }
        report["compact"]["spread"] = compacted
        full, smaller = next(
            worker.multiply_adds for worker in workers if worker.library == "snip-min-compact"
        )
        report["compact"]["multiply_adds"] = {"full": full, "compact": smaller}
        report["compact"]["over_masked"] = ratios[("snip-min, compacted", "snip-min")]
        if torch_version:
            report["compact"]["over_torch"] = ratios[("snip-min, compacted", "PyTorch")]
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
    return 0


def start_worker(library, args, required=False):
    """A started Worker, or None (with a note on stderr) if its library cannot run here."""
    try:
        return Worker(library, args)
    except RuntimeError as error:
        if required:
            raise
        print(f"bench.py: note: {error}; measuring without it", file=sys.stderr)
        return None


def print_table(report):
    print(
        f"{report['model']} ({report['dataset']}, {report['data']}), "
        f"batch {report['batch_size']}, sparsity {report['sparsity']:g}, {report['device']}, "
        f"{report['threads']} threads; "
        f"median (min-max) of {report['repeats']} repeats"
    )
    rows = [
        ("training step (images/s)", "train_images_per_second", "{:,.0f}", "higher is better"),
        ("SNIP scoring, one batch (s)", "snip_seconds", "{:.4f}", "lower is better"),
        ("inference (images/s)", "infer_images_per_second", "{:,.0f}", "higher is better"),
    ]
    has_torch = "torch" in report
    header = f"{'':<30} {'snip-min':>26}"
    if has_torch:
        header += f" {'PyTorch':>26} {'snip-min / PyTorch, pairwise':>30}"
    print(header)

    def cell(s, fmt):
        return f"{fmt.format(s['median'])} ({fmt.format(s['min'])}-{fmt.format(s['max'])})"

    for label, key, fmt, better in rows:
        line = f"{label:<30} {cell(report['spread'][key], fmt):>26}"
        if has_torch:
            line += (
                f" {cell(report['torch']['spread'][key], fmt):>26}"
                f" {cell(report['ratio_spread'][key], '{:.2f}'):>18} ({better})"
            )
        print(line)
    if report["peak_memory_bytes"] is not None:
        line = f"{'peak memory of a step (MiB)':<30} {report['peak_memory_bytes'] / 2**20:>26,.1f}"
        if has_torch and report["torch"]["peak_memory_bytes"]:
            line += (
                f" {report['torch']['peak_memory_bytes'] / 2**20:>26,.1f}"
                f" {report['ratios']['peak_memory_bytes']:>18.2f} (lower is better)"
            )
        print(line)
    if "compact" in report:
        compact = report["compact"]
        adds = compact["multiply_adds"]
        print(
            f"compacted: {adds['compact']:,} multiply-adds per example in the layers with weights, "
            f"against {adds['full']:,} ({adds['full'] / adds['compact']:.2f}x fewer)"
        )
        for label, key in (
            ("compacted: training (images/s)", "train_images_per_second"),
            ("compacted: inference (images/s)", "infer_images_per_second"),
        ):
            line = (
                f"{label:<30} {cell(compact['spread'][key], '{:,.0f}'):>26}   "
                f"{cell(compact['over_masked'][key], '{:.2f}')} x the masked network"
            )
            if "over_torch" in compact:
                line += f", {cell(compact['over_torch'][key], '{:.2f}')} x PyTorch's"
            print(line)
    if has_torch or "compact" in report:
        print(
            "each network in its own process, timed in turn; a ratio is the median (min-max) of "
            "the repeats' pairwise ratios"
        )
    versions = ", ".join(f"{k} {v}" for k, v in report["versions"].items() if v)
    print(f"{versions}; {report['machine']}")


if __name__ == "__main__":
    sys.exit(main())
