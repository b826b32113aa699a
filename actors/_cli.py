"""The ``sd-actors`` command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import TextIO

from sd_actors.descriptions import (
    ComponentDescription,
    DescriptionError,
    format_value,
    parse_file,
    to_json_value,
    to_sf,
)
from sd_actors.descriptions._printer import format_attributes

EXIT_DESCRIPTION_ERROR = 2

_MAIN_EXAMPLES = """\
examples:
  sd-actors parse pool.sf                  resolve a description and print its sfConfig
  sd-actors parse pool.sf --json           the same as JSON, with every value's kind
  sd-actors parse pool.sf -D user=alice --set vm:memory=1024

Run 'sd-actors COMMAND --help' for a command's options.
"""

_PARSE_EXAMPLES = """\
examples:
  sd-actors parse descriptions/examples/pool.sf
  sd-actors parse pool.sf -I ./lib -D site=cern
  sd-actors parse pool.sf --set computer1:domain1:memory=1024 --set 'computer1:domain1:hostname="web1"'
  sd-actors parse pool.sf --json | jq '.sfConfig.attributes[].name'
  sd-actors parse pool.sf --phases         show the tree after type, place, function, sfConfig, link

Includes are looked up beside the including file, then in each -I folder, then in the
component library shipped with sd-actors (org/smartfrog/components.sf, ...).
Errors are printed as FILE:LINE:COLUMN: message, with the line and a hint; exit status 2.
"""


def _distribution_version() -> str:
    try:
        return version("sd-actors")
    except PackageNotFoundError:
        return "unknown"


def _key_value(text: str) -> tuple[str, str]:
    name, separator, value = text.partition("=")
    if not separator or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sd-actors",
        description="Describe pools of virtual machines (and anything with a lifecycle) in the SmartFrog "
        "language, and keep them alive across hosts.",
        epilog=_MAIN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"sd-actors {_distribution_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    parse = commands.add_parser(
        "parse",
        help="parse and resolve a description, print its sfConfig",
        description="Parse and resolve a .sf description and print the resolved sfConfig in .sf notation "
        "(which re-parses to the same tree) or as JSON.",
        epilog=_PARSE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parse.add_argument("file", metavar="FILE", help="the description (.sf) to parse")
    parse.add_argument("-I", dest="include_dirs", metavar="DIR", action="append", default=[],
                       help="also look for #include files in DIR (repeatable)")
    parse.add_argument("-D", dest="properties", metavar="NAME=VALUE", action="append", default=[],
                       type=_key_value, help="set PROPERTY NAME for the description (repeatable)")
    parse.add_argument("--set", dest="overrides", metavar="PATH=VALUE", action="append", default=[],
                       type=_key_value,
                       help="set the attribute at PATH (relative to sfConfig, parts separated by ':') to VALUE, "
                       "a SmartFrog literal such as 42, true or \"text\"; anything else is taken as text")
    output = parse.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print JSON (schema in descriptions/README.md)")
    output.add_argument("--phases", action="store_true", help="print the tree after every resolution phase")
    parse.set_defaults(run=_run_parse)
    return parser


def _run_parse(arguments: argparse.Namespace, out: TextIO) -> int:
    def observe(phase: str, tree: ComponentDescription) -> None:
        out.write(f"// ---- after phase {phase} ----\n")
        out.write(format_attributes(tree) if tree.parent is None else to_sf(tree))

    config = parse_file(
        arguments.file,
        include_dirs=arguments.include_dirs,
        properties=dict(arguments.properties),
        overrides=dict(arguments.overrides),
        observe=observe if arguments.phases else None,
    )
    if arguments.json:
        json.dump({"sfConfig": to_json_value(config)}, out, indent=2)
        out.write("\n")
    elif arguments.phases:
        out.write("// ---- result ----\n")
        out.write(to_sf(config))
    else:
        out.write(to_sf(config))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sd-actors`` console script; returns the exit status."""
    parser = build_parser()
    arguments = parser.parse_args(argv)
    if arguments.command is None:
        parser.print_help()
        return 0
    try:
        status: int = arguments.run(arguments, sys.stdout)
    except DescriptionError as error:
        print(error.render(), file=sys.stderr)
        return EXIT_DESCRIPTION_ERROR
    except BrokenPipeError:  # e.g. piped into head
        return 0
    return status


__all__ = ["build_parser", "format_value", "main"]
