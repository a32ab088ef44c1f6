"""snip-min: SNIP, single-shot network pruning at initialisation, from scratch in NumPy.

    N. Lee, T. Ajanthan, P. H. S. Torr. "SNIP: Single-shot Network Pruning based on
    Connection Sensitivity". ICLR 2019.

SNIP puts a gate c_j = 1 on every connection w_j, measures how much the loss on ONE
mini-batch reacts to each gate, g_j = dL/dc_j = w_j * dL/dw_j, keeps the kappa connections
with the largest |g_j| (one ranking across all layers) and then trains the sparse network
w * c in the ordinary way with c held fixed.

This file is the method, meant to be read top to bottom in one sitting: every computation of
`python snip_min.py --model lenet5 --sparsity 0.99`, from the initial weights to the test
error (the command line, extensions/cli.py, loads the data and calls these pieces in turn).
It is also a library: everything else in the project imports it, and it imports nothing of
the project but data.py (besides the standard library and NumPy or CuPy; its main block
hands the command over to extensions/cli.py).

    1. backend          NumPy or CuPy, one switch (--device cpu|gpu), and when a GPU waits
    2. parameters and gates   arrays w with optional gates c; the forward pass uses w * c
    3. layers           forward/backward pairs for the LeNets: linear, conv (im2col + one
                        matmul), max-pooling, ReLU, flatten; Sequential chains them
    4. loss             softmax cross-entropy
    5. initialisation   variance scaling (He, Glorot, LeCun), random and truncated normal
    6. SNIP             connection sensitivity, global top-k, masks; the random baseline
    7. optimiser        SGD with momentum and weight decay that never revives a pruned
                        weight; gradient clipping
    8. training and evaluation   mini-batches, validation, test error; a training state
                        that can stop after any step and resume bit-exactly

There is no autograd: every backward pass is written out, with the one-line derivation it
implements. Around this file: data.py (the datasets) and models.py (the networks); in
extensions/, one module per thing the project adds (the zoo's layers, recurrent layers,
SNIP's successors, sanity checks, the authors' protocol, compaction, checkpoints, flag
types, a PyTorch twin of a network) and cli.py, the command line.

Shape legend (one letter, one meaning, in every file of the project)
    N       batch size                    classes   number of classes
    H, W    height, width of an input     OH, OW    height, width of an output
    C       input channels                F         output channels (filters)
    KH, KW  kernel height, width          D         features of a flat activation (or of one step)
    T       time steps of a sequence      U         units of a recurrent layer's hidden state
    S       examples in a split (train, validation or test) of a dataset
An index is named after the dimension it runs over: n over N, oh and ow over OH and OW, kh
and kw over KH and KW, ch over C, f over F. The letters w, c, g and s are the paper's: a
weight, its gate, its connection sensitivity and its normalised score.
Activations are NHWC (channels last) and convolution weights are (KH, KW, C, F), the
layout of the authors' TensorFlow code; linear weights are (D_in, D_out). Channels last
makes a convolution one matrix product with no transposes (see Conv2D).
"""

import contextlib
import math
import signal
import sys
import time

if __name__ == "__main__":  # a Ctrl-C while NumPy loads: exit status 130, no traceback
    signal.signal(signal.SIGINT, lambda number, frame: sys.exit(130))

import numpy  # noqa: E402  (after the line above, which must come before the slow imports)

import data

# ======================================================================================
# 1. Backend: every array operation below goes through `xp`, which is NumPy or CuPy.
#
# On a GPU, CuPy queues each operation and returns at once; the host waits for the
# device ("synchronises") only when it needs a value: float(), int(), bool(), .get(),
# printing an array. So the training step never asks for one: losses and accuracies are
# summed on the device and read every 20 steps, before a checkpoint and at the end of an
# epoch (see fit).
# ======================================================================================

xp = numpy  # rebound by use_device('gpu'); always look it up as snip_min.xp at call time


class UsageError(Exception):
    """A problem with how the program was asked to run; the message is one line."""


class Diverged(Exception):
    """Training produced a non-finite loss; the message is one line."""


class Interrupted(Exception):
    """Training stopped on request (Ctrl-C, SIGTERM) after the step it was in (and, if fit
    was given one, a checkpoint)."""


def use_device(device):
    """Select the array library: 'cpu' -> NumPy, 'gpu' -> CuPy on the current GPU."""
    global xp
    if device == "cpu":
        xp = numpy
        return
    if device != "gpu":
        raise UsageError(f"unknown device {device!r} (choose cpu or gpu)")
    try:
        import cupy
    except ImportError:
        raise UsageError(
            "--device gpu needs CuPy, which is not installed "
            "(pip install cupy-cuda12x, see docs/gpu.md) or use --device cpu"
        )
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            raise RuntimeError("no CUDA device found")
        float(cupy.arange(4, dtype=cupy.float32).sum())  # compile and run one kernel
    except Exception as error:  # CUDA errors come in many types; all mean "no usable GPU"
        first_line = (
            str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        )
        raise UsageError(f"--device gpu: no usable GPU ({first_line}); use --device cpu")
    xp = cupy


def current_device():
    """'cpu' while xp is NumPy, 'gpu' while it is CuPy."""
    return "cpu" if xp is numpy else "gpu"


def to_host(array):
    """A NumPy copy of a NumPy or CuPy array (CuPy arrays have .get()).

    On a GPU this waits for the device: the copy needs the finished values. The training
    loop therefore copies as little as it can, as rarely as it can (see fit)."""
    return array.get() if hasattr(array, "get") else numpy.asarray(array)


def host_values(*scalars):
    """Device scalars (0-d arrays, or Python numbers) as a list of Python floats, fetched with
    ONE wait for the device instead of one per value."""
    if not scalars:
        return []
    return to_host(xp.stack([xp.asarray(value, dtype=xp.float64) for value in scalars])).tolist()


def synchronise():
    """Wait until the device has finished every queued operation (nothing to wait for on
    NumPy). A GPU runs its work asynchronously, so a clock read without this measures how
    fast the work was queued, not how fast it ran."""
    if xp is not numpy:
        xp.cuda.get_current_stream().synchronize()


def release_pinned_memory():
    """Give back the page-locked host memory that copies to the device were staged in.

    CuPy copies a host array to the GPU through a pinned (page-locked) staging buffer, and
    its pinned pool keeps that buffer afterwards for the next copy: after a whole dataset
    has gone to the device, as much host memory as the dataset (about 1.3 GB for
    Tiny-ImageNet), locked. This waits for the copies to finish (once) and empties the pool.
    Nothing to do on NumPy."""
    if xp is not numpy:
        synchronise()
        xp.get_default_pinned_memory_pool().free_all_blocks()


# ======================================================================================
# 2. Parameters and gates
# ======================================================================================


class Param:
    """One learnable array w, optionally gated by c (the paper's mask, entries 0 or 1).

    The forward pass uses w * c. A backward pass stores grad = dL/d(w * c), and both
    derivatives the method needs follow from it by the chain rule:
        dL/dw = c * grad     what the optimiser uses, zero wherever c = 0
        dL/dc = w * grad     the connection sensitivity g of SNIP (taken at c = 1)

    kind: 'weight' or 'bias' of a conv/linear/recurrent layer (the candidates for pruning),
          'scale' or 'shift' of a batch norm (learned, never pruned),
          'running_mean' or 'running_var' of a batch norm (statistics, not learned).
    role: for a layer with two Params of one kind (a recurrent layer's input and recurrent
          weights), the name that tells them apart; parts: for a Param made of blocks (one
          per gate), [(label, index)] with value[index] the block, for the pruning table.
    """

    LEARNED = ("weight", "bias", "scale", "shift")

    def __init__(self, name, shape, kind, role=None, parts=None):
        self.name = name  # e.g. 'conv1.weight'; models.py assigns final names
        self.shape = tuple(shape)
        self.kind = kind
        self.role = role  # a name of its own among its layer's Params of the same kind
        self.parts = parts  # [(label, index)]: blocks shown as rows of their own (gates)
        self.value = None  # w, an xp array once initialise() has run
        self.mask = None  # c, same shape and dtype as w, or None: not gated
        self.grad = None  # dL/d(w * c), written by the owning layer's backward

    @property
    def learned(self):
        return self.kind in self.LEARNED

    @property
    def size(self):
        return math.prod(self.shape)

    def masked(self):
        """w * c, the array the forward pass computes with."""
        return self.value if self.mask is None else self.value * self.mask


# ======================================================================================
# 3. Layers
#
# A layer is a forward/backward pair sharing a cache, as in CS231n's layers.py:
#     y = layer.forward(x, train)     leaves in self.cache what backward will need
#     dx = layer.backward(dy)         takes the cache, stores dL/d(param), returns dL/dx
# Backward *takes* the cache (take_cache leaves None behind), so a layer's activations are
# freed as soon as its gradient is computed, as autograd frees its saved tensors.
# A forward pass that no backward pass follows (an evaluation) keeps nothing: inside
# `with forward_only():` the switch BACKWARD_FOLLOWS is False, and every layer's forward
# reads it (`if BACKWARD_FOLLOWS: self.cache = ...`) before it stores a cache. Each
# activation is then freed as soon as the next layer has read it, as under PyTorch's
# torch.no_grad(): an evaluation needs the memory of about two activations at a time, not
# of every layer's cache at once. Outside the block (training, SNIP's scoring, which
# differentiates) every forward keeps its cache.
# `train` is True in a training step and False elsewhere (batch norm, in
# extensions/zoo_layers.py, uses it). Containers (Sequential here; Residual and Concat in
# extensions/zoo_layers.py) are layers too, so a whole network is one layer. Here are the
# layers the LeNets need; the model zoo adds its own in extensions/zoo_layers.py and
# extensions/recurrent.py, written the same way.
# ======================================================================================

BACKWARD_FOLLOWS = True  # False inside forward_only(): forward passes then keep no cache


@contextlib.contextmanager
def forward_only():
    """Within the block, forward passes keep no cache: no backward pass will follow them."""
    global BACKWARD_FOLLOWS
    saved, BACKWARD_FOLLOWS = BACKWARD_FOLLOWS, False
    try:
        yield
    finally:
        BACKWARD_FOLLOWS = saved


class Layer:
    params = ()  # the Params this layer owns directly
    children = ()  # the layers a container holds
    cache = None  # what forward leaves for backward
    only_rearranges = False  # True for a layer that only reshapes or selects its input (Flatten)

    def forward(self, x, train):
        raise NotImplementedError

    def backward(self, dout):
        raise NotImplementedError

    def take_cache(self):
        """Hand the forward pass's cache to backward, keeping no reference to it."""
        cache, self.cache = self.cache, None
        if cache is None:
            raise RuntimeError(
                f"{type(self).__name__}.backward: no cache to take (its forward pass ran "
                f"inside forward_only(), or the cache was taken already)"
            )
        return cache


def layers_of(layer):
    """Every layer inside `layer`, itself first, in forward order."""
    yield layer
    for child in layer.children:
        yield from layers_of(child)


def parameters_of(layer):
    """Every Param inside `layer`, in forward order."""
    return [p for each in layers_of(layer) for p in each.params]


def forget_caches(layer):
    """Drop every cache inside `layer`: after a forward pass that no backward will follow."""
    for each in layers_of(layer):
        each.cache = None


def skip_input_gradient(network):
    """Tell the network's first computing layer that nobody needs dL/d(input): it is data.

    Only for speed (the plain way computes dL/d(input) and throws it away): it saves that
    layer's input-gradient product (and, for a convolution, its col2im). Its backward
    returns None, and Sequential stops there. Leading layers that only rearrange their input
    (Flatten, and recurrent.AsSequence and compaction.Gather) are passed over.
    """
    layer = network
    while isinstance(layer, Sequential):
        layer = next(child for child in layer.children if not child.only_rearranges)
    if hasattr(layer, "needs_input_gradient"):
        layer.needs_input_gradient = False
    return network


class Sequential(Layer):
    """Layers applied one after another: y = f_n(... f_2(f_1(x)))."""

    def __init__(self, *layers):
        self.children = list(layers)

    def forward(self, x, train):
        for layer in self.children:
            x = layer.forward(x, train)
        return x

    def backward(self, dout):
        # chain rule: walk the layers in reverse, each turning dL/d(output) into dL/d(input)
        for index in reversed(range(len(self.children))):
            dout = self.children[index].backward(dout)
            if dout is None:  # a first layer that skipped its input gradient: the layers
                for earlier in self.children[:index]:  # before it only rearrange the data,
                    forget_caches(earlier)  # and need no backward
                return None
        return dout


class Linear(Layer):
    """y = x @ w + b.   x: (N, D_in), w: (D_in, D_out), b: (D_out,) -> y: (N, D_out); with
    gates, w * c and b * c in place of w and b (Param.masked), so that the gradients it
    stores are dL/d(w * c) and dL/d(b * c)."""

    needs_input_gradient = True  # False for a network's first layer: its input is data

    def __init__(self, d_in, d_out, bias=True):
        self.weight = Param("weight", (d_in, d_out), "weight")
        self.bias = Param("bias", (d_out,), "bias") if bias else None
        self.params = [p for p in (self.weight, self.bias) if p is not None]

    def forward(self, x, train):  # x: (N, D_in)
        wc = self.weight.masked()  # (D_in, D_out), w * c
        y = x @ wc  # (N, D_out)
        if self.bias is not None:
            y += self.bias.masked()
        if BACKWARD_FOLLOWS:
            self.cache = (x, wc)
        return y

    def backward(self, dout):  # dout: (N, D_out)
        x, wc = self.take_cache()
        # forward: y = x wc + bc, so dL/dwc = x^T dL/dy, dL/dbc = sum_n dL/dy,
        # and dL/dx = dL/dy wc^T
        self.weight.grad = x.T @ dout  # (D_in, D_out)
        if self.bias is not None:
            self.bias.grad = sum_rows(dout)  # (D_out,)
        if not self.needs_input_gradient:
            return None
        return dout @ wc.T  # (N, D_in)


def padding_amounts(padding, height, width, kernel_h, kernel_w, stride):
    """(top, bottom, left, right) zero rows/columns for a padding spec.

    'valid': none. 'same': TensorFlow's rule, output = ceil(input / stride), the odd row or
    column going to the bottom/right. An int: that many on every side. A 4-tuple: as given.
    """
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding == "same":

        def split(size, kernel):
            total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
            return total // 2, total - total // 2

        return split(height, kernel_h) + split(width, kernel_w)
    if isinstance(padding, int):
        return (padding,) * 4
    return tuple(padding)


def pad_image(x, pads, value=0.0):
    """x: (N, H, W, C) -> (N, top + H + bottom, left + W + right, C), borders set to value."""
    top, bottom, left, right = pads
    if not any(pads):
        return x
    n, height, width, channels = x.shape
    shape = (n, top + height + bottom, left + width + right, channels)
    padded = xp.full(shape, value, dtype=x.dtype)
    padded[:, top : top + height, left : left + width, :] = x
    return padded


def kernel_offset_view(x, kh, kw, stride, out_h, out_w):
    """The input pixels that kernel tap (kh, kw) meets at every output position.

    x: (N, H, W, C) -> a strided view (N, OH, OW, C),
        view[n, oh, ow] = x[n, oh*stride + kh, ow*stride + kw].
    """
    rows = slice(kh, kh + stride * (out_h - 1) + 1, stride)
    columns = slice(kw, kw + stride * (out_w - 1) + 1, stride)
    return x[:, rows, columns, :]


def receptive_fields(x, kernel_h, kernel_w, stride, out_h, out_w):
    """Every output pixel's receptive field, as a VIEW of x (nothing is copied).

    x: (N, H, W, C) -> (N, OH, OW, KH, KW, C),
        fields[n, oh, ow, kh, kw, ch] = x[n, oh*stride + kh, ow*stride + kw, ch].
    Moving one output pixel right moves `stride` pixels right in x, moving one kernel tap
    right moves one pixel: the view only needs the right step sizes (strides, in bytes).
    """
    n, _, _, channels = x.shape
    step_n, step_h, step_w, step_c = x.strides
    return xp.lib.stride_tricks.as_strided(
        x,
        shape=(n, out_h, out_w, kernel_h, kernel_w, channels),
        strides=(step_n, stride * step_h, stride * step_w, step_h, step_w, step_c),
    )


def im2col(x, kernel_h, kernel_w, stride, out_h, out_w):
    """Receptive fields as the rows of a matrix: x (N, H, W, C) -> col (N*OH*OW, KH*KW*C).

    One copy of the view above: in NHWC each field's (KW, C) rows are contiguous in x, so
    the copy moves runs of KW*C numbers. The single-channel branch is only for speed (plain:
    the last two lines, for any C): with one input channel (an MNIST image) those runs are
    only KW long, so instead each kernel tap copies its whole (N, OH, OW) slab, runs of OW
    numbers (at stride 1), into a tap-major (KH*KW, N*OH*OW) array. Its transpose is the
    same col matrix, stored the other way round; matrix products read either order at full
    speed, so nothing downstream needs to know.
    """
    n, _, _, channels = x.shape
    if channels == 1:
        col_t = xp.empty((kernel_h, kernel_w, n, out_h, out_w), dtype=x.dtype)
        for kh in range(kernel_h):
            for kw in range(kernel_w):
                col_t[kh, kw] = kernel_offset_view(x, kh, kw, stride, out_h, out_w)[..., 0]
        return col_t.reshape(kernel_h * kernel_w, -1).T
    fields = receptive_fields(x, kernel_h, kernel_w, stride, out_h, out_w)
    return xp.ascontiguousarray(fields).reshape(n * out_h * out_w, -1)


def sum_rows(matrix):
    """matrix (rows, columns) -> (columns,), the sum of its rows, as ones (rows,) @ matrix.

    Only for speed; the plain equivalent is matrix.sum(axis=0). How much faster depends on
    the shape and on the BLAS: with NumPy 2.4's OpenBLAS on one thread, 13 times on conv1's
    (57,600, 20) gradient and 1.2 times on a (100, 500) one.
    """
    return xp.ones(matrix.shape[0], dtype=matrix.dtype) @ matrix


def col2im(tap_block, input_shape, kernel_h, kernel_w, stride, dtype):
    """The adjoint of im2col: add what each kernel tap produced back onto the pixels it read.

    tap_block(kh, kw) returns the (N, OH, OW, C) block for tap (kh, kw), i.e. the column
    block col[:, :, :, kh, kw, :] of a (N, OH, OW, KH, KW, C) array. Pixels seen by several
    taps receive the sum, which makes <im2col(x), y> = <x, col2im(y)> for all x, y. The loop
    runs over the KH*KW taps only, each adding one strided slice of the whole batch. The tiling case
    is only for speed (plain: start from zeros and add, as the other case does): when the
    windows tile the input (stride = kernel, as in a 2x2 pooling), every pixel is seen by
    exactly one tap, so each add is a plain write into an uninitialised array.
    """
    _, height, width, _ = input_shape
    tiles = stride == kernel_h == kernel_w and height % stride == 0 and width % stride == 0
    dx = xp.empty(input_shape, dtype=dtype) if tiles else xp.zeros(input_shape, dtype=dtype)
    for kh in range(kernel_h):
        for kw in range(kernel_w):
            block = tap_block(kh, kw)
            pixels = kernel_offset_view(dx, kh, kw, stride, block.shape[1], block.shape[2])
            if tiles:
                pixels[...] = block  # no other tap reads these pixels
            else:
                pixels += block
    return dx


# the most col matrix a convolution builds at once (unless one example's alone is larger)
IM2COL_BUDGET_BYTES = 64 * 2**20
KEEP_COL_BYTES = 32 * 2**20  # a col this small is kept for the backward pass


class Conv2D(Layer):
    """2-D convolution (cross-correlation, as in every framework), zero padding.

    x: (N, H, W, C), w: (KH, KW, C, F), b: (F,) -> y: (N, OH, OW, F) with
        y[n, oh, ow, f] = sum_{kh, kw, ch} x_pad[n, oh*stride + kh, ow*stride + kw, ch]
                                           * w[kh, kw, ch, f]  + b[f],
        OH = (H + pad_top + pad_bottom - KH) // stride + 1, likewise OW; with gates, w * c
        and b * c in place of w and b, as in Linear.
    Computed as im2col + one matrix product:
        (N*OH*OW, KH*KW*C) @ (KH*KW*C, F) = (N*OH*OW, F), which is already NHWC.
    Memory: col holds every (padded) input pixel once per kernel tap that reads it, up to
    KH*KW times x_pad (LeNet-5-Caffe's conv1: 25 taps, 24 x 24 of 28 x 28 positions, about 18
    times its input). The backward pass needs col again (for dL/dW), so a small one (up to
    KEEP_COL_BYTES) is kept; a larger one is rebuilt there from the padded input: one more
    copy, instead of holding that much memory from the forward pass to the backward.
    Building col a few examples at a time, when a whole batch's would exceed
    IM2COL_BUDGET_BYTES, is only for memory (plain: one im2col of the whole batch).
    padding: 'valid', 'same', an int, or (top, bottom, left, right).
    """

    needs_input_gradient = True  # False for a network's first layer: its input is data

    def __init__(self, channels, filters, kernel, stride=1, padding="valid", bias=True):
        self.kernel_h, self.kernel_w = (kernel, kernel) if isinstance(kernel, int) else kernel
        self.stride, self.padding = stride, padding
        shape = (self.kernel_h, self.kernel_w, channels, filters)  # (KH, KW, C, F)
        self.weight = Param("weight", shape, "weight")
        self.bias = Param("bias", (filters,), "bias") if bias else None
        self.params = [p for p in (self.weight, self.bias) if p is not None]

    def columns(self, x_pad, start, stop, out_h, out_w):
        """im2col of examples start..stop-1 of the padded input."""
        return im2col(x_pad[start:stop], self.kernel_h, self.kernel_w, self.stride, out_h, out_w)

    def forward(self, x, train):
        n, height, width, _ = x.shape
        pads = padding_amounts(
            self.padding, height, width, self.kernel_h, self.kernel_w, self.stride
        )
        x_pad = pad_image(x, pads)  # (N, H + top + bottom, W + left + right, C)
        out_h = (x_pad.shape[1] - self.kernel_h) // self.stride + 1
        out_w = (x_pad.shape[2] - self.kernel_w) // self.stride + 1
        wc = self.weight.masked()  # (KH, KW, C, F), w * c
        wc_matrix = wc.reshape(-1, wc.shape[-1])  # (KH*KW*C, F)
        col_bytes_per_example = out_h * out_w * wc_matrix.shape[0] * x.itemsize
        self.group = max(1, min(n, IM2COL_BUDGET_BYTES // col_bytes_per_example))
        if self.group == n:  # the whole batch at once
            col = self.columns(x_pad, 0, n, out_h, out_w)  # (N*OH*OW, KH*KW*C)
            y = col @ wc_matrix  # (N*OH*OW, F)
        else:  # a few examples at a time
            col = None
            y = xp.empty((n * out_h * out_w, wc_matrix.shape[1]), dtype=x.dtype)
            per = out_h * out_w  # rows of col (and of y) per example
            for start in range(0, n, self.group):
                stop = min(start + self.group, n)
                group_col = self.columns(x_pad, start, stop, out_h, out_w)
                y[start * per : stop * per] = group_col @ wc_matrix
        if self.bias is not None:
            # y += b, but added to each example's whole (OH*OW*F) output at once: NumPy
            # broadcasting b over rows of only F numbers would loop over N*OH*OW short rows
            per_example = y.reshape(n, out_h * out_w * y.shape[1])  # a view of y
            per_example += xp.tile(self.bias.masked(), out_h * out_w)
        if BACKWARD_FOLLOWS:
            keep_col = col is not None and col.nbytes <= KEEP_COL_BYTES  # else rebuilt
            self.cache = (
                x.shape,
                pads,
                wc,
                col if keep_col else None,
                x_pad.shape,
                None if keep_col else x_pad,
            )
        return y.reshape(n, out_h, out_w, -1)  # (N, OH, OW, F)

    def backward(self, dout):  # (N, OH, OW, F)
        x_shape, (top, _, left, _), wc, col, x_pad_shape, x_pad = self.take_cache()
        n, out_h, out_w, filters = dout.shape
        dy = dout.reshape(-1, filters)  # (N*OH*OW, F)
        # forward: y = col wc + bc, the linear layer again with col in the role of x
        if col is not None:
            dwc = col.T @ dy  # (KH*KW*C, F)
        else:  # rebuild col, a group of examples at a time
            per = out_h * out_w
            dwc = sum(
                self.columns(x_pad, start, min(start + self.group, n), out_h, out_w).T
                @ dy[start * per : min(start + self.group, n) * per]
                for start in range(0, n, self.group)
            )
        self.weight.grad = dwc.reshape(self.weight.shape)  # (KH, KW, C, F)
        if self.bias is not None:
            self.bias.grad = sum_rows(dy)  # (F,)
        if not self.needs_input_gradient:
            return None

        # and dL/dcol = dy wc^T, so dL/dx_pad = col2im(dy wc^T). Tap (kh, kw) owns the columns
        # dy wc[kh, kw]^T: computing them tap by tap never builds the whole
        # (N*OH*OW, KH*KW*C) array, and each tap's block is contiguous when it is added onto
        # the image.
        def tap_block(kh, kw):  # (N, OH, OW, C)
            return (dy @ wc[kh, kw].T).reshape(n, out_h, out_w, -1)

        dx_pad = col2im(
            tap_block, x_pad_shape, self.kernel_h, self.kernel_w, self.stride, dout.dtype
        )
        _, height, width, _ = x_shape
        return dx_pad[:, top : top + height, left : left + width, :]  # (N, H, W, C)


class MaxPool2D(Layer):
    """Maximum over each kernel x kernel window: x (N, H, W, C) -> y (N, OH, OW, C).

    y[n, oh, ow, ch] = max_{kh, kw} x_pad[n, oh*stride + kh, ow*stride + kw, ch]; padding
    uses -inf, so a padded position never wins. The loops run over the window's taps only.
    """

    def __init__(self, kernel, stride=None, padding="valid"):
        self.kernel = kernel
        self.stride = stride or kernel
        self.padding = padding

    def forward(self, x, train):
        _, height, width, _ = x.shape
        pads = padding_amounts(self.padding, height, width, self.kernel, self.kernel, self.stride)
        x_pad = pad_image(x, pads, value=-xp.inf)
        out_h = (x_pad.shape[1] - self.kernel) // self.stride + 1
        out_w = (x_pad.shape[2] - self.kernel) // self.stride + 1
        y = None
        for kh in range(self.kernel):
            for kw in range(self.kernel):
                tap = kernel_offset_view(x_pad, kh, kw, self.stride, out_h, out_w)
                y = tap.copy() if y is None else xp.maximum(y, tap, out=y)
        if BACKWARD_FOLLOWS:
            self.cache = (x.shape, x_pad, pads, y)
        return y

    def backward(self, dout):
        # forward: y = max over the window, so dL/dx = dL/dy at the position that held the
        # maximum and 0 elsewhere: col2im over the taps, each passing dout to the windows
        # where it holds the maximum. On ties the first tap in scan order takes the gradient:
        # `unrouted` marks the windows whose maximum no earlier tap has claimed. A window
        # whose maximum is NaN (equal to nothing) routes nothing. All on the device: the
        # host never looks at the values to decide anything.
        x_shape, x_pad, (top, _, left, _), y = self.take_cache()
        out_h, out_w = y.shape[1:3]
        unrouted = xp.ones(y.shape, dtype=bool)  # (N, OH, OW, C)
        winner = xp.empty(y.shape, dtype=bool)
        block = xp.empty_like(dout)

        def tap_block(kh, kw):
            tap = kernel_offset_view(x_pad, kh, kw, self.stride, out_h, out_w)
            xp.equal(tap, y, out=winner)
            xp.logical_and(winner, unrouted, out=winner)  # the maximum, not claimed before
            # winner lies inside unrouted: xor removes it
            xp.logical_xor(unrouted, winner, out=unrouted)
            return xp.multiply(dout, winner, out=block)

        dx_pad = col2im(tap_block, x_pad.shape, self.kernel, self.kernel, self.stride, dout.dtype)
        _, height, width, _ = x_shape
        return dx_pad[:, top : top + height, left : left + width, :]


class ReLU(Layer):
    """y = max(x, 0), elementwise."""

    def forward(self, x, train):
        if BACKWARD_FOLLOWS:
            self.cache = x > 0  # where the gradient passes
        return xp.maximum(x, 0)

    def backward(self, dout):
        # dy/dx = 1 where x > 0, else 0
        return dout * self.take_cache()


class Flatten(Layer):
    """(N, H, W, C) -> (N, H*W*C), in NHWC order as the authors' TensorFlow reshape."""

    only_rearranges = True

    def forward(self, x, train):
        if BACKWARD_FOLLOWS:
            self.cache = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dout):
        return dout.reshape(self.take_cache())


# ======================================================================================
# 4. Loss
# ======================================================================================


def softmax_cross_entropy(logits, labels):
    """Mean over the batch of -log softmax(logits)[label].

    logits: (N, classes), labels: (N,) integers -> (loss: 0-d array, dL/dlogits: (N, classes)).
    Subtracting each row's maximum first keeps exp() from overflowing; log-softmax is
    unchanged by it.
    """
    n = logits.shape[0]
    shifted = logits - logits.max(axis=1, keepdims=True)  # (N, classes)
    log_probs = shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
    examples = xp.arange(n)
    loss = -log_probs[examples, labels].mean()
    # d/dlogits of -log softmax(logits)[label] = softmax(logits) - onehot(label); the mean
    # divides by N
    dlogits = xp.exp(log_probs)
    dlogits[examples, labels] -= 1
    dlogits /= n
    return loss, dlogits


# ======================================================================================
# 5. Initialisation
#
# The paper compares the first four (its Table 3). fan_in and fan_out count the connections
# into and out of one unit: a linear W (D_in, D_out) has fan_in = D_in; a conv W (KH, KW, C, F)
# has fan_in = KH*KW*C and fan_out = KH*KW*F.
#     vs-x  variance scaling, Glorot & Bengio:  N(0, 2 / (fan_in + fan_out))
#     vs-h  variance scaling, He et al.:        N(0, 2 / fan_in)                (default)
#     rn    random normal:                      N(0, 0.1^2)
#     tn    truncated normal:                   N(0, 0.1^2), redrawn beyond 2 standard deviations
#     lecun variance scaling, LeCun et al.:     N(0, 1 / fan_in), redrawn beyond 2 standard
#           deviations and divided by 0.8796... (the truncated normal's own standard deviation),
#           so that the variance is 1 / fan_in after the truncation. It is what the authors'
#           code calls 'vs': TensorFlow 1.12's variance_scaling_initializer() with its defaults.
# Biases and batch-norm shifts start at 0, batch-norm scales at 1. Values are drawn on the
# host with NumPy, so a seed gives the same network on the CPU and on the GPU.
# ======================================================================================

INITIALISATIONS = ("vs-x", "vs-h", "rn", "tn", "lecun")
# the standard deviation of N(0, 1) cut at +-2, TensorFlow's constant
TRUNCATED_STD = 0.87962566103423978


def draw_weight(shape, init, rng):
    """A host array of `shape` drawn as `init` says, for a weight (or, with --two-draws, a
    bias) of that shape, from the NumPy Generator rng."""
    taps = math.prod(shape[:-2])  # a conv's KH*KW, 1 for a linear layer
    if len(shape) == 1:  # a bias drawn as a weight (--two-draws): n in, n out, as in TensorFlow
        fan_in = fan_out = shape[0]
    else:
        fan_in, fan_out = taps * shape[-2], taps * shape[-1]
    if init == "vs-x":
        return rng.normal(0.0, math.sqrt(2.0 / (fan_in + fan_out)), shape)
    if init == "vs-h":
        return rng.normal(0.0, math.sqrt(2.0 / fan_in), shape)
    if init == "rn":
        return rng.normal(0.0, 0.1, shape)
    if init == "tn":
        return 0.1 * truncated_standard_normal(shape, rng)
    if init == "lecun":
        return math.sqrt(1.0 / fan_in) / TRUNCATED_STD * truncated_standard_normal(shape, rng)
    raise UsageError(f"unknown initialisation {init!r} (choose from {', '.join(INITIALISATIONS)})")


def truncated_standard_normal(shape, rng):
    """N(0, 1) draws, each one beyond 2 redrawn until it falls within [-2, 2]."""
    z = rng.standard_normal(shape)
    while True:
        outside = numpy.abs(z) > 2.0
        if not outside.any():
            return z
        z[outside] = rng.standard_normal(int(outside.sum()))


def initialise(model, init="vs-h", rng=None, dtype=None):
    """Give every Param of `model` a fresh value (removing any gates) on the current device."""
    rng = rng if rng is not None else numpy.random.default_rng(0)
    dtype = dtype or xp.float32
    for p in parameters_of(model):
        if p.kind == "weight":
            host = draw_weight(p.shape, init, rng)
        elif p.kind in ("scale", "running_var"):
            host = numpy.ones(p.shape)
        else:  # bias, shift, running_mean
            host = numpy.zeros(p.shape)
        p.value = xp.asarray(host, dtype=dtype)
        p.mask = None
        p.grad = None


# ======================================================================================
# 6. SNIP: connection sensitivity and the global top-k (the paper's Algorithm 1)
# ======================================================================================

PRUNE_CHOICES = ("weights+biases", "weights")  # the scopes --prune may name


def prunable_parameters(model, scope="weights+biases"):
    """The Params that get gates, as the scope of pruning (--prune) says.

    'weights+biases' (default): every conv/linear/recurrent weight and bias, the authors'
    choice and the set their parameter counts refer to. Biases start at 0 (unless the
    authors' two draws, extensions/protocol.py, give the scoring copy drawn biases), so their
    sensitivity w * dL/dw is exactly 0 and SNIP prunes every bias unless kappa exceeds the
    number of non-zero scores. 'weights': weights only (mil-ad/snip, Synaptic Flow); biases stay
    ungated and are all kept and trained.
    """
    kinds = {"weights+biases": ("weight", "bias"), "weights": ("weight",)}
    if scope not in kinds:
        raise UsageError(f"unknown --prune {scope!r} (choose from {', '.join(PRUNE_CHOICES)})")
    return [p for p in parameters_of(model) if p.kind in kinds[scope]]


def connection_sensitivity(model, images, labels, params):
    """g = dL/dc at c = 1 for every gated entry: the g_j of Algorithm 1's line 3.

    With c = 1 the network computes exactly as if ungated, and dL/dc = w * dL/d(w * c).
    Batch norm runs on its running statistics (train=False), as in the authors' code.
    Returns a list of arrays shaped like the params.
    """
    for p in params:
        p.mask = xp.ones_like(p.value)  # c = 1
    logits = model.forward(images, train=False)
    _, dlogits = softmax_cross_entropy(logits, labels)
    model.backward(dlogits)
    return [p.value * p.grad for p in params]


def normalised_scores(sensitivities):
    """Algorithm 1, line 3: s = |g| / sum |g|, one flat vector over ALL layers.

    Dividing by the sum makes s independent of the loss's scale: s is what the reports show.
    The masks rank |g| itself (snip_masks), which is the order of s in exact arithmetic. In
    float32 the division rounds neighbouring values of |g| onto one value of s, and which
    ones merge depends on the last bit of the sum, which depends on the order the device
    adds in (NumPy sums pairwise, CuPy with CUB); a tie at the threshold then goes to the
    lower index, so ranking s would let one ulp of the sum change a mask (at VGG-D's 15M
    scores it does: tests/test_gpu_readiness.py). If every g is 0 the scores stay 0.
    """
    flat = magnitudes(sensitivities)
    total = flat.sum()
    return flat / xp.where(total > 0, total, 1)  # decided on the device, not the host


def magnitudes(arrays):
    """|a| of every entry of `arrays`, as one flat vector over all of them, in their order."""
    return xp.concatenate([xp.abs(a).ravel() for a in arrays])


def kappa_for(sparsity, m):
    """The number of connections kept: kappa = round((1 - sparsity) * m), in float64 as the
    authors compute it."""
    return int(round((1.0 - float(sparsity)) * m))


def top_k_mask(scores, kappa):
    """A boolean mask keeping exactly the kappa largest of a flat score vector.

    Ties at the threshold go to the lowest indices, so the result is deterministic.
    Uses a partition (linear time) instead of a full sort, and never waits for the device:
    how many ties to take stays a device number.
    """
    m = scores.size
    if kappa <= 0:
        return xp.zeros(m, dtype=bool)
    if kappa >= m:
        return xp.ones(m, dtype=bool)
    threshold = xp.partition(scores, m - kappa)[m - kappa]  # the kappa-th largest score
    keep = scores > threshold  # fewer than kappa of these ...
    missing = kappa - keep.sum()
    ties = scores == threshold  # ... the rest come from the ties,
    index_type = xp.int32 if m < 2**31 else xp.int64
    count = xp.cumsum(ties, dtype=index_type)  # ties so far, at each index
    keep |= ties & (count <= missing)  # the first `missing` of them
    return keep


def snip_masks(sensitivities, sparsity):
    """Algorithm 1, lines 4-5: keep the kappa connections with the largest s, across all
    layers. The paper's c_j = 1[s_j >= (the kappa-th largest s)] would keep every tie at the
    threshold; this keeps exactly kappa, ties to the lowest index, as the authors' code does
    (TensorFlow's top_k). s = |g| / sum |g| orders the connections as |g| does, so the top-k
    ranks |g| itself: no rounding of the division can merge two scores (normalised_scores).

    sensitivities: list of arrays g. Returns one 0/1 mask per array (same dtype).
    """
    flat = magnitudes(sensitivities)
    return masks_of(top_k_mask(flat, kappa_for(sparsity, flat.size)), sensitivities)


def masks_of(keep, arrays):
    """A flat boolean vector over every entry of `arrays` -> one 0/1 mask per array, shaped
    like it and of its dtype."""
    masks, start = [], 0
    for array in arrays:
        masks.append(keep[start : start + array.size].reshape(array.shape).astype(array.dtype))
        start += array.size
    return masks


def apply_masks(params, masks):
    """Fix the gates c and zero the pruned weights: from now on w is exactly 0 where c is 0."""
    for p, mask in zip(params, masks):
        p.mask = mask
        p.value = p.value * mask
        p.grad = None


def snip(model, images, labels, sparsity, scope="weights+biases", report=None):
    """Prune `model` once, at initialisation, from one mini-batch. Returns the gated Params.
    scope: which Params get gates (prunable_parameters). A dict `report` receives m, kappa
    and how many scores are non-zero."""
    params = prunable_parameters(model, scope)
    sensitivities = connection_sensitivity(model, images, labels, params)
    apply_masks(params, snip_masks(sensitivities, sparsity))
    if report is not None:
        m = sum(p.size for p in params)
        (nonzero,) = host_values(sum(xp.count_nonzero(g) for g in sensitivities))
        report.update(m=m, kappa=kappa_for(sparsity, m), nonzero_scores=int(nonzero))
    return params


def random_pruning(model, sparsity, rng, scope="weights+biases", report=None):
    """The baseline SNIP must beat: kappa connections chosen uniformly at random over the
    whole network (every gated entry gets an independent uniform score, drawn on the host
    so that a seed gives the same mask on every device; the global top-k does the rest).
    Returns the gated Params; `scope` and `report` as for snip."""
    params = prunable_parameters(model, scope)
    apply_masks(params, snip_masks(random_scores(params, rng), sparsity))
    if report is not None:
        m = sum(p.size for p in params)
        report.update(m=m, kappa=kappa_for(sparsity, m), nonzero_scores=m)
    return params


def random_scores(params, rng):
    """An independent uniform score in [0, 1) for every entry of every Param, drawn on the
    host."""
    return [xp.asarray(rng.random(p.shape), dtype=p.value.dtype) for p in params]


def pruning_table(model, kinds=("weight", "bias")):
    """Rows (name, total, kept) for every Param of `model` of these kinds (kept = non-zero
    gates; all of an ungated one), one row per block of a Param made of blocks (Param.parts:
    a recurrent layer's gates, lstm1.input_weight[f])."""
    blocks = []  # (name, Param, index of the block)
    for p in parameters_of(model):
        if p.kind in kinds:
            blocks += [
                (p.name if label is None else f"{p.name}[{label}]", p, index)
                for label, index in p.parts or [(None, ...)]
            ]
    sizes = [p.value[index].size for _, p, index in blocks]  # a view's size: nothing is copied
    gated = [(p, index) for _, p, index in blocks if p.mask is not None]
    kept = host_values(*(xp.count_nonzero(p.mask[index]) for p, index in gated))  # one wait
    counts = iter(kept)
    return [
        (name, size, size if p.mask is None else int(next(counts)))
        for (name, p, _), size in zip(blocks, sizes)
    ]


def format_pruning_table(rows, column=None):
    """The table a run prints, from pruning_table's rows. column: (heading, {layer: text})
    adds a column, the text on each layer's first row (the command line's alive units)."""
    name_width = max(len("parameter"), *(len(name) for name, _, _ in rows))
    heading, texts = column or ("", {})
    header = f"{'parameter':<{name_width}}  {'kept':>10}  {'total':>10}  {'kept %':>7}"
    lines = [header + (f"  {heading}" if heading else "")]
    labelled = set()
    for name, total, kept in rows:
        line = f"{name:<{name_width}}  {kept:>10,}  {total:>10,}  {100 * kept / total:>6.2f}%"
        layer = name.split(".")[0]
        if layer in texts and layer not in labelled:
            labelled.add(layer)
            line += f"  {texts[layer]}"
        lines.append(line)
    total = sum(r[1] for r in rows)
    kept = sum(r[2] for r in rows)
    lines.append(f"{'total':<{name_width}}  {kept:>10,}  {total:>10,}  {100 * kept / total:>6.2f}%")
    lines.append(f"parameters: {total:,} -> {kept:,} ({100 * (1 - kept / total):.2f}% pruned)")
    return "\n".join(lines)


# ======================================================================================
# 7. Optimiser: SGD with momentum and weight decay, masked, and gradient clipping
# ======================================================================================


class SGD:
    """v <- momentum * v + (dL/dw + decay * w),   w <- w - lr * v   (PyTorch's form, and
    TensorFlow's with the decay in the loss).

    dL/dw = c * dL/d(w * c) is zero where c = 0, and so is w, so a pruned entry's gradient,
    velocity and value all stay exactly 0. Weight decay applies to conv/linear weights and
    biases, not to batch norm. Statistics (running mean/var) are not learned.
    """

    def __init__(self, params, momentum=0.9, weight_decay=5e-4):
        self.params = [p for p in params if p.learned]
        self.momentum, self.weight_decay = momentum, weight_decay
        self.velocity = [xp.zeros_like(p.value) for p in self.params]
        self.scratch = [xp.empty_like(p.value) for p in self.params]  # no allocation per step

    def step(self, lr):
        for p, v, scratch in zip(self.params, self.velocity, self.scratch):
            v *= self.momentum
            if p.mask is None:
                v += p.grad
            else:
                v += xp.multiply(p.grad, p.mask, out=scratch)  # dL/dw = c * dL/d(w * c)
            if p.kind in ("weight", "bias") and self.weight_decay:
                v += xp.multiply(p.value, self.weight_decay, out=scratch)  # + decay * w
            p.value -= xp.multiply(v, lr, out=scratch)  # w <- w - lr * v


def clip_gradient_norm(params, max_norm):
    """Scale the gradients of all learned `params` by one factor so that their global L2 norm
    is at most max_norm: grad <- grad * min(1, max_norm / norm), the norm taken over every
    entry of every dL/dw = c * dL/d(w * c) (pruned entries count as 0). The direction of the
    step is kept; only an unusually long one (an exploding gradient) is shortened.

    Returns the norm before clipping as a 0-d device array. Nothing is read back to the
    host: the factor is computed on the device, so a GPU never waits here. As PyTorch's
    clip_grad_norm_, it divides by norm + 1e-6, which is harmless and finite when the norm
    is 0.
    """
    learned = [p for p in params if p.learned]
    squares = [((p.grad if p.mask is None else p.grad * p.mask) ** 2).sum() for p in learned]
    norm = xp.sqrt(sum(squares))  # 0-d
    factor = xp.minimum(1.0, max_norm / (norm + 1e-6))  # 0-d, <= 1
    for p in learned:
        p.grad *= factor  # dL/dw = c * grad is scaled with it (c is 0 or 1)
    return norm


# ======================================================================================
# 8. Training and evaluation
# ======================================================================================


def train_step(model, optimiser, images, labels, lr, clip_norm=None):
    """One mini-batch: forward, loss, backward, (clipping,) update. Returns (loss, number
    correct) on the device. clip_norm: the largest global gradient norm (None: no clipping)."""
    logits = model.forward(images, train=True)
    loss, dlogits = softmax_cross_entropy(logits, labels)
    model.backward(dlogits)
    if clip_norm is not None:
        clip_gradient_norm(optimiser.params, clip_norm)
    optimiser.step(lr)
    return loss, (logits.argmax(axis=1) == labels).sum()


class DeviceSplit:
    """One split of a dataset on the device: uint8 images (S, H, W, C), int labels (S,),
    and the training set's per-channel mean and std (of pixels scaled to [0, 1]).

    Images stay uint8 (a quarter of the memory) and are standardised a batch at a time:
    (x / 255 - mean) / std, written as x * multiplier + offset. A training split may be
    augmented: augment, a data.Augmentation (None: not augmented), adds random flips and
    translations.
    """

    def __init__(self, images, labels, mean, std, augment=None):
        self.images, self.labels = xp.asarray(images), xp.asarray(labels)
        std = numpy.asarray(std, dtype=numpy.float64)
        mean = numpy.asarray(mean, dtype=numpy.float64)
        self.multiplier = xp.asarray(1.0 / (255.0 * std), dtype=xp.float32)  # (C,)
        self.offset = xp.asarray(-mean / std, dtype=xp.float32)  # (C,)
        self.augment = augment

    def __len__(self):
        return len(self.labels)

    def batch(self, index, moves=None):
        """(standardised float32 images, labels) of the N examples at `index` (a device array
        or a slice); with `moves`, their (3, N) flips and shifts on the device (see
        draw_moves), augmented if this split is augmented."""
        images = self.images[index] * self.multiplier + self.offset  # (N, H, W, C) float32
        if moves is not None and self.augment is not None:
            images = data.flip_and_translate(
                images, moves[0], moves[1], moves[2], self.augment.max_shift
            )
        return images, self.labels[index]

    def draw_moves(self, rng):
        """An epoch's random flips and shifts, one per image, drawn on the host (a (3, S) array,
        see data.draw_moves), or None if this split is not augmented."""
        if self.augment is None:
            return None
        return data.draw_moves(rng, len(self), self.augment.max_shift, self.augment.flip)


def seed_streams(seed):
    """One seed, four independent random streams: initialisation, validation split, scoring
    batch, shuffling (and augmentation); children 0-3 of the seed's SeedSequence."""
    return [numpy.random.default_rng(s) for s in numpy.random.SeedSequence(seed).spawn(4)]


def split_dataset(dataset, val_fraction, rng):
    """(train, validation, test) DeviceSplits: a random val_fraction of the training set is
    held out for validation; every split is standardised with the statistics of the whole
    training set (data.py's, validation images included). The training split is augmented as
    the authors did (its .augment may be changed)."""
    n = len(dataset.train_labels)
    order = rng.permutation(n)
    n_val = int(round(val_fraction * n))
    val_index, train_index = order[:n_val], order[n_val:]
    statistics = (dataset.mean, dataset.std)
    splits = (
        DeviceSplit(
            dataset.train_images[train_index],
            dataset.train_labels[train_index],
            *statistics,
            augment=dataset.augment,
        ),
        DeviceSplit(dataset.train_images[val_index], dataset.train_labels[val_index], *statistics),
        DeviceSplit(dataset.test_images, dataset.test_labels, *statistics),
    )
    release_pinned_memory()  # the copies' staging memory, as large as the dataset
    return splits


# the most memory the activations of one evaluation batch may take, as a backward pass would
# keep them (an upper bound on what the forward-only pass of an evaluation holds at once)
EVALUATION_BUDGET_BYTES = 2**30


class EvaluationOutOfMemory(MemoryError):
    """The device ran out of memory during an evaluation; batch_size: the batch it used."""

    def __init__(self, batch_size):
        super().__init__(f"out of memory while evaluating batches of {batch_size:,} examples")
        self.batch_size = batch_size


def evaluate(model, split, batch_size=1000, budget_bytes=EVALUATION_BUDGET_BYTES):
    """(mean loss, error in percent) over a whole DeviceSplit, batch norm on running statistics.

    A forward pass only (forward_only: no layer keeps a cache), in batches of batch_size
    examples, or fewer where that many would need more than budget_bytes (evaluation_batch).
    Training passes its own batch size: a forward pass without caches needs less memory than
    the training step that ran at that size. The sums stay on the device until the end: one
    wait for it, however many batches. Running out of memory raises EvaluationOutOfMemory,
    which names the batch.
    """
    forget_caches(model)  # anything left by a forward pass that no backward pass took
    total_loss, correct, batch = 0.0, 0, batch_size
    try:
        batch = evaluation_batch(model, split, batch_size, budget_bytes)
        with forward_only():
            for start in range(0, len(split), batch):
                images, labels = split.batch(slice(start, start + batch))
                logits = model.forward(images, train=False)
                loss, _ = softmax_cross_entropy(logits, labels)
                total_loss = total_loss + loss * len(labels)
                correct = correct + (logits.argmax(axis=1) == labels).sum()
    except MemoryError as error:  # CuPy's OutOfMemoryError is one too
        forget_caches(model)
        raise EvaluationOutOfMemory(batch) from error
    total_loss, correct = host_values(total_loss, correct)
    return total_loss / len(split), 100.0 * (1 - correct / len(split))


def evaluation_batch(model, split, batch_size, budget_bytes=EVALUATION_BUDGET_BYTES):
    """How many examples evaluate() feeds at once: batch_size, or as many as fit in
    budget_bytes if fewer. An example's share is what one more example adds to the caches
    of a forward pass (two small passes with caches, of one and two examples; the weights a
    layer keeps are in both and cancel)."""
    if len(split) == 0:
        return batch_size
    sizes = []
    for n in range(1, min(2, len(split), batch_size) + 1):
        images, _ = split.batch(slice(0, n))
        model.forward(images, train=False)
        sizes.append(sum(cached_bytes(layer.cache) for layer in layers_of(model)))
        forget_caches(model)
    per_example = sizes[-1] - sizes[0] if len(sizes) == 2 else sizes[0]
    return max(1, min(batch_size, budget_bytes // max(per_example, 1)))


def cached_bytes(cache):
    """The bytes of the arrays in a layer's cache (a tuple or list may hold arrays, shapes and
    numbers; only arrays count)."""
    if isinstance(cache, (tuple, list)):
        return sum(cached_bytes(each) for each in cache)
    return cache.nbytes if hasattr(cache, "nbytes") and hasattr(cache, "shape") else 0


def learning_rate(iteration, base_lr, boundaries, factor=0.1, warmup=0):
    """Step decay: base_lr * factor ** (number of boundaries already passed), iterations
    counted from 0. With `warmup`, the first `warmup` iterations climb linearly towards
    that rate: iteration i (< warmup) runs at (i + 1) / warmup of it."""
    rate = base_lr * factor ** sum(iteration >= b for b in boundaries)
    if iteration < warmup:
        rate *= (iteration + 1) / warmup
    return rate


class Progress:
    """A one-line progress bar on a terminal; silent when stderr is not one. It shows text it
    is given and never reads the device itself; it redraws at most ten times a second, and
    always when the label (the epoch) changes."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.live = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.drawn_at, self.label = 0.0, None

    def show(self, label, done, total, text):
        now = time.perf_counter()
        if not self.live or (label == self.label and now - self.drawn_at < 0.1):
            return
        self.drawn_at, self.label = now, label
        filled = int(24 * done / max(total, 1))
        bar = "#" * filled + "." * (24 - filled)
        self.stream.write(f"\r{label} [{bar}] {done}/{total} {text}\033[K")
        self.stream.flush()

    def clear(self):
        if self.live:
            self.stream.write("\r\033[K")
            self.stream.flush()


class TrainingState:
    """Everything about a training run that changes as it goes, so that it can stop after any
    step and continue exactly there: position in the schedule, the current epoch's shuffle
    (and augmentation) and how far through it we are, the epoch's running sums, the history,
    and the random generator that shuffles and augments. extensions/checkpoints.py saves and
    restores it."""

    def __init__(self, rng):
        self.rng = rng
        self.iteration, self.epoch = 0, 0
        self.order, self.position = None, 0  # this epoch's shuffled indices, next one to use
        self.moves = None  # this epoch's flips and shifts (3, S), if augmented
        self.epoch_loss, self.epoch_correct, self.epoch_images, self.epoch_seconds = 0.0, 0, 0, 0.0
        self.history, self.train_seconds, self.images_trained = [], 0.0, 0


STOP_REQUESTED = False  # set by Ctrl-C / SIGTERM: fit stops after the step it is in
READ_EVERY = 20  # steps between the training loop's reads of the loss from the device


def request_stop():
    """Ask the training loop to stop after the step it is in (a step is never cut in half)."""
    global STOP_REQUESTED
    STOP_REQUESTED = True


def fit(
    model,
    optimiser,
    train_split,
    validation,
    state,
    *,
    iterations,
    batch_size,
    base_lr,
    boundaries,
    log=print,
    on_step=None,
    checkpoint=None,
    checkpoint_every=None,
    clip_norm=None,
    warmup=0,
):
    """Train until state.iteration reaches `iterations`, a fresh shuffle each epoch.

    train_split, validation: DeviceSplits; validation runs after every epoch, unless its
    split is empty. state: a TrainingState, new or restored from a checkpoint; it is
    advanced in place.
    on_step(iteration, loss), if given, sees every mini-batch's loss (a device scalar); its
    time is not training time (on a GPU, if it waits as an evaluation does, neither is that
    of the steps still queued: none at a multiple of READ_EVERY, just after the loop's read).
    checkpoint(state), if given, is called every `checkpoint_every` iterations. A stop
    requested (request_stop: Ctrl-C, SIGTERM) ends training after the step it is in, with a
    checkpoint if one is given, by raising Interrupted. clip_norm: see train_step. warmup:
    the iterations of the learning rate's linear warm-up (see learning_rate).

    A step never waits for the device: the epoch's shuffle and augmentation are copied to
    it once, losses and hits are summed there, and the host reads them (one copy of three
    numbers) only every READ_EVERY steps, to check that the loss is finite and to update
    the progress bar, before a checkpoint or a stop, and at the end of an epoch.
    """
    examples = len(train_split)
    batches_per_epoch = -(-examples // batch_size)
    epochs = -(-iterations // batches_per_epoch)
    progress, progress_text = Progress(), ""
    while state.iteration < iterations or state.order is not None:  # (a resumed epoch is finished)
        if state.order is None:  # a new epoch: a new shuffle
            state.epoch += 1
            state.order, state.position = state.rng.permutation(examples), 0
            state.moves = train_split.draw_moves(state.rng)
            state.epoch_loss, state.epoch_correct = 0.0, 0
            state.epoch_images, state.epoch_seconds = 0, 0.0
        order = xp.asarray(state.order)  # (S,), on the device
        moves = None if state.moves is None else xp.asarray(state.moves)  # (3, S)
        started = time.perf_counter()
        while state.position < examples and state.iteration < iterations:
            step = slice(state.position, state.position + batch_size)
            batch_moves = None if moves is None else moves[:, step]
            images, labels = train_split.batch(order[step], batch_moves)
            lr = learning_rate(state.iteration, base_lr, boundaries, warmup=warmup)
            loss, correct = train_step(model, optimiser, images, labels, lr, clip_norm)
            state.epoch_loss = state.epoch_loss + loss * len(labels)  # sums stay on the device
            state.epoch_correct = state.epoch_correct + correct
            state.epoch_images += len(labels)
            state.position += len(labels)
            state.iteration += 1
            stopping = STOP_REQUESTED
            saving = checkpoint is not None and (
                stopping or (checkpoint_every and state.iteration % checkpoint_every == 0)
            )
            if saving or stopping or state.iteration % READ_EVERY == 0:
                sums = host_values(loss, state.epoch_loss, state.epoch_correct)
                last_loss, loss_sum, hits = sums
                if not math.isfinite(last_loss):
                    raise Diverged(f"the loss became {last_loss} by iteration {state.iteration:,}")
                mean_loss, accuracy = loss_sum / state.epoch_images, hits / state.epoch_images
                progress_text = f"loss {mean_loss:.4f} acc {100 * accuracy:.2f}%"
            if on_step is not None:  # (its time, e.g. a test evaluation, is not training's)
                paused = time.perf_counter()
                on_step(state.iteration, loss)
                started += time.perf_counter() - paused
            if saving:  # (the read above waited for the device)
                state.epoch_seconds += time.perf_counter() - started
                checkpoint(state)  # not counted as training time
                started = time.perf_counter()
            if stopping:
                raise Interrupted(f"stopped at iteration {state.iteration:,}")
            progress.show(
                f"epoch {state.epoch}/{epochs}",
                -(-state.position // batch_size),
                batches_per_epoch,
                progress_text,
            )
        # the read waits for the device, so the clock after it times the epoch's work
        loss_sum, hits = host_values(state.epoch_loss, state.epoch_correct)
        state.epoch_seconds += time.perf_counter() - started
        state.train_seconds += state.epoch_seconds
        state.images_trained += state.epoch_images
        progress.clear()
        record = {
            "epoch": state.epoch,
            "iteration": state.iteration,
            "lr": learning_rate(state.iteration - 1, base_lr, boundaries, warmup=warmup),
            "train_loss": loss_sum / state.epoch_images,
            "train_error": 100 * (1 - hits / state.epoch_images),
        }
        if not math.isfinite(record["train_loss"]):
            raise Diverged(f"the loss became {record['train_loss']} in epoch {state.epoch}")
        if len(validation):
            record["val_loss"], record["val_error"] = evaluate(model, validation, batch_size)
        state.history.append(record)
        state.order, state.moves = None, None
        val = (
            f" | val loss {record['val_loss']:.4f} error {record['val_error']:.2f}%"
            if "val_error" in record
            else ""
        )
        seconds = state.epoch_seconds
        log(
            f"epoch {state.epoch:>3}/{epochs}  lr {record['lr']:.3g}  "
            f"train loss {record['train_loss']:.4f} error {record['train_error']:.2f}%{val}  "
            f"({seconds:.1f} s, "
            f"{state.epoch_images / max(seconds, 1e-9):,.0f} img/s)"
        )
    return state


if __name__ == "__main__":
    # `python snip_min.py` runs this file as the module __main__; the command line (and every
    # module it imports) imports it as `snip_min`, which would run it a second time, as a
    # second module with a backend switch of its own. Registering this module under its own
    # name first makes the two names one module, loaded once. The command line lives on the
    # top floor (extensions/cli.py): this import is the method's only arrow upwards.
    sys.modules["snip_min"] = sys.modules["__main__"]
    from extensions import cli

    signal.signal(signal.SIGINT, signal.default_int_handler)  # the command's own Ctrl-C from here
    sys.exit(cli.main())
