"""A PyTorch twin of a snip-min network: the same function, with the same weights, as a
torch.nn.Module. PyTorch is only a yardstick and a way out here: the method never imports
it, and this module only receives it (`to_torch(model, torch)`), so that importing this
module needs no PyTorch.

Layouts differ, and this is where a user would trip: activations are NHWC here and NCHW in
PyTorch; a convolution's weights are (KH, KW, C, F) here and (F, C, KH, KW) there; a
linear layer's (D_in, D_out) here and (D_out, D_in) there. The twin keeps NHWC at its
boundaries (its input, and what Flatten sees) and runs NCHW inside.

Used by the cross-checks of the test suite (the same logits and gradients), by
scripts/bench.py (the same work, timed) and by experiments that compare the two.
"""

import numpy

import snip_min as sm
from extensions import recurrent, zoo_layers


def to_torch(layer, torch):
    """A torch.nn.Module computing exactly what a snip-min layer computes, with its weights.

    Returns (module, links): links pairs every snip-min weight and bias Param (conv,
    linear, recurrent) with its PyTorch parameter and a function turning a snip-min array
    into that parameter's layout; the function's .inverse turns a PyTorch tensor back into
    a snip-min host array. Activations stay NHWC at the boundaries (the input and Flatten
    see the same order as snip-min); inside, convolutions run in PyTorch's native NCHW.
    """
    nn = torch.nn
    links = []

    def layout_conv(array):  # (KH, KW, C, F) -> (F, C, KH, KW)
        return torch.as_tensor(sm.to_host(array)).permute(3, 2, 0, 1).contiguous()

    def layout_linear(array):  # (D_in, D_out) -> (D_out, D_in)
        return torch.as_tensor(sm.to_host(array)).T.contiguous()

    def layout_vector(array):
        return torch.as_tensor(sm.to_host(array))

    layout_conv.inverse = lambda tensor: tensor.detach().cpu().permute(2, 3, 1, 0).numpy()
    layout_linear.inverse = lambda tensor: tensor.detach().cpu().T.numpy()
    layout_vector.inverse = lambda tensor: tensor.detach().cpu().numpy()

    def copy(param, target, layout):
        with torch.no_grad():
            target.copy_(layout(param.value))
        if param.kind in ("weight", "bias"):
            links.append((param, target, layout))

    class Pad(nn.Module):
        def __init__(self, padding, kernel, stride, value):
            super().__init__()
            self.padding, self.kernel, self.stride, self.value = padding, kernel, stride, value

        def forward(self, x):  # x: (N, C, H, W)
            top, bottom, left, right = sm.padding_amounts(
                self.padding, x.shape[2], x.shape[3], self.kernel[0], self.kernel[1], self.stride
            )
            if not (top or bottom or left or right):
                return x
            return torch.nn.functional.pad(x, (left, right, top, bottom), value=self.value)

    class FlattenNHWC(nn.Module):
        def forward(self, x):
            return x.permute(0, 2, 3, 1).flatten(1) if x.dim() == 4 else x.flatten(1)

    class Chain(nn.Sequential):
        """NHWC in, NCHW inside."""

        def forward(self, x):
            return super().forward(x.permute(0, 3, 1, 2) if x.dim() == 4 else x)

    class AvgPoolSame(nn.Module):
        """snip-min's average pool: windows over the border average only real pixels."""

        def __init__(self, kernel, stride, padding):
            super().__init__()
            self.pad = Pad(padding, (kernel, kernel), stride, 0.0)
            self.kernel, self.stride = kernel, stride

        def forward(self, x):
            total = nn.functional.avg_pool2d(self.pad(x), self.kernel, self.stride) * self.kernel**2
            real = (
                nn.functional.avg_pool2d(
                    self.pad(torch.ones_like(x[:1, :1])), self.kernel, self.stride
                )
                * self.kernel**2
            )
            return total / real

    class GlobalAvgPool(nn.Module):
        def forward(self, x):
            return x.mean(dim=(2, 3))

    class ZeroChannels(nn.Module):
        def __init__(self, extra):
            super().__init__()
            self.extra = extra

        def forward(self, x):
            return torch.cat([x, x.new_zeros((x.shape[0], self.extra) + x.shape[2:])], dim=1)

    class Residual(nn.Module):
        def __init__(self, body, shortcut):
            super().__init__()
            self.body, self.shortcut = body, shortcut

        def forward(self, x):
            return self.body(x) + self.shortcut(x)

    class Concat(nn.Module):
        def __init__(self, branches):
            super().__init__()
            self.branches = nn.ModuleList(branches)

        def forward(self, x):
            return torch.cat([branch(x) for branch in self.branches], dim=1)

    class AsSequence(nn.Module):
        def __init__(self, pixels):
            super().__init__()
            self.pixels = pixels

        def forward(self, x):  # the chain hands it (N, C, H, W): -> (N, T, D)
            steps = x.shape[2] * x.shape[3] if self.pixels else x.shape[2]
            return x.permute(0, 2, 3, 1).reshape(x.shape[0], steps, -1)

    class LastHidden(nn.Module):
        """torch.nn.LSTM/GRU over the whole sequence, giving h_T as snip-min's layers do."""

        def __init__(self, rnn):
            super().__init__()
            self.rnn = rnn

        def forward(self, x):
            return self.rnn(x)[0][:, -1]

    def recurrent_module(each):
        """torch.nn.LSTM or GRU with snip-min's weights: PyTorch stores W^T and R^T (its gates
        in the same order), and its two biases add up to ours (plus the LSTM's constant
        forget_bias, which PyTorch holds in bias_ih's f block)."""
        d_in, hidden = each.input_weight.shape[0], each.hidden
        kind = nn.LSTM if isinstance(each, recurrent.LSTM) else nn.GRU
        rnn = kind(d_in, hidden, batch_first=True)
        copy(each.input_weight, rnn.weight_ih_l0, layout_linear)
        copy(each.recurrent_weight, rnn.weight_hh_l0, layout_linear)
        copy(each.bias, rnn.bias_ih_l0, layout_vector)
        if isinstance(each, recurrent.LSTM):
            with torch.no_grad():  # the second bias holds the constant
                rnn.bias_hh_l0.zero_()
                rnn.bias_hh_l0[hidden : 2 * hidden] = each.forget_bias
            rnn.bias_hh_l0.requires_grad_(False)  # ... and is not trained
        else:

            def candidate_only(array):  # b_hn (U,) -> PyTorch's bias_hh [0, 0, b_hn]
                vector = layout_vector(array)
                return torch.cat([vector.new_zeros(2 * hidden), vector])

            candidate_only.inverse = lambda tensor: layout_vector.inverse(tensor[2 * hidden :])

            copy(each.recurrent_bias, rnn.bias_hh_l0, candidate_only)
        return [LastHidden(rnn)]

    def convert_one(each, previous=None):
        modules = convert(each, previous)
        return modules[0] if len(modules) == 1 else nn.Sequential(*modules)

    def convert(each, previous):
        if isinstance(each, sm.Sequential):
            modules = []
            for child in each.children:
                modules += convert(child, modules[-1] if modules else previous)
            return modules
        if isinstance(each, zoo_layers.Residual):
            return [Residual(convert_one(each.body), convert_one(each.shortcut))]
        if isinstance(each, zoo_layers.Concat):
            return [Concat([convert_one(branch) for branch in each.children])]
        if isinstance(each, zoo_layers.Identity):
            return [nn.Identity()]
        if isinstance(each, zoo_layers.AvgPool2D):
            return [AvgPoolSame(each.kernel, each.stride, each.padding)]
        if isinstance(each, zoo_layers.GlobalAvgPool):
            return [GlobalAvgPool()]
        if isinstance(each, zoo_layers.ZeroChannels):
            return [ZeroChannels(each.extra)]
        if isinstance(each, sm.Conv2D):
            kh, kw, c, f = each.weight.shape
            conv = nn.Conv2d(c, f, (kh, kw), stride=each.stride, bias=each.bias is not None)
            copy(each.weight, conv.weight, layout_conv)
            if each.bias is not None:
                copy(each.bias, conv.bias, layout_vector)
            return [Pad(each.padding, (kh, kw), each.stride, 0.0), conv]
        if isinstance(each, sm.Linear):
            d_in, d_out = each.weight.shape
            linear = nn.Linear(d_in, d_out, bias=each.bias is not None)
            copy(each.weight, linear.weight, layout_linear)
            if each.bias is not None:
                copy(each.bias, linear.bias, layout_vector)
            return [linear]
        if isinstance(each, sm.MaxPool2D):
            k = (each.kernel, each.kernel)
            return [Pad(each.padding, k, each.stride, float("-inf")), nn.MaxPool2d(k, each.stride)]
        if isinstance(each, sm.ReLU):
            return [nn.ReLU()]
        if isinstance(each, sm.Flatten):
            return [FlattenNHWC()]
        if isinstance(each, recurrent.AsSequence):
            return [AsSequence(each.pixels)]
        if isinstance(each, (recurrent.LSTM, recurrent.GRU)):
            return recurrent_module(each)
        if isinstance(each, zoo_layers.BatchNorm):
            after_linear = isinstance(previous, nn.Linear)
            kind = nn.BatchNorm1d if after_linear else nn.BatchNorm2d
            norm = kind(each.scale.shape[0], eps=each.eps, momentum=each.momentum)
            copy(each.scale, norm.weight, layout_vector)
            copy(each.shift, norm.bias, layout_vector)
            copy(each.running_mean, norm.running_mean, layout_vector)
            copy(each.running_var, norm.running_var, layout_vector)
            return [norm]
        raise NotImplementedError(f"no PyTorch equivalent for {type(each).__name__}")

    return Chain(*convert(layer, None)), links


# ------------------------------------------------------------------------------------------
# To PyTorch and back: a trained network's state_dict, and masks made in PyTorch
# ------------------------------------------------------------------------------------------

MASK_CHOICES = ("apply", "register")


def parameter_names(twin):
    """{id(tensor): its name in twin.state_dict()} for every parameter of the twin."""
    return {id(tensor): name for name, tensor in twin.named_parameters()}


def export_state_dict(model, torch, masks="apply"):
    """(twin, state_dict): `model`'s PyTorch twin with its trained values, in PyTorch's
    layouts. masks='apply': the pruned weights are zeros in the weights themselves (they are
    zeros in snip-min already); masks='register': each gated parameter is also pruned with
    torch.nn.utils.prune.custom_from_mask, so that the state_dict holds NAME_orig and
    NAME_mask and PyTorch keeps the pruned weights at zero while training the twin."""
    if masks not in MASK_CHOICES:
        raise ValueError(f"masks must be one of {', '.join(MASK_CHOICES)}, not {masks!r}")
    twin, links = to_torch(model, torch)
    twin.eval()
    if masks == "register":
        import torch.nn.utils.prune  # (torch.nn.utils does not import it)

        modules = dict(twin.named_modules())
        names = parameter_names(twin)
        for p, target, layout in links:
            if p.mask is not None:
                owner, _, attribute = names[id(target)].rpartition(".")
                mask = layout(p.mask).to(target.dtype)
                torch.nn.utils.prune.custom_from_mask(modules[owner], attribute, mask)
    return twin, twin.state_dict()


def masks_from_state_dict(model, state_dict, torch, scope="weights+biases"):
    """({name: bool host array in snip-min's layout}, [names with no mask]): the masks of a
    PyTorch state_dict of `model`'s twin (its NAME_mask entries, as torch.nn.utils.prune
    leaves them) for every Param that snip-min gates with this scope (--prune). A Param
    whose twin has no mask entry is kept whole (all True), and named in the second list.
    sm.UsageError if no Param has one (a state_dict without masks) or if an entry's shape is
    not its parameter's (a state_dict of another model)."""
    twin, links = to_torch(model, torch)
    names = parameter_names(twin)
    gated = {p.name for p in sm.prunable_parameters(model, scope)}
    masks, unmasked = {}, []
    for p, target, layout in links:
        if p.name not in gated:
            continue
        key = names[id(target)] + "_mask"
        entry = state_dict.get(key)
        if entry is None:
            masks[p.name] = numpy.ones(p.shape, dtype=bool)
            unmasked.append(p.name)
            continue
        if tuple(entry.shape) != tuple(target.shape):
            raise sm.UsageError(
                f"{key} is {tuple(entry.shape)}, but the twin's {names[id(target)]} is "
                f"{tuple(target.shape)}: a state_dict of another model?"
            )
        masks[p.name] = layout.inverse(entry) != 0
    if len(unmasked) == len(masks):
        raise sm.UsageError(
            "the state_dict holds no NAME_mask entry for this model: it has no masks to bring "
            "back (export with --masks register keeps them)"
        )
    return masks, unmasked
