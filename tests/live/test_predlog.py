"""The prediction log on its own: group commit, segments, sealing, recovery, tampering, export."""

from __future__ import annotations

import threading
from pathlib import Path

import pandas as pd
import pytest

from clinval.ledger import verify
from clinval.predlog import (
    BATCH_KIND,
    LogCorrupt,
    LogSettings,
    LogUnavailable,
    PredictionLog,
    encode_request,
    export_predictions,
    read_wal,
    recover,
)

NUMERIC, CATEGORICAL = ("age",), ("sex",)


def _line(n: int, request_id: str, age: float = 60.0) -> bytes:
    return encode_request(request_id=request_id, time_us=1_700_000_000_000_000 + n, risk=[0.1 + n / 1e4],
                          inputs={"age": [age], "sex": ["m"]}, unseen=[()], pass_through={"record_id": [f"r{n}"]})


def _log(live, **settings) -> PredictionLog:
    return PredictionLog(directory=live.log_dir, root=live.root, ledger=live.open_ledger(), signer=live.signer(),
                         model_id="locked", model_sha256="ab" * 32, numeric=NUMERIC, categorical=CATEGORICAL,
                         settings=LogSettings(**settings))


def _batches(live):
    return [e for e in live.open_ledger().entries() if e.kind == BATCH_KIND]


def test_requests_waiting_together_share_one_flush(live_root):
    log = _log(live_root)
    futures = [log.submit(_line(n, f"q{n}"), records=1) for n in range(50)]  # queued before the writer runs
    log.start()
    for future in futures:
        future.result(timeout=60)
    assert (log.stats.commits, log.stats.records_logged) == (1, 50)
    log.close()
    [entry] = _batches(live_root)
    assert entry.body["count"] == 50 and entry.body["requests"] == 50


def test_segments_roll_by_records_and_each_is_sealed_with_its_digest(live_root):
    log = _log(live_root, max_segment_records=10)
    log.start()
    for n in range(35):
        log.submit(_line(n, f"q{n}"), records=1).result(timeout=60)
    log.close()
    batches = _batches(live_root)
    assert [e.body["count"] for e in batches] == [10, 10, 10, 5]
    assert not list((live_root.log_dir / "wal").glob("*"))
    result = verify(live_root.ledger, deep=True, root=live_root.root)
    assert result.ok and result.files_checked >= 4
    frame = export_predictions(directory=live_root.log_dir, root=live_root.root, ledger=live_root.open_ledger())
    assert frame["record_id"].tolist() == [f"r{n}" for n in range(35)]
    assert frame["sealed"].all() and frame["risk"].tolist() == [0.1 + n / 1e4 for n in range(35)]


def test_concurrent_submitters_lose_nothing(live_root):
    log = _log(live_root, max_segment_records=64)
    log.start()
    acknowledged: list[str] = []
    lock = threading.Lock()

    def client(k: int) -> None:
        for n in range(40):
            rid = f"c{k}-{n}"
            log.submit(_line(n, rid), records=1).result(timeout=60)
            with lock:
                acknowledged.append(f"{rid}-0")

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    frame = export_predictions(directory=live_root.log_dir, root=live_root.root, ledger=live_root.open_ledger())
    assert sorted(frame["prediction_id"]) == sorted(acknowledged) and len(acknowledged) == 320
    assert log.stats.commits <= 320


def _leave_wal(live, lines: list[bytes], tail: bytes = b"") -> Path:
    """A WAL segment as a killed writer leaves it."""
    log = _log(live)
    header = log.header()
    from clinval.predlog import _dumps, _frame

    path = live.log_dir / "wal" / f"{header.segment_id}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_frame(_dumps(header.to_json())) + b"".join(lines) + tail)
    return path


def test_recovery_truncates_a_torn_tail_and_seals_the_rest(live_root):
    torn = _line(9, "torn")[:-20]
    _leave_wal(live_root, [_line(n, f"q{n}") for n in range(3)], tail=torn)
    report = recover(directory=live_root.log_dir, root=live_root.root, ledger=live_root.open_ledger(), signer=live_root.signer())
    assert report.records == 3 and report.torn_bytes == len(torn)
    [entry] = _batches(live_root)
    assert entry.body["torn_bytes"] == len(torn) and entry.body["count"] == 3
    assert verify(live_root.ledger, deep=True, root=live_root.root).ok


def test_a_complete_line_with_a_bad_checksum_at_the_end_is_a_torn_tail(live_root):
    bad = bytearray(_line(5, "flip"))
    bad[20] ^= 0x01
    _leave_wal(live_root, [_line(0, "ok")], tail=bytes(bad))
    report = recover(directory=live_root.log_dir, root=live_root.root, ledger=live_root.open_ledger(), signer=live_root.signer())
    assert report.records == 1 and report.torn_bytes == len(bad)


def test_damage_before_good_lines_is_not_a_crash_and_is_refused(live_root):
    bad = bytearray(_line(1, "mid"))
    bad[30] ^= 0x01
    path = _leave_wal(live_root, [_line(0, "a"), bytes(bad), _line(2, "c")])
    with pytest.raises(LogCorrupt, match="not an interrupted write"):
        read_wal(path)
    with pytest.raises(LogCorrupt):
        recover(directory=live_root.log_dir, root=live_root.root, ledger=live_root.open_ledger(), signer=live_root.signer())
    assert path.exists() and not _batches(live_root)


def test_sealing_twice_after_a_crash_between_ledger_and_unlink_adds_nothing(live_root):
    path = _leave_wal(live_root, [_line(0, "a")])
    saved = path.read_bytes()
    recover(directory=live_root.log_dir, root=live_root.root, ledger=live_root.open_ledger(), signer=live_root.signer())
    path.write_bytes(saved)  # as if the process died before removing the WAL
    report = recover(directory=live_root.log_dir, root=live_root.root, ledger=live_root.open_ledger(), signer=live_root.signer())
    assert len(_batches(live_root)) == 1 and report.sealed[0].ledger_seq == _batches(live_root)[0].seq
    assert not path.exists()


def test_a_wal_held_by_a_running_writer_is_not_sealed_by_another_process(live_root):
    log = _log(live_root)
    log.start()
    log.submit(_line(0, "live"), records=1).result(timeout=60)
    report = recover(directory=live_root.log_dir, root=live_root.root, ledger=live_root.open_ledger(), signer=live_root.signer())
    assert report.sealed == () and len(report.skipped_in_use) == 1
    sealed = log.roll().result(timeout=60)
    assert [s.count for s in sealed] == [1]
    log.close()


@pytest.mark.parametrize("attack", ["edit-a-risk", "delete-a-row", "delete-the-segment"])
def test_deep_verify_and_export_catch_an_edited_or_deleted_prediction(live_root, attack):
    log = _log(live_root)
    log.start()
    for n in range(5):
        log.submit(_line(n, f"q{n}"), records=1).result(timeout=60)
    log.close()
    [entry] = _batches(live_root)
    segment = live_root.root / entry.body["segment"]["path"]
    if attack == "delete-the-segment":
        segment.unlink()
    else:
        frame = pd.read_parquet(segment)
        frame = frame.iloc[1:] if attack == "delete-a-row" else frame.assign(risk=frame["risk"].where(frame.index != 2, 0.01))
        frame.to_parquet(segment, index=False)
    result = verify(live_root.ledger, deep=True, root=live_root.root)
    assert not result.ok and result.code == "DIGEST_MISMATCH" and result.seq == entry.seq
    with pytest.raises(LogCorrupt, match="deleted" if attack == "delete-the-segment" else "edited or deleted"):
        export_predictions(directory=live_root.log_dir, root=live_root.root, ledger=live_root.open_ledger())


def test_a_segment_that_cannot_be_created_fails_the_batch_and_nothing_is_acknowledged(live_root):
    log = _log(live_root)
    log.start()
    wal = live_root.log_dir / "wal"
    wal.rmdir()
    wal.write_text("not a folder")  # new segments cannot be created here (works even as root)
    with pytest.raises(LogUnavailable, match="nothing was answered"):
        log.submit(_line(0, "x"), records=1).result(timeout=60)
    assert log.stats.last_error is not None and log.stats.failed_batches == 1
    wal.unlink()
    wal.mkdir()
    log.submit(_line(1, "y"), records=1).result(timeout=60)  # the log recovers once it can write again
    assert log.stats.last_error is None
    log.close()
    frame = export_predictions(directory=live_root.log_dir, root=live_root.root, ledger=live_root.open_ledger())
    assert frame["prediction_id"].tolist() == ["y-0"]


def test_export_filters_by_time_and_includes_open_segments(live_root):
    log = _log(live_root)
    log.start()
    for n in range(4):
        log.submit(_line(n * 1_000_000, f"q{n}"), records=1).result(timeout=60)
    frame = export_predictions(directory=live_root.log_dir, root=live_root.root, ledger=live_root.open_ledger())
    assert len(frame) == 4 and not frame["sealed"].any()
    start = pd.Timestamp(1_700_000_001_000_000, unit="us", tz="UTC")
    window = export_predictions(directory=live_root.log_dir, root=live_root.root, ledger=live_root.open_ledger(),
                                since=start.to_pydatetime(), until=(start + pd.Timedelta(seconds=2)).to_pydatetime())
    assert window["request_id"].tolist() == ["q1", "q2"]
    log.close()
