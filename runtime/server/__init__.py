"""jacc's server: the routes, the WebSocket protocol, auth and accounts, dev mode.

It imports the runtime core (`jacc_runtime`), Starlette, uvicorn and PyJWT, and
never the compiler: `jacc serve` compiles and hands `serve` a loader that builds
the program, its walkers and served functions (docs/architecture.md).

    from jacc_runtime.server import ServeOptions, serve
    exit_status = serve(ServeOptions(app=Path("app.jac")), load=my_loader)
"""

from __future__ import annotations

from .asyncapi import asyncapi_document
from .main import ServeOptions, issue_token, serve
from .program import BuildFailed, Loader, Program, ServeError, program_in, walkers_in

__all__ = ["BuildFailed", "Loader", "Program", "ServeError", "ServeOptions",
           "asyncapi_document", "issue_token", "program_in", "serve", "walkers_in"]
