"""Take a trained snip-min network to PyTorch, and bring masks made in PyTorch back.

    python scripts/pytorch_io.py export DIR [--masks apply|register] [--out FILE]
        DIR/network.npz (what a run with --out DIR writes) as a PyTorch state_dict of the
        network's twin (extensions/pytorch_twin.py), weights in PyTorch's layouts, written
        to DIR/network.pt unless --out says otherwise. --masks register keeps each mask as
        torch.nn.utils.prune does (NAME_orig and NAME_mask); apply (the default) leaves the
        pruned weights as the zeros they are.

    python scripts/pytorch_io.py import-masks FILE --model M [--dataset D] [--prune SCOPE]
            --out MASKS
        The NAME_mask entries of a state_dict of M's twin saved with torch.save (as
        torch.nn.utils.prune leaves them) as a masks.npz in snip-min's layouts, which
        `python snip_min.py --model M --mask MASKS` trains.

PyTorch is needed here only; snip-min itself never imports it. docs/saving.md shows how to
load the state_dict into the twin.
"""

import io
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy

import data
import models
import snip_min as sm
from extensions import failures, flags, network_file, pytorch_twin


def parse_arguments(argv=None):
    parser = flags.OneLineParser(prog="pytorch_io.py", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    export = commands.add_parser("export", help="a saved network as a PyTorch state_dict")
    export.add_argument("folder", metavar="DIR", help="a run's folder (or its network.npz)")
    export.add_argument("--masks", default="apply", choices=pytorch_twin.MASK_CHOICES)
    export.add_argument("--out", default=None, help="default: DIR/network.pt")
    export.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    bring = commands.add_parser("import-masks", help="a PyTorch state_dict's masks as masks.npz")
    bring.add_argument("file", metavar="FILE", help="a state_dict saved with torch.save")
    bring.add_argument("--model", required=True, choices=sorted(models.MODELS))
    bring.add_argument("--dataset", default=None, choices=sorted(data.LOADERS))
    bring.add_argument("--prune", default="weights+biases", choices=sm.PRUNE_CHOICES)
    bring.add_argument("--out", required=True, help="the masks.npz to write")
    bring.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    for command in (export, bring):
        failures.add_debug_argument(command)
    return parser.parse_args(argv)


def import_torch():
    try:
        import torch
    except ImportError:
        raise sm.UsageError(
            "PyTorch is not installed: pip install torch (snip-min needs it only here)"
        ) from None
    return torch


def check_out(path, overwrite):
    """Refuse to write over a file that is there (unless --overwrite), or over a folder."""
    if os.path.isdir(path):
        raise sm.UsageError(f"--out {path} is a folder; give the file to write")
    if os.path.exists(path) and not overwrite:
        raise sm.UsageError(f"{path} exists already: replace it with --overwrite, or choose --out")


def export(args, torch):
    path = network_file.network_path(args.folder)
    out = args.out or os.path.join(os.path.dirname(path), "network.pt")
    model, _, contents = network_file.load_network(path)  # the input first: is it there?
    check_out(out, args.overwrite)
    _, state = pytorch_twin.export_state_dict(model, torch, masks=args.masks)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data.write_file_atomically(out, buffer.getvalue())
    print(
        f"wrote {out}: the state_dict of {contents['model']}'s PyTorch twin "
        f"({len(state)} entries, masks {'applied' if args.masks == 'apply' else 'registered'}); "
        f"load it with "
        f"pytorch_twin.to_torch(models.build({contents['model']!r}), torch)[0].load_state_dict"
    )


def import_masks(args, torch):
    if not os.path.isfile(args.file):
        raise sm.UsageError(f"no file at {args.file}")
    check_out(args.out, args.overwrite)
    try:
        state = torch.load(args.file, map_location="cpu", weights_only=True)
    except Exception as error:
        raise sm.UsageError(
            f"{args.file} is not a state_dict saved with torch.save ({type(error).__name__})"
        ) from None
    if not isinstance(state, dict):
        raise sm.UsageError(f"{args.file} holds a {type(state).__name__}, not a state_dict")
    model = models.build(args.model, args.dataset)
    sm.initialise(model, "vs-h", numpy.random.default_rng(0))  # shapes only: values unused
    masks, unmasked = pytorch_twin.masks_from_state_dict(model, state, torch, args.prune)
    buffer = io.BytesIO()
    numpy.savez_compressed(buffer, **masks)
    data.write_file_atomically(args.out, buffer.getvalue())
    kept = sum(int(mask.sum()) for mask in masks.values())
    total = sum(mask.size for mask in masks.values())
    print(f"wrote {args.out}: {len(masks)} masks, {kept:,} of {total:,} entries kept")
    if unmasked:
        print(f"note: no mask for {', '.join(unmasked)} (kept whole)", file=sys.stderr)


def main(argv=None):
    args = parse_arguments(argv)
    torch = import_torch()
    (export if args.command == "export" else import_masks)(args, torch)
    return 0


if __name__ == "__main__":
    sys.exit(failures.run_script(main, __file__))
