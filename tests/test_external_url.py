"""`external_url` is an absolute http(s) URL (issue 23): anything else raises `InvalidInput` naming
the field and the value where the update is built, before any request (R14)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from helpers import client_for
from pleo_export_async import InvalidInput, ItemStatus, ItemUpdate
from pleo_export_async._checks import PLAIN_HTTP_URL, http_url, http_url_problem
from pleo_export_async.testing import FakePleo

ENTRY_ID = "3f2c1d4e-5b6a-4c7d-8e9f-0a1b2c3d4e5f"

ACCEPTED = [
    "https://erp.example.com/journal/JE-10452",
    "http://erp.example.com",
    "HTTPS://ERP.example.com/Journal",
    "https://erp.example.com:8443/entries?id=7&view=full#lines",
    "https://erp.example.com/a%20b",
    "https://bücher.example/einträge/7",
    "http://[2001:db8::1]/entries/7",
    "https://user@erp.example.com/entries/7",
]

REFUSED = [
    ("not a url", "not an absolute http or https URL"),
    ("", "not an absolute http or https URL"),
    ("erp.example.com/journal/7", "not an absolute http or https URL"),
    ("//erp.example.com/journal/7", "not an absolute http or https URL"),
    ("ftp://erp.example.com/journal/7", "not an absolute http or https URL"),
    ("mailto:books@example.com", "not an absolute http or https URL"),
    ("https:///journal/7", "it has no host"),
    ("https://:8443/journal/7", "it has no host"),
    ("https:erp.example.com", "it has no host"),
    ("https://erp.example.com:99999/", "Port out of range"),
    ("https://erp.example.com:http/", "Port could not be cast"),
    ("http://[2001:db8::1/entries", "Invalid IPv6 URL"),
    ("https://erp.example.com/journal/JE 7", "spaces or control characters"),
    (" https://erp.example.com/journal/7", "spaces or control characters"),
    ("https://erp.example.com/journal/7\n", "spaces or control characters"),
    ("https://erp.example.com/jour\tnal/7", "spaces or control characters"),
    ("https://erp.example.com/\u2028", "spaces or control characters"),
]


@pytest.mark.parametrize("url", ACCEPTED)
def test_an_absolute_http_url_is_kept_as_given(url: str) -> None:
    """Any absolute http or https URL with a host is taken, by the builder and the constructor,
    and sent exactly as written."""
    built = ItemUpdate.successful(ENTRY_ID, external_url=url)
    general = ItemUpdate(ENTRY_ID, ItemStatus.SUCCESSFUL, external_url=url)
    assert built.external_url == general.external_url == url
    assert built == general


BUILDERS: dict[str, Callable[[str], ItemUpdate]] = {
    "successful": lambda url: ItemUpdate.successful(ENTRY_ID, external_id="JE-7", external_url=url),
    "constructor": lambda url: ItemUpdate(ENTRY_ID, ItemStatus.SUCCESSFUL, None, "JE-7", url),
    "evolve": lambda url: attrs.evolve(ItemUpdate.successful(ENTRY_ID), external_url=url),
}


@pytest.mark.parametrize(("url", "problem"), REFUSED, ids=repr)
@pytest.mark.parametrize("build", ["successful", "constructor", "evolve"])
def test_anything_else_raises_naming_the_field_and_the_value(
    url: str, problem: str, build: str
) -> None:
    """A value that is not an absolute http(s) URL with a host raises InvalidInput naming
    `external_url` and the value, however the update is built."""
    with pytest.raises(InvalidInput) as raised:
        BUILDERS[build](url)
    error = raised.value
    assert (error.field, error.value) == ("external_url", url)
    assert problem in error.problem
    assert str(error).startswith(f"external_url={url!r}: ")


@pytest.mark.parametrize("bad", [7, b"https://erp.example.com", ["https://erp.example.com"]])
def test_a_url_that_is_not_a_string_is_refused(bad: Any) -> None:
    """A URL given as bytes, a number or a list raises InvalidInput saying it must be a string."""
    with pytest.raises(InvalidInput, match="must be a string") as raised:
        ItemUpdate.successful(ENTRY_ID, external_url=bad)
    assert (raised.value.field, raised.value.value) == ("external_url", bad)


@pytest.mark.usefixtures("instant")
async def test_a_bad_url_stops_the_updates_before_any_request(fake: FakePleo) -> None:
    """Building the updates of a job with one bad URL raises there: nothing reaches Pleo."""
    job = fake.create_job(items=3)
    urls = ["https://erp.example.com/1", "not a url", "https://erp.example.com/3"]
    async with client_for(fake) as client:
        run = client.job(job.id)
        with pytest.raises(InvalidInput, match="external_url='not a url'"):
            await run.update(
                [
                    ItemUpdate.successful(entry_id, external_url=url)
                    for entry_id, url in zip(job.item_ids, urls, strict=True)
                ]
            )
    assert fake.journal.requests == []


# -- the fast path agrees with urllib.parse --------------------------------------------------------

URL_LIKE = st.builds(
    "{}{}{}{}".format,
    st.sampled_from(["https://", "http://", "HTTP://", "ftp://", "https:", "//", ""]),
    st.text(alphabet="aZ09.-_:@[]", max_size=12),
    st.just("") | st.integers(min_value=0, max_value=99999).map(":{}".format),
    st.text(alphabet="/?#=&%aZ09 \t\n\x7fü:[]@", max_size=12),
)


@given(URL_LIKE | st.text(max_size=30))
@example("https://erp.example.com:99999")
@example("https://erp.example.com:65535/x")
@example("https://erp.example.com:65536/x")
@example("https://erp.example.com:0")
@example("https://erp.example.com:08443/")
@example("https://erp.example.com:/x")
@example("https://-/")
@example("http://./")
def test_the_fast_path_takes_only_what_urllib_parse_accepts(text: str) -> None:
    """What the cheap pattern lets through, the urllib.parse check accepts too; and the check
    that ItemUpdate runs accepts exactly what urllib.parse accepts."""
    judged = http_url_problem(text)
    if PLAIN_HTTP_URL.fullmatch(text):
        assert judged is None
    if judged is None:
        assert http_url("external_url", text) == text
    else:
        with pytest.raises(InvalidInput):
            http_url("external_url", text)
