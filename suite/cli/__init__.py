"""`python -m suite` / `suite`: list, run, build data, make tables, benchmark.

User errors (unknown ids, missing datasets, bad config keys) print one line and exit with code 2."""

from __future__ import annotations

import os

import typer

from ..errors import SuiteError


def _no_flag_types() -> None:
    """typer >= 0.2x prints every option's type; for on/off flags (and --help) that is only noise ("<bool>")."""
    try:
        from typer.core import TyperOption
    except ImportError:  # pragma: no cover - other typer versions print no types
        return
    shown = TyperOption.display_type_rich

    def display_type_rich(self, ctx):
        return None if getattr(self, "is_flag", False) else shown(self, ctx)

    TyperOption.display_type_rich = display_type_rich


_no_flag_types()

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help=__doc__.splitlines()[0], pretty_exceptions_enable=False
)
data_app = typer.Typer(no_args_is_help=True, help="Build, list, verify and import datasets.")
app.add_typer(data_app, name="data")

# the commands register themselves on `app` / `data_app` when their modules are imported, in the order `--help`
# lists them
from . import runs  # noqa: E402,F401,I001
from . import records  # noqa: E402,F401
from . import tools  # noqa: E402,F401
from . import behaviour  # noqa: E402,F401
from . import data  # noqa: E402,F401


def _click_exceptions():
    """(ClickException, Abort, Exit) classes of the click that typer runs on (typer >= 0.16 vendors one)."""
    try:
        from typer import exceptions as te
        from typer._click import exceptions as ce

        return ce.ClickException, te.Abort, (te.Exit,)
    except ImportError:
        from click import exceptions as ce

        return ce.ClickException, ce.Abort, (ce.Exit,)


def main(argv: list[str] | None = None) -> int:
    click_error, abort, exits = _click_exceptions()
    try:
        rv = app(args=argv, standalone_mode=False, prog_name="suite")
    except SuiteError as e:
        typer.echo(f"error: {e}", err=True)
        return 2
    except exits as e:
        return int(e.exit_code)
    except click_error as e:
        e.show()
        return int(e.exit_code)
    except abort:
        typer.echo("aborted", err=True)
        return 1
    except OSError as e:  # a path that is a file, not writable, full disk ...: the message names the file
        if os.environ.get("SUITE_DEBUG") == "1":
            raise
        typer.echo(f"error: {e}", err=True)
        return 2
    except Exception as e:  # a bug: one line here; SUITE_DEBUG=1 shows the traceback
        if os.environ.get("SUITE_DEBUG") == "1":
            raise
        typer.echo(f"internal error: {type(e).__name__}: {e} (run again with SUITE_DEBUG=1 for the traceback, "
                   "and please report it)", err=True)
        return 1
    return rv if isinstance(rv, int) else 0

