"""What a base URL may hold: credentials in it are refused, and never shown."""

from __future__ import annotations

import pytest

from pleo_export_async import ApiKeyAuth, InvalidInput, PleoExportClient


@pytest.mark.parametrize(
    "url",
    [
        "https://connector:s3cret-pass@external.pleo.io",
        "https://only-user-s3cret-pass@external.pleo.io/v3",
        "http://u:s3cret-pass@127.0.0.1:8080",
    ],
)
def test_a_base_url_with_credentials_is_refused_without_showing_them(url: str) -> None:
    """A user name or password in the base URL is refused with InvalidInput naming base_url,
    and the message shows the host but not the credentials."""
    with pytest.raises(InvalidInput) as raised:
        PleoExportClient(url, auth=ApiKeyAuth("key"))
    message = str(raised.value)
    assert "base_url" in message
    assert "s3cret-pass" not in message
    assert "connector" not in message
    assert url.rpartition("@")[2].split("/")[0] in message
