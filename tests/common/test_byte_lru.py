import pytest

from services.common.byte_lru import ByteLRU


def test_evicts_least_recently_used_to_stay_within_bytes() -> None:
    lru = ByteLRU(max_bytes=10)
    lru.put("a", b"1234")
    lru.put("b", b"1234")
    assert lru.get("a") == b"1234"  # "b" is now the least recently used
    lru.put("c", b"1234")
    assert lru.get("b") is None
    assert lru.get("a") == b"1234"
    assert lru.get("c") == b"1234"
    assert lru.size_bytes == 8
    assert len(lru) == 2


def test_replacing_a_key_counts_only_the_new_value() -> None:
    lru = ByteLRU(max_bytes=10)
    lru.put("a", b"123456")
    lru.put("a", b"12")
    assert lru.size_bytes == 2
    assert lru.get("a") == b"12"


def test_a_value_larger_than_the_bound_is_not_stored() -> None:
    lru = ByteLRU(max_bytes=10)
    lru.put("a", b"12")
    lru.put("huge", b"x" * 11)
    assert lru.get("huge") is None
    assert lru.get("a") == b"12"


def test_a_value_too_large_to_store_still_replaces_the_old_one() -> None:
    lru = ByteLRU(max_bytes=10)
    lru.put("a", b"old")
    lru.put("a", b"x" * 11)
    assert lru.get("a") is None
    assert lru.size_bytes == 0


def test_zero_bytes_disables_the_cache() -> None:
    lru = ByteLRU(max_bytes=0)
    lru.put("a", b"1")
    lru.put("empty", b"")
    assert lru.get("a") is None
    assert lru.get("empty") is None
    assert len(lru) == 0


def test_negative_bound_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        ByteLRU(max_bytes=-1)
