"""agents.banks: bank CSV parsing, the hot-reloaded store and atomic import (DESIGN §5)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from agents import banks
from agents.banks import BankEntry, BankError, BankIndex, BankStore, import_bank, parse_bank

SHA = "ab" * 32
SHA_2 = "cd" * 32
MD5 = "0123456789abcdef" * 2
HEADER = "signal_type,signal,bank,label,severity\n"


def bank_text(*rows: str) -> str:
    return HEADER + "".join(row + "\n" for row in rows)


# ------------------------------------------------------------------------------- parse_bank


def test_parse_happy_path() -> None:
    text = (
        "Signal_Type, Signal ,bank,label,severity\n"  # header: case and spaces tolerated
        f"sha256,{SHA.upper()},ncmec-sample,csam,Critical\n"
        "\n"
        " , , , , \n"
        f"MD5,{MD5},local,spam,low\n"
    )
    rows = parse_bank(text, origin="a.csv")
    assert rows == [
        ("sha256", SHA, BankEntry("ncmec-sample", "csam", "critical")),
        ("md5", MD5, BankEntry("local", "spam", "low")),
    ]


def test_parse_header_only_is_empty() -> None:
    assert parse_bank(HEADER) == []


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        pytest.param("", 1, "header", id="empty-file"),
        pytest.param(f"type,hash,bank,label,severity\nsha256,{SHA},b,l,high\n", 1, "header",
                     id="bad-header"),
        pytest.param(f"signal_type,signal,bank,label\nsha256,{SHA},b,l\n", 1, "header",
                     id="short-header"),
        pytest.param(bank_text(f"sha256,{SHA},b,l,high", f"sha256,{SHA},b,l"), 3, "columns",
                     id="too-few-columns"),
        pytest.param(bank_text(f"sha256,{SHA},b,l,high,extra"), 2, "columns",
                     id="too-many-columns"),
        pytest.param(bank_text(f"sha1,{SHA},b,l,high"), 2, "sha1", id="unknown-signal-type"),
        pytest.param(bank_text(f"sha256,{SHA[:-1]},b,l,high"), 2, "malformed", id="short-hash"),
        pytest.param(bank_text(f"sha256,{SHA[:-1]}g,b,l,high"), 2, "malformed",
                     id="non-hex-hash"),
        pytest.param(bank_text(f"md5,{SHA},b,l,high"), 2, "malformed", id="sha256-as-md5"),
        pytest.param(bank_text(f"sha256,{SHA},b,l,urgent"), 2, "severity", id="bad-severity"),
        pytest.param(bank_text(f"sha256,{SHA},b,l,"), 2, "severity", id="empty-severity"),
        pytest.param(bank_text(f"sha256,{SHA},,l,high"), 2, "bank", id="empty-bank"),
    ],
)
def test_parse_errors_name_file_and_line_but_never_the_hash(
    text: str, line: int, needle: str
) -> None:
    with pytest.raises(BankError) as info:
        parse_bank(text, origin="drop-in.csv")
    message = str(info.value)
    assert message.startswith(f"drop-in.csv:{line}:"), message
    assert needle in message.lower()
    assert SHA[:16] not in message.lower()  # not even part of a bank's hash value


def test_bank_error_is_a_value_error() -> None:
    assert issubclass(BankError, ValueError)


# ------------------------------------------------------------------------------- BankIndex


def test_index_lists_every_bank_for_a_hash_and_counts_sizes() -> None:
    index = BankIndex(parse_bank(bank_text(
        f"sha256,{SHA},a,csam,critical", f"sha256,{SHA},b,csam,high", f"md5,{MD5},a,x,low",
    )))
    assert {e.bank for e in index.lookup("sha256", SHA)} == {"a", "b"}
    assert index.lookup("md5", SHA) == []
    assert index.lookup("pdq", SHA) == []
    assert dict(index.sizes()) == {("a", "sha256"): 1, ("b", "sha256"): 1, ("a", "md5"): 1}


# ------------------------------------------------------------------------------- BankStore


def _write(path: Path, text: str, *, bump: int = 0) -> None:
    """Write and move mtime forward so a rewrite is visible regardless of timestamp ticks."""
    path.write_text(text, encoding="utf-8")
    if bump:
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + bump * 1_000_000_000))


def test_store_hot_reload_lifecycle(tmp_path: Path) -> None:
    store = BankStore(tmp_path)
    store.reload_if_changed()
    assert store.index.lookup("sha256", SHA) == []

    bank = tmp_path / "local.csv"
    _write(bank, bank_text(f"sha256,{SHA},local,csam,critical"))
    assert store.reload_if_changed() is True
    assert store.index.lookup("sha256", SHA) == [BankEntry("local", "csam", "critical")]

    assert store.reload_if_changed() is False  # nothing changed
    before = store.index
    assert store.reload_if_changed() is False
    assert store.index is before  # not rebuilt

    _write(bank, bank_text(f"sha256,{SHA_2},local,spam,low"), bump=1)
    assert store.reload_if_changed() is True
    assert store.index.lookup("sha256", SHA) == []
    assert store.index.lookup("sha256", SHA_2) == [BankEntry("local", "spam", "low")]

    bank.unlink()
    assert store.reload_if_changed() is True
    assert store.index.lookup("sha256", SHA_2) == []
    assert dict(store.index.sizes()) == {}


def test_store_only_reads_csv_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text(bank_text(f"sha256,{SHA},x,y,high"))
    (tmp_path / ".local.csv.tmp").write_text(bank_text(f"sha256,{SHA},x,y,high"))
    store = BankStore(tmp_path)
    store.reload_if_changed()
    assert store.index.lookup("sha256", SHA) == []


def test_store_skips_a_bad_file_and_loads_the_good_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _write(tmp_path / "good.csv", bank_text(f"sha256,{SHA},good,csam,critical"))
    _write(tmp_path / "bad.csv", bank_text(f"md5,{MD5},bad,x,high", f"sha256,{SHA_2},bad,x,??"))
    store = BankStore(tmp_path)
    with caplog.at_level(logging.DEBUG, logger=banks.__name__):
        assert store.reload_if_changed() is True
    assert store.index.lookup("sha256", SHA) == [BankEntry("good", "csam", "critical")]
    # a file is all or nothing: the bad file's valid first row is not half-loaded
    assert store.index.lookup("md5", MD5) == []
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "bad.csv:3" in logged
    for value in (SHA, SHA_2, MD5):
        assert value not in logged  # bank contents are never logged


def test_store_with_missing_folder_is_empty(tmp_path: Path) -> None:
    store = BankStore(tmp_path / "does-not-exist")
    store.reload_if_changed()
    assert dict(store.index.sizes()) == {}
    assert store.reload_if_changed() is False


def test_store_reload_swaps_the_index_in_one_assignment(tmp_path: Path) -> None:
    store = BankStore(tmp_path)
    store.reload_if_changed()
    old = store.index
    _write(tmp_path / "a.csv", bank_text(f"sha256,{SHA},a,l,high"))
    store.reload_if_changed()
    assert store.index is not old
    assert old.lookup("sha256", SHA) == []  # a reader holding the old index is unaffected


# ------------------------------------------------------------------------------- import_bank


def test_import_bank_writes_atomically_into_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "incoming" / "partner.csv"
    source.parent.mkdir()
    text = bank_text(f"sha256,{SHA},partner,csam,critical", f"md5,{MD5},partner,csam,high")
    source.write_text(text, encoding="utf-8")
    folder = tmp_path / "banks"  # created on demand
    target = folder / "partner.csv"

    replaced: list[tuple[Path, Path]] = []
    real_replace = os.replace

    def watching_replace(src: os.PathLike[str], dst: os.PathLike[str]) -> None:
        src_path, dst_path = Path(src), Path(dst)
        # the whole file is written next to the target first, then renamed over it
        assert src_path.parent == dst_path.parent == folder
        assert src_path.read_text(encoding="utf-8") == text
        assert not dst_path.exists()
        assert not src_path.name.endswith(".csv")  # the hot reload never sees the temp file
        replaced.append((src_path, dst_path))
        real_replace(src, dst)

    monkeypatch.setattr(banks.os, "replace", watching_replace)
    assert import_bank(source, folder) == 2
    assert replaced and replaced[0][1] == target
    assert target.read_text(encoding="utf-8") == text
    assert sorted(p.name for p in folder.iterdir()) == ["partner.csv"]  # no temp file left

    store = BankStore(folder)
    store.reload_if_changed()
    assert store.index.lookup("md5", MD5) == [BankEntry("partner", "csam", "high")]


def test_import_bank_replaces_an_existing_bank(tmp_path: Path) -> None:
    folder = tmp_path / "banks"
    source = tmp_path / "b.csv"
    source.write_text(bank_text(f"sha256,{SHA},b,x,high"))
    import_bank(source, folder)
    source.write_text(bank_text(f"sha256,{SHA_2},b,x,high", f"md5,{MD5},b,x,low"))
    assert import_bank(source, folder) == 2
    assert (folder / "b.csv").read_text() == source.read_text()


def test_import_bank_rejects_a_bad_file_and_writes_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "banks"
    folder.mkdir()
    source = tmp_path / "bad.csv"
    source.write_text(bank_text(f"sha256,{SHA},b,x,high", f"sha256,{SHA[:10]},b,x,high"))
    with pytest.raises(BankError, match=r"bad\.csv:3:"):
        import_bank(source, folder)
    assert list(folder.iterdir()) == []
