"""`pleo-export webhooks subscribe|list|secret|delete` through click's CliRunner against a fake
Pleo served from its own thread, as tests/test_cli.py drives the other commands: what each
prints where, its exit codes, and a signing secret that reaches stdout only when asked for."""

from __future__ import annotations

import base64
import json
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import click
import pytest
from click.testing import CliRunner

from helpers import Ran, served_in_a_thread
from pleo_export_async._cli._app import cli
from pleo_export_async._cli._webhooks import webhooks
from pleo_export_async.testing import FakePleo, instant_retries

#: The fake's API key: no output of any command may show it.
API_KEY = "pleo-cli-webhooks-key-5c2e81"
ENDPOINT = "https://connector.example.com/pleo/webhooks"
JOB_CREATED = "v1.export-job.created"
VENDOR_CREATED = "v1.vendor.created"
UNKNOWN_ID = str(uuid.UUID(int=77))
#: Settings of the host environment that would change what a command does or shows.
HOST_SETTINGS = (
    "PLEO_API_KEY",
    "PLEO_ACCESS_TOKEN",
    "PLEO_BASE_URL",
    "PLEO_WEBHOOK_SECRET",
    "NO_COLOR",
    "FORCE_COLOR",
    "TTY_COMPATIBLE",
    "TTY_INTERACTIVE",
    "COLUMNS",
    "LINES",
)


@pytest.fixture
def fake() -> Iterator[FakePleo]:
    """A FakePleo on loopback, served by an event loop of its own in a background thread."""
    with served_in_a_thread(seed=11, api_key=API_KEY) as server:
        yield server


def pleo(fake: FakePleo, *args: str, env: Mapping[str, str | None] | None = None) -> Ran:
    """`pleo-export --base-url FAKE ARGS` through CliRunner, with zero backoff waits; no output
    may show the API key."""
    full_env: dict[str, str | None] = dict.fromkeys(HOST_SETTINGS)
    full_env["PLEO_API_KEY"] = API_KEY
    full_env.update(env or {})
    with instant_retries():
        result = CliRunner().invoke(
            cli, ["--base-url", fake.base_url, *args], env=full_env, catch_exceptions=False
        )
    ran = Ran(result.exit_code, result.stdout, result.stderr)
    assert API_KEY not in ran.stdout
    assert API_KEY not in ran.stderr
    return ran


def pleo_api(fake: FakePleo, method: str, path: str, body: Any = None) -> Any:
    """One request of the fake's subscriptions API, made apart from the command line."""
    request = urllib.request.Request(
        fake.base_url + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={
            "Authorization": "Basic " + base64.b64encode(f"{API_KEY}:".encode()).decode(),
            "Content-Type": "application/json",
        },
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        raw = answer.read()
    return json.loads(raw) if raw else None


def secret_of(fake: FakePleo, subscription_id: str) -> str:
    secret: str = pleo_api(fake, "GET", f"/v1/subscriptions/{subscription_id}/secret")["data"][
        "secretKey"
    ]
    return secret


def subscribed(fake: FakePleo, *args: str) -> dict[str, Any]:
    """`webhooks subscribe ARGS --json`'s document, the command having succeeded."""
    ran = pleo(fake, "webhooks", "subscribe", *args, "--json")
    assert ran.code == 0, ran.stderr
    document: dict[str, Any] = json.loads(ran.stdout)
    return document


# -- subscribe -------------------------------------------------------------------------------------


def test_subscribe_prints_the_subscription_and_how_to_read_its_secret(fake: FakePleo) -> None:
    """`subscribe URL` prints the new subscription's URL, ID, event and status on stdout, and on
    stderr only the command that prints its secret; the secret itself shows nowhere."""
    ran = pleo(fake, "webhooks", "subscribe", ENDPOINT)
    assert ran.code == 0, ran.stderr
    [listed] = pleo_api(fake, "GET", "/v1/subscriptions")["data"]
    subscription_id = listed["id"]
    assert ran.out_lines == [
        f"subscribed {ENDPOINT}",
        f"  id      {subscription_id}",
        f"  events  {JOB_CREATED}",
        "  status  ACTIVE",
    ]
    assert ran.lines == [f"its signing secret: pleo-export webhooks secret {subscription_id}"]
    secret = secret_of(fake, subscription_id)
    assert secret not in ran.stdout
    assert secret not in ran.stderr


def test_subscribe_show_secret_prints_it_on_stdout_and_never_on_stderr(fake: FakePleo) -> None:
    """With --show-secret the secret is one more line of stdout; stderr holds nothing."""
    ran = pleo(fake, "webhooks", "subscribe", ENDPOINT, "--show-secret")
    assert ran.code == 0, ran.stderr
    [listed] = pleo_api(fake, "GET", "/v1/subscriptions")["data"]
    secret = secret_of(fake, listed["id"])
    assert ran.out_lines[-1] == f"  secret  {secret}"
    assert ran.stderr == ""


def test_subscribe_json_is_one_document_on_stdout(fake: FakePleo) -> None:
    """`subscribe --json` prints one JSON document of the subscription, without the secret;
    with --show-secret the document holds it, and stderr still does not."""
    document = subscribed(fake, ENDPOINT, "--event", JOB_CREATED, "--event", VENDOR_CREATED)
    assert set(document) == {
        "id",
        "endpoint_url",
        "event_types",
        "status",
        "created_at",
        "updated_at",
    }
    assert document["endpoint_url"] == ENDPOINT
    assert document["event_types"] == [JOB_CREATED, VENDOR_CREATED]
    assert document["status"] == "ACTIVE"
    assert "T" in document["created_at"], "dates are RFC 3339"
    assert secret_of(fake, document["id"]) not in json.dumps(document)

    ran = pleo(fake, "webhooks", "subscribe", f"{ENDPOINT}/2", "--show-secret", "--json")
    assert ran.code == 0, ran.stderr
    with_secret = json.loads(ran.stdout)
    assert with_secret["secret"] == secret_of(fake, with_secret["id"])
    assert with_secret["secret"] not in ran.stderr


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["/pleo/webhooks"], "endpoint_url"),
        (["http://connector.example.com/hooks"], "endpoint_url"),
        (["https://user:pw-3141@connector.example.com/hooks"], "endpoint_url"),
        ([ENDPOINT, "--event", ""], "event_types"),
        ([ENDPOINT, "--event", JOB_CREATED, "--event", JOB_CREATED], "event_types"),
    ],
)
def test_a_bad_subscription_is_exit_2_in_one_line_with_nothing_sent(
    fake: FakePleo, args: list[str], field: str
) -> None:
    """A relative URL, plain http to a host that is not loopback, a URL holding a password, an
    empty or repeated event type: exit 2, one line naming the parameter, no request."""
    ran = pleo(fake, "webhooks", "subscribe", *args)
    assert ran.code == 2
    [line] = ran.lines
    assert line.startswith(f"pleo-export: error: {field}=")
    assert "pw-3141" not in line
    assert ran.stdout == ""
    assert fake.journal.requests == []


def test_plain_http_is_refused_saying_https_is_needed(fake: FakePleo) -> None:
    """The refusal of a plain http URL says why and what is allowed."""
    ran = pleo(fake, "webhooks", "subscribe", "http://connector.example.com/hooks")
    assert ran.code == 2
    assert "https://" in ran.stderr
    assert "loopback" in ran.stderr


# -- list ------------------------------------------------------------------------------------------


def test_list_prints_a_table_of_the_subscriptions(fake: FakePleo) -> None:
    """`list` shows each subscription's ID, URL, events, status and creation time on stdout,
    nothing on stderr, and no secret."""
    first = subscribed(fake, ENDPOINT)
    second = subscribed(fake, f"{ENDPOINT}/vendors", "--event", VENDOR_CREATED)
    ran = pleo(fake, "webhooks", "list", env={"COLUMNS": "250"})
    assert ran.code == 0, ran.stderr
    assert ran.stderr == ""
    header = next(line for line in ran.out_lines if "URL" in line)
    for column in ("id", "URL", "events", "status", "created (UTC)"):
        assert column in header
    rows = {document["id"]: document for document in (first, second)}
    found = {line.split()[1]: line for line in ran.out_lines if any(i in line for i in rows)}
    assert set(found) == set(rows)
    assert ENDPOINT in found[first["id"]]
    assert JOB_CREATED in found[first["id"]]
    assert VENDOR_CREATED in found[second["id"]]
    assert all("ACTIVE" in row for row in found.values())
    for document in (first, second):
        assert secret_of(fake, document["id"]) not in ran.stdout


def test_list_json_is_one_document_and_the_filters_choose(fake: FakePleo) -> None:
    """`list --json` is one JSON array, oldest first; --status and --event narrow it."""
    jobs = subscribed(fake, ENDPOINT)
    vendors = subscribed(fake, f"{ENDPOINT}/vendors", "--event", VENDOR_CREATED)
    paused = pleo_api(
        fake,
        "POST",
        "/v1/subscriptions",
        {"endpointUrl": f"{ENDPOINT}/paused", "eventTypes": [JOB_CREATED], "status": "INACTIVE"},
    )["data"]

    def listed(*filters: str) -> list[str]:
        ran = pleo(fake, "webhooks", "list", *filters, "--json")
        assert ran.code == 0, ran.stderr
        return [document["id"] for document in json.loads(ran.stdout)]

    assert listed() == [jobs["id"], vendors["id"], paused["id"]]
    assert listed("--status", "INACTIVE") == [paused["id"]]
    assert listed("--event", VENDOR_CREATED) == [vendors["id"]]
    assert listed("--status", "ACTIVE", "--event", JOB_CREATED) == [jobs["id"]]


def test_list_refuses_an_unknown_status(fake: FakePleo) -> None:
    """--status takes ACTIVE or INACTIVE only: click says so, exit 2, nothing sent."""
    ran = pleo(fake, "webhooks", "list", "--status", "PAUSED")
    assert ran.code == 2
    assert "PAUSED" in ran.stderr
    assert fake.journal.requests == []


# -- secret and delete -----------------------------------------------------------------------------


def test_secret_prints_the_secret_alone_on_one_line_of_stdout(fake: FakePleo) -> None:
    """`secret ID` writes the whsec_ secret and a newline to stdout, and nothing else anywhere:
    ready for `export PLEO_WEBHOOK_SECRET=$(...)`."""
    created = subscribed(fake, ENDPOINT)
    ran = pleo(fake, "webhooks", "secret", created["id"], env={"COLUMNS": "20"})
    assert ran.code == 0, ran.stderr
    secret = secret_of(fake, created["id"])
    assert secret.startswith("whsec_")
    assert ran.stdout == secret + "\n"
    assert ran.stderr == ""


def test_delete_deletes_the_subscription_and_says_so(fake: FakePleo) -> None:
    """`delete ID` removes it at Pleo and says so on stdout; with --json, one document."""
    first = subscribed(fake, ENDPOINT)
    second = subscribed(fake, f"{ENDPOINT}/2")
    ran = pleo(fake, "webhooks", "delete", first["id"])
    assert ran.code == 0, ran.stderr
    assert ran.out_lines == [f"deleted webhook subscription {first['id']}"]
    assert ran.stderr == ""
    as_json = pleo(fake, "webhooks", "delete", second["id"], "--json")
    assert as_json.code == 0, as_json.stderr
    assert json.loads(as_json.stdout) == {"id": second["id"], "deleted": True}
    assert pleo_api(fake, "GET", "/v1/subscriptions")["data"] == []


@pytest.mark.parametrize("command", ["secret", "delete"])
def test_an_id_that_is_not_a_uuid_is_exit_2_with_nothing_sent(fake: FakePleo, command: str) -> None:
    """An ID that is not a UUID is bad input: exit 2, one line naming it, no request."""
    ran = pleo(fake, "webhooks", command, "not-a-uuid")
    assert ran.code == 2
    assert ran.lines == ["pleo-export: error: subscription_id='not-a-uuid': not a UUID"]
    assert fake.journal.requests == []


@pytest.mark.parametrize("command", ["secret", "delete"])
def test_an_unknown_subscription_is_exit_3_in_one_line(fake: FakePleo, command: str) -> None:
    """A subscription Pleo does not know is its 404: exit 3, one line, no traceback."""
    ran = pleo(fake, "webhooks", command, UNKNOWN_ID)
    assert ran.code == 3
    assert ran.stdout == ""
    [line] = ran.lines
    assert UNKNOWN_ID in line
    assert "HTTP 404" in line
    assert "Traceback" not in ran.stderr


def test_a_refused_credential_is_exit_3(fake: FakePleo) -> None:
    """A key Pleo refuses is exit 3 (Pleo refused), as for the other commands."""
    ran = pleo(fake, "webhooks", "list", env={"PLEO_API_KEY": "not-the-key"})
    assert ran.code == 3
    assert "HTTP 401" in ran.stderr


def test_every_webhooks_command_and_option_has_help_text() -> None:
    """The group, each of its commands and each of their options carry help text."""
    assert isinstance(webhooks, click.Group)
    assert set(webhooks.commands) == {"subscribe", "list", "secret", "delete"}
    assert webhooks.help
    for command in webhooks.commands.values():
        assert command.help, command.name
        assert command.short_help, command.name
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"{command.name} {param.opts}"
