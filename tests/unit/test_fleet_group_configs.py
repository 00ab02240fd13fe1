"""Group config changes in a fleet: when an instance not coordinating the group passes the
change on (``FleetService.forward_group_configs``), and the errors it answers when it cannot."""

from __future__ import annotations

import functools
import socket
from types import SimpleNamespace
from typing import Any

import trio

from model import ErrorCode
from proxy import wire
from proxy.admin import FORWARD_RETRY_S, FORWARDED_CLIENT_ID, GROUP_RESOURCE, AdminHandlers
from proxy.fleet import FleetIdentity, FleetView
from proxy.fleet_service import FleetService
from sharegroup.persist.partitioning import state_partition_for_group

PARTITIONS = 8
GROUP = "g"
ITS_PARTITION = state_partition_for_group(GROUP, PARTITIONS)


def resource() -> Any:
    cls = wire.request_class(wire.INCREMENTAL_ALTER_CONFIGS)
    return cls.AlterConfigsResource(
        resource_type=GROUP_RESOURCE,
        resource_name=GROUP,
        configs=[
            cls.AlterConfigsResource.AlterableConfig(
                name="share.auto.offset.reset", config_operation=0, value="earliest"
            )
        ],
    )


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fleet(
    others: dict[int, tuple[int, set[int]]], protocol: str = "PLAINTEXT"
) -> tuple[Any, FleetView]:
    """A stand-in for instance 0's FleetService: ``others`` is instance id -> (listener
    port, state partitions)."""
    me = FleetIdentity(0, "127.0.0.1", {1: closed_port()})
    view = FleetView(lambda: me, set)
    view.apply(
        (FleetIdentity(i, "127.0.0.1", {1: port}).client_id(), parts)
        for i, (port, parts) in others.items()
    )
    fake: Any = SimpleNamespace(
        store=SimpleNamespace(partitions=PARTITIONS),
        view=view,
        instance_id=0,
        proxy=SimpleNamespace(
            config=SimpleNamespace(listen_protocol=protocol, max_frame_bytes=1 << 20)
        ),
        _forward_conns={},
        _forward_lock=trio.Lock(),
        _nursery=None,
        _refresh_now=trio.Event(),
    )
    fake._forward_connection = functools.partial(FleetService._forward_connection, fake)
    fake._listener_of = functools.partial(FleetService._listener_of, fake)
    return fake, view


async def forward(fake: Any) -> tuple[int, str | None]:
    result: tuple[int, str | None] = await FleetService.forward_group_configs(
        fake, resource(), False, 1
    )
    return result


async def test_a_coordinator_not_known_yet_is_a_retriable_error() -> None:
    fake, _ = fleet({})
    code, message = await forward(fake)
    assert code == ErrorCode.COORDINATOR_NOT_AVAILABLE
    assert message is not None and f"state partition {ITS_PARTITION}" in message
    assert fake._refresh_now.is_set()  # the fleet is described again at once


async def test_an_unreachable_coordinator_is_a_retriable_error() -> None:
    port = closed_port()
    fake, _ = fleet({1: (port, {ITS_PARTITION})})
    async with trio.open_nursery() as nursery:
        fake._nursery = nursery
        code, message = await forward(fake)
    assert code == ErrorCode.COORDINATOR_NOT_AVAILABLE
    assert message is not None and f"instance 1 at 127.0.0.1:{port}" in message


async def test_secured_listeners_answer_where_the_coordinator_is() -> None:
    fake, _ = fleet({3: (9999, {ITS_PARTITION})}, protocol="SASL_SSL")
    code, message = await forward(fake)
    assert code == ErrorCode.INVALID_REQUEST
    assert message is not None and "instance 3 at 127.0.0.1:9999" in message


async def test_a_change_passed_on_already_is_not_passed_on_again() -> None:
    passed_on: list[str] = []

    async def forward_configs(res: Any, validate_only: bool, version: int) -> tuple[int, None]:
        passed_on.append(res.resource_name)
        return 0, None

    admin = SimpleNamespace(
        shares=SimpleNamespace(
            coordinates=lambda group_id: False, forward_group_configs=forward_configs
        )
    )
    head = wire.RequestHead(wire.INCREMENTAL_ALTER_CONFIGS, 1, 7)
    from_client = SimpleNamespace(client_id="rdkafka")
    from_instance = SimpleNamespace(client_id=f"{FORWARDED_CLIENT_ID}/1")
    code, _ = await AdminHandlers._alter_group(
        admin,  # type: ignore[arg-type]
        from_client,  # type: ignore[arg-type]
        resource(),
        False,
        head,
    )
    assert (code, passed_on) == (0, [GROUP])
    code, message = await AdminHandlers._alter_group(
        admin,  # type: ignore[arg-type]
        from_instance,  # type: ignore[arg-type]
        resource(),
        False,
        head,
    )
    assert code == ErrorCode.COORDINATOR_NOT_AVAILABLE and passed_on == [GROUP], message


async def test_a_coordinator_not_known_is_waited_for_a_few_seconds(autojump_clock: Any) -> None:
    answers = [ErrorCode.COORDINATOR_NOT_AVAILABLE] * 3 + [ErrorCode.NONE]
    asked: list[float] = []

    async def forward_configs(res: Any, validate_only: bool, version: int) -> tuple[int, None]:
        asked.append(trio.current_time())
        return int(answers[min(len(asked), len(answers)) - 1]), None

    admin: Any = SimpleNamespace(
        shares=SimpleNamespace(
            coordinates=lambda group_id: False, forward_group_configs=forward_configs
        )
    )
    head = wire.RequestHead(wire.INCREMENTAL_ALTER_CONFIGS, 1, 7)
    client: Any = SimpleNamespace(client_id="rdkafka")
    code, _ = await AdminHandlers._alter_group(admin, client, resource(), False, head)
    assert (code, len(asked)) == (ErrorCode.NONE, 4)
    # Never known: the retriable error, once the wait is over.
    answers[:] = [ErrorCode.COORDINATOR_NOT_AVAILABLE]
    asked.clear()
    code, _ = await AdminHandlers._alter_group(admin, client, resource(), False, head)
    assert code == ErrorCode.COORDINATOR_NOT_AVAILABLE
    assert asked[-1] - asked[0] >= FORWARD_RETRY_S - 0.5, asked
