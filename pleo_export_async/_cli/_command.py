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

from pleo_export_async._auth import (
    PRODUCTION_TOKEN_URL,
    STAGING_TOKEN_URL,
    ApiKeyAuth,
    BearerTokenAuth,
    OAuth2Auth,
    TokenStore,
)
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


#: The OAuth2 client settings, read from the environment only (they are secrets).
OAUTH_VARIABLES: Final = (
    "PLEO_CLIENT_ID",
    "PLEO_CLIENT_SECRET",
    "PLEO_REFRESH_TOKEN",
    "PLEO_TOKEN_URL",
)


def client_for(settings: Settings, token_store: TokenStore | None = None) -> PleoExportClient:
    """A client of the command's API, authenticated from PLEO_API_KEY, PLEO_ACCESS_TOKEN, or,
    given a `token_store` to keep the rotated tokens in, the OAuth2 client settings."""
    return PleoExportClient(
        settings.base_url,
        auth=_credential_from_environment(settings, token_store),
        timeout=settings.timeout,
        retry=RetryPolicy(max_attempts=settings.retries + 1),
    )


def _credential_from_environment(
    settings: Settings, token_store: TokenStore | None
) -> ApiKeyAuth | BearerTokenAuth | OAuth2Auth:
    environ = os.environ
    api_key, access_token = environ.get("PLEO_API_KEY"), environ.get("PLEO_ACCESS_TOKEN")
    client_id = environ.get("PLEO_CLIENT_ID")
    if not client_id:
        if api_key:
            return ApiKeyAuth(api_key)
        if access_token:
            return BearerTokenAuth(access_token)
        hint = " (or the OAuth2 client settings)" if token_store is not None else ""
        settings.output.error(f"set PLEO_API_KEY (or PLEO_ACCESS_TOKEN){hint} to authenticate")
        leave(ExitCode.BAD_INPUT)
    if api_key or access_token:
        given = "PLEO_API_KEY" if api_key else "PLEO_ACCESS_TOKEN"
        settings.output.error(f"give PLEO_CLIENT_ID or {given}, not both")
        leave(ExitCode.BAD_INPUT)
    if token_store is None:
        settings.output.error(
            "PLEO_CLIENT_ID: OAuth2 needs a place for the rotated refresh token; only `serve "
            "--ledger` keeps one. Give PLEO_API_KEY or PLEO_ACCESS_TOKEN here"
        )
        leave(ExitCode.BAD_INPUT)
    client_secret = environ.get("PLEO_CLIENT_SECRET")
    if not client_secret:
        settings.output.error("PLEO_CLIENT_ID is set: set PLEO_CLIENT_SECRET too")
        leave(ExitCode.BAD_INPUT)
    default_token_url = (
        STAGING_TOKEN_URL if settings.base_url == STAGING_BASE_URL else PRODUCTION_TOKEN_URL
    )
    return OAuth2Auth.shared(
        client_id,
        client_secret,
        token_store,
        refresh_token=environ.get("PLEO_REFRESH_TOKEN") or None,
        token_url=environ.get("PLEO_TOKEN_URL") or default_token_url,
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
