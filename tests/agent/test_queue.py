"""The reading buffer: bounded, persistent, and one Idempotency-Key per batch until acknowledged."""

import math

import pytest

from portal_agent.queue import ReadingQueue


def counted(n, start=0):
    return [
        {"metric": "count", "value": i, "ts": f"2026-01-01T00:00:{i % 60:02d}Z"}
        for i in range(start, start + n)
    ]


def values(batch):
    return [r["value"] for r in batch.readings]


def test_readings_survive_reopening_the_queue(tmp_path):
    ReadingQueue(str(tmp_path)).put(counted(3))
    batch = ReadingQueue(str(tmp_path)).next_batch()
    assert values(batch) == [0, 1, 2]


def test_full_queue_drops_the_oldest_readings(tmp_path):
    queue = ReadingQueue(str(tmp_path), max_readings=5, batch_size=5)
    queue.put(counted(8))
    assert len(queue) == 5
    assert values(queue.next_batch()) == [3, 4, 5, 6, 7]


def test_full_queue_keeps_a_sealed_batch_intact(tmp_path):
    queue = ReadingQueue(str(tmp_path), max_readings=4, batch_size=2)
    queue.put(counted(2))
    sealed = queue.next_batch()
    queue.put(counted(4, start=2))
    assert queue.next_batch() == sealed
    assert len(queue) == 4


def test_unacknowledged_batch_comes_back_with_the_same_key_after_a_restart(tmp_path):
    first = ReadingQueue(str(tmp_path), batch_size=2)
    first.put(counted(3))
    sent = first.next_batch()
    first.close()
    again = ReadingQueue(str(tmp_path), batch_size=2).next_batch()
    assert (again.key, values(again)) == (sent.key, [0, 1])


def test_acknowledged_batch_is_followed_by_a_new_key_and_the_next_readings(tmp_path):
    queue = ReadingQueue(str(tmp_path), batch_size=2)
    queue.put(counted(3))
    sent = queue.next_batch()
    queue.ack(sent)
    following = queue.next_batch()
    assert following.key != sent.key
    assert values(following) == [2]


def test_readings_put_after_sealing_do_not_change_the_sealed_batch(tmp_path):
    queue = ReadingQueue(str(tmp_path), batch_size=10)
    queue.put(counted(2))
    sent = queue.next_batch()
    queue.put(counted(2, start=2))
    assert values(queue.next_batch()) == values(sent) == [0, 1]


def test_empty_queue_has_no_batch(tmp_path):
    assert ReadingQueue(str(tmp_path)).next_batch() is None


@pytest.mark.parametrize(
    "bad",
    [
        {"metric": "Temp", "value": 1},
        {"metric": "", "value": 1},
        {"metric": "temperature", "value": math.nan},
        {"metric": "temperature", "value": math.inf},
        {"metric": "temperature", "value": "21"},
        {"metric": "temperature", "value": True},
        {"value": 1},
    ],
)
def test_invalid_reading_is_skipped_and_the_rest_kept(tmp_path, bad):
    queue = ReadingQueue(str(tmp_path))
    assert queue.put([bad, {"metric": "ok", "value": 1.5}]) == 1
    assert queue.next_batch().readings[0]["metric"] == "ok"


def test_reading_without_ts_is_stamped_in_utc_when_buffered(tmp_path):
    queue = ReadingQueue(str(tmp_path))
    queue.put([{"metric": "temperature", "value": 20}])
    assert queue.next_batch().readings[0]["ts"].endswith("Z")


@pytest.mark.parametrize("max_readings, batch_size", [(10, 0), (10, 1001), (5, 10)])
def test_impossible_bounds_are_refused(tmp_path, max_readings, batch_size):
    with pytest.raises(ValueError):
        ReadingQueue(str(tmp_path), max_readings=max_readings, batch_size=batch_size)
