"""Dead units and compaction: which units a SNIP mask leaves alive, and the smaller dense
network a pruned chain exactly is.

SNIP prunes connections; at high sparsity whole units go with them. This module finds them
and, for a chain network such as the LeNets, removes them:

    alive_units, alive_summary   which units of every layer have an input and an output
                                 (the alive-units column of the pruning table, and the
                                 results.json fields alive_units and input_read)
    format_alive_summary         the same as two lines for a log
    compact, Compaction          the compact network (--compact), and expand() back into
                                 the full shapes for checkpoints and results
    chain_of                     the layers of a chain, or why it cannot be compacted
    multiply_adds                one example's multiply-adds through the dense shapes
    Gather                       the layer a compact network reads some entries with
    LIVENESS_RULES               how signal and read pass through each layer type

the command line (cli.py) calls alive_summary after pruning and, with --compact, compact
and Compaction.expand; bench.py and the experiments call alive_units, compact and
multiply_adds. The definitions (signal, read, alive) and why compaction is exact (the same
function and the same training trajectory) are in the two banners below;
docs/compaction.md has the measurements. Arrays go through sm.xp, NumPy or CuPy.
Tests: tests/test_compaction.py.
"""

import math
from typing import Callable, NamedTuple

import numpy

import snip_min as sm
from extensions.recurrent import GRU, LSTM, AsSequence
from extensions.zoo_layers import (
    AvgPool2D,
    BatchNorm,
    Concat,
    GlobalAvgPool,
    Identity,
    Residual,
    ZeroChannels,
)
from snip_min import (
    Conv2D,
    Flatten,
    Layer,
    Linear,
    MaxPool2D,
    ReLU,
    Sequential,
    UsageError,
    to_host,
)

# The one layer compaction adds: a compact network reads only the entries still needed.


class Gather(Layer):
    """y = x[..., indices]: only the listed entries of the last axis (the features of a flat
    activation, or the channels of an image). x: (N, ..., D) -> y: (N, ..., K), K = len(indices).

    A compact network uses it where the layer after it reads only some entries: after a
    Flatten, LeNet-300-100's first layer multiplies the pixels it reads, not all 784.
    indices: distinct integers, increasing (a host vector; kept on the device here).
    """

    only_rearranges = True

    def __init__(self, indices):
        self.host_indices = numpy.asarray(indices, dtype=numpy.int64)
        self.indices = sm.xp.asarray(self.host_indices)  # (K,), on the device

    def forward(self, x, train):
        if sm.BACKWARD_FOLLOWS:  # (False in an evaluation: see snip_min.forward_only)
            self.cache = x.shape
        return x[..., self.indices]  # (N, ..., K)

    def backward(self, dout):  # (N, ..., K)
        shape = self.take_cache()
        # forward: y[..., k] = x[..., indices[k]], and each entry of x is read at most once,
        # so dL/dx[..., indices[k]] = dL/dy[..., k], and 0 for the entries not gathered
        dx = sm.xp.zeros(shape, dtype=dout.dtype)  # (N, ..., D)
        dx[..., self.indices] = dout
        return dx


# ======================================================================================
# Dead units: which units a mask leaves alive
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
        return sm.xp.ones(p.shape, dtype=sm.xp.float32)
    return (p.mask != 0).astype(sm.xp.float32)


def indicator(x):
    """x > 0 as a 0/1 float32 array: 'some term of this sum was 1'."""
    return (x > 0).astype(sm.xp.float32)


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
        self.memo = {}  # id(layer) -> what its signal rule leaves for its read rule
        self.at_output = {}  # id(layer) -> [signal, read] at its output
        self.unit_layers = []
        signal = sm.xp.ones((1,) + tuple(input_shape), dtype=sm.xp.float32)  # the input has signal
        scores = self.signal(model, signal)  # (1, classes)
        self.input_read = self.read(model, sm.xp.ones_like(scores))  # the scores are read

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
        return indicator_array if self.transitive else sm.xp.ones_like(indicator_array)

    def alive(self, layer):
        """bool (units,) on the device: the units (last axis) of `layer`'s output that have
        signal and are read at the same position (local: at any positions)."""
        signal, read = (each.reshape(-1, each.shape[-1]) for each in self.at_output[id(layer)])
        if not self.transitive:  # (positions, units)
            return (signal.max(axis=0) > 0) & (read.max(axis=0) > 0)
        return (signal * read).max(axis=0) > 0


def rule_for(layer):
    rule = LIVENESS_RULES.get(type(layer))
    if rule is None:
        raise UsageError(
            f"cannot tell which units are alive through a {type(layer).__name__} "
            f"layer: it has no entry in LIVENESS_RULES"
        )
    return rule


# --- the rules, one per layer type ----------------------------------------------------------


def linear_signal(walk, layer, signal):
    # forward y = x W + b with the gates as W and b: feature j has signal when a kept
    # W[i, j] meets an input i with signal, or b[j] is kept
    y = walk.given(signal) @ kept(layer.weight)  # (1, D_out)
    if layer.bias is not None:
        y = y + kept(layer.bias)
    return y


def linear_read(walk, layer, read):
    # backward dL/dx = dL/dy W^T: input i is read when a kept W[i, j] leads to a read j
    return walk.given(read) @ kept(layer.weight).T  # (1, D_in)


def gate_convolution(layer):
    """A Conv2D shaped like `layer` whose weight and bias are `layer`'s gates."""
    kernel_h, kernel_w, channels, filters = layer.weight.shape
    copy = Conv2D(
        channels,
        filters,
        (kernel_h, kernel_w),
        layer.stride,
        layer.padding,
        bias=layer.bias is not None,
    )
    copy.weight.value = kept(layer.weight)
    if layer.bias is not None:
        copy.bias.value = kept(layer.bias)
    return copy


def conv_signal(walk, layer, signal):
    # the convolution of the signal with the gates: position (a, b) of channel f has signal
    # when a kept tap of W[..., f] meets an input pixel with signal, or b[f] is kept (zero
    # padding is a constant 0: no signal)
    copy = walk.memo[id(layer)] = gate_convolution(layer)
    return copy.forward(walk.given(signal), train=False)  # (1, OH, OW, F)


def conv_read(walk, layer, read):
    # backward dL/dx = col2im(dL/dy W^T): a pixel is read when a kept tap carries it to a
    # read output position (the copy's backward needs its forward's cache, made above)
    return walk.memo.pop(id(layer)).backward(walk.given(read))  # (1, H, W, C)


def pool_signal(walk, layer, signal):
    # max or mean of a window of 0/1 values: 1 when some pixel of the window has signal
    walk.memo[id(layer)] = signal.shape
    return type(layer)(layer.kernel, layer.stride, layer.padding).forward(signal, train=False)


def window_read(walk, layer, read):
    # every pixel of a read window is read (a max-pool's maximum may be at any of them):
    # the adjoint of the window sum, which is AvgPool2D's backward up to positive factors
    windows = AvgPool2D(layer.kernel, layer.stride, layer.padding)
    windows.forward(sm.xp.zeros(walk.memo.pop(id(layer)), dtype=read.dtype), train=False)
    return windows.backward(read)


def same_signal(walk, layer, signal):
    return signal  # ReLU, Identity: y is x, or 0 where x is 0


def same_read(walk, layer, read):
    return read  # ReLU, BatchNorm, Identity: y depends on x (or may)


def every_channel_signal(walk, layer, signal):
    # batch norm: y = scale * x_hat + shift, and the learned shift is there even where x
    # is exactly 0 (x_hat is then 0): every channel has signal
    return sm.xp.ones_like(signal)


def flatten_signal(walk, layer, signal):
    walk.memo[id(layer)] = signal.shape
    return signal.reshape(signal.shape[0], -1)  # (1, H*W*C)


def flatten_read(walk, layer, read):
    return read.reshape(walk.memo.pop(id(layer)))  # (1, H, W, C)


def global_pool_signal(walk, layer, signal):
    walk.memo[id(layer)] = signal.shape
    return signal.max(axis=(1, 2))  # (1, C)


def global_pool_read(walk, layer, read):
    # the mean reads every position of its channel
    return sm.xp.broadcast_to(read[:, None, None, :], walk.memo.pop(id(layer)))


def zero_channels_signal(walk, layer, signal):
    walk.memo[id(layer)] = signal.shape[-1]
    return ZeroChannels(layer.extra).forward(signal, train=False)  # the zeros: no signal


def zero_channels_read(walk, layer, read):
    return read[..., : walk.memo.pop(id(layer))]


def gather_signal(walk, layer, signal):
    walk.memo[id(layer)] = signal.shape
    return signal[..., layer.indices]


def gather_read(walk, layer, read):
    read_in = sm.xp.zeros(walk.memo.pop(id(layer)), dtype=read.dtype)
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
    return sm.xp.maximum(walk.signal(layer.body, signal), walk.signal(layer.shortcut, signal))


def residual_read(walk, layer, read):
    # x is read when either path reads it
    return sm.xp.maximum(walk.read(layer.body, read), walk.read(layer.shortcut, read))


def concat_signal(walk, layer, signal):
    outputs = [walk.signal(branch, signal) for branch in layer.children]
    walk.memo[id(layer)] = [out.shape[-1] for out in outputs]  # channels per branch
    return sm.xp.concatenate(outputs, axis=-1)


def concat_read(walk, layer, read):
    # each branch reads x for its own channels of y; x is read when some branch reads it
    read_in, start = 0, 0
    for branch, size in zip(layer.children, walk.memo.pop(id(layer))):
        read_in = read_in + walk.read(branch, read[..., start : start + size])
        start += size
    return read_in


def as_sequence_signal(walk, layer, signal):
    walk.memo[id(layer)] = signal.shape
    return AsSequence(layer.pixels).forward(signal, train=False)  # (1, T, D)


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
    features = walk.given(signal.max(axis=1))  # (1, D): signal at some step
    direct = features @ kept(layer.input_weight)[:, candidate] + kept(layer.bias)[candidate]
    if isinstance(layer, GRU):
        direct = direct + kept(layer.recurrent_bias)  # inside the reset: still signal
    recurrent = kept(layer.recurrent_weight)[:, candidate]  # (U, U)
    units = indicator(direct)  # (1, U), after one step
    for _ in range(steps - 1 if walk.transitive else 1):
        units = indicator(direct + walk.given(units) @ recurrent)
    return (
        sm.xp.broadcast_to(units[:, None, :], (1, steps, hidden))
        if layer.return_sequences
        else units
    )


def recurrent_read(walk, layer, read):
    # h_T is read where the layer above reads it (with return_sequences: h_t at some step);
    # h_{t-1} is read through a kept recurrent weight into ANY gate of a read unit (each
    # gate changes that unit), and an input feature through a kept input weight likewise:
    # followed back for T steps
    shape = walk.memo.pop(id(layer))  # (1, T, D)
    steps, gates, hidden = shape[1], len(layer.GATES), layer.hidden
    into_any_gate = [
        kept(p).reshape(-1, gates, hidden).max(axis=1)  # (rows, U): into some gate of j
        for p in (layer.input_weight, layer.recurrent_weight)
    ]
    units = read.max(axis=1) if layer.return_sequences else read  # (1, U)
    for _ in range(steps - 1 if walk.transitive else 1):
        units = indicator(units + walk.given(units) @ into_any_gate[1].T)
    # a unit read only through the recurrence is read too: record the closure at the output
    walk.at_output[id(layer)][1] = (
        sm.xp.broadcast_to(units[:, None, :], (1, steps, hidden))
        if layer.return_sequences
        else units
    )
    features = walk.given(units) @ into_any_gate[0].T  # (1, D)
    return sm.xp.broadcast_to(features[:, None, :], shape)


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
    flat = to_host(sm.xp.concatenate([v.reshape(-1) for v in vectors]))  # the one copy
    ends = numpy.cumsum([v.size for v in vectors])
    return [part.reshape(v.shape) for part, v in zip(numpy.split(flat, ends[:-1]), vectors)]


def alive_units(model, input_shape, transitive=True):
    """Which units of every conv/linear/recurrent layer are alive (see the banner: signal and
    read), and which input entries the network reads.

    model: any network whose layers have a rule in LIVENESS_RULES (every layer of the model
    zoo); input_shape: one example's (H, W, C). Returns a dict of NumPy bool arrays:
    'input' -> (H, W, C), then one entry per layer with units (Linear, Conv2D, LSTM, GRU) in
    forward order, keyed by its name prefix ('conv1', 'fc2', 'lstm1'), -> (units,).
    transitive=False: each layer on its own (one step). The last layer's class scores are
    read, so a score is reported alive when it has signal. One device-to-host copy.
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
    return {
        name: (int(flags.sum()), int(flags.size))
        for name, flags in alive_units(model, input_shape, transitive).items()
    }


def format_alive_summary(summary):
    """Two lines for the log, e.g.
    input entries read: 304 of 784
    alive units (an input and an output): fc1 198/300, fc2 80/100, fc3 10/10"""
    read, total = summary["input"]
    units = ", ".join(
        f"{name} {alive:,}/{count:,}" for name, (alive, count) in summary.items() if name != "input"
    )
    return (
        f"input entries read: {read:,} of {total:,}\nalive units (an input and an output): {units}"
    )


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
            raise UsageError(
                f"cannot compact a network with batch norm ({layer_name(child)}): its "
                f"shift makes a channel without inputs a learned constant"
            )
        elif type(child) in (Residual, Concat):
            raise UsageError(
                f"cannot compact a network with {type(child).__name__} blocks: it is not a chain"
            )
        elif type(child) not in CHAIN_LAYERS:
            raise UsageError(
                f"cannot compact a network with {type(child).__name__} layers: "
                f"only chains of Linear, Conv2D, MaxPool2D, AvgPool2D, ReLU and Flatten"
            )
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
        return {
            name: sm.xp.ascontiguousarray(array[self.parts[name][2]])
            for name, array in arrays.items()
        }

    def expanded(self, arrays):
        """{name: array shaped like the compact Param} -> {name: array shaped like the full
        Param}, 0 exactly where units or unread inputs were removed: momentum buffers for a
        checkpoint, say."""
        full_arrays = {}
        for name, array in arrays.items():
            full, _, index = self.parts[name]
            full_arrays[name] = sm.xp.zeros(full.shape, dtype=array.dtype)
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
    last = with_weights[-1]  # its outputs are the class scores: all are kept
    walk = Liveness(model, input_shape)
    channels = walk.input_read.shape[-1]
    # The alive entries along the last axis at every place compaction cuts: the input's
    # channels, the units of every layer with weights, the features after every Flatten
    # that a layer with weights follows.
    cuts = [
        i
        for i, layer in enumerate(layers)
        if i in with_weights[:-1] or (type(layer) is Flatten and i < last)
    ]
    host = host_vectors(
        [walk.input_read.reshape(-1, channels).max(axis=0) > 0]
        + [walk.alive(layers[i]) for i in cuts]
    )
    alive_at = dict(zip(cuts, host[1:]))
    kept_entries = numpy.flatnonzero(host[0])  # of the current activation's last axis, full layout
    compact_layers = [] if kept_entries.size == channels else [Gather(kept_entries)]
    parts, shape = {}, (1,) + tuple(input_shape)
    for i, layer in enumerate(layers):
        if i in with_weights:
            units = (
                numpy.arange(layer.weight.shape[-1])
                if i == last
                else numpy.flatnonzero(alive_at[i])
            )
            if units.size == 0 or kept_entries.size == 0:
                raise UsageError(
                    f"cannot compact: {layer_name(layer)} has no alive unit or reads no "
                    f"alive input, the network is disconnected"
                )
            compact_layers.append(smaller(layer, kept_entries, units, parts))
            kept_entries = units
        elif type(layer) is Flatten:
            compact_layers.append(Flatten())
            if i < last:
                gather, kept_entries = flattened_entries(shape, kept_entries, alive_at[i])
                compact_layers += gather
        else:
            compact_layers.append(
                type(layer)(layer.kernel, layer.stride, layer.padding)
                if type(layer) in (MaxPool2D, AvgPool2D)
                else ReLU()
            )
        shape = walk.at_output[id(layer)][0].shape  # layer's output, full layout
    return Compaction(model, Sequential(*compact_layers), parts)


def flattened_entries(shape, channels, alive):
    """After a Flatten of a full (1, H, W, C) activation of which only `channels` survive:
    ([Gather] or [], the full flattened indices kept).

    alive: bool (H*W*C,), the alive features in the full layout, index (h*W + w)*C + c. The
    compact Flatten lays out (h, w, k) for the k-th kept channel: index (h*W + w)*K + k.
    """
    full_channels = shape[-1]
    features = numpy.flatnonzero(alive)  # full indices
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
    r, u = sm.xp.asarray(rows), sm.xp.asarray(units)  # to the device
    if type(layer) is Linear:
        copy = Linear(rows.size, units.size, bias)
        weight_index = (r[:, None], u[None, :])  # W[rows][:, units]
    else:
        copy = Conv2D(
            rows.size,
            units.size,
            (layer.kernel_h, layer.kernel_w),
            layer.stride,
            layer.padding,
            bias,
        )
        weight_index = (
            slice(None),
            slice(None),
            r[:, None],
            u[None, :],
        )  # W[:, :, rows][..., units]
    copy.needs_input_gradient = layer.needs_input_gradient
    for full, small, index in zip(layer.params, copy.params, (weight_index, (u,))):
        small.name = full.name
        small.value = sm.xp.ascontiguousarray(full.value[index])
        small.mask = None if full.mask is None else sm.xp.ascontiguousarray(full.mask[index])
        parts[full.name] = (full, small, index)
    return copy


def multiply_adds(network, input_shape):
    """The multiply-adds of one example through the dense shapes of every Linear and Conv2D
    in `network`, pruned entries counted too (the matrix products compute them); recurrent
    layers are not counted. Linear: D_in * D_out, Conv2D: OH * OW * KH * KW * C * F. The
    output sizes come from a liveness walk, so the network needs no values."""
    walk = Liveness(network, input_shape)
    return sum(
        math.prod(walk.at_output[id(layer)][0].shape[1:-1]) * layer.weight.size
        for layer in walk.unit_layers
        if isinstance(layer, (Linear, Conv2D))
    )
