"""The `jacc` command: argument parsing, printing and exit codes — nothing else.

Exit status (README, "Commands"): 0 success; 1 the user's program or input is
wrong (diagnostics printed); 2 an internal error (a bug: the traceback is printed).
These three are defined here and nowhere else: the compiler raises `JacError`,
the server raises `ServeError`, and `main` turns both into status 1.

`serve` is where the two halves meet (docs/architecture.md): this module
compiles, and hands the server a loader, so the server never imports the compiler.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path
from typing import NoReturn

from . import __version__
from .diagnostics import Diagnostic, JacError
from .source import Source

EXIT_OK, EXIT_USER, EXIT_INTERNAL = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # A usage mistake is the user's input being wrong: exit 1 (argparse says 2,
        # which jacc keeps for its own bugs).
        self.print_usage(sys.stderr)
        self.exit(EXIT_USER, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="jacc", description="Compile and serve Jac walkers.")
    parser.add_argument("--version", action="version", version=f"jacc {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    build = commands.add_parser("build", help="compile APP.jac to a Python module")
    build.add_argument("app", type=Path, metavar="APP.jac")
    build.add_argument("-o", "--output", type=Path, metavar="OUT.py")

    check = commands.add_parser("check", help="parse and check APP.jac only")
    check.add_argument("app", type=Path, metavar="APP.jac")

    serve = commands.add_parser("serve", help="serve the walkers of APP.jac")
    serve.add_argument("app", type=Path, metavar="APP.jac")
    serve.add_argument("--host", default=None, help="default 127.0.0.1")
    serve.add_argument("--port", type=int, default=None, help="default 8000")
    serve.add_argument("--dev", action="store_true", help="watch the source and reload")
    serve.add_argument("--workers", type=int, default=None, metavar="N",
                       help="worker processes on one port (default 1)")
    serve.add_argument("--config", type=Path, default=None, metavar="jacc.toml")
    _add_serving_options(serve)

    token = commands.add_parser("token", help="print a JWT that `serve` would accept")
    token.add_argument("--user", required=True)
    token.add_argument("--ttl", type=int, default=None, metavar="SECONDS")
    token.add_argument("--app", type=Path, default=None, metavar="APP.jac")

    asyncapi = commands.add_parser("asyncapi", help="print the AsyncAPI document of APP.jac")
    asyncapi.add_argument("app", type=Path, metavar="APP.jac")
    asyncapi.add_argument("--server", default=None, metavar="HOST:PORT",
                          help="add a server entry (default: none)")
    return parser


def _add_serving_options(serve: argparse.ArgumentParser) -> None:
    # uvicorn's options, by uvicorn's names; each also comes from jacc.toml or JACC_SERVER_*.
    options = serve.add_argument_group("serving (docs/operations.md)")
    options.add_argument("--ssl-certfile", type=Path, default=None, metavar="FILE",
                         help="serve https:// and wss:// with this certificate (PEM)")
    options.add_argument("--ssl-keyfile", type=Path, default=None, metavar="FILE",
                         help="its private key, if not in the certificate file")
    options.add_argument("--proxy-headers", action=argparse.BooleanOptionalAction, default=None,
                         help="take the client's address from X-Forwarded-For and the scheme "
                              "from X-Forwarded-Proto of a trusted proxy (default: off)")
    options.add_argument("--forwarded-allow-ips", default=None, metavar="ADDRESSES",
                         help="the proxies trusted with those headers, comma-separated "
                              "addresses or networks (default 127.0.0.1)")
    options.add_argument("--root-path", default=None, metavar="PATH",
                         help="the path prefix a proxy serves the app under, e.g. /chat")
    options.add_argument("--log-level", default=None, metavar="LEVEL",
                         help="critical, error, warning, info (default), debug or trace")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except JacError as error:
        print(error.render(), file=sys.stderr)
        return EXIT_USER
    except KeyboardInterrupt:
        return EXIT_OK
    except Exception as error:
        if _is_serve_error(error):
            print(error, file=sys.stderr)
            return EXIT_USER
        print("error: internal compiler error (this is a bug in jacc, please report it)",
              file=sys.stderr)
        traceback.print_exc()
        return EXIT_INTERNAL


def _is_serve_error(error: Exception) -> bool:
    # Only the commands that use the server import it (with Starlette and uvicorn,
    # about 0.2 s and 15 MB that `build` and `check` do without), and a ServeError
    # can only come from one of them.
    server = sys.modules.get("jacc_runtime.server")
    return server is not None and isinstance(error, server.ServeError)


def _build(args: argparse.Namespace) -> int:
    from .compiler import build_file

    built = build_file(args.app, args.output)
    _print_warnings(built.source, built.warnings)
    return EXIT_OK


def _check(args: argparse.Namespace) -> int:
    from .compiler import compile_file

    compiled = compile_file(args.app)
    _print_warnings(compiled.source, compiled.warnings)
    return EXIT_OK


def _serve(args: argparse.Namespace) -> int:
    from jacc_runtime.server import ServeOptions, serve

    serve(ServeOptions(app=args.app, host=args.host, port=args.port, dev=args.dev,
                       config=args.config, workers=args.workers, ssl_certfile=args.ssl_certfile,
                       ssl_keyfile=args.ssl_keyfile, proxy_headers=args.proxy_headers,
                       forwarded_allow_ips=args.forwarded_allow_ips, root_path=args.root_path,
                       log_level=args.log_level), load=load_program)
    return EXIT_OK


def load_program(path: Path):
    """Compile and run the program at `path`; return its walkers and served functions, in
    source order (a `jacc_runtime.server.Program`).

    The loader `serve` is handed, called at start and on every `--dev` save. A
    program with errors, or whose top level raises, is `BuildFailed`; a bug of
    the compiler's propagates as itself.
    """
    from jacc_runtime.lines import jac_traceback
    from jacc_runtime.server import BuildFailed, program_in

    from .compiler import execute, program_file

    try:
        program = program_file(path)  # through the build cache: unchanged text is not parsed
    except JacError as error:
        raise BuildFailed(error.render(), [d.as_json() for d in error.diagnostics]) from None
    try:
        module = execute(program, path)
    except Exception as error:  # the program's own top level raised: the user's error
        raise BuildFailed(f"{jac_traceback(error)}\nerror: {path} raised while loading") from None
    return program_in(vars(module).values())


# The loader's name before it handed over functions too; other code still calls it so.
load_walkers = load_program


def _token(args: argparse.Namespace) -> int:
    from jacc_runtime.server import issue_token

    print(issue_token(user=args.user, ttl=args.ttl, app=args.app))
    return EXIT_OK


def _asyncapi(args: argparse.Namespace) -> int:
    import json
    import os

    from jacc_runtime.server import asyncapi_document

    document = asyncapi_document(load_program(args.app), title=args.app.stem,
                                 version=__version__, host=args.server)
    try:
        print(json.dumps(document, indent=2, ensure_ascii=False), flush=True)
    except BrokenPipeError:  # `jacc asyncapi app.jac | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_OK


def _print_warnings(source: Source, warnings: list[Diagnostic]) -> None:
    for warning in warnings:
        print(warning.render(source), file=sys.stderr)


COMMANDS = {"build": _build, "check": _check, "serve": _serve, "token": _token,
            "asyncapi": _asyncapi}
