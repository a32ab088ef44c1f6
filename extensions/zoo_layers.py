"""The layers the model zoo adds to snip_min.py's: batch normalisation, average pooling,
and the blocks that make a network more than a chain.

snip_min.py has the layers the LeNets need (Linear, Conv2D, MaxPool2D, ReLU, Flatten,
Sequential). The paper's CIFAR-10 and Tiny-ImageNet networks and the student
reproduction's (models.py) need these too:

    BatchNorm       batch statistics in training, running statistics in evaluation
    AvgPool2D       the mean of each window ('same' padding averages real pixels only)
    GlobalAvgPool   the mean of each channel over all positions
    Identity        y = x, a residual block's shortcut or a dense layer's kept input
    ZeroChannels    channels of zeros appended, ResNet's parameter-free shortcut
    Residual        y = body(x) + shortcut(x)
    Concat          branches side by side along the channels (inception, fire, dense blocks)

Each is a forward/backward pair exactly like snip_min.py's layers (section 3 there explains
the protocol: forward leaves a cache, unless sm.BACKWARD_FOLLOWS says that no backward pass
will follow, backward takes it, stores dL/d(param) and returns dL/dx), with its derivation
in the comments of its backward pass. models.py builds the zoo
from them; compaction.py knows how alive units pass through each. Batch norm is never
gated: SNIP prunes connections, not normalisers. Arrays go through sm.xp, NumPy or CuPy.
Tests: tests/test_zoo_layers.py.
"""

import snip_min as sm
from snip_min import Layer, Param, col2im, kernel_offset_view, pad_image, padding_amounts


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
            mean, var = x.mean(axis=axes), x.var(axis=axes)  # (C,)
            count = x.size // x.shape[-1]
            m = self.momentum
            self.running_mean.value = (1 - m) * self.running_mean.value + m * mean
            self.running_var.value = (1 - m) * self.running_var.value + m * var * (
                count / max(count - 1, 1)
            )
        else:
            mean, var = self.running_mean.value, self.running_var.value
        inv_std = 1.0 / sm.xp.sqrt(var + self.eps)  # (C,)
        x_hat = x - mean  # (N, ..., C)
        x_hat *= inv_std
        y = x_hat * self.scale.value
        y += self.shift.value
        if sm.BACKWARD_FOLLOWS:
            self.cache = (x_hat, inv_std, train)
        return y

    def backward(self, dout):
        x_hat, inv_std, train = self.take_cache()
        axes = tuple(range(dout.ndim - 1))
        # forward: y = scale * x_hat + shift
        self.scale.grad = (dout * x_hat).sum(axis=axes)  # sum of dL/dy * x_hat
        self.shift.grad = dout.sum(axis=axes)  # sum of dL/dy
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
        real = pad_image(sm.xp.ones((1, h, w, 1), dtype=x.dtype), pads)  # 1 on real pixels
        total, count = 0, 0
        for i in range(self.kernel):
            for j in range(self.kernel):
                total = total + kernel_offset_view(x_pad, i, j, self.stride, out_h, out_w)
                count = count + kernel_offset_view(real, i, j, self.stride, out_h, out_w)
        if sm.BACKWARD_FOLLOWS:
            self.cache = (x.shape, x_pad.shape, pads, count)
        return total / count

    def backward(self, dout):
        # forward: y = (sum of the window's pixels) / count, so each pixel of the window
        # receives dL/dy / count
        x_shape, x_pad_shape, (top, _, left, _), count = self.take_cache()
        share = dout / count
        dx_pad = col2im(
            lambda i, j: share, x_pad_shape, self.kernel, self.kernel, self.stride, dout.dtype
        )
        _, h, w, _ = x_shape
        return dx_pad[:, top : top + h, left : left + w, :]


class GlobalAvgPool(Layer):
    """The mean over all positions of each channel: x (N, H, W, C) -> y (N, C)."""

    def forward(self, x, train):
        if sm.BACKWARD_FOLLOWS:
            self.cache = x.shape
        return x.mean(axis=(1, 2))

    def backward(self, dout):
        # forward: y = sum_{h, w} x / (H*W), so every position receives dL/dy / (H*W)
        shape = self.take_cache()
        _, h, w, _ = shape
        return sm.xp.broadcast_to((dout / (h * w))[:, None, None, :], shape).copy()


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
        y = sm.xp.zeros(x.shape[:-1] + (channels + self.extra,), dtype=x.dtype)
        y[..., :channels] = x
        if sm.BACKWARD_FOLLOWS:
            self.cache = channels
        return y

    def backward(self, dout):
        # the zeros do not depend on x: only the first C channels carry a gradient back
        return dout[..., : self.take_cache()]


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
        if sm.BACKWARD_FOLLOWS:
            self.cache = [out.shape[-1] for out in outputs]  # channels per branch
        return sm.xp.concatenate(outputs, axis=-1)

    def backward(self, dout):
        # each branch gets its own channels of dL/dy; x feeds every branch, so sum
        dx, start = 0, 0
        for branch, size in zip(self.children, self.take_cache()):
            dx = dx + branch.backward(dout[..., start : start + size])
            start += size
        return dx
