"""Command-line flags that refuse bad input in one line: argparse types that check a number
as they read it, a parser whose usage errors are one line on stderr with exit status 2, and
a --help that shows each default.

What this adds: nothing to the method; cli.parse_arguments and the experiments'
parsers build on it (positive_int, sparsity_value, folder_name, OneLineParser,
HelpFormatter, ...), so that `--sparsity 1.5`, `--seeds -1` or `--out ''` is one clear line,
never a traceback. The tests are
tests/test_cli.py's bad-input rows.
"""

import argparse
import math


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


sparsity_value = checked_number(
    float, lambda v: 0.0 <= v < 1.0, "sparsity must be a number in [0, 1)"
)
fraction_value = checked_number(float, lambda v: 0.0 <= v < 1.0, "expected a number in [0, 1)")
positive_int = checked_number(int, lambda v: v >= 1, "expected a positive integer")
non_negative_int = checked_number(int, lambda v: v >= 0, "expected an integer >= 0")
positive_float = checked_number(
    float, lambda v: v > 0 and math.isfinite(v), "expected a positive number"
)
non_negative_float = checked_number(
    float, lambda v: v >= 0 and math.isfinite(v), "expected a number >= 0"
)
seed_value = checked_number(int, lambda v: 0 <= v < 2**63, "the seed must be an integer >= 0")


def folder_name(text):
    """An argparse type for a folder (--out, --data-dir, --resume): any name but an empty one,
    which would silently mean the current folder."""
    if not text.strip():
        raise argparse.ArgumentTypeError(
            f"expected a folder name, got {text!r} (leave the flag out for its default)"
        )
    return text


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
