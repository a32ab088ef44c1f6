"""Recurrent layers, LSTM and GRU, with backpropagation through time written out, and
AsSequence, which reads an image as a sequence (the paper's sequential MNIST, its Table 2).

    LSTM            long short-term memory, PyTorch's gate order i, f, g, o, one bias per gate
                    and TensorFlow's constant forget_bias
    GRU             gated recurrent unit in its "reset after" form (PyTorch's, cuDNN's)
    AsSequence      x (N, H, W, C) -> a sequence of rows (N, H, W*C), or of pixels (N, H*W, C)

They plug into snip_min.py like every layer (forward/backward pairs sharing a cache, none
kept when no backward pass follows, see section 3 there): their weights and biases are
Params of kind 'weight' and 'bias', so snip_min.snip gates, scores and prunes them with
everything else, and the masked SGD trains them. A Param of a recurrent layer lists its
gates' blocks (Param.parts), so that the pruning table shows each gate on a row of its own.
models.py builds lstm-s, lstm-b, gru-s and gru-b from them; compaction.py follows their
units through time. Every derivation is in the comments of the backward passes below.
Arrays go through sm.xp, NumPy or CuPy; how few operations a step takes (a GPU launches one
kernel for each): docs/recurrent.md. Tests: tests/test_recurrent.py.
"""

import snip_min as sm
from snip_min import Layer, Param, sum_rows

# --------------------------------------------------------------------------------------
# Recurrent layers: a sequence x (N, T, D) in, the last hidden state h_T (N, U) out
#
# One layer runs over the whole sequence: the input half of every gate, x_t W for all T
# steps, is ONE matrix product before the loop, (T*N, D) @ (D, gates*U); inside the loop
# each step adds h_{t-1} R, one (N, U) @ (U, gates*U) product for all gates. The backward
# pass walks the steps in reverse, carrying dL/dh (and, in an LSTM, dL/dc) from each step
# to the one before; the weights are shared by every step, so their gradients are sums
# over t, again one product each after the loop. Sequences are batch-first, x: (N, T, D);
# inside a layer the steps are stored time-first, (T, N, ...), so that step t of every
# array is one contiguous (N, ...) block.
#
# On a GPU every array operation is one kernel launch, and a step's operations are small
# (N x U numbers), so a recurrent layer's speed is set by how many operations a step takes,
# T of them per sequence (784 on pixels). The loops are written to take few, with the same
# numbers to the last bit as the plain formulas in the comments: what does not depend on
# the step before is computed for all T steps at once outside the loop; results are written
# in place (out=, +=) into the array where they are kept; two gates that have the same
# formula and sit side by side are one operation; and no operation writes into memory that
# one of its inputs overlaps (CuPy would copy that input first, one more launch).
# Sigmoids are computed through tanh: sigmoid(z) = 1 / (1 + e^-z) = tanh(z / 2) / 2 + 1/2,
# the same function, without an exp that overflows for a large negative z.
# --------------------------------------------------------------------------------------


def gate_blocks(labels, hidden, matrix):
    """[(label, index)]: the block of a Param that belongs to each gate.

    Gates are stacked along the last axis, gate k owning entries [k*U, (k+1)*U). For a
    weight matrix (rows, gates*U) the index selects all rows and those columns, for a bias
    vector (gates*U,) just those entries: param.value[index] is that gate's block.
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
    return Param(
        role, shape, kind, role=role, parts=gate_blocks(labels, hidden, matrix=len(shape) == 2)
    )


def gradients_from_above(dout, return_sequences):
    """(from_above, dh_next): what a recurrent layer's backward pass starts from. With
    return_sequences every h_t reaches the loss directly: from_above[t] = dL/dh_t from the
    layers above, a (T, N, U) view of dout (N, T, U), and nothing comes back after step T.
    Otherwise only h_T does: from_above is None and dL/dh_T = dout (N, U)."""
    if return_sequences:
        return dout.transpose(1, 0, 2), sm.xp.zeros_like(dout[:, 0])
    return None, dout


class LSTM(Layer):
    """Long short-term memory (Hochreiter & Schmidhuber 1997, with the forget gate of Gers et
    al. 2000) over a whole sequence.

    x: (N, T, D) -> the last hidden state h_T: (N, U), or with return_sequences=True every
    state h_1 ... h_T: (N, T, U) (to feed another recurrent layer). From h_0 and c_0 (zeros
    unless h0, c0 are set), for t = 1 ... T:
        z_t = x_t W + h_{t-1} R + b        (N, 4U): the four gates' inputs, in one product
        i_t = sigmoid(z_t[i])              input gate: how much of g_t to write
        f_t = sigmoid(z_t[f] + forget_bias)  forget gate: how much of c_{t-1} to keep
        g_t = tanh(z_t[g])                 the candidate written to the cell
        o_t = sigmoid(z_t[o])              output gate: how much of the cell to show
        c_t = f_t * c_{t-1} + i_t * g_t    the cell (memory)
        h_t = o_t * tanh(c_t)              the hidden state (output)
    W: (D, 4U) input weights, R: (U, 4U) recurrent weights, b: (4U,) bias; the gates'
    columns are in PyTorch's order i, f, g, o. W and R are 'weight' Params and b a 'bias',
    gated, initialised, decayed and pruned like a linear layer's.

    Bias: ONE per gate (4U), as TensorFlow's LSTM cells (the authors' framework) have.
    PyTorch keeps two, b_ih and b_hh, but they only ever appear as their sum, so one of
    them is redundant (and would double the biases SNIP scores): to copy this layer into
    torch.nn.LSTM, put b into bias_ih (plus forget_bias in the f block) and zeros into bias_hh.
    forget_bias: a constant added to the forget gate's input, not a parameter, exactly as
    TensorFlow's BasicLSTMCell and LSTMCell add their forget_bias=1.0. With b = 0 at
    initialisation, f_t starts near sigmoid(1) = 0.73 instead of 0.5, so the cell keeps
    what it holds over more steps and the gradient through c reaches the early steps.
    Being a constant, it is never pruned: b itself starts at 0 like every bias, so its
    connection sensitivity is 0 and SNIP prunes it first, while the offset stays.
    h0, c0: the initial state, None for zeros, else (N, U) arrays. backward always leaves
    dL/dh_0 and dL/dc_0 in h0_grad and c0_grad.
    """

    GATES = ("i", "f", "g", "o")
    needs_input_gradient = True  # False for a network's first computing layer: its input is data

    def __init__(self, d_in, hidden, return_sequences=False, forget_bias=1.0):
        self.hidden, self.return_sequences, self.forget_bias = hidden, return_sequences, forget_bias
        self.input_weight = recurrent_param(
            "input_weight", (d_in, 4 * hidden), "weight", self.GATES, hidden
        )
        self.recurrent_weight = recurrent_param(
            "recurrent_weight", (hidden, 4 * hidden), "weight", self.GATES, hidden
        )
        self.bias = recurrent_param("bias", (4 * hidden,), "bias", self.GATES, hidden)
        self.params = [self.input_weight, self.recurrent_weight, self.bias]
        self.h0 = self.c0 = None
        self.h0_grad = self.c0_grad = None

    def forward(self, x, train):  # x: (N, T, D)
        n, steps, _ = x.shape
        size = self.hidden
        wc = self.input_weight.masked()  # (D, 4U), W * c
        rc = self.recurrent_weight.masked()  # (U, 4U), R * c
        x_by_time = x.transpose(1, 0, 2).reshape(steps * n, -1)  # (T*N, D), step 1's rows first
        # One tanh gives all four gates: gate = scale * tanh(scale * z) + offset, with scale
        # 1/2 and offset 1/2 in the columns of i, f and o (the sigmoid through tanh), scale 1
        # and offset 0 in those of g (tanh itself). The inner scale * z is applied to z's two
        # terms before the loop, to x_t W + b for every t and to R: halving a number is exact
        # in floating point, so h (scale * R) + scale * (x W + b) is scale * z to the last bit.
        scale = sm.xp.full(4 * size, 0.5, dtype=x.dtype)  # (4U,)
        offset = sm.xp.full(4 * size, 0.5, dtype=x.dtype)  # (4U,)
        scale[2 * size : 3 * size], offset[2 * size : 3 * size] = 1.0, 0.0
        gates = (x_by_time @ wc).reshape(steps, n, 4 * size)  # (T, N, 4U), x_t W for every t
        gates += self.bias.masked()
        forget = gates[:, :, size : 2 * size]  # (T, N, U), a view
        forget += self.forget_bias
        gates *= scale  # scale * (x_t W + b); step t turns gates[t] into its i, f, g, o
        rc_scaled = rc * scale  # (U, 4U)
        cells = sm.xp.empty((steps + 1, n, size), dtype=x.dtype)  # (T+1, N, U): c_0 ... c_T
        cell_tanh = sm.xp.empty((steps, n, size), dtype=x.dtype)  # (T, N, U): tanh(c_t)
        hiddens = sm.xp.empty((steps + 1, n, size), dtype=x.dtype)  # (T+1, N, U): h_0 ... h_T
        cells[0] = 0 if self.c0 is None else self.c0
        hiddens[0] = 0 if self.h0 is None else self.h0
        for t in range(steps):  # arrays are indexed from 0: gates[t] belongs to step t+1
            gate = gates[t]  # (N, 4U), a view: scale * (x_t W + b)
            gate += hiddens[t] @ rc_scaled  # scale * z_t, z_t = x_t W + h_{t-1} R + b
            sm.xp.tanh(gate, out=gate)
            gate *= scale
            gate += offset  # i, f, o = sigmoid(z), g = tanh(z)
            i, f, g, o = (gate[:, k * size : (k + 1) * size] for k in range(4))  # (N, U) each
            cell = cells[t + 1]  # (N, U), a view
            sm.xp.multiply(f, cells[t], out=cell)  # c_t = f_t * c_{t-1}
            cell += i * g  #       + i_t * g_t
            sm.xp.tanh(cell, out=cell_tanh[t])
            sm.xp.multiply(o, cell_tanh[t], out=hiddens[t + 1])  # h_t = o_t * tanh(c_t)
        if sm.BACKWARD_FOLLOWS:
            self.cache = (x_by_time, x.shape, wc, rc, gates, cells, cell_tanh, hiddens)
        if self.return_sequences:
            return sm.xp.ascontiguousarray(hiddens[1:].transpose(1, 0, 2))  # (N, T, U)
        return hiddens[steps]  # (N, U)

    def backward(self, dout):  # dout: (N, U), or (N, T, U) with return_sequences
        x_by_time, x_shape, wc, rc, gates, cells, cell_tanh, hiddens = self.take_cache()
        steps, n, size = cell_tanh.shape
        # forward: i, f, o = sigmoid(z), g = tanh(z), and sigmoid' = sigmoid (1 - sigmoid),
        # tanh' = 1 - tanh^2. Before the loop, for every step at once, the factors that do
        # not depend on dL/dh: dz[t] starts as [1 - i, 1 - f, 1 - g^2, 1 - o] and becomes
        # dL/dz_t in step t; and 1 - tanh(c_t)^2, the slope of h_t = o_t tanh(c_t) in c_t.
        dz = 1 - gates  # (T, N, 4U): dL/dz_t of each step, once step t is done
        every_g = gates[:, :, 2 * size : 3 * size]  # (T, N, U), a view: g of every step
        g_slope = dz[:, :, 2 * size : 3 * size]  # (T, N, U), a view
        sm.xp.multiply(every_g, every_g, out=g_slope)
        sm.xp.subtract(1, g_slope, out=g_slope)  # 1 - g^2
        cell_slope = cell_tanh * cell_tanh  # (T, N, U)
        sm.xp.subtract(1, cell_slope, out=cell_slope)  # 1 - tanh(c_t)^2
        local = sm.xp.empty((n, 4 * size), dtype=dout.dtype)  # (N, 4U), reused by every step
        from_above, dh_next = gradients_from_above(dout, self.return_sequences)
        dc_next = sm.xp.zeros((n, size), dtype=dout.dtype)  # (N, U): c_T feeds only h_T
        for t in reversed(range(steps)):
            # h_t feeds the loss (with return_sequences) and the next step: dL/dh_t is the sum
            dh = dh_next + from_above[t] if from_above is not None else dh_next  # (N, U)
            gate = gates[t]
            i, f, g, o = (gate[:, k * size : (k + 1) * size] for k in range(4))
            # in the forward pass this was h_t = o_t * tanh(c_t), so now
            # dL/do_t = dL/dh_t * tanh(c_t), and
            # dL/dc_t = (what step t+1 sent back) + dL/dh_t * o_t * (1 - tanh(c_t)^2)
            dc = dh * o  # (N, U)
            dc *= cell_slope[t]
            dc += dc_next
            # forward: c_t = f_t * c_{t-1} + i_t * g_t, so
            # dL/di_t = dL/dc_t * g_t, dL/df_t = dL/dc_t * c_{t-1}, dL/dg_t = dL/dc_t * i_t.
            # Then dL/dz_t = dL/d(gate) * gate' (the constant forget_bias changes nothing in
            # f's derivative): for i, f and o, (dL/d(gate) * gate) * (1 - gate), for g,
            # dL/dg * (1 - g^2); `local` holds the first factor, dz[t] the second
            sm.xp.multiply(dc, g, out=local[:, :size])  # dL/di_t
            sm.xp.multiply(dc, cells[t], out=local[:, size : 2 * size])  # dL/df_t
            input_and_forget = local[:, : 2 * size]  # (N, 2U), a view
            input_and_forget *= gate[:, : 2 * size]  # dL/di_t * i_t, dL/df_t * f_t
            sm.xp.multiply(dc, i, out=local[:, 2 * size : 3 * size])  # dL/dg_t
            output = local[:, 3 * size :]  # (N, U), a view
            sm.xp.multiply(dh, cell_tanh[t], out=output)  # dL/do_t
            output *= o  # dL/do_t * o_t
            d = dz[t]  # (N, 4U), a view: [1 - i, 1 - f, 1 - g^2, 1 - o]
            d *= local  # dL/dz_t
            # forward: z_t = x_t W + h_{t-1} R + b, so dL/dh_{t-1} = dL/dz_t R^T,
            # and c_t = f_t * c_{t-1} + ... gives dL/dc_{t-1} = dL/dc_t * f_t
            dh_next = d @ rc.T  # (N, U)
            dc_next = dc * f  # (N, U)
        self.h0_grad, self.c0_grad = dh_next, dc_next  # dL/dh_0, dL/dc_0: (N, U) each
        # forward: z_t = x_t W + h_{t-1} R + b at every t with the same W, R, b, so
        # dL/dW = sum_t x_t^T dL/dz_t, dL/dR = sum_t h_{t-1}^T dL/dz_t, dL/db = sum_t sum_n dL/dz_t:
        # each sum over t and n is one product of the stacked steps
        dz_rows = dz.reshape(steps * n, 4 * size)  # (T*N, 4U)
        self.input_weight.grad = x_by_time.T @ dz_rows  # (D, 4U)
        self.recurrent_weight.grad = hiddens[:-1].reshape(steps * n, size).T @ dz_rows  # (U, 4U)
        self.bias.grad = sum_rows(dz_rows)  # (4U,)
        if not self.needs_input_gradient:
            return None
        # and dL/dx_t = dL/dz_t W^T, every step at once
        dx_by_time = (dz_rows @ wc.T).reshape(steps, n, -1)  # (T, N, D)
        return sm.xp.ascontiguousarray(dx_by_time.transpose(1, 0, 2))  # (N, T, D)


class GRU(Layer):
    """Gated recurrent unit (Cho et al. 2014) over a whole sequence, in its "reset after"
    form (PyTorch's torch.nn.GRU, cuDNN, Keras with reset_after=True).

    x: (N, T, D) -> the last hidden state h_T: (N, U), or with return_sequences=True every
    state (N, T, U). From h_0 (zeros unless h0 is set), for t = 1 ... T:
        a_t = x_t W + b                    (N, 3U): the gates' input halves (all t at once)
        s_t = h_{t-1} R + [0, 0, b_hn]     (N, 3U): their recurrent halves, one product
        r_t = sigmoid(a_t[r] + s_t[r])     reset gate: how much of h_{t-1} the candidate sees
        z_t = sigmoid(a_t[z] + s_t[z])     update gate: how much of h_{t-1} to keep
        n_t = tanh(a_t[n] + r_t * s_t[n])  the candidate state
        h_t = (1 - z_t) * n_t + z_t * h_{t-1}
    W: (D, 3U) input weights, R: (U, 3U) recurrent weights (columns in PyTorch's order
    r, z, n), b: (3U,) input bias, b_hn: (U,) recurrent bias of the candidate.

    Why "reset after": the original GRU resets h_{t-1} BEFORE its product,
    n_t = tanh(x_t W_n + (r_t * h_{t-1}) U_n + b_n), which needs r_t first and so a second
    product per step. Resetting the product's result instead keeps ONE recurrent product
    for all three gates. Biases: PyTorch's recurrent biases b_hr, b_hz only ever appear
    added to the input biases b_r, b_z, so they are redundant and left out; but r_t
    multiplies b_hn, so b_hn is a parameter of its own: 3U + U biases. To copy this layer
    into torch.nn.GRU: bias_ih = b, bias_hh = [0, 0, b_hn].
    All four Params are gated and pruned like a linear layer's weights and biases.
    h0: the initial state, None for zeros, else (N, U); backward leaves dL/dh_0 in h0_grad.
    """

    GATES = ("r", "z", "n")
    needs_input_gradient = True  # False for a network's first computing layer: its input is data

    def __init__(self, d_in, hidden, return_sequences=False):
        self.hidden, self.return_sequences = hidden, return_sequences
        self.input_weight = recurrent_param(
            "input_weight", (d_in, 3 * hidden), "weight", self.GATES, hidden
        )
        self.recurrent_weight = recurrent_param(
            "recurrent_weight", (hidden, 3 * hidden), "weight", self.GATES, hidden
        )
        self.bias = recurrent_param("bias", (3 * hidden,), "bias", self.GATES, hidden)
        self.recurrent_bias = recurrent_param("recurrent_bias", (hidden,), "bias", ("n",), hidden)
        self.params = [self.input_weight, self.recurrent_weight, self.bias, self.recurrent_bias]
        self.h0 = None
        self.h0_grad = None

    def forward(self, x, train):  # x: (N, T, D)
        n, steps, _ = x.shape
        size = self.hidden
        wc = self.input_weight.masked()  # (D, 3U), W * c
        rc = self.recurrent_weight.masked()  # (U, 3U), R * c
        recurrent_bias = self.recurrent_bias.masked()  # (U,)
        x_by_time = x.transpose(1, 0, 2).reshape(steps * n, -1)  # (T*N, D), step 1's rows first
        # r and z are sigmoid(a + s) = tanh((a + s) / 2) / 2 + 1/2: the halving is applied to
        # their columns of a_t (for every t) and of R before the loop, which is exact in
        # floating point (as in the LSTM), so each step adds the halves
        scale = sm.xp.ones(3 * size, dtype=x.dtype)  # (3U,)
        scale[: 2 * size] = 0.5
        gates = (x_by_time @ wc).reshape(steps, n, 3 * size)  # (T, N, 3U): a_t for every t
        gates += self.bias.masked()
        gates *= scale  # step t turns gates[t] into its r, z, n
        rc_scaled = rc * scale  # (U, 3U)
        candidate_recurrent = sm.xp.empty((steps, n, size), dtype=x.dtype)  # (T, N, U): s_t[n]
        hiddens = sm.xp.empty((steps + 1, n, size), dtype=x.dtype)  # (T+1, N, U): h_0 ... h_T
        hiddens[0] = 0 if self.h0 is None else self.h0
        for t in range(steps):  # arrays are indexed from 0: gates[t] belongs to step t+1
            s = hiddens[t] @ rc_scaled  # (N, 3U): s_t, its r and z columns halved
            gate = gates[t]  # (N, 3U), a view
            both = gate[:, : 2 * size]  # (N, 2U), a view: r and z
            both += s[:, : 2 * size]  # (a + s) / 2
            sm.xp.tanh(both, out=both)
            both *= 0.5
            both += 0.5  # r, z = sigmoid(a + s)
            r, z = gate[:, :size], gate[:, size : 2 * size]  # views, (N, U) each
            sm.xp.add(s[:, 2 * size :], recurrent_bias, out=candidate_recurrent[t])  # s_t[n]
            candidate = gate[:, 2 * size :]  # (N, U), a view: a_t[n], then n_t
            candidate += r * candidate_recurrent[t]
            sm.xp.tanh(candidate, out=candidate)  # n = tanh(a[n] + r * s[n])
            h = hiddens[t + 1]
            sm.xp.subtract(hiddens[t], candidate, out=h)
            h *= z
            h += candidate  # h_t = n + z (h_{t-1} - n) = (1 - z) n + z h_{t-1}
        if sm.BACKWARD_FOLLOWS:
            self.cache = (x_by_time, wc, rc, gates, candidate_recurrent, hiddens)
        if self.return_sequences:
            return sm.xp.ascontiguousarray(hiddens[1:].transpose(1, 0, 2))  # (N, T, U)
        return hiddens[steps]  # (N, U)

    def backward(self, dout):  # dout: (N, U), or (N, T, U) with return_sequences
        x_by_time, wc, rc, gates, candidate_recurrent, hiddens = self.take_cache()
        steps, n, size = candidate_recurrent.shape
        # Before the loop, for every step at once, the factors that do not depend on dL/dh:
        # d_recurrent[t] starts as [1 - r, 1 - z, .] and becomes dL/ds_t in step t;
        # 1 - n_t^2, tanh's slope; and h_{t-1} - n_t, the slope of h_t in z_t
        d_recurrent = sm.xp.empty_like(gates)  # (T, N, 3U): dL/ds_t of each step
        sm.xp.subtract(1, gates[:, :, : 2 * size], out=d_recurrent[:, :, : 2 * size])
        every_candidate = gates[:, :, 2 * size :]  # (T, N, U), a view: n_t of every step
        candidate_slope = every_candidate * every_candidate  # (T, N, U)
        sm.xp.subtract(1, candidate_slope, out=candidate_slope)  # 1 - n_t^2
        update_slope = hiddens[:-1] - every_candidate  # (T, N, U): h_{t-1} - n_t
        d_candidate = sm.xp.empty_like(candidate_recurrent)  # (T, N, U): dL/da_t[n] of each step
        local = sm.xp.empty((n, 2 * size), dtype=dout.dtype)  # (N, 2U), reused by every step
        from_above, dh_next = gradients_from_above(dout, self.return_sequences)
        for t in reversed(range(steps)):
            # h_t feeds the loss (with return_sequences) and the next step: dL/dh_t is the sum
            dh = dh_next + from_above[t] if from_above is not None else dh_next  # (N, U)
            gate = gates[t]
            r, z = gate[:, :size], gate[:, size : 2 * size]
            d = d_recurrent[t]  # (N, 3U), a view: [1 - r, 1 - z, .]
            # in the forward pass this was h_t = (1 - z_t) * n_t + z_t * h_{t-1}, so now
            # dL/dn_t = dL/dh_t * (1 - z_t), dL/dz_t = dL/dh_t * (h_{t-1} - n_t), and h_{t-1}
            # gets dL/dh_t * z_t directly (added below)
            dn = dh * d[:, size : 2 * size]  # (N, U)
            # forward: n_t = tanh(a_t[n] + r_t * s_t[n]), so dL/da_t[n] = dL/dn_t * (1 - n_t^2),
            # dL/dr_t = dL/da_t[n] * s_t[n] and dL/ds_t[n] = dL/da_t[n] * r_t
            sm.xp.multiply(dn, candidate_slope[t], out=d_candidate[t])
            sm.xp.multiply(d_candidate[t], candidate_recurrent[t], out=local[:, :size])  # dL/dr_t
            sm.xp.multiply(dh, update_slope[t], out=local[:, size:])  # dL/dz_t
            # forward: r_t = sigmoid(a_t[r] + s_t[r]), z_t likewise, and sigmoid' = s (1 - s):
            # dL/ds_t[r] = (dL/dr_t * r_t) * (1 - r_t) (the same as dL/da_t[r]), likewise z
            local *= gate[:, : 2 * size]  # dL/dr_t * r_t, dL/dz_t * z_t
            reset_and_update = d[:, : 2 * size]  # (N, 2U), a view
            reset_and_update *= local
            sm.xp.multiply(d_candidate[t], r, out=d[:, 2 * size :])
            # forward: s_t = h_{t-1} R + ..., and h_t = ... + z_t * h_{t-1}, so
            # dL/dh_{t-1} = dL/ds_t R^T + dL/dh_t * z_t
            dh_next = d @ rc.T  # (N, U)
            dh_next += dh * z
        self.h0_grad = dh_next  # dL/dh_0, (N, U)
        # forward: a_t = x_t W + b and s_t = h_{t-1} R + [0, 0, b_hn] at every t with the same
        # W, b, R, b_hn: their gradients are sums over t and n, one product each
        recurrent_rows = d_recurrent.reshape(steps * n, 3 * size)  # (T*N, 3U): dL/ds_t
        self.recurrent_weight.grad = (
            hiddens[:-1].reshape(steps * n, size).T @ recurrent_rows
        )  # (U, 3U)
        self.recurrent_bias.grad = sum_rows(recurrent_rows[:, 2 * size :])  # (U,)
        # the input halves: a_t[r], a_t[z] enter exactly where s_t[r], s_t[z] do (their sum),
        # while a_t[n] enters outside the reset, with dL/da_t[n] found above. dL/ds_t is no
        # longer needed, so its candidate columns take dL/da_t[n] in place (no copy)
        d_recurrent[:, :, 2 * size :] = d_candidate  # now dL/da_t of each step
        input_rows = recurrent_rows  # (T*N, 3U), the same array
        self.input_weight.grad = x_by_time.T @ input_rows  # (D, 3U)
        self.bias.grad = sum_rows(input_rows)  # (3U,)
        if not self.needs_input_gradient:
            return None
        # and dL/dx_t = dL/da_t W^T, every step at once
        dx_by_time = (input_rows @ wc.T).reshape(steps, n, -1)  # (T, N, D)
        return sm.xp.ascontiguousarray(dx_by_time.transpose(1, 0, 2))  # (N, T, D)


class AsSequence(Layer):
    """Read each image as a sequence of its rows: x (N, H, W, C) -> (N, T = H, D = W*C), or,
    with pixels=True, of its pixels: -> (N, T = H*W, D = C).

    Rows: step t is row t, its W pixels' C channels side by side (NHWC order); an MNIST
    digit becomes 28 steps of 28 pixels. Pixels: step t is pixel t in reading order, an MNIST
    digit 784 steps of one value. Like Flatten, it only reshapes.
    """

    only_rearranges = True

    def __init__(self, pixels=False):
        self.pixels = pixels

    def forward(self, x, train):
        if sm.BACKWARD_FOLLOWS:
            self.cache = x.shape
        steps = x.shape[1] * x.shape[2] if self.pixels else x.shape[1]
        return x.reshape(x.shape[0], steps, -1)

    def backward(self, dout):
        return dout.reshape(self.take_cache())
