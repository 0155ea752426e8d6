"""What every command of `pleo-export` shares: its settings, and how it runs and leaves (an exit
code, every error one line)."""

from __future__ import annotations

import asyncio
import os
import traceback
from collections.abc import Callable, Coroutine
from typing import Any, Final, NoReturn, TypeVar

import attrs
import click

from pleo_export_async._auth import ApiKeyAuth, BearerTokenAuth
from pleo_export_async._client import PRODUCTION_BASE_URL, STAGING_BASE_URL, PleoExportClient
from pleo_export_async._errors import IncompleteJob, InvalidInput, PleoExportError
from pleo_export_async._retry import RetryPolicy

from ._output import ExitCode, Output

_Command = TypeVar("_Command", bound=Callable[..., Any])

#: The client's own defaults: 30 s per attempt, and 8 attempts in all.
DEFAULT_TIMEOUT: Final = 30.0
DEFAULT_RETRIES: Final = RetryPolicy().max_attempts - 1


@attrs.frozen
class Settings:
    base_url: str
    debug: bool
    output: Output
    timeout: float = DEFAULT_TIMEOUT
    retries: int = DEFAULT_RETRIES


def leave(code: ExitCode) -> NoReturn:
    """End the command with this exit code."""
    raise click.exceptions.Exit(int(code))


def run(settings: Settings, work: Coroutine[Any, Any, ExitCode]) -> NoReturn:
    """Run a command's coroutine and leave with its exit code; every error is one line."""
    output = settings.output
    try:
        code = asyncio.run(work)
    except KeyboardInterrupt:
        output.error("interrupted; what Pleo acknowledged is kept")
        leave(ExitCode.INTERRUPTED)
    except InvalidInput as error:
        report_error(settings, error)
        leave(ExitCode.BAD_INPUT)
    except IncompleteJob as error:
        report_error(settings, error)
        leave(ExitCode.WITH_ERRORS)
    except PleoExportError as error:
        report_error(settings, error)
        leave(ExitCode.API_FAILURE)
    leave(code)


def report_error(settings: Settings, error: BaseException) -> None:
    if settings.debug:
        settings.output.stderr.print(
            "".join(traceback.format_exception(error)), markup=False, highlight=False
        )
    settings.output.error(str(error))


def settings_for(ctx: click.Context, as_json: bool = False) -> Settings:
    """The settings of the group, in `--json` mode when the command was given `--json`."""
    settings: Settings = ctx.obj
    if as_json:
        settings = attrs.evolve(settings, output=attrs.evolve(settings.output, json_mode=True))
    return settings


def client_for(settings: Settings) -> PleoExportClient:
    """A client of the command's API, authenticated from PLEO_API_KEY or PLEO_ACCESS_TOKEN."""
    api_key, access_token = os.environ.get("PLEO_API_KEY"), os.environ.get("PLEO_ACCESS_TOKEN")
    if api_key:
        auth: ApiKeyAuth | BearerTokenAuth = ApiKeyAuth(api_key)
    elif access_token:
        auth = BearerTokenAuth(access_token)
    else:
        settings.output.error("set PLEO_API_KEY (or PLEO_ACCESS_TOKEN) to authenticate")
        leave(ExitCode.BAD_INPUT)
    return PleoExportClient(
        settings.base_url,
        auth=auth,
        timeout=settings.timeout,
        retry=RetryPolicy(max_attempts=settings.retries + 1),
    )


def base_url_options(command: _Command) -> _Command:
    """`--base-url` [PLEO_BASE_URL] and `--staging`, on the group and on `serve` alike."""
    command = click.option(
        "--staging", is_flag=True, help=f"Use Pleo's staging API ({STAGING_BASE_URL})."
    )(command)
    return click.option(
        "--base-url",
        envvar="PLEO_BASE_URL",
        help=f"The Export API's address (default {PRODUCTION_BASE_URL}; env PLEO_BASE_URL).",
    )(command)


def chosen_base_url(base_url: str | None, staging: bool) -> str | None:
    """The address `--base-url` or `--staging` names; None when neither is given."""
    if base_url and staging:
        raise click.UsageError("give --base-url or --staging, not both")
    return base_url or (STAGING_BASE_URL if staging else None)
