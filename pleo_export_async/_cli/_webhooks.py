"""`pleo-export webhooks`: subscribe an endpoint to Pleo's webhooks, list and delete the
subscriptions, and read a subscription's signing secret.

The secret (`whsec_...`) is printed only where it is asked for, on stdout: by `webhooks secret`,
and by `webhooks subscribe --show-secret`. Nothing goes to stderr but hints and errors, so a
terminal's scrollback or a log collector reading stderr never holds it.

Exit codes: 0 done; 2 bad input (a relative or plain-http URL, an empty event type, an ID that
is not a UUID); 3 Pleo refused (an unknown subscription is a 404) or the network failed.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

import attrs
import click
from rich.table import Table

from pleo_export_async._subscriptions import (
    JOB_CREATED_EVENT,
    SUBSCRIPTION_STATUSES,
    WebhookSubscription,
)

from ._command import client_for, run, settings_for
from ._output import ExitCode, Output

_JSON = click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
_ID = click.argument("subscription_id", metavar="ID")


@click.group(short_help="Subscribe to Pleo's webhooks; list and delete subscriptions.")
def webhooks() -> None:
    """Subscribe an endpoint to Pleo's webhooks (a notification when an export job is created),
    list and delete the subscriptions, and read a subscription's signing secret."""


@webhooks.command(short_help="Subscribe URL to Pleo's webhooks.")
@click.argument("endpoint_url", metavar="URL")
@click.option(
    "--event",
    "event_types",
    multiple=True,
    metavar="TYPE",
    help=f"An event type to subscribe to (repeat for several; default {JOB_CREATED_EVENT}).",
)
@click.option(
    "--show-secret",
    is_flag=True,
    help="Also print the subscription's signing secret (whsec_...) on stdout.",
)
@_JSON
@click.pass_context
def subscribe(
    ctx: click.Context,
    endpoint_url: str,
    event_types: tuple[str, ...],
    show_secret: bool,
    as_json: bool,
) -> None:
    """Subscribe URL (https://...; http:// for a loopback host only) to Pleo's notifications,
    and print the new subscription.

    Its signing secret, which PLEO_WEBHOOK_SECRET of `pleo-export serve` needs, is printed only
    with --show-secret; otherwise `pleo-export webhooks secret ID` prints it.
    """
    settings = settings_for(ctx, as_json)

    async def work() -> ExitCode:
        output = settings.output
        async with client_for(settings) as client:
            subscriptions = client.webhook_subscriptions
            subscription = await subscriptions.create(
                endpoint_url, event_types=event_types or (JOB_CREATED_EVENT,)
            )
            secret = await subscriptions.secret(subscription.id) if show_secret else None
        if output.json_mode:
            document = _subscription_document(subscription)
            if secret is not None:
                document["secret"] = secret
            output.document(document)
        else:
            output.show(
                f"subscribed {subscription.endpoint_url}",
                f"  id      {subscription.id}",
                f"  events  {', '.join(subscription.event_types)}",
                f"  status  {subscription.status}",
            )
            if secret is not None:
                output.show(f"  secret  {secret}")
        if secret is None:
            output.note(f"its signing secret: pleo-export webhooks secret {subscription.id}")
        return ExitCode.DONE

    run(settings, work())


@webhooks.command("list", short_help="List the webhook subscriptions.")
@click.option(
    "--status",
    type=click.Choice(SUBSCRIPTION_STATUSES),
    help="Only subscriptions in this status.",
)
@click.option(
    "--event",
    "event_types",
    multiple=True,
    metavar="TYPE",
    help="Only subscriptions to this event type (repeat for any of several).",
)
@_JSON
@click.pass_context
def list_subscriptions(
    ctx: click.Context, status: str | None, event_types: tuple[str, ...], as_json: bool
) -> None:
    """List the webhook subscriptions, in Pleo's order; their secrets are not shown."""
    settings = settings_for(ctx, as_json)

    async def work() -> ExitCode:
        async with client_for(settings) as client:
            found = [
                subscription
                async for subscription in client.webhook_subscriptions.list(
                    status=status, event_types=event_types
                )
            ]
        _show_subscriptions(settings.output, found)
        return ExitCode.DONE

    run(settings, work())


def _show_subscriptions(output: Output, found: list[WebhookSubscription]) -> None:
    if output.json_mode:
        output.document([_subscription_document(subscription) for subscription in found])
        return
    table = Table("id", "URL", "events", "status", "created (UTC)")
    for column in table.columns[:2]:
        column.no_wrap = True  # an ID or a URL is copied from here: never cut it
    for subscription in found:
        created = subscription.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(
            subscription.id,
            subscription.endpoint_url,
            ", ".join(subscription.event_types),
            subscription.status,
            created,
        )
    output.show(table)


@webhooks.command(short_help="Print a subscription's signing secret.")
@_ID
@click.pass_context
def secret(ctx: click.Context, subscription_id: str) -> None:
    """Print the signing secret (whsec_...) of subscription ID on stdout, alone on one line:
    `export PLEO_WEBHOOK_SECRET=$(pleo-export webhooks secret ID)`."""
    settings = settings_for(ctx)

    async def work() -> ExitCode:
        async with client_for(settings) as client:
            found = await client.webhook_subscriptions.secret(subscription_id)
        # Written as it is: no markup, highlighting or wrapping may touch it.
        settings.output.stdout.file.write(found + "\n")
        settings.output.stdout.file.flush()
        return ExitCode.DONE

    run(settings, work())


@webhooks.command(short_help="Delete a webhook subscription.")
@_ID
@_JSON
@click.pass_context
def delete(ctx: click.Context, subscription_id: str, as_json: bool) -> None:
    """Delete subscription ID: Pleo sends it no more notifications."""
    settings = settings_for(ctx, as_json)

    async def work() -> ExitCode:
        output = settings.output
        async with client_for(settings) as client:
            await client.webhook_subscriptions.delete(subscription_id)
        output.show(f"deleted webhook subscription {subscription_id}")
        if output.json_mode:
            output.document({"id": subscription_id, "deleted": True})
        return ExitCode.DONE

    run(settings, work())


def _subscription_document(subscription: WebhookSubscription) -> dict[str, Any]:
    """The subscription as JSON: its fields, the event types a list."""
    return attrs.asdict(subscription)
