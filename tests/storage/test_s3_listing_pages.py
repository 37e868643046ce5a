"""Listing pages are read the same by the fast reading and by ElementTree.

The pages below were captured from the real servers the suite runs (Ceph RGW 16.2 with
encoding-type=url, moto 5), for keys "a b+c", "d/e&f<g>" and "plain" (two versions under a
delete marker). The conformance suite lists through both servers for real; these tests pin
down which reading each page takes and that both readings agree on any page.
"""

from __future__ import annotations

import asyncio
import contextlib
import urllib.parse
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from objectjobs.storage import s3_listing as listing
from objectjobs.storage.interface import ObjectVersion

RGW_VERSIONS = (
    b'<?xml version="1.0" encoding="UTF-8"?><ListVersionsResult xmlns="http://s3.amazonaws.com/doc'
    b'/2006-03-01/"><EncodingType>url</EncodingType><Name>dumpb</Name><Prefix></Prefix><MaxKeys>10'
    b"00</MaxKeys><IsTruncated>false</IsTruncated><KeyMarker></KeyMarker><VersionIdMarker></Versio"
    b"nIdMarker><Version><Key>a%20b%2Bc</Key><VersionId>e6FY9Az6eBZwfZaFJqFHMPXbT.dUg8S</VersionId"
    b"><IsLatest>true</IsLatest><LastModified>2026-11-29T04:12:27.126Z</LastModified><ETag>&quot;5"
    b"d41402abc4b2a76b9719d911017c592&quot;</ETag><Size>5</Size><StorageClass>STANDARD</StorageCla"
    b"ss><Owner><ID>test</ID><DisplayName>Test User</DisplayName></Owner><Type>Normal</Type></Vers"
    b"ion><Version><Key>d%2Fe%26f%3Cg%3E</Key><VersionId>YRqBunIHK1.WzO3iyJjyClx0OglfdJR</VersionI"
    b"d><IsLatest>true</IsLatest><LastModified>2026-11-29T04:12:27.134Z</LastModified><ETag>&quot;"
    b"5d41402abc4b2a76b9719d911017c592&quot;</ETag><Size>5</Size><StorageClass>STANDARD</StorageCl"
    b"ass><Owner><ID>test</ID><DisplayName>Test User</DisplayName></Owner><Type>Normal</Type></Ver"
    b"sion><DeleteMarker><Key>plain</Key><VersionId>y-jwTzrynGSJbzUDIwyVZz7RnddN44w</VersionId><Is"
    b"Latest>true</IsLatest><LastModified>2026-11-29T04:12:27.153Z</LastModified><Owner><ID>test</"
    b"ID><DisplayName>Test User</DisplayName></Owner><Type>Normal</Type></DeleteMarker><Version><K"
    b"ey>plain</Key><VersionId>j96OWNTNw8QpXQMPoGDI.qRLGazdNDG</VersionId><IsLatest>false</IsLates"
    b"t><LastModified>2026-11-29T04:12:27.149Z</LastModified><ETag>&quot;5d41402abc4b2a76b9719d911"
    b"017c592&quot;</ETag><Size>5</Size><StorageClass>STANDARD</StorageClass><Owner><ID>test</ID><"
    b"DisplayName>Test User</DisplayName></Owner><Type>Normal</Type></Version><Version><Key>plain<"
    b"/Key><VersionId>RQsjxJ67Vnh8J12MqQmg256M32GNhan</VersionId><IsLatest>false</IsLatest><LastMo"
    b"dified>2026-11-29T04:12:27.144Z</LastModified><ETag>&quot;5d41402abc4b2a76b9719d911017c592&q"
    b"uot;</ETag><Size>5</Size><StorageClass>STANDARD</StorageClass><Owner><ID>test</ID><DisplayNa"
    b"me>Test User</DisplayName></Owner><Type>Normal</Type></Version></ListVersionsResult>"
)
MOTO_VERSIONS = (
    b'<?xml version="1.0" encoding="utf-8"?>\n<ListVersionsResult xmlns="http://s3.amazonaws.com/do'
    b'c/2006-03-01/"><IsTruncated>false</IsTruncated><KeyMarker/><VersionIdMarker/><Version><ETag>'
    b'"5d41402abc4b2a76b9719d911017c592"</ETag><Size>5</Size><StorageClass>STANDARD</StorageClass>'
    b"<Key>a b+c</Key><VersionId>e1484e95-a8e2-4209-bcb2-e95c7f94e096</VersionId><IsLatest>true</I"
    b"sLatest><LastModified>2026-11-29T04:12:28.000Z</LastModified><Owner><DisplayName>webfile</Di"
    b"splayName><ID>75aa57f09aa0c8caeab4f8c24e99d10f8e7faeebf76c078efc7c6caea54ba06a</ID></Owner><"
    b'/Version><Version><ETag>"5d41402abc4b2a76b9719d911017c592"</ETag><Size>5</Size><StorageClass'
    b">STANDARD</StorageClass><Key>d/e&amp;f&lt;g&gt;</Key><VersionId>b3bfd7f9-3737-4e46-b38b-43b0"
    b"ab7f4468</VersionId><IsLatest>true</IsLatest><LastModified>2026-11-29T04:12:28.000Z</LastMod"
    b"ified><Owner><DisplayName>webfile</DisplayName><ID>75aa57f09aa0c8caeab4f8c24e99d10f8e7faeebf"
    b'76c078efc7c6caea54ba06a</ID></Owner></Version><Version><ETag>"5d41402abc4b2a76b9719d911017c5'
    b'92"</ETag><Size>5</Size><StorageClass>STANDARD</StorageClass><Key>plain</Key><VersionId>c39d'
    b"93c3-7d54-40c8-907a-c3ab0ec7d04a</VersionId><IsLatest>false</IsLatest><LastModified>2026-11-"
    b"29T04:12:28.000Z</LastModified><Owner><DisplayName>webfile</DisplayName><ID>75aa57f09aa0c8ca"
    b'eab4f8c24e99d10f8e7faeebf76c078efc7c6caea54ba06a</ID></Owner></Version><Version><ETag>"5d414'
    b'02abc4b2a76b9719d911017c592"</ETag><Size>5</Size><StorageClass>STANDARD</StorageClass><Key>p'
    b"lain</Key><VersionId>ab952715-a286-4bba-b2c3-47697d0c5a13</VersionId><IsLatest>false</IsLate"
    b"st><LastModified>2026-11-29T04:12:28.000Z</LastModified><Owner><DisplayName>webfile</Display"
    b"Name><ID>75aa57f09aa0c8caeab4f8c24e99d10f8e7faeebf76c078efc7c6caea54ba06a</ID></Owner></Vers"
    b"ion><DeleteMarker><Owner><DisplayName>webfile</DisplayName><ID>75aa57f09aa0c8caeab4f8c24e99d"
    b"10f8e7faeebf76c078efc7c6caea54ba06a</ID></Owner><Key>plain</Key><VersionId>2cb0571c-28be-414"
    b"a-be68-9f3eef3f3d9a</VersionId><IsLatest>true</IsLatest><LastModified>2026-11-29T04:12:28.00"
    b"0Z</LastModified></DeleteMarker><Name>dumpb</Name><Prefix/><MaxKeys>1000</MaxKeys></ListVers"
    b"ionsResult>"
)
RGW_OBJECTS = (
    b'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2'
    b'006-03-01/"><EncodingType>url</EncodingType><Name>dumpb</Name><Prefix></Prefix><MaxKeys>1000'
    b"</MaxKeys><IsTruncated>false</IsTruncated><Contents><Key>a%20b%2Bc</Key><LastModified>2026-1"
    b"1-29T04:12:27.126Z</LastModified><ETag>&quot;5d41402abc4b2a76b9719d911017c592&quot;</ETag><S"
    b"ize>5</Size><StorageClass>STANDARD</StorageClass><Type>Normal</Type></Contents><Contents><Ke"
    b"y>d%2Fe%26f%3Cg%3E</Key><LastModified>2026-11-29T04:12:27.134Z</LastModified><ETag>&quot;5d4"
    b"1402abc4b2a76b9719d911017c592&quot;</ETag><Size>5</Size><StorageClass>STANDARD</StorageClass"
    b"><Type>Normal</Type></Contents><KeyCount>2</KeyCount></ListBucketResult>"
)

EXPECTED = [
    ("a b+c", False, True),
    ("d/e&f<g>", False, True),
    ("plain", True, True),
    ("plain", False, False),
    ("plain", False, False),
]


def _summary(entries: list[ObjectVersion]) -> list[tuple[str, bool, bool]]:
    return [(v.key, v.is_delete_marker, v.is_latest) for v in entries]


def test_rgw_pages_take_the_fast_reading_and_agree_with_the_tree() -> None:
    fast = listing._versions_fast(RGW_VERSIONS.decode())
    assert fast is not None
    assert fast == listing._versions_tree(RGW_VERSIONS)
    entries, marker = listing.parse_versions_page(RGW_VERSIONS)
    assert _summary(entries) == EXPECTED and marker is None
    assert entries[0].etag == '"5d41402abc4b2a76b9719d911017c592"' and entries[0].size == 5
    assert entries[2].etag is None and entries[2].size == 0
    objects = listing._objects_fast(RGW_OBJECTS.decode())
    assert objects is not None and objects == listing._objects_tree(RGW_OBJECTS)
    assert [o.key for o in objects] == ["a b+c", "d/e&f<g>"]


def test_moto_pages_fall_back_to_the_tree_and_come_out_in_s3_order() -> None:
    # moto sends ETag first and all versions before the markers
    assert listing._versions_fast(MOTO_VERSIONS.decode()) is None
    entries, marker = listing.parse_versions_page(MOTO_VERSIONS)
    assert _summary(entries) == EXPECTED and marker is None


def test_character_references_are_left_to_the_xml_parser() -> None:
    body = RGW_OBJECTS.replace(b"<Key>a%20b%2Bc</Key>", b"<Key>&#97;%20b</Key>")
    assert listing._text_of(body) is None
    assert [o.key for o in listing.parse_objects_page(body)[0]] == ["a b", "d/e&f<g>"]


# --- any page: the fast reading, when it applies, equals ElementTree's -------------------

KEYS = st.text(alphabet=st.sampled_from([*"ab/ +%&<>\"'é€", "\u00a0"]), min_size=1, max_size=12)
MOMENTS = st.integers(0, 10**6).map(
    lambda ms: datetime(2026, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@st.composite
def version_pages(draw: st.DrawFn) -> tuple[bytes, bool]:
    url = draw(st.booleans())
    shuffled = draw(st.booleans())
    entries = []
    for key in sorted(draw(st.lists(KEYS, max_size=6, unique=True))):
        for n in range(draw(st.integers(1, 3))):
            marker = draw(st.booleans())
            when = draw(MOMENTS).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            shown = urllib.parse.quote_plus(key, safe="/") if url else key
            fields = [
                ("Key", _escape(shown)),
                ("VersionId", f"v{n}.{len(entries)}"),
                ("IsLatest", "true" if n == 0 else "false"),
                ("LastModified", when),
            ]
            if not marker:
                fields += [("ETag", "&quot;0f&quot;"), ("Size", str(draw(st.integers(0, 10**12))))]
                if draw(st.booleans()):
                    fields.append(("StorageClass", draw(st.sampled_from(["STANDARD", "GLACIER"]))))
            fields.append(("Owner", "<ID>o</ID>"))
            if shuffled:
                fields = draw(st.permutations(fields))
            tag = "DeleteMarker" if marker else "Version"
            entries.append(f"<{tag}>" + "".join(f"<{k}>{v}</{k}>" for k, v in fields) + f"</{tag}>")
    head = '<?xml version="1.0" encoding="UTF-8"?><ListVersionsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
    head += "<EncodingType>url</EncodingType>" if url else ""
    head += "<IsTruncated>true</IsTruncated><NextKeyMarker>k%2F1</NextKeyMarker>"
    head += "<NextVersionIdMarker>v1</NextVersionIdMarker>"
    return (head + "".join(entries) + "</ListVersionsResult>").encode(), shuffled


@given(version_pages())
def test_fast_reading_of_versions_equals_the_tree(page: tuple[bytes, bool]) -> None:
    body, _ = page
    fast = listing._versions_fast(body.decode())
    tree = listing._versions_tree(body)
    if fast is not None:
        assert fast == tree
    assert listing.parse_versions_page(body)[0] == listing._in_s3_order(tree)
    key = "k/1" if b"<EncodingType>" in body else "k%2F1"
    assert listing.next_versions_marker(body) == (key, "v1")


@given(version_pages().filter(lambda p: not p[1] and b"<Version>" in p[0]))
def test_fast_reading_applies_to_rgw_field_order(page: tuple[bytes, bool]) -> None:
    assert listing._versions_fast(page[0].decode()) is not None


# --- the next page is asked for before this one is parsed --------------------------------


class _Pages:
    """Answers ListObjectsV2 requests from a list of bodies, recording when each was asked
    for relative to the parsing of the previous one."""

    def __init__(self, bodies: list[bytes]) -> None:
        self.bodies = bodies
        self.events: list[str] = []
        self.hang: set[int] = set()

    async def fetch(self, bucket: str, query: dict[str, str]) -> bytes:
        n = int(query.get("continuation-token", "0"))
        self.events.append(f"fetch {n}")
        if n in self.hang:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.events.append(f"cancelled {n}")
                raise
        await asyncio.sleep(0)
        return self.bodies[n]


def _objects_page(n: int, last: bool) -> bytes:
    entry = (
        f"<Contents><Key>k{n}</Key><LastModified>2026-01-01T00:00:00.000Z</LastModified>"
        f"<ETag>&quot;0f&quot;</ETag><Size>1</Size></Contents>"
    )
    more = "" if last else f"<NextContinuationToken>{n + 1}</NextContinuationToken>"
    truncated = "false" if last else "true"
    return (
        f"<ListBucketResult><IsTruncated>{truncated}</IsTruncated>{more}{entry}</ListBucketResult>"
    ).encode()


async def test_pages_are_requested_ahead_and_an_abandoned_request_is_cancelled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pages = _Pages([_objects_page(n, last=n == 3) for n in range(4)])
    lister = listing.RawLister(http=None)  # type: ignore[arg-type]
    monkeypatch.setattr(lister, "_fetch", pages.fetch)
    parsed = listing.objects_of

    def parse(body: bytes) -> list[ObjectVersion]:
        entries = parsed(body)
        pages.events.append(f"parse {entries[0].key}")
        return entries

    monkeypatch.setattr(listing, "objects_of", parse)
    keys = [v.key async for page in lister.list_objects("b", "", "", None, 1) for v in page]
    assert keys == ["k0", "k1", "k2", "k3"]
    assert pages.events[:4] == ["fetch 0", "fetch 1", "parse k0", "fetch 2"]
    # a range that ends on the third page: the fourth, asked for ahead, is cancelled
    pages.events.clear()
    pages.hang = {3}
    keys = [v.key async for page in lister.list_objects("b", "", "", "k1", 1) for v in page]
    assert keys == ["k0", "k1"]
    assert pages.events[-3:] == ["fetch 3", "parse k2", "cancelled 3"]
    # a reader that stops early cancels the page in flight too
    pages.events.clear()
    pages.hang = {1}
    async with contextlib.aclosing(lister.list_objects("b", "", "", None, 1)) as listed:
        async for _ in listed:
            break
    assert pages.events == ["fetch 0", "fetch 1", "parse k0", "cancelled 1"]


def _level_page(truncated: bool) -> bytes:
    # a ListObjectsV2 answer with delimiter=/ and encoding-type=url, as S3 sends it
    return (
        b'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/'
        b'doc/2006-03-01/"><Name>b</Name><Prefix>top%2F</Prefix><MaxKeys>1000</MaxKeys>'
        b"<Delimiter>%2F</Delimiter><EncodingType>url</EncodingType>"
        + (b"<IsTruncated>true</IsTruncated>" if truncated else b"<IsTruncated>false</IsTruncated>")
        + b"<Contents><Key>top%2Fa%20b%2Bc</Key><LastModified>2026-11-29T04:12:27.126Z"
        b"</LastModified><ETag>&quot;5d41402abc4b2a76b9719d911017c592&quot;</ETag><Size>5</Size>"
        b"<StorageClass>STANDARD</StorageClass></Contents>"
        b"<CommonPrefixes><Prefix>top%2Fd%26e%2F</Prefix></CommonPrefixes>"
        b"<CommonPrefixes><Prefix>top%2Fplain%2F</Prefix></CommonPrefixes>"
        b"<KeyCount>3</KeyCount></ListBucketResult>"
    )


def test_a_level_reads_keys_and_common_prefixes_decoded() -> None:
    assert listing.level_of(_level_page(truncated=False)) == [
        "top/a b+c",
        "top/d&e/",
        "top/plain/",
    ]


def test_a_level_of_more_than_one_page_is_not_read() -> None:
    assert listing.level_of(_level_page(truncated=True)) is None
