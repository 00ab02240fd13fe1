"""sharegroup top's rates and screen, from frames built by hand."""

from __future__ import annotations

from sharegroup.cli.top import Frame, GroupView, MemberRow, PartitionRow, _rates, render


def frame(at: float, end: int, lag: int, by_state: dict[str, int] | None = None) -> Frame:
    member = MemberRow("abcdefgh12345", "client-1", "/127.0.0.1", [("t", 0)])
    row = PartitionRow("t", 0, end - lag, lag, end, ["abcdefgh"], by_state or {})
    return Frame(at, [GroupView("g", "Stable", 3, [member], [row])])


def test_rates_are_records_in_and_records_done_per_second() -> None:
    before, after = frame(10.0, end=100, lag=20), frame(12.0, end=140, lag=30)
    _rates(before, after)
    [row] = after.groups[0].partitions
    # 40 produced in 2 s; lag grew by 10, so 30 were delivered to completion.
    assert (row.in_rate, row.done_rate) == (20.0, 15.0)


def test_screen_shows_group_member_partition_and_states() -> None:
    lines = render(frame(1.0, 100, 20, {"available": 5, "acquired": 15}), "proxy:9192")
    assert "groups: 1  members: 1  lag: 20" in lines[0]
    assert "GROUP g  state Stable  epoch 3  members 1  lag 20" in lines
    assert "  member abcdefgh  client-1  /127.0.0.1  t:0" in lines
    [row] = [ln.split() for ln in lines if ln.startswith("  t ")]
    assert row == ["t", "0", "80", "100", "20", "-", "-", "5", "15", "0", "0", "abcdefgh"]


def test_lines_are_cut_to_the_terminal_width() -> None:
    assert max(len(ln) for ln in render(frame(1.0, 100, 20), "proxy:9192", width=40)) <= 40
