"""Keys of URL-encoded listings decode exactly as urllib.parse.unquote_plus decodes them
(the fast path for encoded slashes must never change a key)."""

from __future__ import annotations

import urllib.parse

from hypothesis import given
from hypothesis import strategies as st

from objectjobs.storage.s3_listing import _unquote_plus, parse_objects_page

PIECES = ["a", "Z", "+", " ", "/", "%", "%2F", "%2f", "%2B", "%25", "%20", "%E2%82%AC", "%C3"]


@given(st.lists(st.sampled_from(PIECES), max_size=12).map("".join))
def test_decodes_like_unquote_plus(encoded: str) -> None:
    assert _unquote_plus(encoded) == urllib.parse.unquote_plus(encoded)


@given(st.text(max_size=30))
def test_round_trips_any_key(key: str) -> None:
    assert _unquote_plus(urllib.parse.quote_plus(key, safe="")) == key
    assert _unquote_plus(urllib.parse.quote_plus(key, safe="/")) == key


def test_a_listing_page_decodes_its_keys() -> None:
    body = (
        b'<?xml version="1.0" encoding="UTF-8"?>'
        b'<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        b"<EncodingType>url</EncodingType><IsTruncated>false</IsTruncated>"
        b"<Contents><Key>dir%2Fa+b%2B%E2%82%AC</Key><LastModified>2026-11-29T01:50:12.123Z"
        b"</LastModified><ETag>&quot;0f&quot;</ETag><Size>3</Size></Contents>"
        b"</ListBucketResult>"
    )
    entries, token = parse_objects_page(body)
    assert [e.key for e in entries] == ["dir/a b+\u20ac"] and token is None
