"""The ``sd-actors`` command line."""

from __future__ import annotations

import argparse
import gc
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

from sd_actors.descriptions import (
    ComponentDescription,
    DescriptionError,
    format_value,
    parse_file,
    to_json_value,
    to_sf,
)
from sd_actors.descriptions._printer import format_attributes
from sd_actors.net._protocol import default_state_dir

if TYPE_CHECKING:
    import pluggy

EXIT_DESCRIPTION_ERROR = 2

_MAIN_EXAMPLES = """\
examples:
  sd-actors up pool.sf                     deploy a description (starts a local daemon if none runs)
  sd-actors status pool                    the component tree with state and host
  sd-actors down pool                      terminate it
  sd-actors parse pool.sf                  resolve a description and print its sfConfig
  sd-actors parse pool.sf --json           the same as JSON, with every value's kind
  sd-actors daemon --bind tcp://10.0.0.2:3800 --peer 10.0.0.3

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


class _PrintVersion(argparse.Action):
    """``--version``: the distribution's version, looked up only when asked (importlib.metadata is slow
    to import, and every command would pay for it)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS,
                 default: str = argparse.SUPPRESS, help: str | None = None) -> None:
        super().__init__(option_strings=option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            text = version("sd-actors")
        except PackageNotFoundError:
            text = "unknown"
        print(f"sd-actors {text}")
        parser.exit()


def _key_value(text: str) -> tuple[str, str]:
    name, separator, value = text.partition("=")
    if not separator or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


BUILT_IN_COMMANDS = ("daemon", "down", "hosts", "keys", "ls", "parse", "status", "up")
"""Commands whose parsing needs no plugin: ``sd-actors up`` does not load every installed plugin first."""


def build_parser(plugin_manager: pluggy.PluginManager | None = None, *,
                 plugin_commands: bool = True) -> argparse.ArgumentParser:
    """The command line: sd-actors' commands and (with ``plugin_commands``) those plugins contribute
    (``sd_actors_cli_commands``)."""
    parser = argparse.ArgumentParser(
        prog="sd-actors",
        description="Describe pools of virtual machines (and anything with a lifecycle) in the SmartFrog "
        "language, and keep them alive across hosts.",
        epilog=_MAIN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=_PrintVersion, help="show the version and exit")
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
    _add_daemon_commands(commands)
    if plugin_commands:
        from sd_actors.plugins import make_plugin_manager

        manager = plugin_manager or make_plugin_manager()
        manager.hook.sd_actors_cli_commands(commands=commands, client_options=_client_options)
    return parser


def _client_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--host", metavar="H", help="the daemon to talk to: host, host:port or tcp://host:port "
                         "(default: the local daemon, tcp://127.0.0.1:3800)")
    command.add_argument("--state-dir", metavar="DIR", help="the local daemon's state folder "
                         "(default: $XDG_STATE_HOME/sd-actors or ~/.local/state/sd-actors)")
    command.add_argument("--server-key", metavar="KEY", help="the daemon's public key (else from known_daemons "
                         "or the local daemon's state folder)")
    command.add_argument("--insecure", action="store_true", help="talk to a daemon started with --insecure")
    command.add_argument("--timeout", type=float, default=None, metavar="S",
                         help="give up when the daemon says nothing for S seconds (default: 10 for status, ls and "
                         "hosts; 600 between progress reports of up and down)")


def _add_daemon_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from sd_actors.actors import _client_commands as client

    def add(name: str, help_text: str, examples: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".",
                                   epilog="examples:\n" + examples,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)

    daemon = add("daemon", "run this host's daemon in the foreground",
                 "  sd-actors daemon\n  sd-actors daemon --bind tcp://10.0.0.2:3800 --peer 10.0.0.3 "
                 "--state-dir /var/lib/sd-actors\n  sd-actors daemon --insecure          (local experiments only)\n")
    daemon.add_argument("--bind", default="tcp://127.0.0.1:3800", metavar="ADDR",
                        help="where to listen (default tcp://127.0.0.1:3800)")
    daemon.add_argument("--state-dir", default=str(default_state_dir()), metavar="DIR",
                        help="keys, journal and readiness file (default %(default)s)")
    daemon.add_argument("--peer", action="append", default=[], metavar="ADDR", help="another daemon (repeatable)")
    daemon.add_argument("--hypervisor", metavar="URI", help="default libvirt URI for virtual machines")
    daemon.add_argument("--heartbeat-interval", type=float, default=0.5, metavar="S",
                        help="seconds between heartbeats to each other daemon (default 0.5)")
    daemon.add_argument("--suspect-after", type=float, default=1.5, metavar="S",
                        help="a daemon silent this long is suspect (default 1.5)")
    daemon.add_argument("--dead-after", type=float, default=5.0, metavar="S",
                        help="a daemon silent this long is dead; subtrees whose parent's daemon is dead "
                        "terminate (default 5)")
    daemon.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                        help="also load MODULE as a plugin (repeatable): hooks of your own without packaging "
                        "them; installed plugins (entry points) are always loaded")
    daemon.add_argument("--insecure", action="store_true",
                        help="no encryption, no authentication: for local experiments only")
    daemon.add_argument("--console", metavar="HOST:PORT",
                        help="also serve the web console there (e.g. 127.0.0.1:3880; off localhost it prints the "
                        "URL with the token every request needs)")
    daemon.set_defaults(run=client.run_daemon)

    keys = add("keys", "manage CURVE keys", "  sd-actors keys init                      your own keys\n"
               "  sd-actors keys init --state-dir /var/lib/sd-actors   a daemon's keys\n"
               "  sd-actors keys authorize PUBKEY --state-dir /var/lib/sd-actors\n"
               "  sd-actors keys trust 10.0.0.2 DAEMON_PUBKEY\n")
    key_commands = keys.add_subparsers(dest="keys_command", metavar="ACTION")
    key_commands.required = True
    init = key_commands.add_parser("init", help="create the keys (yours, or a daemon's with --state-dir)")
    init.add_argument("--state-dir", metavar="DIR")
    allow = key_commands.add_parser("authorize", help="let the owner of PUBKEY talk to this daemon")
    allow.add_argument("public_key", metavar="PUBKEY")
    allow.add_argument("--label", metavar="TEXT")
    allow.add_argument("--state-dir", metavar="DIR", default=str(default_state_dir()))
    trust = key_commands.add_parser("trust", help="remember a daemon's public key")
    trust.add_argument("endpoint", metavar="HOST")
    trust.add_argument("public_key", metavar="PUBKEY")
    trust.add_argument("--state-dir", metavar="DIR")
    show = key_commands.add_parser("show", help="print the public key")
    show.add_argument("--state-dir", metavar="DIR")
    keys.set_defaults(run=client.run_keys)

    up = add("up", "deploy a description as an application",
             "  sd-actors up pool.sf\n  sd-actors up pool.sf --name pool2 --set computer1:domain1:memory=1024\n"
             "  sd-actors up pool.sf --dry-run        what would be created where\n"
             "  sd-actors up pool.sf --host 10.0.0.2\n")
    up.add_argument("file", metavar="FILE")
    up.add_argument("--name", metavar="APP", help="the application's name (default: the file's name)")
    up.add_argument("-I", dest="include_dirs", metavar="DIR", action="append", default=[])
    up.add_argument("-D", dest="properties", metavar="NAME=VALUE", action="append", default=[], type=_key_value)
    up.add_argument("--set", dest="overrides", metavar="PATH=VALUE", action="append", default=[], type=_key_value)
    up.add_argument("--dry-run", action="store_true", help="print what would be created where, and stop")
    up.add_argument("--settle", type=float, default=2.0, metavar="S",
                    help="once everything started, keep watching S seconds: a component that fails in that time "
                    "(a command that exits at once) fails the up (default 2; 0 returns as soon as all started)")
    _client_options(up)
    up.set_defaults(run=client.run_up, start_daemon=True)

    down = add("down", "terminate an application", "  sd-actors down pool\n  sd-actors down pool --no-wait\n")
    down.add_argument("app", metavar="APP")
    down.add_argument("--wait", action=argparse.BooleanOptionalAction, default=True,
                      help="wait until it has terminated (default)")
    _client_options(down)
    down.set_defaults(run=client.run_down)

    status = add("status", "show applications with their component trees",
                 "  sd-actors status\n  sd-actors status pool --json\n")
    status.add_argument("app", nargs="?", metavar="APP")
    status.add_argument("--json", action="store_true")
    _client_options(status)
    status.set_defaults(run=client.run_status)

    ls = add("ls", "list applications", "  sd-actors ls\n  sd-actors ls --json\n")
    ls.add_argument("--json", action="store_true")
    _client_options(ls)
    ls.set_defaults(run=client.run_ls)

    hosts = add("hosts", "list the daemons of the pool with their state", "  sd-actors hosts --json\n")
    hosts.add_argument("--json", action="store_true")
    _client_options(hosts)
    hosts.set_defaults(run=client.run_hosts)




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


def _protect_keys(argv: Sequence[str]) -> list[str]:
    """Z85 keys may start with '-' (about one in 85), which argparse takes for an option: a key
    given as an option's value is joined to it (``--server-key=-…``), a positional key moves
    behind ``--``."""
    from sd_actors.net import InvalidKey, parse_key

    def is_key(token: str) -> bool:
        if not token.startswith("-") or len(token) != 40:
            return False
        try:
            parse_key(token)
        except InvalidKey:
            return False
        return True

    out: list[str] = []
    moved: list[str] = []
    for token in argv:
        if is_key(token):
            if out and out[-1] == "--server-key":
                out[-1] = f"--server-key={token}"
            else:
                moved.append(token)
        else:
            out.append(token)
    if moved and "--" not in out:
        out.append("--")
    return out + moved


def main(argv: Sequence[str] | None = None, *, plugin_manager: pluggy.PluginManager | None = None) -> int:
    """Entry point of the ``sd-actors`` console script; returns the exit status."""
    if argv is None:  # the console script's own process, not a caller's (tests call main([...]))
        # A command allocates a parsed description (tens of thousands of objects) and little
        # garbage: Python's default of a collection every 700 allocations only costs it time.
        # The daemon sets its own once it has started.
        gc.set_threshold(50_000, 20, 20)
        try:
            return _run(sys.argv[1:], plugin_manager)
        finally:
            # The process ends here: the collection Python makes at exit would walk everything the
            # command made (a parsed pool of 1,000 VMs: about 15 ms) only to free it. Frozen
            # objects are left out of it; the operating system takes the memory back.
            gc.freeze()
    return _run(argv, plugin_manager)


def _run(argv: Sequence[str], plugin_manager: pluggy.PluginManager | None) -> int:
    tokens = _protect_keys(list(argv))
    command = next((token for token in tokens if not token.startswith("-")), None)
    parser = build_parser(plugin_manager, plugin_commands=command not in BUILT_IN_COMMANDS)
    arguments = parser.parse_args(tokens)
    if arguments.command is None:
        parser.print_help()
        return 0
    from sd_actors.actors._client_commands import CommandError
    from sd_actors.net import WireError

    try:
        status: int = arguments.run(arguments, sys.stdout)
    except DescriptionError as error:
        print(error.render(), file=sys.stderr)
        return EXIT_DESCRIPTION_ERROR
    except CommandError as error:
        print(f"sd-actors {arguments.command}: {error}", file=sys.stderr)
        return error.code
    except WireError as error:  # bad keys, bad key files
        print(f"sd-actors {arguments.command}: {error}", file=sys.stderr)
        return 3
    except BrokenPipeError:  # e.g. piped into head
        return 0
    return status


__all__ = ["BUILT_IN_COMMANDS", "build_parser", "format_value", "main"]
