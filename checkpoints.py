"""snip-min: SNIP, single-shot network pruning at initialisation, from scratch in NumPy.

    N. Lee, T. Ajanthan, P. H. S. Torr. "SNIP: Single-shot Network Pruning based on
    Connection Sensitivity". ICLR 2019.

SNIP puts a gate c_j = 1 on every connection w_j, measures how much the loss on ONE
mini-batch reacts to each gate, g_j = dL/dc_j = w_j * dL/dw_j, keeps the kappa connections
with the largest |g_j| (one ranking across all layers) and then trains the sparse network
w * c in the ordinary way with c held fixed.

This file is the whole method, meant to be read top to bottom:

    1. backend          NumPy or CuPy, one switch (--device cpu|gpu), and when a GPU waits
    2. parameters and gates   arrays w with optional gates c; the forward pass uses w * c
    3. layers           forward/backward pairs: linear, conv (im2col + one matmul), pooling,
                        ReLU, flatten, batch norm, LSTM and GRU through time; Sequential,
                        Residual and Concat build networks from them
    4. loss             softmax cross-entropy
    5. initialisation   variance scaling (He, Glorot), random normal, truncated normal
    6. SNIP             connection sensitivity, global top-k, masks; the random baseline
    7. dead units       which units a mask leaves alive, and the smaller dense network a
                        pruned chain exactly is (--compact)
    8. optimiser        SGD with momentum and weight decay that never revives a pruned
                        weight; gradient clipping
    9. training and evaluation   mini-batches, validation, test error; a training state
                        that can stop after any step and resume bit-exactly
    10. command line    flags, the run (data -> SNIP -> training -> test error),
                        checkpoints, one-line errors and exit statuses

There is no autograd: every backward pass is written out, with the one-line derivation it
implements. Models live in models.py, data loaders in data.py.

Shape legend
    N       batch size                    classes   number of classes
    H, W    height, width of an input     OH, OW    height, width of an output
    C       input channels                F         output channels (filters)
    KH, KW  kernel height, width          D         features of a flat activation (or of one step)
    T       time steps of a sequence      H         also: hidden units of a recurrent layer
Activations are NHWC (channels last) and convolution weights are (KH, KW, C, F), the
layout of the authors' TensorFlow code; linear weights are (D_in, D_out). Channels last
makes a convolution one matrix product with no transposes (see Conv2D).
"""

import argparse
import io
import json
import math
import os
import signal
import sys
import time
import zipfile
from typing import Callable, NamedTuple

import numpy

import data


# ======================================================================================
# 1. Backend: every array operation below goes through `xp`, which is NumPy or CuPy.
#
# On a GPU, CuPy queues each operation and returns at once; the host waits for the
# device ("synchronises") only when it needs a value: float(), int(), bool(), .get(),
# printing an array. So the training step never asks for one: losses and accuracies are
# summed on the device and read every 20 steps and at the end of an epoch (see fit).
# ======================================================================================

xp = numpy  # rebound by use_device('gpu'); always look it up as snip_min.xp at call time


class UsageError(Exception):
    """A problem with how the program was asked to run; the message is one line."""


class Diverged(Exception):
    """Training produced a non-finite loss; the message is one line."""


class Interrupted(Exception):
    """Training stopped on request (Ctrl-C, SIGTERM) after saving a checkpoint."""


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
        raise UsageError("--device gpu needs CuPy, which is not installed "
                         "(pip install cupy-cuda12x, see docs/gpu.md) or use --device cpu")
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            raise RuntimeError("no CUDA device found")
        float(cupy.arange(4, dtype=cupy.float32).sum())  # compile and run one kernel
    except Exception as error:  # CUDA errors come in many types; all mean "no usable GPU"
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
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
        self.name = name          # e.g. 'conv1.weight'; models.py assigns final names
        self.shape = tuple(shape)
        self.kind = kind
        self.role = role          # a name of its own among its layer's Params of the same kind
        self.parts = parts        # [(label, index)]: blocks shown as rows of their own (gates)
        self.value = None         # w, an xp array once initialise() has run
        self.mask = None          # c, same shape and dtype as w, or None: not gated
        self.grad = None          # dL/d(w * c), written by the owning layer's backward

    @property
    def learned(self):
        return self.kind in self.LEARNED

    @property
    def size(self):
        return math.prod(self.shape)

    def gated(self):
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
# `train` switches batch norm between batch statistics (training) and running statistics.
# Containers (Sequential, and Residual and Concat for the model zoo's residual, inception,
# fire and dense blocks) are layers too, so a whole network is one layer.
# ======================================================================================

class Layer:
    params = ()     # the Params this layer owns directly
    children = ()   # the layers a container holds
    cache = None    # what forward leaves for backward

    def forward(self, x, train):
        raise NotImplementedError

    def backward(self, dout):
        raise NotImplementedError

    def take_cache(self):
        """Hand the forward pass's cache to backward, keeping no reference to it."""
        cache, self.cache = self.cache, None
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

    Saves that layer's input-gradient product (and, for a convolution, its col2im). Its
    backward returns None, and Sequential stops there. Leading Flattens and AsSequences
    only reshape, and a leading Gather (of a compact network) only selects.
    """
    layer = network
    while isinstance(layer, Sequential):
        layer = next(child for child in layer.children if not isinstance(child, (Flatten, AsSequence, Gather)))
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
        for layer in reversed(self.children):
            dout = layer.backward(dout)
            if dout is None:         # a first layer that skipped its input gradient
                return None
        return dout


class Linear(Layer):
    """y = x @ W + b.   x: (N, D_in), W: (D_in, D_out), b: (D_out,) -> y: (N, D_out)."""

    needs_input_gradient = True    # False for a network's first layer: its input is data

    def __init__(self, d_in, d_out, bias=True):
        self.weight = Param("weight", (d_in, d_out), "weight")
        self.bias = Param("bias", (d_out,), "bias") if bias else None
        self.params = [p for p in (self.weight, self.bias) if p is not None]

    def forward(self, x, train):                    # x: (N, D_in)
        w = self.weight.gated()                      # (D_in, D_out), w * c
        y = x @ w                                    # (N, D_out)
        if self.bias is not None:
            y += self.bias.gated()
        self.cache = (x, w)
        return y

    def backward(self, dout):                        # dout: (N, D_out)
        x, w = self.take_cache()
        # forward: y = x W + b, so dL/dW = x^T dL/dy, dL/db = sum_n dL/dy, dL/dx = dL/dy W^T
        self.weight.grad = x.T @ dout                # (D_in, D_out)
        if self.bias is not None:
            self.bias.grad = sum_rows(dout)          # (D_out,)
        if not self.needs_input_gradient:
            return None
        return dout @ w.T                            # (N, D_in)


def padding_amounts(padding, height, width, kernel_h, kernel_w, stride):
    """(top, bottom, left, right) zero rows/columns for a padding spec.

    'valid': none. 'same': TensorFlow's rule, output = ceil(input / stride), the odd row or
    column going to the bottom/right. An int p: p on every side. A 4-tuple: as given.
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
    """x: (N, H, W, C) -> (N, top + H + bottom, left + W + right, C), borders filled with value."""
    top, bottom, left, right = pads
    if not any(pads):
        return x
    n, h, w, c = x.shape
    padded = xp.full((n, top + h + bottom, left + w + right, c), value, dtype=x.dtype)
    padded[:, top:top + h, left:left + w, :] = x
    return padded


def kernel_offset_view(x, i, j, stride, out_h, out_w):
    """The input pixels that kernel tap (i, j) meets at every output position.

    x: (N, H, W, C) -> a strided view (N, OH, OW, C), view[n, a, b] = x[n, a*stride + i, b*stride + j].
    """
    return x[:, i:i + stride * (out_h - 1) + 1:stride, j:j + stride * (out_w - 1) + 1:stride, :]


def receptive_fields(x, kernel_h, kernel_w, stride, out_h, out_w):
    """Every output pixel's receptive field, as a VIEW of x (nothing is copied).

    x: (N, H, W, C) -> (N, OH, OW, KH, KW, C) with [n, a, b, i, j, c] = x[n, a*stride + i, b*stride + j, c].
    Moving one output pixel right moves `stride` pixels right in x, moving one kernel tap
    right moves one pixel: the view only needs the right step sizes (strides, in bytes).
    """
    n, _, _, c = x.shape
    step_n, step_h, step_w, step_c = x.strides
    return xp.lib.stride_tricks.as_strided(
        x, shape=(n, out_h, out_w, kernel_h, kernel_w, c),
        strides=(step_n, stride * step_h, stride * step_w, step_h, step_w, step_c))


def im2col(x, kernel_h, kernel_w, stride, out_h, out_w):
    """Receptive fields as the rows of a matrix: x (N, H, W, C) -> col (N*OH*OW, KH*KW*C).

    Usually one copy of the view above: in NHWC each field's (KW, C) rows are contiguous in
    x, so the copy moves runs of KW*C numbers. With a single input channel (an MNIST
    image) those runs are only KW long, so instead each kernel tap copies its whole
    (N, OH, OW) slab, runs of OW numbers, into a tap-major (KH*KW, N*OH*OW) array. Its
    transpose is the same col matrix, stored the other way round; matrix products read
    either order at full speed, so nothing downstream needs to know.
    """
    n, _, _, c = x.shape
    if c == 1:
        col_t = xp.empty((kernel_h, kernel_w, n, out_h, out_w), dtype=x.dtype)
        for i in range(kernel_h):
            for j in range(kernel_w):
                col_t[i, j] = kernel_offset_view(x, i, j, stride, out_h, out_w)[..., 0]
        return col_t.reshape(kernel_h * kernel_w, -1).T
    fields = receptive_fields(x, kernel_h, kernel_w, stride, out_h, out_w)
    return xp.ascontiguousarray(fields).reshape(n * out_h * out_w, -1)


def sum_rows(matrix):
    """matrix (M, F) -> (F,), the sum of its rows, as ones (M,) @ matrix.

    The same numbers as matrix.sum(axis=0), but a matrix-vector product runs several
    times faster than NumPy's reduction over the first axis.
    """
    return xp.ones(matrix.shape[0], dtype=matrix.dtype) @ matrix


def col2im(tap_block, input_shape, kernel_h, kernel_w, stride, dtype):
    """The adjoint of im2col: add what each kernel tap produced back onto the pixels it read.

    tap_block(i, j) returns the (N, OH, OW, C) block for tap (i, j), i.e. the column block
    col[:, i, j, :] of a (N, OH, OW, KH, KW, C) array. Pixels seen by several taps receive
    the sum, which makes <im2col(x), y> = <x, col2im(y)> for all x, y. The loop runs over
    the KH*KW taps only, each adding one strided slice of the whole batch. When the windows
    tile the input (stride = kernel, as in a 2x2 pooling), every pixel is seen by exactly
    one tap, and each add is a plain write into an uninitialised array.
    """
    _, height, width, _ = input_shape
    tiles = stride == kernel_h == kernel_w and height % stride == 0 and width % stride == 0
    dx = xp.empty(input_shape, dtype=dtype) if tiles else xp.zeros(input_shape, dtype=dtype)
    for i in range(kernel_h):
        for j in range(kernel_w):
            block = tap_block(i, j)
            pixels = kernel_offset_view(dx, i, j, stride, block.shape[1], block.shape[2])
            if tiles:
                pixels[...] = block           # no other tap reads these pixels
            else:
                pixels += block
    return dx


IM2COL_BUDGET_BYTES = 64 * 2**20    # the most col matrix a convolution builds at once
KEEP_COL_BYTES = 32 * 2**20         # a col this small is kept for the backward pass


class Conv2D(Layer):
    """2-D convolution (cross-correlation, as in every framework), zero padding.

    x: (N, H, W, C), W: (KH, KW, C, F), b: (F,) -> y: (N, OH, OW, F) with
        y[n, a, b, f] = sum_{i, j, c} x_pad[n, a*stride + i, b*stride + j, c] W[i, j, c, f] + b[f]
        OH = (H + pad_top + pad_bottom - KH) // stride + 1, likewise OW.
    Computed as im2col + one matrix product:
        (N*OH*OW, KH*KW*C) @ (KH*KW*C, F) = (N*OH*OW, F), which is already NHWC.
    Memory: col is KH*KW times larger than x. The backward pass needs it again (for dL/dW),
    so a small col (up to KEEP_COL_BYTES) is kept; a larger one is rebuilt there from the
    padded input, one more copy instead of nine times the memory. A layer whose col would
    exceed IM2COL_BUDGET_BYTES builds it, and multiplies, a few examples at a time.
    padding: 'valid', 'same', an int, or (top, bottom, left, right).
    """

    needs_input_gradient = True    # False for a network's first layer: its input is data

    def __init__(self, c_in, c_out, kernel, stride=1, padding="valid", bias=True):
        self.kernel_h, self.kernel_w = (kernel, kernel) if isinstance(kernel, int) else kernel
        self.stride, self.padding = stride, padding
        self.weight = Param("weight", (self.kernel_h, self.kernel_w, c_in, c_out), "weight")
        self.bias = Param("bias", (c_out,), "bias") if bias else None
        self.params = [p for p in (self.weight, self.bias) if p is not None]

    def columns(self, x_pad, start, stop, out_h, out_w):
        """im2col of examples start..stop-1 of the padded input."""
        return im2col(x_pad[start:stop], self.kernel_h, self.kernel_w, self.stride, out_h, out_w)

    def forward(self, x, train):
        n, h, w, c = x.shape
        pads = padding_amounts(self.padding, h, w, self.kernel_h, self.kernel_w, self.stride)
        x_pad = pad_image(x, pads)                                         # (N, H', W', C)
        out_h = (x_pad.shape[1] - self.kernel_h) // self.stride + 1
        out_w = (x_pad.shape[2] - self.kernel_w) // self.stride + 1
        w = self.weight.gated()                                            # (KH, KW, C, F)
        w2d = w.reshape(-1, w.shape[-1])                                   # (KH*KW*C, F)
        col_bytes_per_example = out_h * out_w * w2d.shape[0] * x.itemsize
        self.group = max(1, min(n, IM2COL_BUDGET_BYTES // col_bytes_per_example))
        if self.group == n:                        # the whole batch at once
            col = self.columns(x_pad, 0, n, out_h, out_w)                  # (N*OH*OW, KH*KW*C)
            y = col @ w2d                                                  # (N*OH*OW, F)
        else:                                      # a few examples at a time
            col = None
            y = xp.empty((n * out_h * out_w, w2d.shape[1]), dtype=x.dtype)
            rows = out_h * out_w
            for start in range(0, n, self.group):
                stop = min(start + self.group, n)
                y[start * rows:stop * rows] = self.columns(x_pad, start, stop, out_h, out_w) @ w2d
        if self.bias is not None:
            # y += b, but added to each example's whole (OH*OW*F) output at once: NumPy
            # broadcasting b over rows of only F numbers would loop over N*OH*OW short rows
            per_example = y.reshape(n, out_h * out_w * y.shape[1])         # a view of y
            per_example += xp.tile(self.bias.gated(), out_h * out_w)
        keep = col is not None and col.nbytes <= KEEP_COL_BYTES    # else rebuild it from x_pad
        self.cache = (x.shape, pads, w, col if keep else None, x_pad.shape, None if keep else x_pad)
        return y.reshape(n, out_h, out_w, -1)                              # (N, OH, OW, F)

    def backward(self, dout):                                              # (N, OH, OW, F)
        x_shape, (top, _, left, _), w, col, x_pad_shape, x_pad = self.take_cache()
        n, out_h, out_w, f = dout.shape
        dy = dout.reshape(-1, f)                                           # (N*OH*OW, F)
        # forward: y = col W + b, the linear layer again with col in the role of x
        if col is not None:
            dw = col.T @ dy                                                # (KH*KW*C, F)
        else:                                      # rebuild col, a group of examples at a time
            rows = out_h * out_w
            dw = sum(self.columns(x_pad, start, min(start + self.group, n), out_h, out_w).T
                     @ dy[start * rows:min(start + self.group, n) * rows]
                     for start in range(0, n, self.group))
        self.weight.grad = dw.reshape(self.weight.shape)                   # (KH, KW, C, F)
        if self.bias is not None:
            self.bias.grad = sum_rows(dy)                                  # (F,)
        if not self.needs_input_gradient:
            return None
        # and dL/dcol = dy W^T, so dL/dx_pad = col2im(dy W^T). Tap (i, j) owns the columns
        # dy W[i, j]^T: computing them tap by tap never builds the whole (N*OH*OW, KH*KW*C)
        # array, and each tap's block is contiguous when it is added onto the image.
        def tap_block(i, j):                                               # (N, OH, OW, C)
            return (dy @ w[i, j].T).reshape(n, out_h, out_w, -1)
        dx_pad = col2im(tap_block, x_pad_shape, self.kernel_h, self.kernel_w, self.stride, dout.dtype)
        _, h, w, _ = x_shape
        return dx_pad[:, top:top + h, left:left + w, :]                    # (N, H, W, C)


class MaxPool2D(Layer):
    """Maximum over each KH x KW window: x (N, H, W, C) -> y (N, OH, OW, C).

    y[n, a, b, c] = max_{i, j} x_pad[n, a*stride + i, b*stride + j, c]; padding uses -inf,
    so a padded position never wins. The loops run over the window's taps only.
    """

    def __init__(self, kernel, stride=None, padding="valid"):
        self.kernel = kernel
        self.stride = stride or kernel
        self.padding = padding

    def forward(self, x, train):
        _, h, w, _ = x.shape
        pads = padding_amounts(self.padding, h, w, self.kernel, self.kernel, self.stride)
        x_pad = pad_image(x, pads, value=-xp.inf)
        out_h = (x_pad.shape[1] - self.kernel) // self.stride + 1
        out_w = (x_pad.shape[2] - self.kernel) // self.stride + 1
        y = None
        for i in range(self.kernel):
            for j in range(self.kernel):
                tap = kernel_offset_view(x_pad, i, j, self.stride, out_h, out_w)
                y = tap.copy() if y is None else xp.maximum(y, tap, out=y)
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
        unrouted = xp.ones(y.shape, dtype=bool)                             # (N, OH, OW, C)
        winner = xp.empty(y.shape, dtype=bool)
        block = xp.empty_like(dout)

        def tap_block(i, j):
            xp.equal(kernel_offset_view(x_pad, i, j, self.stride, out_h, out_w), y, out=winner)
            xp.logical_and(winner, unrouted, out=winner)     # the maximum, not claimed before
            xp.logical_xor(unrouted, winner, out=unrouted)   # winner lies inside unrouted: xor removes it
            return xp.multiply(dout, winner, out=block)
        dx_pad = col2im(tap_block, x_pad.shape, self.kernel, self.kernel, self.stride, dout.dtype)
        _, h, w, _ = x_shape
        return dx_pad[:, top:top + h, left:left + w, :]


class ReLU(Layer):
    """y = max(x, 0), elementwise."""

    def forward(self, x, train):
        self.cache = x > 0                           # where the gradient passes
        return xp.maximum(x, 0)

    def backward(self, dout):
        # dy/dx = 1 where x > 0, else 0
        return dout * self.take_cache()


class Flatten(Layer):
    """(N, H, W, C) -> (N, H*W*C), in NHWC order as the authors' TensorFlow reshape."""

    def forward(self, x, train):
        self.cache = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dout):
        return dout.reshape(self.take_cache())


class Gather(Layer):
    """y = x[..., indices]: only the listed entries of the last axis (the features of a flat
    activation, or the channels of an image). x: (N, ..., D) -> y: (N, ..., K), K = len(indices).

    A compact network uses it where the layer after it reads only some entries: after a
    Flatten, LeNet-300-100's first layer multiplies the pixels it reads, not all 784.
    indices: distinct integers, increasing (a host vector; kept on the device here).
    """

    def __init__(self, indices):
        self.host_indices = numpy.asarray(indices, dtype=numpy.int64)
        self.indices = xp.asarray(self.host_indices)                    # (K,), on the device

    def forward(self, x, train):
        self.cache = x.shape
        return x[..., self.indices]                                         # (N, ..., K)

    def backward(self, dout):                                               # (N, ..., K)
        shape = self.take_cache()
        # forward: y[..., k] = x[..., indices[k]], and each entry of x is read at most once,
        # so dL/dx[..., indices[k]] = dL/dy[..., k], and 0 for the entries not gathered
        dx = xp.zeros(shape, dtype=dout.dtype)                           # (N, ..., D)
        dx[..., self.indices] = dout
        return dx


class BatchNorm(Layer):
    """Batch normalisation over every axis but the last (channels or features).

    x: (N, ..., C). Training: mu, var are the batch's mean and (biased) variance per channel,
        x_hat = (x - mu) / sqrt(var + eps),   y = scale * x_hat + shift,
    and the running statistics move towards them (running = (1 - m) running + m batch, with
    the unbiased variance, as PyTorch does). Evaluation: mu, var are the running statistics.
    Batch norm is never gated: SNIP prunes connections, not normalisers.
    """

    def __init__(self, channels, momentum=0.1, eps=1e-5):
        self.momentum, self.eps = momentum, eps
        self.scale = Param("scale", (channels,), "scale")
        self.shift = Param("shift", (channels,), "shift")
        self.running_mean = Param("running_mean", (channels,), "running_mean")
        self.running_var = Param("running_var", (channels,), "running_var")
        self.params = [self.scale, self.shift, self.running_mean, self.running_var]

    def forward(self, x, train):
        axes = tuple(range(x.ndim - 1))
        if train:
            mean, var = x.mean(axis=axes), x.var(axis=axes)                 # (C,)
            count = x.size // x.shape[-1]
            m = self.momentum
            self.running_mean.value = (1 - m) * self.running_mean.value + m * mean
            self.running_var.value = ((1 - m) * self.running_var.value
                                      + m * var * (count / max(count - 1, 1)))
        else:
            mean, var = self.running_mean.value, self.running_var.value
        inv_std = 1.0 / xp.sqrt(var + self.eps)                             # (C,)
        x_hat = x - mean                                                    # (N, ..., C)
        x_hat *= inv_std
        y = x_hat * self.scale.value
        y += self.shift.value
        self.cache = (x_hat, inv_std, train)
        return y

    def backward(self, dout):
        x_hat, inv_std, train = self.take_cache()
        axes = tuple(range(dout.ndim - 1))
        # forward: y = scale * x_hat + shift
        self.scale.grad = (dout * x_hat).sum(axis=axes)                     # sum of dL/dy * x_hat
        self.shift.grad = dout.sum(axis=axes)                               # sum of dL/dy
        if not train:
            # mu and var are constants: x_hat = (x - mu) * inv_std is affine in x
            return dout * (self.scale.value * inv_std)
        # mu and var depend on x too; differentiating x_hat = (x - mean(x)) / std(x) gives
        #   dL/dx = scale * inv_std * (dL/dy - mean(dL/dy) - x_hat * mean(dL/dy * x_hat)),
        # and both means are the sums just computed, divided by the count M = N*H*W
        count = dout.size // dout.shape[-1]
        dx = dout - self.shift.grad / count
        dx -= x_hat * (self.scale.grad / count)
        dx *= self.scale.value * inv_std
        return dx


class AvgPool2D(Layer):
    """Mean over each KH x KW window: x (N, H, W, C) -> y (N, OH, OW, C).

    With 'same' padding, a window that hangs over the border averages only its real
    pixels (TensorFlow's rule): count[a, b] is how many real pixels window (a, b) holds.
    """

    def __init__(self, kernel, stride=None, padding="valid"):
        self.kernel = kernel
        self.stride = stride or kernel
        self.padding = padding

    def forward(self, x, train):
        _, h, w, _ = x.shape
        pads = padding_amounts(self.padding, h, w, self.kernel, self.kernel, self.stride)
        x_pad = pad_image(x, pads)
        out_h = (x_pad.shape[1] - self.kernel) // self.stride + 1
        out_w = (x_pad.shape[2] - self.kernel) // self.stride + 1
        real = pad_image(xp.ones((1, h, w, 1), dtype=x.dtype), pads)     # 1 on real pixels
        total, count = 0, 0
        for i in range(self.kernel):
            for j in range(self.kernel):
                total = total + kernel_offset_view(x_pad, i, j, self.stride, out_h, out_w)
                count = count + kernel_offset_view(real, i, j, self.stride, out_h, out_w)
        self.cache = (x.shape, x_pad.shape, pads, count)
        return total / count

    def backward(self, dout):
        # forward: y = (sum of the window's pixels) / count, so each pixel of the window
        # receives dL/dy / count
        x_shape, x_pad_shape, (top, _, left, _), count = self.take_cache()
        share = dout / count
        dx_pad = col2im(lambda i, j: share, x_pad_shape, self.kernel, self.kernel, self.stride, dout.dtype)
        _, h, w, _ = x_shape
        return dx_pad[:, top:top + h, left:left + w, :]


class GlobalAvgPool(Layer):
    """The mean over all positions of each channel: x (N, H, W, C) -> y (N, C)."""

    def forward(self, x, train):
        self.cache = x.shape
        return x.mean(axis=(1, 2))

    def backward(self, dout):
        # forward: y = sum_{h, w} x / (H*W), so every position receives dL/dy / (H*W)
        shape = self.take_cache()
        _, h, w, _ = shape
        return xp.broadcast_to((dout / (h * w))[:, None, None, :], shape).copy()


class Identity(Layer):
    """y = x: the shortcut of a residual block, or the kept input of a dense layer."""

    def forward(self, x, train):
        return x

    def backward(self, dout):
        return dout


class ZeroChannels(Layer):
    """Append `extra` channels of zeros: x (N, H, W, C) -> (N, H, W, C + extra).

    With a 2x2 average pool in front, this is ResNet's parameter-free shortcut for a
    block that halves the resolution and doubles the channels.
    """

    def __init__(self, extra):
        self.extra = extra

    def forward(self, x, train):
        channels = x.shape[-1]
        y = xp.zeros(x.shape[:-1] + (channels + self.extra,), dtype=x.dtype)
        y[..., :channels] = x
        self.cache = channels
        return y

    def backward(self, dout):
        # the zeros do not depend on x: only the first C channels carry a gradient back
        return dout[..., :self.take_cache()]


class Residual(Layer):
    """y = body(x) + shortcut(x), the residual connection (shortcut: identity by default)."""

    def __init__(self, body, shortcut=None):
        self.body, self.shortcut = body, shortcut or Identity()
        self.children = [self.body, self.shortcut]

    def forward(self, x, train):
        return self.body.forward(x, train) + self.shortcut.forward(x, train)

    def backward(self, dout):
        # x feeds both paths, so its gradient is the sum of what each path sends back
        return self.body.backward(dout) + self.shortcut.backward(dout)


class Concat(Layer):
    """Run every branch on the same x and stack their outputs along the channels:
    y = [branch_1(x), ..., branch_k(x)], (N, H, W, C_1 + ... + C_k). Inception modules,
    fire modules' expand layers and dense layers (Identity beside a conv stack) are this.
    """

    def __init__(self, *branches):
        self.children = list(branches)

    def forward(self, x, train):
        outputs = [branch.forward(x, train) for branch in self.children]
        self.cache = [out.shape[-1] for out in outputs]                     # channels per branch
        return xp.concatenate(outputs, axis=-1)

    def backward(self, dout):
        # each branch gets its own channels of dL/dy; x feeds every branch, so sum
        dx, start = 0, 0
        for branch, size in zip(self.children, self.take_cache()):
            dx = dx + branch.backward(dout[..., start:start + size])
            start += size
        return dx


# --------------------------------------------------------------------------------------
# Recurrent layers: a sequence x (N, T, D) in, the last hidden state h_T (N, H) out
#
# One layer runs over the whole sequence: the input half of every gate, x_t W for all T
# steps, is ONE matrix product before the loop, (T*N, D) @ (D, gates*H); inside the loop
# each step adds h_{t-1} U, one (N, H) @ (H, gates*H) product for all gates. The backward
# pass walks the steps in reverse, carrying dL/dh (and, in an LSTM, dL/dc) from each step
# to the one before; the weights are shared by every step, so their gradients are sums
# over t, again one product each after the loop. Sequences are batch-first, x: (N, T, D);
# inside a layer the steps are stored time-first, (T, N, ...), so that step t of every
# array is one contiguous (N, ...) block.
# --------------------------------------------------------------------------------------

def sigmoid_in_place(x):
    """x <- sigmoid(x) = 1 / (1 + e^-x), written as tanh(x / 2) / 2 + 1/2: the same function,
    no exp can overflow for a large negative x, and no temporary array is made (x may be a
    view). Its derivative is sigmoid(x) * (1 - sigmoid(x)). Returns x."""
    x *= 0.5
    xp.tanh(x, out=x)
    x *= 0.5
    x += 0.5
    return x


def gate_blocks(labels, hidden, matrix):
    """[(label, index)]: the block of a Param that belongs to each gate.

    Gates are stacked along the last axis, gate k owning entries [k*H, (k+1)*H). For a
    weight matrix (rows, gates*H) the index selects all rows and those columns, for a bias
    vector (gates*H,) just those entries: param.value[index] is that gate's block.
    """
    blocks = []
    for k, label in enumerate(labels):
        columns = slice(k * hidden, (k + 1) * hidden)
        blocks.append((label, (slice(None), columns) if matrix else (columns,)))
    return blocks


def recurrent_param(role, shape, kind, labels, hidden):
    """A Param of a recurrent layer. kind ('weight' or 'bias') decides how it is initialised,
    gated, decayed and counted, exactly as for a linear layer; role ('input_weight',
    'recurrent_weight', 'bias', 'recurrent_bias') tells it apart from the layer's other
    Params of the same kind in its name (lstm1.recurrent_weight); parts lists its gates'
    blocks (see gate_blocks), so that a table can show each gate on its own row."""
    return Param(role, shape, kind, role=role, parts=gate_blocks(labels, hidden, matrix=len(shape) == 2))


def gradients_from_above(dout, return_sequences):
    """(from_above, dh_next): what a recurrent layer's backward pass starts from. With
    return_sequences every h_t reaches the loss directly: from_above[t] = dL/dh_t from the
    layers above, a (T, N, H) view of dout (N, T, H), and nothing comes back after step T.
    Otherwise only h_T does: from_above is None and dL/dh_T = dout (N, H)."""
    if return_sequences:
        return dout.transpose(1, 0, 2), xp.zeros_like(dout[:, 0])
    return None, dout


class LSTM(Layer):
    """Long short-term memory (Hochreiter & Schmidhuber 1997, with the forget gate of Gers et
    al. 2000) over a whole sequence.

    x: (N, T, D) -> the last hidden state h_T: (N, H), or with return_sequences=True every
    state h_1 ... h_T: (N, T, H) (to feed another recurrent layer). From h_0 and c_0 (zeros
    unless h0, c0 are set), for t = 1 ... T:
        z_t = x_t W + h_{t-1} U + b        (N, 4H): the four gates' inputs, in one product
        i_t = sigmoid(z_t[i])              input gate: how much of g_t to write
        f_t = sigmoid(z_t[f] + forget_bias)  forget gate: how much of c_{t-1} to keep
        g_t = tanh(z_t[g])                 the candidate written to the cell
        o_t = sigmoid(z_t[o])              output gate: how much of the cell to show
        c_t = f_t * c_{t-1} + i_t * g_t    the cell (memory)
        h_t = o_t * tanh(c_t)              the hidden state (output)
    W: (D, 4H) input weights, U: (H, 4H) recurrent weights, b: (4H,) bias; the gates'
    columns are in PyTorch's order i, f, g, o. W and U are 'weight' Params and b a 'bias',
    gated, initialised, decayed and pruned like a linear layer's.

    Bias: ONE per gate (4H), as TensorFlow's LSTM cells (the authors' framework) have.
    PyTorch keeps two, b_ih and b_hh, but they only ever appear as their sum, so one of
    them is redundant (and would double the biases SNIP scores): to copy this layer into
    torch.nn.LSTM, put b into bias_ih (plus forget_bias in the f block) and zeros into bias_hh.
    forget_bias: a constant added to the forget gate's input, not a parameter, exactly as
    TensorFlow's BasicLSTMCell and LSTMCell add their forget_bias=1.0. With b = 0 at
    initialisation, f_t starts near sigmoid(1) = 0.73 instead of 0.5, so the cell keeps
    what it holds over more steps and the gradient through c reaches the early steps.
    Being a constant, it is never pruned: b itself starts at 0 like every bias, so its
    connection sensitivity is 0 and SNIP prunes it first, while the offset stays.
    h0, c0: the initial state, None for zeros, else (N, H) arrays. backward always leaves
    dL/dh_0 and dL/dc_0 in h0_grad and c0_grad.
    """

    GATES = ("i", "f", "g", "o")
    needs_input_gradient = True    # False for a network's first computing layer: its input is data

    def __init__(self, d_in, hidden, return_sequences=False, forget_bias=1.0):
        self.hidden, self.return_sequences, self.forget_bias = hidden, return_sequences, forget_bias
        self.input_weight = recurrent_param("input_weight", (d_in, 4 * hidden), "weight", self.GATES, hidden)
        self.recurrent_weight = recurrent_param("recurrent_weight", (hidden, 4 * hidden), "weight",
                                                self.GATES, hidden)
        self.bias = recurrent_param("bias", (4 * hidden,), "bias", self.GATES, hidden)
        self.params = [self.input_weight, self.recurrent_weight, self.bias]
        self.h0 = self.c0 = None
        self.h0_grad = self.c0_grad = None

    def forward(self, x, train):                                           # x: (N, T, D)
        n, steps, _ = x.shape
        size = self.hidden
        w = self.input_weight.gated()                                      # (D, 4H), w * c
        u = self.recurrent_weight.gated()                                  # (H, 4H)
        x_by_time = x.transpose(1, 0, 2).reshape(steps * n, -1)            # (T*N, D), step 1's rows first
        inputs = (x_by_time @ w).reshape(steps, n, 4 * size)               # (T, N, 4H), x_t W for every t
        inputs += self.bias.gated()
        inputs[:, :, size:2 * size] += self.forget_bias
        gates = xp.empty_like(inputs)                                      # (T, N, 4H): i, f, g, o of each step
        cells = xp.empty((steps + 1, n, size), dtype=x.dtype)              # (T+1, N, H): c_0 ... c_T
        cell_tanh = xp.empty((steps, n, size), dtype=x.dtype)              # (T, N, H): tanh(c_1) ... tanh(c_T)
        hiddens = xp.empty((steps + 1, n, size), dtype=x.dtype)            # (T+1, N, H): h_0 ... h_T
        cells[0] = 0 if self.c0 is None else self.c0
        hiddens[0] = 0 if self.h0 is None else self.h0
        # sigmoid_in_place's identity, sigmoid(z) = tanh(z / 2) / 2 + 1/2, with a scale and an
        # offset per column, so that one tanh gives all four gates:
        # gate = scale * tanh(scale * z) + offset, with scale 1/2 and offset 1/2 in the
        # columns of i, f and o, and scale 1, offset 0 in those of g (tanh itself)
        scale, offset = xp.full(4 * size, 0.5, dtype=x.dtype), xp.full(4 * size, 0.5, dtype=x.dtype)
        scale[2 * size:3 * size], offset[2 * size:3 * size] = 1.0, 0.0     # (4H,) each
        for t in range(steps):        # arrays are indexed from 0: gates[t] belongs to step t+1
            z = hiddens[t] @ u                                             # (N, 4H)
            z += inputs[t]                                                 # z_t = x_t W + h_{t-1} U + b
            gate = gates[t]                                                # (N, 4H), a view, filled here
            z *= scale
            xp.tanh(z, out=gate)
            gate *= scale
            gate += offset                                                 # i, f, o = sigmoid(z), g = tanh(z)
            i, f, g, o = (gate[:, k * size:(k + 1) * size] for k in range(4))   # views, (N, H) each
            xp.multiply(f, cells[t], out=cells[t + 1])                     # c_t = f_t * c_{t-1}
            cells[t + 1] += i * g                                          #       + i_t * g_t
            xp.tanh(cells[t + 1], out=cell_tanh[t])
            xp.multiply(o, cell_tanh[t], out=hiddens[t + 1])               # h_t = o_t * tanh(c_t)
        self.cache = (x_by_time, x.shape, w, u, gates, cells, cell_tanh, hiddens)
        if self.return_sequences:
            return xp.ascontiguousarray(hiddens[1:].transpose(1, 0, 2))    # (N, T, H)
        return hiddens[steps]                                              # (N, H)

    def backward(self, dout):                      # dout: (N, H), or (N, T, H) with return_sequences
        x_by_time, x_shape, w, u, gates, cells, cell_tanh, hiddens = self.take_cache()
        steps, n, size = cell_tanh.shape
        dz = xp.empty_like(gates)                                          # (T, N, 4H): dL/dz_t of each step
        from_above, dh_next = gradients_from_above(dout, self.return_sequences)
        dc_next = xp.zeros((n, size), dtype=dout.dtype)                    # (N, H): c_T feeds only h_T
        for t in reversed(range(steps)):
            # h_t feeds the loss (with return_sequences) and the next step: dL/dh_t is the sum
            dh = dh_next + from_above[t] if from_above is not None else dh_next      # (N, H)
            gate = gates[t]
            i, f, g, o = (gate[:, k * size:(k + 1) * size] for k in range(4))
            # in the forward pass this was h_t = o_t * tanh(c_t), so now dL/do_t = dL/dh_t * tanh(c_t),
            # and dL/dc_t = (what step t+1 sent back) + dL/dh_t * o_t * (1 - tanh(c_t)^2)
            do = dh * cell_tanh[t]                                         # (N, H)
            dc = dc_next + dh * o * (1 - cell_tanh[t] * cell_tanh[t])      # (N, H)
            # forward: c_t = f_t * c_{t-1} + i_t * g_t, so
            # dL/di_t = dL/dc_t * g_t, dL/df_t = dL/dc_t * c_{t-1}, dL/dg_t = dL/dc_t * i_t
            di, df, dg = dc * g, dc * cells[t], dc * i                     # (N, H) each
            # forward: i, f, o = sigmoid(z), g = tanh(z), and sigmoid' = s (1 - s), tanh' = 1 - tanh^2
            d = dz[t]                                                      # (N, 4H), a view, filled here
            d[:, :size] = di * i * (1 - i)
            d[:, size:2 * size] = df * f * (1 - f)       # the constant forget_bias changes nothing here
            d[:, 2 * size:3 * size] = dg * (1 - g * g)
            d[:, 3 * size:] = do * o * (1 - o)
            # forward: z_t = x_t W + h_{t-1} U + b, so dL/dh_{t-1} = dL/dz_t U^T,
            # and c_t = f_t * c_{t-1} + ... gives dL/dc_{t-1} = dL/dc_t * f_t
            dh_next = d @ u.T                                              # (N, H)
            dc_next = dc * f                                               # (N, H)
        self.h0_grad, self.c0_grad = dh_next, dc_next                      # dL/dh_0, dL/dc_0: (N, H) each
        # forward: z_t = x_t W + h_{t-1} U + b at every t with the same W, U, b, so
        # dL/dW = sum_t x_t^T dL/dz_t, dL/dU = sum_t h_{t-1}^T dL/dz_t, dL/db = sum_t sum_n dL/dz_t:
        # each sum over t and n is one product of the stacked steps
        dz_rows = dz.reshape(steps * n, 4 * size)                          # (T*N, 4H)
        self.input_weight.grad = x_by_time.T @ dz_rows                     # (D, 4H)
        self.recurrent_weight.grad = hiddens[:-1].reshape(steps * n, size).T @ dz_rows   # (H, 4H)
        self.bias.grad = sum_rows(dz_rows)                              # (4H,)
        if not self.needs_input_gradient:
            return None
        # and dL/dx_t = dL/dz_t W^T, every step at once
        dx_by_time = (dz_rows @ w.T).reshape(steps, n, -1)                 # (T, N, D)
        return xp.ascontiguousarray(dx_by_time.transpose(1, 0, 2))         # (N, T, D)


class GRU(Layer):
    """Gated recurrent unit (Cho et al. 2014) over a whole sequence, in its "reset after"
    form (PyTorch's torch.nn.GRU, cuDNN, Keras with reset_after=True).

    x: (N, T, D) -> the last hidden state h_T: (N, H), or with return_sequences=True every
    state (N, T, H). From h_0 (zeros unless h0 is set), for t = 1 ... T:
        a_t = x_t W + b                    (N, 3H): the gates' input halves (all t at once)
        s_t = h_{t-1} U + [0, 0, b_hn]     (N, 3H): their recurrent halves, one product
        r_t = sigmoid(a_t[r] + s_t[r])     reset gate: how much of h_{t-1} the candidate sees
        z_t = sigmoid(a_t[z] + s_t[z])     update gate: how much of h_{t-1} to keep
        n_t = tanh(a_t[n] + r_t * s_t[n])  the candidate state
        h_t = (1 - z_t) * n_t + z_t * h_{t-1}
    W: (D, 3H) input weights, U: (H, 3H) recurrent weights (columns in PyTorch's order
    r, z, n), b: (3H,) input bias, b_hn: (H,) recurrent bias of the candidate.

    Why "reset after": the original GRU resets h_{t-1} BEFORE its product,
    n_t = tanh(x_t W_n + (r_t * h_{t-1}) U_n + b_n), which needs r_t first and so a second
    product per step. Resetting the product's result instead keeps ONE recurrent product
    for all three gates. Biases: PyTorch's recurrent biases b_hr, b_hz only ever appear
    added to the input biases b_r, b_z, so they are redundant and left out; but r_t
    multiplies b_hn, so b_hn is a parameter of its own: 3H + H biases. To copy this layer
    into torch.nn.GRU: bias_ih = b, bias_hh = [0, 0, b_hn].
    All four Params are gated and pruned like a linear layer's weights and biases.
    h0: the initial state, None for zeros, else (N, H); backward leaves dL/dh_0 in h0_grad.
    """

    GATES = ("r", "z", "n")
    needs_input_gradient = True    # False for a network's first computing layer: its input is data

    def __init__(self, d_in, hidden, return_sequences=False):
        self.hidden, self.return_sequences = hidden, return_sequences
        self.input_weight = recurrent_param("input_weight", (d_in, 3 * hidden), "weight", self.GATES, hidden)
        self.recurrent_weight = recurrent_param("recurrent_weight", (hidden, 3 * hidden), "weight",
                                                self.GATES, hidden)
        self.bias = recurrent_param("bias", (3 * hidden,), "bias", self.GATES, hidden)
        self.recurrent_bias = recurrent_param("recurrent_bias", (hidden,), "bias", ("n",), hidden)
        self.params = [self.input_weight, self.recurrent_weight, self.bias, self.recurrent_bias]
        self.h0 = None
        self.h0_grad = None

    def forward(self, x, train):                                           # x: (N, T, D)
        n, steps, _ = x.shape
        size = self.hidden
        w = self.input_weight.gated()                                      # (D, 3H), w * c
        u = self.recurrent_weight.gated()                                  # (H, 3H)
        recurrent_bias = self.recurrent_bias.gated()                       # (H,)
        x_by_time = x.transpose(1, 0, 2).reshape(steps * n, -1)            # (T*N, D), step 1's rows first
        inputs = (x_by_time @ w).reshape(steps, n, 3 * size)               # (T, N, 3H): a_t for every t
        inputs += self.bias.gated()
        gates = xp.empty_like(inputs)                                      # (T, N, 3H): r, z, n of each step
        candidate_recurrent = xp.empty((steps, n, size), dtype=x.dtype)    # (T, N, H): s_t[n] of each step
        hiddens = xp.empty((steps + 1, n, size), dtype=x.dtype)            # (T+1, N, H): h_0 ... h_T
        hiddens[0] = 0 if self.h0 is None else self.h0
        for t in range(steps):        # arrays are indexed from 0: gates[t] belongs to step t+1
            s = hiddens[t] @ u                                             # (N, 3H)
            gate = gates[t]                                                # (N, 3H), a view, filled here
            both = gate[:, :2 * size]                                      # (N, 2H): r and z
            xp.add(inputs[t][:, :2 * size], s[:, :2 * size], out=both)
            sigmoid_in_place(both)                                         # r, z = sigmoid(a + s)
            r, z = gate[:, :size], gate[:, size:2 * size]                  # views, (N, H) each
            xp.add(s[:, 2 * size:], recurrent_bias, out=candidate_recurrent[t])     # s_t[n]
            candidate = gate[:, 2 * size:]                                 # n_t, (N, H), a view
            xp.multiply(r, candidate_recurrent[t], out=candidate)
            candidate += inputs[t][:, 2 * size:]
            xp.tanh(candidate, out=candidate)                              # n = tanh(a[n] + r * s[n])
            h = hiddens[t + 1]
            xp.subtract(hiddens[t], candidate, out=h)
            h *= z
            h += candidate                                                 # h_t = n + z (h_{t-1} - n) = (1 - z) n + z h_{t-1}
        self.cache = (x_by_time, w, u, gates, candidate_recurrent, hiddens)
        if self.return_sequences:
            return xp.ascontiguousarray(hiddens[1:].transpose(1, 0, 2))    # (N, T, H)
        return hiddens[steps]                                              # (N, H)

    def backward(self, dout):                      # dout: (N, H), or (N, T, H) with return_sequences
        x_by_time, w, u, gates, candidate_recurrent, hiddens = self.take_cache()
        steps, n, size = candidate_recurrent.shape
        d_recurrent = xp.empty_like(gates)                                 # (T, N, 3H): dL/ds_t of each step
        d_candidate = xp.empty_like(candidate_recurrent)                   # (T, N, H): dL/da_t[n] of each step
        from_above, dh_next = gradients_from_above(dout, self.return_sequences)
        for t in reversed(range(steps)):
            # h_t feeds the loss (with return_sequences) and the next step: dL/dh_t is the sum
            dh = dh_next + from_above[t] if from_above is not None else dh_next      # (N, H)
            gate = gates[t]
            r, z, candidate = gate[:, :size], gate[:, size:2 * size], gate[:, 2 * size:]
            h_previous = hiddens[t]                                        # h_{t-1}, (N, H)
            # in the forward pass this was h_t = (1 - z_t) * n_t + z_t * h_{t-1}, so now
            # dL/dn_t = dL/dh_t * (1 - z_t), dL/dz_t = dL/dh_t * (h_{t-1} - n_t), and h_{t-1}
            # gets dL/dh_t * z_t directly (added below)
            dn = dh * (1 - z)                                              # (N, H)
            dz = dh * (h_previous - candidate)                             # (N, H)
            # forward: n_t = tanh(a_t[n] + r_t * s_t[n]), so dL/da_t[n] = dL/dn_t * (1 - n_t^2),
            # dL/dr_t = dL/da_t[n] * s_t[n] and dL/ds_t[n] = dL/da_t[n] * r_t
            d_candidate[t] = dn * (1 - candidate * candidate)
            dr = d_candidate[t] * candidate_recurrent[t]                   # (N, H)
            d = d_recurrent[t]                                             # (N, 3H), a view, filled here
            d[:, 2 * size:] = d_candidate[t] * r
            # forward: r_t = sigmoid(a_t[r] + s_t[r]), z_t likewise, and sigmoid' = s (1 - s):
            # dL/ds_t[r] = dL/dr_t * r_t (1 - r_t) (the same as dL/da_t[r]), likewise for z
            d[:, :size] = dr * r * (1 - r)
            d[:, size:2 * size] = dz * z * (1 - z)
            # forward: s_t = h_{t-1} U + ..., and h_t = ... + z_t * h_{t-1}, so
            # dL/dh_{t-1} = dL/ds_t U^T + dL/dh_t * z_t
            dh_next = d @ u.T + dh * z                                     # (N, H)
        self.h0_grad = dh_next                                             # dL/dh_0, (N, H)
        # forward: a_t = x_t W + b and s_t = h_{t-1} U + [0, 0, b_hn] at every t with the same
        # W, b, U, b_hn: their gradients are sums over t and n, one product each
        recurrent_rows = d_recurrent.reshape(steps * n, 3 * size)          # (T*N, 3H): dL/ds_t
        self.recurrent_weight.grad = hiddens[:-1].reshape(steps * n, size).T @ recurrent_rows   # (H, 3H)
        self.recurrent_bias.grad = sum_rows(recurrent_rows[:, 2 * size:])                    # (H,)
        # the input halves: a_t[r], a_t[z] enter exactly where s_t[r], s_t[z] do (their sum),
        # while a_t[n] enters outside the reset, with dL/da_t[n] found above. dL/ds_t is no
        # longer needed, so its candidate columns take dL/da_t[n] in place (no copy)
        d_recurrent[:, :, 2 * size:] = d_candidate                         # now dL/da_t of each step
        input_rows = recurrent_rows                                        # (T*N, 3H), the same array
        self.input_weight.grad = x_by_time.T @ input_rows                  # (D, 3H)
        self.bias.grad = sum_rows(input_rows)                           # (3H,)
        if not self.needs_input_gradient:
            return None
        # and dL/dx_t = dL/da_t W^T, every step at once
        dx_by_time = (input_rows @ w.T).reshape(steps, n, -1)              # (T, N, D)
        return xp.ascontiguousarray(dx_by_time.transpose(1, 0, 2))         # (N, T, D)


class AsSequence(Layer):
    """Read each image as a sequence of its rows: x (N, H, W, C) -> (N, T = H, D = W*C), or,
    with pixels=True, of its pixels: -> (N, T = H*W, D = C).

    Rows: step t is row t, its W pixels' C channels side by side (NHWC order); an MNIST
    digit becomes 28 steps of 28 pixels. Pixels: step t is pixel t in reading order, an MNIST
    digit 784 steps of one value. Like Flatten, it only reshapes.
    """

    def __init__(self, pixels=False):
        self.pixels = pixels

    def forward(self, x, train):
        self.cache = x.shape
        steps = x.shape[1] * x.shape[2] if self.pixels else x.shape[1]
        return x.reshape(x.shape[0], steps, -1)

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
    shifted = logits - logits.max(axis=1, keepdims=True)                   # (N, classes)
    log_probs = shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
    rows = xp.arange(n)
    loss = -log_probs[rows, labels].mean()
    # d/dlogits of -log softmax(z)[y] = softmax(z) - onehot(y); the mean divides by N
    dlogits = xp.exp(log_probs)
    dlogits[rows, labels] -= 1
    dlogits /= n
    return loss, dlogits


# ======================================================================================
# 5. Initialisation
#
# The paper compares four (its Table 3). fan_in and fan_out count the connections into and
# out of one unit: a linear W (D_in, D_out) has fan_in = D_in; a conv W (KH, KW, C, F) has
# fan_in = KH*KW*C and fan_out = KH*KW*F.
#     vs-x  variance scaling, Glorot & Bengio:  N(0, 2 / (fan_in + fan_out))
#     vs-h  variance scaling, He et al.:        N(0, 2 / fan_in)                (default)
#     rn    random normal:                      N(0, 0.1^2)
#     tn    truncated normal:                   N(0, 0.1^2), redrawn beyond 2 standard deviations
# Biases and batch-norm shifts start at 0, batch-norm scales at 1. Values are drawn on the
# host with NumPy, so a seed gives the same network on the CPU and on the GPU.
# ======================================================================================

INITIALISATIONS = ("vs-x", "vs-h", "rn", "tn")


def draw_weight(shape, init, rng):
    receptive_field = math.prod(shape[:-2])
    fan_in, fan_out = receptive_field * shape[-2], receptive_field * shape[-1]
    if init == "vs-x":
        return rng.normal(0.0, math.sqrt(2.0 / (fan_in + fan_out)), shape)
    if init == "vs-h":
        return rng.normal(0.0, math.sqrt(2.0 / fan_in), shape)
    if init == "rn":
        return rng.normal(0.0, 0.1, shape)
    if init == "tn":
        z = rng.standard_normal(shape)
        while True:
            outside = numpy.abs(z) > 2.0
            if not outside.any():
                return 0.1 * z
            z[outside] = rng.standard_normal(int(outside.sum()))
    raise UsageError(f"unknown initialisation {init!r} (choose from {', '.join(INITIALISATIONS)})")


def initialise(model, init="vs-h", rng=None, dtype=None):
    """Give every Param of `model` a fresh value (removing any gates) on the current device."""
    rng = rng if rng is not None else numpy.random.default_rng(0)
    dtype = dtype or xp.float32
    for p in parameters_of(model):
        if p.kind == "weight":
            host = draw_weight(p.shape, init, rng)
        elif p.kind in ("scale", "running_var"):
            host = numpy.ones(p.shape)
        else:                                    # bias, shift, running_mean
            host = numpy.zeros(p.shape)
        p.value = xp.asarray(host, dtype=dtype)
        p.mask = None
        p.grad = None


# ======================================================================================
# 6. SNIP: connection sensitivity and the global top-k (the paper's Algorithm 1)
# ======================================================================================

PRUNE_CHOICES = ("weights+biases", "weights")


def prunable_parameters(model, prune="weights+biases"):
    """The Params that get gates.

    'weights+biases' (default): every conv/linear weight and bias, the authors' choice and
    the set their parameter counts refer to. Biases start at 0, so their sensitivity
    w * dL/dw is exactly 0 and SNIP prunes every bias unless kappa exceeds the number of
    non-zero scores. 'weights': weights only (mil-ad/snip, Synaptic Flow); biases stay
    ungated and are all kept and trained.
    """
    kinds = {"weights+biases": ("weight", "bias"), "weights": ("weight",)}
    if prune not in kinds:
        raise UsageError(f"unknown --prune {prune!r} (choose from {', '.join(PRUNE_CHOICES)})")
    return [p for p in parameters_of(model) if p.kind in kinds[prune]]


def connection_sensitivity(model, images, labels, params):
    """g = dL/dc at c = 1 for every gated entry (Algorithm 1, step 3).

    With c = 1 the network computes exactly as if ungated, and dL/dc = w * dL/d(w * c).
    Batch norm runs on its running statistics (train=False), as in the authors' code.
    Returns a list of arrays shaped like the params.
    """
    for p in params:
        p.mask = xp.ones_like(p.value)           # c = 1
    logits = model.forward(images, train=False)
    _, dlogits = softmax_cross_entropy(logits, labels)
    model.backward(dlogits)
    return [p.value * p.grad for p in params]


def normalised_scores(sensitivities):
    """Algorithm 1, step 4: s = |g| / sum |g|, one flat vector over ALL layers.

    Dividing by the sum makes s independent of the loss's scale (it never changes the
    ranking). If every g is 0 the scores stay 0.
    """
    flat = xp.concatenate([xp.abs(g).ravel() for g in sensitivities])
    total = flat.sum()
    return flat / xp.where(total > 0, total, 1)          # decided on the device, not the host


def kappa_for(sparsity, m):
    """The number of connections kept: kappa = round((1 - sparsity) * m), in float64 as the authors."""
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
    threshold = xp.partition(scores, m - kappa)[m - kappa]   # the kappa-th largest score
    keep = scores > threshold                                # fewer than kappa of these ...
    missing = kappa - keep.sum()
    ties = scores == threshold                               # ... the rest come from the ties,
    count = xp.cumsum(ties, dtype=xp.int32 if m < 2**31 else xp.int64)    # ties so far, at each index
    keep |= ties & (count <= missing)                        # the first `missing` of them
    return keep


def snip_masks(sensitivities, sparsity):
    """Algorithm 1, step 5: keep the kappa connections with the largest s, across all layers.

    sensitivities: list of arrays g. Returns one 0/1 mask per array (same dtype).
    """
    s = normalised_scores(sensitivities)
    keep = top_k_mask(s, kappa_for(sparsity, s.size))
    masks, start = [], 0
    for g in sensitivities:
        masks.append(keep[start:start + g.size].reshape(g.shape).astype(g.dtype))
        start += g.size
    return masks


def apply_masks(params, masks):
    """Fix the gates c and zero the pruned weights: from now on w is exactly 0 where c is 0."""
    for p, mask in zip(params, masks):
        p.mask = mask
        p.value = p.value * mask
        p.grad = None


def snip(model, images, labels, sparsity, prune="weights+biases", report=None):
    """Prune `model` once, at initialisation, from one mini-batch. Returns the gated Params.
    A dict `report` receives m, kappa and how many scores are non-zero."""
    params = prunable_parameters(model, prune)
    sensitivities = connection_sensitivity(model, images, labels, params)
    apply_masks(params, snip_masks(sensitivities, sparsity))
    if report is not None:
        m = sum(p.size for p in params)
        nonzero, = host_values(sum(xp.count_nonzero(g) for g in sensitivities))
        report.update(m=m, kappa=kappa_for(sparsity, m), nonzero_scores=int(nonzero))
    return params


def random_pruning(model, sparsity, rng, prune="weights+biases", report=None):
    """The baseline SNIP must beat: kappa connections chosen uniformly at random over the
    whole network (every gated entry gets an independent uniform score, drawn on the host
    so that a seed gives the same mask on every device; the global top-k does the rest).
    Returns the gated Params; `report` as for snip."""
    params = prunable_parameters(model, prune)
    scores = [xp.asarray(rng.random(p.shape), dtype=p.value.dtype) for p in params]
    apply_masks(params, snip_masks(scores, sparsity))
    if report is not None:
        m = sum(p.size for p in params)
        report.update(m=m, kappa=kappa_for(sparsity, m), nonzero_scores=m)
    return params


def pruning_table(model, batch_norm=False):
    """Rows (name, total, kept) for every conv/linear/recurrent weight and bias (kept = non-zero
    gates), one row per gate of a recurrent layer's Params (lstm1.input_weight[f]), and with
    batch_norm=True the (never gated) batch-norm scales and shifts too."""
    kinds = ("weight", "bias", "scale", "shift") if batch_norm else ("weight", "bias")
    blocks = []                                              # (name, Param, index of the block)
    for p in parameters_of(model):
        if p.kind in kinds:
            blocks += [(p.name if label is None else f"{p.name}[{label}]", p, index)
                       for label, index in p.parts or [(None, ...)]]
    sizes = [p.value[index].size for _, p, index in blocks]          # a view's size: nothing is copied
    gated = [(p, index) for _, p, index in blocks if p.mask is not None]
    counts = iter(host_values(*(xp.count_nonzero(p.mask[index]) for p, index in gated)))   # one wait
    return [(name, size, size if p.mask is None else int(next(counts)))
            for (name, p, _), size in zip(blocks, sizes)]


def format_pruning_table(rows, alive=None):
    """The table a run prints. alive: {'input': (read, total), 'fc1': (alive, units), ...}
    (alive_summary, section 7) adds a column of alive units, on each layer's first row,
    and a line saying how many input entries the network reads."""
    width = max(len("parameter"), *(len(name) for name, _, _ in rows))
    alive = alive or {}
    header = f"{'parameter':<{width}}  {'kept':>10}  {'total':>10}  {'kept %':>7}"
    lines = [header + ("  alive units" if alive else "")]
    shown = set()
    for name, total, kept in rows:
        line = f"{name:<{width}}  {kept:>10,}  {total:>10,}  {100 * kept / total:>6.2f}%"
        layer = name.split(".")[0]
        if layer in alive and layer not in shown:
            shown.add(layer)
            line += f"  {alive[layer][0]:>5,} of {alive[layer][1]:,}"
        lines.append(line)
    total = sum(r[1] for r in rows)
    kept = sum(r[2] for r in rows)
    lines.append(f"{'total':<{width}}  {kept:>10,}  {total:>10,}  {100 * kept / total:>6.2f}%")
    lines.append(f"parameters: {total:,} -> {kept:,} ({100 * (1 - kept / total):.2f}% pruned)")
    if "input" in alive:
        lines.append(f"input entries read: {alive['input'][0]:,} of {alive['input'][1]:,}; a unit is alive "
                     f"when it has an input and an output (see alive_units)")
    return "\n".join(lines)


# ======================================================================================
# 7. Dead units and compaction: the smaller dense network a mask leaves
#
# SNIP removes connections, but a very sparse network loses whole units too: a hidden
# unit whose incoming connections were all pruned computes 0 for ever (unless it kept its
# bias), and one whose outgoing connections were all pruned is never read. Such a unit is
# DEAD: removing it, with every weight that touches it, changes neither what the network
# computes nor how it trains. A chain network (the LeNets) can then be COMPACTED into the
# smaller dense network it exactly is, trained at the speed of its size, and EXPANDED
# back into its full shapes (zeros where units were removed) for checkpoints and results.
#
# Definitions. Only the gates decide: a connection is kept where c = 1, and an ungated
# Param (a bias with --prune weights, say) counts as all kept. A unit is an output feature
# of a Linear, an output channel of a Conv2D, or a hidden unit of an LSTM or GRU.
#   signal  The network's input entries have signal. A unit has signal when it has a kept
#           bias (a kept bias is learned, so even one that starts at 0 makes the unit a
#           learned constant, which is not dead) or a kept incoming connection from
#           something with signal. Without signal a unit's output is exactly 0 for ever:
#           every term of its sum is a weight times an exact 0, and there is no bias.
#   read    The class scores are read. A unit is read when a kept connection carries it to
#           something read. What is not read cannot change the loss: its dL/dy is exactly 0.
#   alive   signal AND read. A conv channel is alive when at some position it both has
#           signal and is read (each of its OH*OW positions is judged on its own).
# Transitive (the default): signal is followed forward through the whole network and read
# backward from the class scores, so a unit fed only by dead units is dead too. Local (one
# step, transitive=False): each layer is judged on its own, as if all its inputs had
# signal and all its outputs were read: a unit is alive when it has a kept bias or a kept
# incoming weight, and a kept outgoing weight to the next layer with weights (for a conv
# channel, at any positions). Transitive alive units are always locally alive too.
#
# How: 0/1 indicator arrays shaped like ONE example's activations are sent through the
# network. Forward, each Linear/Conv2D computes with its gates as weights and its bias
# gate as bias (then every sum of 0/1 terms is > 0 exactly when one term is 1); backward,
# its input gradient with the read indicator as dL/dy. Every result is thresholded back to
# {0, 1}. Every layer type's rule is in LIVENESS_RULES, one entry per type (the recurrent
# layers' follow their units through the steps); a new layer adds its own there.
# ======================================================================================

def kept(p):
    """The gates of Param p as a 0/1 float32 array shaped like p (all ones if p is ungated)."""
    if p.mask is None:
        return xp.ones(p.shape, dtype=xp.float32)
    return (p.mask != 0).astype(xp.float32)


def indicator(x):
    """x > 0 as a 0/1 float32 array: 'some term of this sum was 1'."""
    return (x > 0).astype(xp.float32)


class LivenessRule(NamedTuple):
    """How signal and read pass through one type of layer.

    signal(walk, layer, signal_in) -> signal_out, read(walk, layer, read_out) -> read_in;
    both see indicators of one example, (1, ...) arrays, and the walk thresholds what they
    return. units: the layer's outputs are units (reported by alive_units). A rule that
    needs something from its forward walk in its backward walk keeps it in walk.memo.
    """
    signal: Callable
    read: Callable
    units: bool = False


class Liveness:
    """The signal and read indicators at every layer's output, for one example.

    model: any network made of layers with a rule in LIVENESS_RULES; input_shape: one
    example's shape, (H, W, C). Afterwards at_output[id(layer)] = [signal, read], two 0/1
    arrays (1, ...) shaped like that layer's output; input_read (1, H, W, C) tells which
    input entries are read; unit_layers lists the layers with units in forward order.
    transitive=False judges each layer with units on its own (see the banner above).
    """

    def __init__(self, model, input_shape, transitive=True):
        self.transitive = transitive
        self.memo = {}              # id(layer) -> what its signal rule leaves for its read rule
        self.at_output = {}         # id(layer) -> [signal, read] at its output
        self.unit_layers = []
        signal = xp.ones((1,) + tuple(input_shape), dtype=xp.float32)  # the input has signal
        scores = self.signal(model, signal)                                  # (1, classes)
        self.input_read = self.read(model, xp.ones_like(scores))          # the scores are read

    def signal(self, layer, signal_in):
        """Walk `layer` forward: the signal indicator at its output."""
        rule = rule_for(layer)
        signal_out = indicator(rule.signal(self, layer, signal_in))
        self.at_output[id(layer)] = [signal_out, None]
        if rule.units:
            self.unit_layers.append(layer)
        return signal_out

    def read(self, layer, read_out):
        """Walk `layer` backward (after signal): the read indicator at its input."""
        self.at_output[id(layer)][1] = read_out
        return indicator(rule_for(layer).read(self, layer, read_out))

    def given(self, indicator_array):
        """What a layer with weights sees: the indicator itself (transitive), or all ones
        (local: as if every input had signal, or every output were read)."""
        return indicator_array if self.transitive else xp.ones_like(indicator_array)

    def alive(self, layer):
        """bool (units,) on the device: the units (last axis) of `layer`'s output that have
        signal and are read at the same position (local: at any positions)."""
        signal, read = (each.reshape(-1, each.shape[-1]) for each in self.at_output[id(layer)])
        if not self.transitive:                                             # (positions, units)
            return (signal.max(axis=0) > 0) & (read.max(axis=0) > 0)
        return (signal * read).max(axis=0) > 0


def rule_for(layer):
    rule = LIVENESS_RULES.get(type(layer))
    if rule is None:
        raise UsageError(f"cannot tell which units are alive through a {type(layer).__name__} "
                            f"layer: it has no entry in LIVENESS_RULES")
    return rule


# --- the rules, one per layer type ----------------------------------------------------------

def linear_signal(walk, layer, signal):
    # forward y = x W + b with the gates as W and b: feature j has signal when a kept
    # W[i, j] meets an input i with signal, or b[j] is kept
    y = walk.given(signal) @ kept(layer.weight)                             # (1, D_out)
    if layer.bias is not None:
        y = y + kept(layer.bias)
    return y


def linear_read(walk, layer, read):
    # backward dL/dx = dL/dy W^T: input i is read when a kept W[i, j] leads to a read j
    return walk.given(read) @ kept(layer.weight).T                          # (1, D_in)


def gate_convolution(layer):
    """A Conv2D shaped like `layer` whose weight and bias are `layer`'s gates."""
    kernel_h, kernel_w, channels, filters = layer.weight.shape
    copy = Conv2D(channels, filters, (kernel_h, kernel_w), layer.stride, layer.padding,
                     bias=layer.bias is not None)
    copy.weight.value = kept(layer.weight)
    if layer.bias is not None:
        copy.bias.value = kept(layer.bias)
    return copy


def conv_signal(walk, layer, signal):
    # the convolution of the signal with the gates: position (a, b) of channel f has signal
    # when a kept tap of W[..., f] meets an input pixel with signal, or b[f] is kept (zero
    # padding is a constant 0: no signal)
    copy = walk.memo[id(layer)] = gate_convolution(layer)
    return copy.forward(walk.given(signal), train=False)                    # (1, OH, OW, F)


def conv_read(walk, layer, read):
    # backward dL/dx = col2im(dL/dy W^T): a pixel is read when a kept tap carries it to a
    # read output position (the copy's backward needs its forward's cache, made above)
    return walk.memo.pop(id(layer)).backward(walk.given(read))              # (1, H, W, C)


def pool_signal(walk, layer, signal):
    # max or mean of a window of 0/1 values: 1 when some pixel of the window has signal
    walk.memo[id(layer)] = signal.shape
    return type(layer)(layer.kernel, layer.stride, layer.padding).forward(signal, train=False)


def window_read(walk, layer, read):
    # every pixel of a read window is read (a max-pool's maximum may be at any of them):
    # the adjoint of the window sum, which is AvgPool2D's backward up to positive factors
    windows = AvgPool2D(layer.kernel, layer.stride, layer.padding)
    windows.forward(xp.zeros(walk.memo.pop(id(layer)), dtype=read.dtype), train=False)
    return windows.backward(read)


def same_signal(walk, layer, signal):
    return signal                     # ReLU, Identity: y is x, or 0 where x is 0


def same_read(walk, layer, read):
    return read                       # ReLU, BatchNorm, Identity: y depends on x (or may)


def every_channel_signal(walk, layer, signal):
    # batch norm: y = scale * x_hat + shift, and the learned shift is there even where x
    # is exactly 0 (x_hat is then 0): every channel has signal
    return xp.ones_like(signal)


def flatten_signal(walk, layer, signal):
    walk.memo[id(layer)] = signal.shape
    return signal.reshape(signal.shape[0], -1)                              # (1, H*W*C)


def flatten_read(walk, layer, read):
    return read.reshape(walk.memo.pop(id(layer)))                           # (1, H, W, C)


def global_pool_signal(walk, layer, signal):
    walk.memo[id(layer)] = signal.shape
    return signal.max(axis=(1, 2))                                          # (1, C)


def global_pool_read(walk, layer, read):
    # the mean reads every position of its channel
    return xp.broadcast_to(read[:, None, None, :], walk.memo.pop(id(layer)))


def zero_channels_signal(walk, layer, signal):
    walk.memo[id(layer)] = signal.shape[-1]
    return ZeroChannels(layer.extra).forward(signal, train=False)        # the zeros: no signal


def zero_channels_read(walk, layer, read):
    return read[..., :walk.memo.pop(id(layer))]


def gather_signal(walk, layer, signal):
    walk.memo[id(layer)] = signal.shape
    return signal[..., layer.indices]


def gather_read(walk, layer, read):
    read_in = xp.zeros(walk.memo.pop(id(layer)), dtype=read.dtype)
    read_in[..., layer.indices] = read
    return read_in


def chain_signal(walk, layer, signal):
    for child in layer.children:
        signal = walk.signal(child, signal)
    return signal


def chain_read(walk, layer, read):
    for child in reversed(layer.children):
        read = walk.read(child, read)
    return read


def residual_signal(walk, layer, signal):
    # y = body(x) + shortcut(x): signal when either path brings some
    return xp.maximum(walk.signal(layer.body, signal), walk.signal(layer.shortcut, signal))


def residual_read(walk, layer, read):
    # x is read when either path reads it
    return xp.maximum(walk.read(layer.body, read), walk.read(layer.shortcut, read))


def concat_signal(walk, layer, signal):
    outputs = [walk.signal(branch, signal) for branch in layer.children]
    walk.memo[id(layer)] = [out.shape[-1] for out in outputs]               # channels per branch
    return xp.concatenate(outputs, axis=-1)


def concat_read(walk, layer, read):
    # each branch reads x for its own channels of y; x is read when some branch reads it
    read_in, start = 0, 0
    for branch, size in zip(layer.children, walk.memo.pop(id(layer))):
        read_in = read_in + walk.read(branch, read[..., start:start + size])
        start += size
    return read_in


def as_sequence_signal(walk, layer, signal):
    walk.memo[id(layer)] = signal.shape
    return AsSequence(layer.pixels).forward(signal, train=False)            # (1, T, D)


def recurrent_signal(walk, layer, signal):
    # Which hidden units can ever be non-zero. An LSTM starts from c_0 = 0 and writes
    # c_t = f_t * c_{t-1} + i_t * g_t, h_t = o_t * tanh(c_t); a GRU starts from h_0 = 0 and
    # writes h_t = (1 - z_t) * n_t + z_t * h_{t-1}. The sigmoid gates are 1/2 without input
    # and only scale, so unit j stays at exactly 0 unless its candidate (g_j, or n_j) gets
    # signal: from a kept input weight of a feature with signal, a kept bias (or b_hn), or
    # a kept recurrent weight of a unit with signal, a step later: followed for T steps.
    steps, hidden = signal.shape[1], layer.hidden
    walk.memo[id(layer)] = signal.shape
    candidate = slice(2 * hidden, 3 * hidden)
    features = walk.given(signal.max(axis=1))                               # (1, D): signal at some step
    direct = features @ kept(layer.input_weight)[:, candidate] + kept(layer.bias)[candidate]
    if isinstance(layer, GRU):
        direct = direct + kept(layer.recurrent_bias)                        # inside the reset: still signal
    recurrent = kept(layer.recurrent_weight)[:, candidate]                  # (H, H)
    units = indicator(direct)                                               # (1, H), after one step
    for _ in range(steps - 1 if walk.transitive else 1):
        units = indicator(direct + walk.given(units) @ recurrent)
    return xp.broadcast_to(units[:, None, :], (1, steps, hidden)) if layer.return_sequences else units


def recurrent_read(walk, layer, read):
    # h_T is read where the layer above reads it (with return_sequences: h_t at some step);
    # h_{t-1} is read through a kept recurrent weight into ANY gate of a read unit (each
    # gate changes that unit), and an input feature through a kept input weight likewise:
    # followed back for T steps
    shape = walk.memo.pop(id(layer))                                        # (1, T, D)
    steps, gates, hidden = shape[1], len(layer.GATES), layer.hidden
    into_any_gate = [kept(p).reshape(-1, gates, hidden).max(axis=1)         # (rows, H): into some gate of j
                     for p in (layer.input_weight, layer.recurrent_weight)]
    units = read.max(axis=1) if layer.return_sequences else read            # (1, H)
    for _ in range(steps - 1 if walk.transitive else 1):
        units = indicator(units + walk.given(units) @ into_any_gate[1].T)
    # a unit read only through the recurrence is read too: record the closure at the output
    walk.at_output[id(layer)][1] = (xp.broadcast_to(units[:, None, :], (1, steps, hidden))
                                    if layer.return_sequences else units)
    features = walk.given(units) @ into_any_gate[0].T                       # (1, D)
    return xp.broadcast_to(features[:, None, :], shape)


LIVENESS_RULES = {
    Linear: LivenessRule(linear_signal, linear_read, units=True),
    Conv2D: LivenessRule(conv_signal, conv_read, units=True),
    MaxPool2D: LivenessRule(pool_signal, window_read),
    AvgPool2D: LivenessRule(pool_signal, window_read),
    GlobalAvgPool: LivenessRule(global_pool_signal, global_pool_read),
    ReLU: LivenessRule(same_signal, same_read),
    Identity: LivenessRule(same_signal, same_read),
    BatchNorm: LivenessRule(every_channel_signal, same_read),
    Flatten: LivenessRule(flatten_signal, flatten_read),
    ZeroChannels: LivenessRule(zero_channels_signal, zero_channels_read),
    Gather: LivenessRule(gather_signal, gather_read),
    Sequential: LivenessRule(chain_signal, chain_read),
    Residual: LivenessRule(residual_signal, residual_read),
    Concat: LivenessRule(concat_signal, concat_read),
    AsSequence: LivenessRule(as_sequence_signal, flatten_read),
    LSTM: LivenessRule(recurrent_signal, recurrent_read, units=True),
    GRU: LivenessRule(recurrent_signal, recurrent_read, units=True),
}


# --- what the rest of the program asks ------------------------------------------------------

def layer_name(layer):
    """The name prefix of a layer's Params: 'fc1' for fc1.weight and fc1.bias."""
    return layer.params[0].name.rsplit(".", 1)[0]


def host_vectors(vectors):
    """Device arrays as NumPy arrays of the same shapes, fetched with ONE device-to-host
    copy (of all of them concatenated), not one per array."""
    if not vectors:
        return []
    flat = to_host(xp.concatenate([v.reshape(-1) for v in vectors]))   # the one copy
    ends = numpy.cumsum([v.size for v in vectors])
    return [part.reshape(v.shape) for part, v in zip(numpy.split(flat, ends[:-1]), vectors)]


def alive_units(model, input_shape, transitive=True):
    """Which units of every conv/linear/recurrent layer are alive (see the banner: signal and
    read), and which input entries the network reads.

    model: any network whose layers have a rule in LIVENESS_RULES (every layer of the model
    zoo); input_shape: one example's (H, W, C). Returns a dict of NumPy bool arrays:
    'input' -> (H, W, C), then one entry per layer with units (Linear, Conv2D, LSTM, GRU) in
    forward order, keyed by its name prefix ('conv1', 'fc2', 'lstm1'), -> (units,). transitive=False: each
    layer on its own (one step). The last layer's class scores are read, so a score is
    reported alive when it has signal. One device-to-host copy.
    """
    walk = Liveness(model, input_shape, transitive)
    vectors = [walk.input_read[0] > 0] + [walk.alive(layer) for layer in walk.unit_layers]
    host = host_vectors(vectors)
    alive = {"input": host[0]}
    alive.update({layer_name(layer): units for layer, units in zip(walk.unit_layers, host[1:])})
    return alive


def alive_summary(model, input_shape, transitive=True):
    """{'input': (entries read, entries), 'conv1': (alive, units), ...}: alive_units as
    counts, for the pruning table and results.json."""
    return {name: (int(flags.sum()), int(flags.size))
            for name, flags in alive_units(model, input_shape, transitive).items()}


def format_alive_summary(summary):
    """Two lines for the log, e.g.
    input entries read: 304 of 784
    alive units (an input and an output): fc1 198/300, fc2 80/100, fc3 10/10"""
    read, total = summary["input"]
    units = ", ".join(f"{name} {alive:,}/{count:,}" for name, (alive, count) in summary.items()
                      if name != "input")
    return f"input entries read: {read:,} of {total:,}\nalive units (an input and an output): {units}"


# ======================================================================================
# Compaction of a chain network
#
# compact() keeps, of every Linear/Conv2D, the rows of its alive inputs and the columns of
# its alive units (the last layer keeps all its outputs: the class scores), and puts a
# Gather where the next layer reads only some entries (input channels, or the features
# after a Flatten). The kept weights keep their gates: they are still sparse inside.
#
# Why it is exact, forward and for SGD with momentum and weight decay. A removed unit
# (or input entry, or flattened feature) either has no signal (its output is exactly 0
# for ever, with no bias to learn) or is not read (its dL/dy is exactly 0 at every step,
# and nothing that reaches the loss depends on it). So every kept weight removed with it
#   - multiplies an activation that is exactly 0: it adds exactly 0 to its sum, and its
#     gradient x * dL/dy is exactly 0; or
#   - feeds only units that are not read: its gradient x * dL/dy is exactly 0, and the
#     values it changes are read by nothing.
# A kept weight between two alive units is never removed, and a pruned one (c = 0) adds
# exactly 0 either way. In a convolution the same holds position by position: a channel is
# kept or removed whole, a window of a pooling never mixes channels, and where a kept
# channel reads a removed one, it reads an exact 0 or feeds only unread positions. The
# surviving weights therefore see the same sums and the same gradients, so momentum and
# weight decay, which act entry by entry, move them the same way: the same function and
# the same training trajectory, up to the rounding of sums taken in another order (the
# compact sums leave out exact zeros). (All this for finite values: 0 * inf is NaN, and a
# diverged run is stopped anyway.) What the removed weights would have done in the masked
# run (decay towards 0, touching nothing) is not followed: expand() writes 0 there.
#
# Not exact, so refused: batch norm (its shift makes a channel without inputs a learned
# constant that the channel's own masks cannot show), residual and concatenation blocks
# (not a chain), and any layer compaction does not know.
# ======================================================================================

CHAIN_LAYERS = (Linear, Conv2D, MaxPool2D, AvgPool2D, ReLU, Flatten)


def chain_of(model):
    """The layers of a chain network in order (nested Sequentials opened), or a UsageError
    saying in one line why `model` cannot be compacted exactly."""
    if type(model) is not Sequential:
        raise UsageError(f"cannot compact a {type(model).__name__}: only a Sequential chain")
    layers = []
    for child in model.children:
        if type(child) is Sequential:
            layers += chain_of(child)
        elif type(child) is BatchNorm:
            raise UsageError(f"cannot compact a network with batch norm ({layer_name(child)}): its "
                                f"shift makes a channel without inputs a learned constant")
        elif type(child) in (Residual, Concat):
            raise UsageError(f"cannot compact a network with {type(child).__name__} blocks: it is "
                                f"not a chain")
        elif type(child) not in CHAIN_LAYERS:
            raise UsageError(f"cannot compact a network with {type(child).__name__} layers: "
                                f"only chains of Linear, Conv2D, MaxPool2D, AvgPool2D, ReLU and Flatten")
        else:
            layers.append(child)
    return layers


class Compaction:
    """A pruned chain network and the smaller dense network it exactly is.

    model: the full network (its Params keep their full shapes and their masks);
    network: the compact Sequential, whose Params have the same names; parts:
    {name: (full Param, compact Param, index)}, with full_array[index] the entries that
    survive, shaped like the compact Param.
    """

    def __init__(self, model, network, parts):
        self.model, self.network, self.parts = model, network, parts

    def compacted(self, arrays):
        """{name: array shaped like the full Param} -> {name: its surviving entries, shaped
        like the compact Param}: values, or momentum buffers read from a checkpoint."""
        return {name: xp.ascontiguousarray(array[self.parts[name][2]]) for name, array in arrays.items()}

    def expanded(self, arrays):
        """{name: array shaped like the compact Param} -> {name: array shaped like the full
        Param}, 0 exactly where units or unread inputs were removed: momentum buffers for a
        checkpoint, say."""
        full_arrays = {}
        for name, array in arrays.items():
            full, _, index = self.parts[name]
            full_arrays[name] = xp.zeros(full.shape, dtype=array.dtype)
            full_arrays[name][index] = array
        return full_arrays

    def expand(self):
        """Write the compact network's values into the full model's Params (0 where units or
        unread inputs were removed; the masks stay as they are). Returns the model."""
        values = self.expanded({name: small.value for name, (_, small, _) in self.parts.items()})
        for name, (full, _, _) in self.parts.items():
            full.value = values[name]
        return self.model


def compact(model, input_shape):
    """The compact network of a pruned chain `model` (a Sequential of Linear, Conv2D,
    MaxPool2D, AvgPool2D, ReLU and Flatten; anything else is a UsageError).

    input_shape: one example's (H, W, C). Every dead unit (see alive_units, transitive) is
    removed with every row and column that touches it; input channels and flattened
    features that no alive unit reads are dropped by a Gather. The compact Params have the
    full ones' names, their surviving values and masks (copies), and the same
    needs_input_gradient. Returns a Compaction. One device-to-host copy (the alive entries).
    """
    layers = chain_of(model)
    with_weights = [i for i, layer in enumerate(layers) if type(layer) in (Linear, Conv2D)]
    if not with_weights:
        raise UsageError("cannot compact a network without a Linear or Conv2D layer")
    last = with_weights[-1]                  # its outputs are the class scores: all are kept
    walk = Liveness(model, input_shape)
    channels = walk.input_read.shape[-1]
    # The alive entries along the last axis at every place compaction cuts: the input's
    # channels, the units of every layer with weights, the features after every Flatten
    # that a layer with weights follows.
    cuts = [i for i, layer in enumerate(layers)
            if i in with_weights[:-1] or (type(layer) is Flatten and i < last)]
    host = host_vectors([walk.input_read.reshape(-1, channels).max(axis=0) > 0]
                        + [walk.alive(layers[i]) for i in cuts])
    alive_at = dict(zip(cuts, host[1:]))
    kept_entries = numpy.flatnonzero(host[0])     # of the current activation's last axis, full layout
    compact_layers = [] if kept_entries.size == channels else [Gather(kept_entries)]
    parts, shape = {}, (1,) + tuple(input_shape)
    for i, layer in enumerate(layers):
        if i in with_weights:
            units = numpy.arange(layer.weight.shape[-1]) if i == last else numpy.flatnonzero(alive_at[i])
            if units.size == 0 or kept_entries.size == 0:
                raise UsageError(f"cannot compact: {layer_name(layer)} has no alive unit or reads no "
                                    f"alive input, the network is disconnected")
            compact_layers.append(smaller(layer, kept_entries, units, parts))
            kept_entries = units
        elif type(layer) is Flatten:
            compact_layers.append(Flatten())
            if i < last:
                gather, kept_entries = flattened_entries(shape, kept_entries, alive_at[i])
                compact_layers += gather
        else:
            compact_layers.append(type(layer)(layer.kernel, layer.stride, layer.padding)
                                  if type(layer) in (MaxPool2D, AvgPool2D) else ReLU())
        shape = walk.at_output[id(layer)][0].shape            # layer's output, full layout
    return Compaction(model, Sequential(*compact_layers), parts)


def flattened_entries(shape, channels, alive):
    """After a Flatten of a full (1, H, W, C) activation of which only `channels` survive:
    ([Gather] or [], the full flattened indices kept).

    alive: bool (H*W*C,), the alive features in the full layout, index (h*W + w)*C + c. The
    compact Flatten lays out (h, w, k) for the k-th kept channel: index (h*W + w)*K + k.
    """
    full_channels = shape[-1]
    features = numpy.flatnonzero(alive)                                     # full indices
    rank = numpy.full(full_channels, -1)
    rank[channels] = numpy.arange(channels.size)
    assert (rank[features % full_channels] >= 0).all(), "an alive feature of a removed channel"
    positions = features // full_channels * channels.size + rank[features % full_channels]
    compact_size = math.prod(shape[1:-1]) * channels.size
    return ([] if positions.size == compact_size else [Gather(positions)]), features


def smaller(layer, rows, units, parts):
    """A Linear or Conv2D like `layer` with only input entries `rows` and output units
    `units` (host index vectors); records (full Param, compact Param, index) in parts."""
    bias = layer.bias is not None
    r, u = xp.asarray(rows), xp.asarray(units)                         # to the device
    if type(layer) is Linear:
        copy = Linear(rows.size, units.size, bias)
        weight_index = (r[:, None], u[None, :])                             # W[rows][:, units]
    else:
        copy = Conv2D(rows.size, units.size, (layer.kernel_h, layer.kernel_w), layer.stride,
                         layer.padding, bias)
        weight_index = (slice(None), slice(None), r[:, None], u[None, :])   # W[:, :, rows][..., units]
    copy.needs_input_gradient = layer.needs_input_gradient
    for full, small, index in zip(layer.params, copy.params, (weight_index, (u,))):
        small.name = full.name
        small.value = xp.ascontiguousarray(full.value[index])
        small.mask = None if full.mask is None else xp.ascontiguousarray(full.mask[index])
        parts[full.name] = (full, small, index)
    return copy


def multiply_adds(network, input_shape):
    """The multiply-adds of one example through the dense shapes of every Linear and Conv2D
    in `network` (recurrent layers are not counted) (pruned entries counted too: the matrix products compute them): Linear
    D_in * D_out, Conv2D OH * OW * KH * KW * C * F. The output sizes come from a liveness
    walk, so the network needs no values."""
    walk = Liveness(network, input_shape)
    return sum(math.prod(walk.at_output[id(layer)][0].shape[1:-1]) * layer.weight.size
               for layer in walk.unit_layers if isinstance(layer, (Linear, Conv2D)))


# ======================================================================================
# 8. Optimiser: SGD with momentum and weight decay, masked, and gradient clipping
# ======================================================================================

class SGD:
    """v <- momentum * v + (dL/dw + decay * w),   w <- w - lr * v   (TensorFlow's and PyTorch's form).

    dL/dw = c * dL/d(w * c) is zero where c = 0, and so is w, so a pruned entry's gradient,
    velocity and value all stay exactly 0. Weight decay applies to conv/linear weights and
    biases, not to batch norm. Statistics (running mean/var) are not learned.
    """

    def __init__(self, params, momentum=0.9, weight_decay=5e-4):
        self.params = [p for p in params if p.learned]
        self.momentum, self.weight_decay = momentum, weight_decay
        self.velocity = [xp.zeros_like(p.value) for p in self.params]
        self.scratch = [xp.empty_like(p.value) for p in self.params]   # no allocation per step

    def step(self, lr):
        for p, v, scratch in zip(self.params, self.velocity, self.scratch):
            v *= self.momentum
            if p.mask is None:
                v += p.grad
            else:
                v += xp.multiply(p.grad, p.mask, out=scratch)          # dL/dw = c * dL/d(w * c)
            if p.kind in ("weight", "bias") and self.weight_decay:
                v += xp.multiply(p.value, self.weight_decay, out=scratch)   # + decay * w
            p.value -= xp.multiply(v, lr, out=scratch)                 # w <- w - lr * v


def clip_gradient_norm(params, max_norm):
    """Scale the gradients of all learned `params` by one factor so that their global L2 norm
    is at most max_norm: g <- g * min(1, max_norm / ||g||), ||g|| over every entry of every
    dL/dw = c * dL/d(w * c) (pruned entries count as 0). The direction of the step is kept;
    only an unusually long one (an exploding gradient through time) is shortened.

    Returns ||g|| before clipping as a 0-d device array. Nothing is read back to the host:
    the factor is computed on the device, so a GPU never waits here. As PyTorch's
    clip_grad_norm_, it divides by ||g|| + 1e-6, which is harmless and finite when ||g|| = 0.
    """
    learned = [p for p in params if p.learned]
    squares = [((p.grad if p.mask is None else p.grad * p.mask) ** 2).sum() for p in learned]
    norm = xp.sqrt(sum(squares))                                        # 0-d
    scale = xp.minimum(1.0, max_norm / (norm + 1e-6))                   # 0-d, <= 1
    for p in learned:
        p.grad *= scale              # dL/dw = c * grad is scaled with it (c is 0 or 1)
    return norm


# ======================================================================================
# 9. Training and evaluation
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
    """One split of a dataset on the device: uint8 images (N, H, W, C), int labels (N,),
    and the training set's per-channel mean and std (of pixels scaled to [0, 1]).

    Images stay uint8 (a quarter of the memory) and are standardised a batch at a time:
    (x / 255 - mean) / std, written as x * scale + shift. A training split may be augmented:
    augment, a data.Augmentation (None: not augmented), adds random flips and moves.
    """

    def __init__(self, images, labels, mean, std, augment=None):
        self.images, self.labels = xp.asarray(images), xp.asarray(labels)
        std = numpy.asarray(std, dtype=numpy.float64)
        self.scale = xp.asarray(1.0 / (255.0 * std), dtype=xp.float32)                   # (C,)
        self.shift = xp.asarray(-numpy.asarray(mean, dtype=numpy.float64) / std, dtype=xp.float32)
        self.augment = augment

    def __len__(self):
        return len(self.labels)

    def batch(self, index, moves=None):
        """(standardised float32 images, labels) of the examples at `index` (a device array or
        a slice); with `moves`, their (3, B) flips and shifts on the device (see draw_moves),
        augmented if this split is augmented."""
        images = self.images[index] * self.scale + self.shift              # (B, H, W, C) float32
        if moves is not None and self.augment is not None:
            images = data.flip_and_translate(images, moves[0], moves[1], moves[2], self.augment.max_shift)
        return images, self.labels[index]

    def draw_moves(self, rng):
        """An epoch's random flips and shifts, one per image, drawn on the host (a (3, N) array,
        see data.draw_moves), or None if this split is not augmented."""
        if self.augment is None:
            return None
        return data.draw_moves(rng, len(self), self.augment.max_shift, self.augment.flip)


def split_dataset(dataset, val_fraction, rng):
    """(train, validation, test) DeviceSplits: a random val_fraction of the training set is
    held out for validation; every split is standardised with the training set's statistics.
    The training split is augmented as the authors did (train.augment may be changed)."""
    n = len(dataset.train_labels)
    order = rng.permutation(n)
    n_val = int(round(val_fraction * n))
    val_index, train_index = order[:n_val], order[n_val:]
    statistics = (dataset.mean, dataset.std)
    return (DeviceSplit(dataset.train_images[train_index], dataset.train_labels[train_index],
                        *statistics, augment=dataset.augment),
            DeviceSplit(dataset.train_images[val_index], dataset.train_labels[val_index], *statistics),
            DeviceSplit(dataset.test_images, dataset.test_labels, *statistics))


def evaluate(model, split, batch_size=1000):
    """(mean loss, error in percent) over a whole DeviceSplit, batch norm on running statistics.
    The sums stay on the device until the end: one wait for it, however many batches."""
    total_loss, correct = 0.0, 0
    for start in range(0, len(split), batch_size):
        x, y = split.batch(slice(start, start + batch_size))
        logits = model.forward(x, train=False)
        loss, _ = softmax_cross_entropy(logits, y)
        total_loss = total_loss + loss * len(y)
        correct = correct + (logits.argmax(axis=1) == y).sum()
    forget_caches(model)                          # no backward follows an evaluation
    total_loss, correct = host_values(total_loss, correct)
    return total_loss / len(split), 100.0 * (1 - correct / len(split))


def learning_rate(iteration, base_lr, boundaries, factor=0.1):
    """Step decay: base_lr * factor ** (number of boundaries already passed)."""
    return base_lr * factor ** sum(iteration >= b for b in boundaries)


class Progress:
    """A one-line progress bar on a terminal; silent when stderr is not one. It shows text it
    is given and never reads the device itself."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.live = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.last = 0.0

    def show(self, label, done, total, text, force=False):
        now = time.perf_counter()
        if not self.live or (not force and now - self.last < 0.1):
            return
        self.last = now
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
    and the random generator that shuffles and augments."""

    def __init__(self, rng):
        self.rng = rng
        self.iteration, self.epoch = 0, 0
        self.order, self.position = None, 0          # this epoch's shuffled indices, next one to use
        self.moves = None                            # this epoch's flips and shifts (3, N), if augmented
        self.epoch_loss, self.epoch_correct, self.epoch_images, self.epoch_seconds = 0.0, 0, 0, 0.0
        self.history, self.train_seconds, self.images_trained = [], 0.0, 0

    def to_dict(self):
        """The state as JSON-able values (the shuffle order and the moves travel separately,
        as arrays)."""
        return {"iteration": self.iteration, "epoch": self.epoch, "position": self.position,
                "epoch_loss": float(self.epoch_loss), "epoch_correct": int(self.epoch_correct),
                "epoch_images": self.epoch_images, "epoch_seconds": self.epoch_seconds,
                "history": self.history, "train_seconds": self.train_seconds,
                "images_trained": self.images_trained, "rng": self.rng.bit_generator.state}

    @classmethod
    def from_dict(cls, values, order, moves=None):
        rng = numpy.random.default_rng()
        rng.bit_generator.state = values["rng"]
        state = cls(rng)
        for key in ("iteration", "epoch", "position", "epoch_loss", "epoch_correct", "epoch_images",
                    "epoch_seconds", "history", "train_seconds", "images_trained"):
            setattr(state, key, values[key])
        state.order, state.moves = order, moves
        return state


STOP_REQUESTED = False     # set by Ctrl-C / SIGTERM; the training loop stops after the current step
READ_EVERY = 20            # steps between the training loop's reads of the loss from the device


def request_stop():
    """Ask the training loop to stop after the step it is in (a step is never cut in half)."""
    global STOP_REQUESTED
    STOP_REQUESTED = True


def fit(model, optimiser, train, validation, state, *, iterations, batch_size, base_lr, boundaries,
        log=print, on_step=None, checkpoint=None, checkpoint_every=None, clip_norm=None):
    """Train until state.iteration reaches `iterations`, a fresh shuffle each epoch.

    train, validation: DeviceSplits; validation runs after every epoch (and at the end).
    state: a TrainingState, new or restored from a checkpoint; it is advanced in place.
    on_step(iteration, loss), if given, sees every mini-batch's loss (a device scalar).
    checkpoint(state), if given, is called every `checkpoint_every` iterations, and when a
    stop is requested (then Interrupted is raised). clip_norm: see train_step.

    A step never waits for the device: the epoch's shuffle and augmentation are copied to
    it once, losses and hits are summed there, and the host reads them (one copy of three
    numbers) only every READ_EVERY steps, to check that the loss is finite and to update
    the progress bar, and at the end of an epoch.
    """
    n = len(train)
    batches_per_epoch = -(-n // batch_size)
    epochs = -(-iterations // batches_per_epoch)
    progress, shown = Progress(), ""
    while state.iteration < iterations or state.order is not None:   # (a resumed epoch is finished)
        if state.order is None:                       # a new epoch: a new shuffle
            state.epoch += 1
            state.order, state.position = state.rng.permutation(n), 0
            state.moves = train.draw_moves(state.rng)
            state.epoch_loss, state.epoch_correct, state.epoch_images, state.epoch_seconds = 0.0, 0, 0, 0.0
        order = xp.asarray(state.order)                                   # (N,), on the device
        moves = None if state.moves is None else xp.asarray(state.moves)  # (3, N)
        started = time.perf_counter()
        while state.position < n and state.iteration < iterations:
            step = slice(state.position, state.position + batch_size)
            images, labels = train.batch(order[step], None if moves is None else moves[:, step])
            lr = learning_rate(state.iteration, base_lr, boundaries)
            loss, correct = train_step(model, optimiser, images, labels, lr, clip_norm)
            state.epoch_loss = state.epoch_loss + loss * len(labels)     # sums stay on the device
            state.epoch_correct = state.epoch_correct + correct
            state.epoch_images += len(labels)
            state.position += len(labels)
            state.iteration += 1
            if on_step is not None:
                on_step(state.iteration, loss)
            saving = checkpoint is not None and (STOP_REQUESTED or (
                checkpoint_every and state.iteration % checkpoint_every == 0))
            if saving or state.iteration % READ_EVERY == 0:
                last, loss_sum, hits = host_values(loss, state.epoch_loss, state.epoch_correct)
                if not math.isfinite(last):
                    raise Diverged(f"the loss became {last} by iteration {state.iteration:,}")
                shown = f"loss {loss_sum / state.epoch_images:.4f} acc {100 * hits / state.epoch_images:.2f}%"
            if saving:                              # (the read above waited for the device)
                state.epoch_seconds += time.perf_counter() - started
                checkpoint(state)                   # not counted as training time
                started = time.perf_counter()
                if STOP_REQUESTED:
                    raise Interrupted(f"stopped at iteration {state.iteration:,}")
            progress.show(f"epoch {state.epoch}/{epochs}", -(-state.position // batch_size),
                          batches_per_epoch, shown)
        loss_sum, hits = host_values(state.epoch_loss, state.epoch_correct)   # waits for the device,
        state.epoch_seconds += time.perf_counter() - started                 # so this times its work
        state.train_seconds += state.epoch_seconds
        state.images_trained += state.epoch_images
        progress.clear()
        record = {"epoch": state.epoch, "iteration": state.iteration,
                  "lr": learning_rate(state.iteration - 1, base_lr, boundaries),
                  "train_loss": loss_sum / state.epoch_images,
                  "train_error": 100 * (1 - hits / state.epoch_images)}
        if not math.isfinite(record["train_loss"]):
            raise Diverged(f"the loss became {record['train_loss']} in epoch {state.epoch}")
        if len(validation):
            record["val_loss"], record["val_error"] = evaluate(model, validation)
        state.history.append(record)
        state.order, state.moves = None, None
        val = (f" | val loss {record['val_loss']:.4f} error {record['val_error']:.2f}%"
               if "val_error" in record else "")
        seconds = state.epoch_seconds
        log(f"epoch {state.epoch:>3}/{epochs}  lr {record['lr']:.3g}  train loss {record['train_loss']:.4f} "
            f"error {record['train_error']:.2f}%{val}  ({seconds:.1f} s, "
            f"{state.epoch_images / max(seconds, 1e-9):,.0f} img/s)")
    return state


# ======================================================================================
# 10. Command line
# ======================================================================================

# The command line builds its networks from the model zoo, and models.py builds them from
# the layers above: models imports snip_min, and snip_min imports models here, only after
# every layer is defined. Keeping the command line in this file keeps `python snip_min.py`
# the whole program and the reading order one story; the one circle this costs is safe
# because nothing above this line needs the zoo (and the __main__ block below runs the
# module under its own name, so both files share one backend switch).
import models  # noqa: E402

# The paper's set-up per dataset: batch size, and its schedule (lr x0.1 every `decay_every`
# iterations; the total is not stated for MNIST: 100k covers three decays).
PAPER_SETUP = {
    "mnist": {"batch_size": 100, "iterations": 100_000, "decay_every": 25_000},
    "cifar10": {"batch_size": 128, "iterations": 150_000, "decay_every": 30_000},
    "tiny-imagenet": {"batch_size": 128, "iterations": 150_000, "decay_every": 30_000},
}


def checked_number(convert, accept, requirement):
    """An argparse type: convert(text) must succeed and accept(value) hold, else one clear line."""
    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not accept(value):
            raise argparse.ArgumentTypeError(f"{requirement}, got {text!r}")
        return value
    return parse


sparsity_value = checked_number(float, lambda v: 0.0 <= v < 1.0, "sparsity must be a number in [0, 1)")
fraction_value = checked_number(float, lambda v: 0.0 <= v < 1.0, "expected a number in [0, 1)")
positive_int = checked_number(int, lambda v: v >= 1, "expected a positive integer")
non_negative_int = checked_number(int, lambda v: v >= 0, "expected an integer >= 0")
positive_float = checked_number(float, lambda v: v > 0 and math.isfinite(v), "expected a positive number")
non_negative_float = checked_number(float, lambda v: v >= 0 and math.isfinite(v), "expected a number >= 0")
seed_value = checked_number(int, lambda v: 0 <= v < 2**63, "the seed must be an integer >= 0")


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (and exit status 2)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """--help shows each option's default, unless it is None or False (an on/off flag) or the
    help text says it already."""

    def _get_help_string(self, action):
        if action.default in (None, False) or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


# The flags a resumed run may be given anew: where it reads data, runs and writes, not what it computes.
RESUMABLE_FLAGS = ("data_dir", "device", "out", "checkpoint_every", "no_download", "debug", "resume")


def parse_arguments(argv=None):
    parser = OneLineParser(
        prog="snip_min.py",
        description="Prune a network once at initialisation with SNIP, train it, report its test error.",
        formatter_class=HelpFormatter)
    parser.add_argument("--model", default="lenet5", choices=sorted(models.MODELS),
                        help="architecture (see models.py)")
    parser.add_argument("--dataset", default=None, choices=sorted(data.LOADERS),
                        help="dataset; default: the model's own")
    parser.add_argument("--sparsity", type=sparsity_value, default=0.9,
                        help="fraction of prunable parameters to remove, in [0, 1)")
    parser.add_argument("--prune", default="weights+biases", choices=PRUNE_CHOICES,
                        help="which parameters get gates: conv/linear weights and biases (the "
                             "authors' convention) or weights only")
    parser.add_argument("--method", default="snip", choices=("snip", "random"),
                        help="how connections are chosen: SNIP's connection sensitivity, or at "
                             "random (the baseline SNIP must beat: the same number, uniformly over "
                             "the whole network)")
    parser.add_argument("--init", default="vs-h", choices=INITIALISATIONS,
                        help="initialisation: variance scaling Glorot (vs-x) or He (vs-h), "
                             "random normal (rn) or truncated normal (tn), std 0.1")
    parser.add_argument("--device", default=None, choices=("cpu", "gpu"),
                        help="cpu (the default) runs on NumPy, gpu on CuPy")
    parser.add_argument("--data-dir", default=None,
                        help="dataset folder (MNIST in DATA_DIR/mnist/, CIFAR-10 in DATA_DIR/cifar10/, "
                             "Tiny-ImageNet in DATA_DIR/tiny-imagenet/); missing files are downloaded "
                             f"there; default: {data.default_data_dir()}")
    parser.add_argument("--epochs", type=positive_int, default=None,
                        help="train this many epochs, the learning rate x0.1 after 50%% and 75%% of "
                             "them (default on MNIST: the model's iterations, 22,000 for lenet300 "
                             "and 12,000 for lenet5, with the same decays)")
    parser.add_argument("--iterations", type=positive_int, default=None,
                        help="train this many iterations, the learning rate x0.1 every --decay-every")
    parser.add_argument("--decay-every", type=positive_int, default=None,
                        help="iterations between learning-rate decays with --iterations (default: "
                             "the paper's, 25,000 on MNIST, 30,000 otherwise)")
    parser.add_argument("--paper-schedule", action="store_true",
                        help="the paper's schedule: 100,000 iterations on MNIST, 150,000 otherwise, "
                             "learning rate x0.1 every 25,000 / 30,000 (the default off MNIST)")
    parser.add_argument("--batch-size", type=positive_int, default=None,
                        help="mini-batch for training and for SNIP's one scoring batch (default: "
                             "the paper's, 100 on MNIST, 128 otherwise)")
    parser.add_argument("--no-augment", action="store_true",
                        help="no random flips and translations on CIFAR-10 / Tiny-ImageNet "
                             "(not with --translate)")
    parser.add_argument("--translate", type=non_negative_int, default=None, metavar="PIXELS",
                        help="move each training image by up to PIXELS pixels each way, at random "
                             "(default: 4, with random flips, on CIFAR-10 / Tiny-ImageNet, as the "
                             "authors did; none on MNIST, as in the paper; on MNIST this adds moves "
                             "only, never flips, and 0 adds nothing)")
    parser.add_argument("--lr", type=positive_float, default=0.1, help="initial learning rate")
    parser.add_argument("--momentum", type=fraction_value, default=0.9, help="SGD momentum")
    parser.add_argument("--weight-decay", type=non_negative_float, default=5e-4,
                        help="L2 weight decay on conv/linear weights and biases")
    parser.add_argument("--clip-norm", type=positive_float, default=None, metavar="NORM",
                        help="scale the gradients down when their global norm exceeds NORM "
                             "(default: no clipping)")
    parser.add_argument("--val-fraction", type=fraction_value, default=0.1,
                        help="fraction of the training set held out for validation")
    parser.add_argument("--seed", type=seed_value, default=0,
                        help="seeds initialisation, data split, scoring batch and shuffling")
    parser.add_argument("--out", default=None,
                        help="folder for results.json, masks.npz and checkpoint.npz (written atomically)")
    parser.add_argument("--checkpoint-every", type=positive_int, default=None,
                        help="save a checkpoint every N iterations (and at the end) in --out, or in "
                             "snip-min-MODEL-seedSEED/ without it; Ctrl-C always saves one")
    parser.add_argument("--resume", default=None, metavar="DIR",
                        help="continue the run whose checkpoint.npz is in DIR, with its settings "
                             "(--data-dir, --device, --out, --checkpoint-every may be given anew)")
    parser.add_argument("--compact", action="store_true",
                        help="train the smaller dense network the mask leaves (dead units removed: "
                             "the same function and training, faster); for chains of linear, "
                             "convolution, pooling, ReLU and flatten layers (the LeNets)")
    parser.add_argument("--strict", action="store_true",
                        help="refuse a mask that leaves a layer without any connection, instead of warning")
    parser.add_argument("--no-download", action="store_true",
                        help="fail instead of downloading a missing dataset")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    args = parser.parse_args(argv)
    if args.resume:
        # Which flags were typed, even at their default value: parse again into a namespace
        # already holding a marker for every option, where argparse leaves the marker alone.
        marker = object()
        typed = parser.parse_args(argv, argparse.Namespace(**{key: marker for key in vars(args)}))
        refused = ["--" + key.replace("_", "-") for key, value in vars(typed).items()
                   if value is not marker and key not in RESUMABLE_FLAGS]
        if refused:
            parser.error(f"--resume continues a run with its own settings; {', '.join(refused)} cannot "
                         f"be given with it (only --data-dir, --device, --out, --checkpoint-every)")
    if sum([args.epochs is not None, args.iterations is not None, args.paper_schedule]) > 1:
        parser.error("choose one of --epochs, --iterations and --paper-schedule")
    if args.decay_every is not None and args.iterations is None:
        parser.error("--decay-every goes with --iterations")
    if args.no_augment and args.translate is not None:
        parser.error("--translate augments and --no-augment does not: choose one")
    return args


def training_schedule(args, dataset_name, steps_per_epoch):
    """(iterations, learning-rate boundaries) from the flags, the dataset and the model."""
    setup, model_iterations = PAPER_SETUP[dataset_name], models.MODELS[args.model].iterations
    if args.epochs or (model_iterations and not (args.iterations or args.paper_schedule)):
        iterations = args.epochs * steps_per_epoch if args.epochs else model_iterations
        return iterations, [iterations // 2, 3 * iterations // 4]
    iterations = args.iterations or setup["iterations"]
    every = args.decay_every or setup["decay_every"]
    return iterations, list(range(every, iterations, every))


def run(args, log=print):
    """Everything the command does, from data to test error. Returns the results dict."""
    checkpoint_data = None
    if args.resume:
        checkpoint_data = read_checkpoint(os.path.join(args.resume, CHECKPOINT_FILE))
        resume_settings(args, checkpoint_data["args"])
    if args.device is not None:              # else: stay on the backend already chosen
        use_device(args.device)
    args.device = current_device()
    for folder, flag in ((args.data_dir, "--data-dir"), (args.out, "--out")):
        if folder and os.path.exists(folder) and not os.path.isdir(folder):
            raise UsageError(f"{flag} {folder} is a file, not a folder")
    if args.out:                             # fail now, not after hours of training
        try:
            os.makedirs(args.out, exist_ok=True)
        except OSError as error:
            raise UsageError(f"--out {args.out}: cannot create the folder ({error.strerror})") from None
        if not os.access(args.out, os.W_OK):
            raise UsageError(f"--out {args.out}: the folder is not writable")
    dataset_name = args.dataset or models.MODELS[args.model].dataset
    model = models.build(args.model, dataset_name)          # checks the pair before any download
    if args.compact:
        chain_of(model)                                     # UsageError unless it can be compacted exactly
    augment = augmentation(args, dataset_name)              # likewise
    dataset = data.load_dataset(dataset_name, args.data_dir, download=not args.no_download)
    batch_size = args.batch_size or PAPER_SETUP[dataset_name]["batch_size"]

    # One seed, four independent streams: initialisation, validation split, scoring batch,
    # shuffling (and augmentation).
    init_rng, split_rng, score_rng, shuffle_rng = (
        numpy.random.default_rng(s) for s in numpy.random.SeedSequence(args.seed).spawn(4))
    train, validation, test = split_dataset(dataset, args.val_fraction, split_rng)
    train.augment = augment
    args.batch_size = batch_size                 # resolved, for the checkpoint and error messages
    if len(train) < batch_size:
        raise UsageError(f"--batch-size {batch_size} is larger than the {len(train):,} "
                         f"training images left after the validation split")
    log(f"data: {dataset.description}; {len(train):,} for training, {len(validation):,} for "
        f"validation, {len(test):,} for testing{describe_augmentation(augment)}")

    # Algorithm 1: initialise, score one mini-batch, keep the top kappa, train with c fixed.
    initialise(model, args.init, init_rng)
    if checkpoint_data is None:
        images, labels = train.batch(xp.asarray(score_rng.choice(len(train), size=batch_size, replace=False)))
        # one untimed pass first: it compiles CuPy's kernels (and starts thread and memory
        # pools anywhere), so that the time below is SNIP's own
        connection_sensitivity(model, images, labels, prunable_parameters(model, args.prune))
        synchronise()
        started = time.perf_counter()
        report = {}
        if args.method == "snip":
            gated = snip(model, images, labels, args.sparsity, args.prune, report)
        else:
            gated = random_pruning(model, args.sparsity, score_rng, args.prune, report)
        synchronise()
        snip_seconds = time.perf_counter() - started
        how = (f"SNIP: {args.model}, sparsity {args.sparsity:g}, scored on {batch_size} images in "
               f"{snip_seconds:.2f} s" if args.method == "snip" else
               f"random pruning (the baseline, not SNIP): {args.model}, sparsity {args.sparsity:g}")
        log(f"{how}, {args.init} initialisation, gates on {args.prune}")
        check_masks(gated, report, args)
        state = TrainingState(shuffle_rng)
    else:
        gated = prunable_parameters(model, args.prune)
        restore_checkpoint(checkpoint_data, model, gated)
        snip_seconds = checkpoint_data["snip_seconds"]
        state = TrainingState.from_dict(checkpoint_data["state"], checkpoint_data["order"],
                                        checkpoint_data["moves"])
        if state.order is not None and (len(state.order) != len(train) or state.order.max() >= len(train)):
            raise UsageError(f"the checkpoint was made with {len(state.order):,} training images, but "
                             f"this data gives {len(train):,}: resume with the run's own --data-dir")
        log(f"resuming from {os.path.join(args.resume, CHECKPOINT_FILE)} at iteration {state.iteration:,}")
    rows = pruning_table(model, batch_norm=models.MODELS[args.model].counts_batch_norm)
    input_shape = models.INPUT_SHAPE[dataset_name]
    alive = alive_summary(model, input_shape)
    log(format_pruning_table(rows, alive))

    # --compact trains the smaller dense network the mask leaves (section 7), the same
    # function and the same trajectory; `model` keeps the full shapes for what is written
    network, compaction = model, None
    if args.compact:
        compaction = compact(model, input_shape)
        network = compaction.network
        log(f"compact: trains the network SNIP kept, {multiply_adds(model, input_shape):,} -> "
            f"{multiply_adds(network, input_shape):,} multiply-adds per image (dense shapes)")
    steps_per_epoch = -(-len(train) // batch_size)
    iterations, boundaries = training_schedule(args, dataset_name, steps_per_epoch)
    optimiser = SGD(parameters_of(network), args.momentum, args.weight_decay)
    if checkpoint_data is not None:
        saved = {p.name: xp.asarray(checkpoint_data["velocity"][p.name]) for p in optimiser.params}
        saved = compaction.compacted(saved) if compaction else saved
        for p, velocity in zip(optimiser.params, optimiser.velocity):
            velocity[...] = saved[p.name]

    def full_shapes():
        """Parameters in the model's full shapes, and the momentum buffers by name, likewise."""
        velocities = {p.name: v for p, v in zip(optimiser.params, optimiser.velocity)}
        if compaction:
            compaction.expand()
            velocities = compaction.expanded(velocities)
        return velocities

    folder = args.out or f"snip-min-{args.model}-seed{args.seed}"
    last_saved = ({} if checkpoint_data is None else          # the checkpoint resumed from
                  {"path": os.path.join(args.resume, CHECKPOINT_FILE), "iteration": state.iteration})

    def checkpoint(state):
        velocities = full_shapes()
        if not all(host_values(*(xp.isfinite(p.value).all() for p in parameters_of(model)))):
            raise Diverged(f"the weights became non-finite by iteration {state.iteration:,}")
        path = write_checkpoint(folder, model, gated, velocities, state, args, snip_seconds)
        last_saved.update(path=path, iteration=state.iteration)

    with stop_on_signals():
        try:
            fit(network, optimiser, train, validation, state, iterations=iterations, batch_size=batch_size,
                base_lr=args.lr, boundaries=boundaries, log=log, checkpoint=checkpoint,
                checkpoint_every=args.checkpoint_every, clip_norm=args.clip_norm)
        except Diverged as error:
            where = (f"the last good checkpoint is {last_saved['path']} (iteration {last_saved['iteration']:,})"
                     if last_saved else "no checkpoint was saved (see --checkpoint-every)")
            raise Diverged(f"{error}; {where}") from None
        except Interrupted as error:
            raise Interrupted(f"{error}; checkpoint saved in {last_saved['path']}: continue with "
                              f"--resume {folder}") from None
    if args.checkpoint_every:
        checkpoint(state)                                   # the final state, for later continuing
    else:                                                   # (a checkpoint writes them back itself)
        full_shapes()                                       # the trained values into `model`

    test_loss, test_error = evaluate(model, test)
    log(f"test error: {test_error:.2f}% (loss {test_loss:.4f}) - {args.model} at sparsity "
        f"{args.sparsity:g}, {dataset.description}")

    results = {
        "model": args.model, "dataset": dataset_name, "data": dataset.description,
        "sparsity": args.sparsity, "method": args.method, "prune": args.prune, "init": args.init, "seed": args.seed,
        "device": args.device, "params_total": sum(r[1] for r in rows),
        "params_kept": sum(r[2] for r in rows),
        "per_layer": [{"name": name, "total": total, "kept": kept} for name, total, kept in rows],
        "alive_units": {name: {"alive": a, "total": t} for name, (a, t) in alive.items() if name != "input"},
        "input_read": {"read": alive["input"][0], "total": alive["input"][1]},
        "compact": args.compact,
        "test_error": test_error, "test_loss": test_loss,
        "val_error": state.history[-1].get("val_error"),
        "epochs": len(state.history), "iterations": iterations, "batch_size": batch_size,
        "lr": args.lr, "lr_boundaries": boundaries, "momentum": args.momentum,
        "weight_decay": args.weight_decay, "clip_norm": args.clip_norm, "augment": augment._asdict() if augment is not None else None,
        "snip_seconds": snip_seconds,
        "train_seconds": state.train_seconds,
        "train_images_per_second": state.images_trained / max(state.train_seconds, 1e-9),
        "history": state.history,
    }
    if args.out:
        save_results(args.out, results, gated)
        log(f"wrote {os.path.join(args.out, 'results.json')} and masks.npz")
    return results


def augmentation(args, dataset_name):
    """The data.Augmentation of the training images that the flags ask for (None: none)."""
    authors = data.AUTHORS_AUGMENTATION[dataset_name]
    if args.no_augment:
        return None
    if args.translate is None:
        return authors
    height, width = models.INPUT_SHAPE[dataset_name][:2]
    if args.translate >= min(height, width):
        raise UsageError(f"--translate {args.translate}: a move must be smaller than the images "
                         f"({height}x{width} pixels on {dataset_name})")
    flip = authors is not None and authors.flip      # where the authors flip: never digits
    if not flip and args.translate == 0:
        return None
    return data.Augmentation(flip=flip, max_shift=args.translate)


def describe_augmentation(augment):
    """For the data line of the log: '; augmented: random flips, moves of up to 4 pixels'."""
    if augment is None:
        return ""
    shift = augment.max_shift
    parts = (["random flips"] if augment.flip else []) + (
        [f"moves of up to {shift} pixel{'s' if shift != 1 else ''}"] if shift else [])
    return "; augmented: " + ", ".join(parts)


def resume_settings(args, saved):
    """Turn `args` (in place) into the saved run's settings, keeping the RESUMABLE_FLAGS given
    anew (parse_arguments has refused every other flag next to --resume)."""
    defaults = vars(parse_arguments([]))
    given = {key: getattr(args, key) for key in RESUMABLE_FLAGS if getattr(args, key) not in (None, False)}
    vars(args).update({**defaults, **saved, **given})
    args.out = given.get("out") or args.resume          # where the checkpoint is now, not where it was


def check_masks(gated, report, args):
    """Say when SNIP's choice is degenerate: kappa beyond the non-zero scores (reported), or
    a layer left without a single connection (a warning; an error with --strict)."""
    if report["nonzero_scores"] < report["kappa"] < report["m"]:
        print(f"note: only {report['nonzero_scores']:,} connections have a non-zero sensitivity; the "
              f"other {report['kappa'] - report['nonzero_scores']:,} of the kappa = {report['kappa']:,} kept "
              f"were chosen among zero scores by position (lowest index first)", file=sys.stderr)
    weights = [p for p in gated if p.kind == "weight"]
    any_kept = host_values(*(p.mask.any() for p in weights))               # one wait for the device
    empty = [p.name for p, kept in zip(weights, any_kept) if not kept]
    if empty:
        message = (f"at sparsity {args.sparsity:g} the mask keeps no connection in {', '.join(empty)}: the "
                   f"network is disconnected and cannot learn; lower --sparsity")
        if args.strict:
            raise UsageError(message)
        print(f"warning: {message}", file=sys.stderr)


class stop_on_signals:
    """While training, Ctrl-C and SIGTERM ask the loop to stop after the current step (it then
    saves a checkpoint); a second Ctrl-C stops at once."""

    def __enter__(self):
        global STOP_REQUESTED
        STOP_REQUESTED = False
        self.previous = {}
        for number in (signal.SIGINT, signal.SIGTERM):
            self.previous[number] = signal.signal(number, self.handle)
        return self

    def handle(self, signum, frame):
        request_stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)    # the next Ctrl-C is immediate
        # os.write, not print: a handler that prints while the progress bar is printing
        # would make Python's stderr raise a reentrant-call error
        os.write(2, b"stopping after this step and saving a checkpoint (Ctrl-C again to stop at once)\n")

    def __exit__(self, *exc):
        for number, handler in self.previous.items():
            signal.signal(number, handler)


# ------------------------------------------------------------------------------------------
# Checkpoints: one .npz (no pickle) with every array, and the run's state as JSON bytes
# ------------------------------------------------------------------------------------------

CHECKPOINT_FILE = "checkpoint.npz"
CHECKPOINT_VERSION = 2     # 2: an augmented epoch's moves are drawn, and saved, with its shuffle


class CheckpointError(Exception):
    """A checkpoint that cannot be used; the message is one line."""


def write_checkpoint(folder, model, gated, velocities, state, args, snip_seconds):
    """Save parameters (batch-norm statistics included), masks, momentum buffers
    (velocities: {name: array}) and the training state atomically as folder/checkpoint.npz.
    Returns its path."""
    arrays = {f"param/{p.name}": to_host(p.value) for p in parameters_of(model)}
    arrays.update({f"mask/{p.name}": to_host(p.mask).astype(bool) for p in gated})
    arrays.update({f"velocity/{name}": to_host(v) for name, v in velocities.items()})
    if state.order is not None:
        arrays["order"] = state.order
    if state.moves is not None:
        arrays["moves"] = state.moves
    settings = {"version": CHECKPOINT_VERSION, "args": dict(vars(args)),
                "state": state.to_dict(), "snip_seconds": snip_seconds}
    arrays["settings"] = numpy.frombuffer(json.dumps(settings).encode(), dtype=numpy.uint8)
    buffer = io.BytesIO()
    numpy.savez(buffer, **arrays)
    path = os.path.join(folder, CHECKPOINT_FILE)
    data.write_file_atomically(path, buffer.getvalue())
    return path


def read_checkpoint(path):
    """The contents of a checkpoint, checked: CheckpointError if it is missing or damaged."""
    if not os.path.isfile(path):
        raise CheckpointError(f"no checkpoint at {path}: --resume takes the folder a run saved "
                              f"its checkpoint.npz in")
    try:
        with numpy.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
        settings = json.loads(arrays.pop("settings").tobytes().decode())
        if not isinstance(settings, dict) or settings.get("version") != CHECKPOINT_VERSION:
            raise ValueError(f"not a version {CHECKPOINT_VERSION} checkpoint")
        contents = {"args": settings["args"], "state": settings["state"],
                    "snip_seconds": float(settings["snip_seconds"]), "order": arrays.pop("order", None),
                    "moves": arrays.pop("moves", None)}
        for part in ("param", "mask", "velocity"):
            contents[part] = {name.split("/", 1)[1]: array for name, array in arrays.items()
                              if name.startswith(part + "/")}
        check_saved_settings(contents)
        return contents
    except Exception as error:     # a damaged file can fail in many ways (zip, npy header, JSON ...)
        reason = " ".join(str(error).split()) or type(error).__name__
        raise CheckpointError(f"{path} is not a usable checkpoint ({reason}); resume from another "
                              f"or start again") from None


def check_saved_settings(contents):
    """Raise ValueError unless a checkpoint's settings and training state have the expected
    keys and types (so that a damaged one is refused here, not half-way through resuming)."""
    args, state, order = contents["args"], contents["state"], contents["order"]
    if not isinstance(args, dict) or args.get("model") not in models.MODELS:
        raise ValueError("its settings name no known model")
    if not isinstance(state, dict):
        raise ValueError("its training state is not a record")
    whole = ("iteration", "epoch", "position", "epoch_correct", "epoch_images", "images_trained")
    if not all(type(state.get(key)) is int and state[key] >= 0 for key in whole):
        raise ValueError("its training state is incomplete")
    if not all(isinstance(state.get(key), (int, float)) for key in
               ("epoch_loss", "epoch_seconds", "train_seconds")) or not isinstance(state.get("history"), list):
        raise ValueError("its training state is incomplete")
    generator = numpy.random.default_rng()
    generator.bit_generator.state = state.get("rng")            # ValueError/TypeError if damaged
    if order is not None and (order.ndim != 1 or order.dtype.kind not in "iu"):
        raise ValueError("its shuffle order is not a vector of indices")
    moves = contents["moves"]
    if moves is not None and (order is None or moves.shape != (3, len(order)) or moves.dtype.kind not in "iu"):
        raise ValueError("its augmentation moves do not match its shuffle order")


def restore_checkpoint(contents, model, gated):
    """Put a checkpoint's parameters and masks into a freshly built model, after checking
    them and the momentum buffers (restored into the optimiser by the caller)."""
    for p in parameters_of(model):
        saved = contents["param"].get(p.name)
        if saved is None or saved.shape != p.shape:
            raise CheckpointError(f"the checkpoint does not fit model {model!r}: {p.name} is "
                                  f"{'missing' if saved is None else saved.shape}, expected {p.shape}")
        velocity = contents["velocity"].get(p.name) if p.learned else saved   # statistics have none
        if saved.dtype != numpy.float32 or velocity is None or velocity.shape != p.shape \
                or velocity.dtype != numpy.float32:
            raise CheckpointError(f"the checkpoint's {p.name} or its momentum is missing or not float32")
        p.value = xp.asarray(saved)
    for p in gated:
        mask = contents["mask"].get(p.name)
        if mask is None or mask.shape != p.shape or mask.dtype != bool:
            raise CheckpointError(f"the checkpoint has no usable mask for {p.name}")
        p.mask = xp.asarray(mask, dtype=p.value.dtype)


def save_results(folder, results, gated):
    """results.json and masks.npz (one boolean array per gated Param), each written atomically."""
    masks = io.BytesIO()
    numpy.savez_compressed(masks, **{p.name: to_host(p.mask).astype(bool) for p in gated})
    data.write_file_atomically(os.path.join(folder, "masks.npz"), masks.getvalue())
    data.write_file_atomically(os.path.join(folder, "results.json"),
                               json.dumps(results, indent=2).encode())


def main(argv=None):
    args = parse_arguments(argv)
    try:
        with numpy.errstate(over="ignore", invalid="ignore"):   # divergence is reported below
            run(args)
    except Exception as error:
        if args.debug:
            raise
        status, message = explain(error, args)
        print(f"snip_min.py: {'' if status == 130 else 'error: '}{message}", file=sys.stderr)
        return status
    except KeyboardInterrupt:                                  # a second Ctrl-C: stop at once
        if args.debug:
            raise
        print("snip_min.py: interrupted at once (no new checkpoint saved)", file=sys.stderr)
        return 130
    return 0


def explain(error, args):
    """(exit status, one line) for an error: 2 for bad input, 1 for a failure during a run,
    130 for an interruption. Anything unforeseen is reported the same way; --debug shows it all."""
    if isinstance(error, (UsageError, data.DataError, CheckpointError)):
        return 2, str(error)
    if isinstance(error, Diverged):
        return 1, f"training diverged: {error}; try a smaller --lr"
    if isinstance(error, Interrupted):
        return 130, f"interrupted: {error}"
    if isinstance(error, MemoryError):                         # CuPy's OutOfMemoryError is one too
        device, batch = args.device or "cpu", args.batch_size
        if not batch:
            return 1, f"out of memory on the {device}: try a smaller --batch-size"
        return 1, (f"out of memory on the {device} with --batch-size {batch}: try a smaller batch, "
                   f"e.g. --batch-size {max(1, batch // 2)}")
    if isinstance(error, OSError):
        return 1, f"{error.strerror or error} ({error.filename})" if error.filename else str(error)
    return 1, f"{type(error).__name__}: {' '.join(str(error).split())} (run again with --debug for details)"


if __name__ == "__main__":
    # Run through the module imported under its own name, so that models.py, which imports
    # snip_min, and this script share one backend switch.
    import snip_min
    sys.exit(snip_min.main())
