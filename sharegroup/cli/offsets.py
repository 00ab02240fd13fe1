"""``sharegroup offsets``: describe, reset, delete and copy share-group start offsets.

Everything goes over the Kafka protocol to the proxy (or to any cluster with share groups):
DescribeShareGroupOffsets, AlterShareGroupOffsets and DeleteShareGroupOffsets with our message
classes, plus a Fetch for log start / end offsets and the consumer group offsets of a classic
group (through the relay) for ``copy``.
"""

from __future__ import annotations

import argparse
import socket
import ssl
import sys
from typing import Any

from model import ConfigError, ErrorCode
from proxy import messages, wire
from proxy.framing import FrameBuffer
from proxy.sasl import SaslError, SaslSettings
from proxy.security import UPSTREAM_PREFIX, UpstreamSecurity, upstream_security
from proxy.upstream import parse_servers
from sharegroup.cli.properties import read_properties

NON_EMPTY_GROUP = 68
GROUP_ID_NOT_FOUND = 69


class OffsetsError(Exception):
    """A problem to report to the user and exit 1."""


def client_security(path: str | None) -> UpstreamSecurity:
    """TLS and SASL from a ``--command-config`` file: Kafka's client names
    (``security.protocol``, ``ssl.truststore.location``, ``sasl.mechanism``, ``sasl.username``,
    ``sasl.password``, ...), read as the proxy reads its ``upstream.*`` configs."""
    if path is None:
        return UpstreamSecurity()
    from pathlib import Path

    file = Path(path)
    if not file.is_file():
        raise OffsetsError(f"--command-config {path}: no such file")
    try:
        return upstream_security({UPSTREAM_PREFIX + k: v for k, v in read_properties(file).items()})
    except ConfigError as e:
        raise OffsetsError(f"--command-config {path}: {str(e).replace(UPSTREAM_PREFIX, '')}") from e


class WireClient:
    """A blocking, one-request-at-a-time Kafka protocol client (TLS and SASL as ``security``
    says)."""

    def __init__(
        self, bootstrap: str, timeout_s: float = 30.0, security: UpstreamSecurity | None = None
    ) -> None:
        host, port = parse_servers(bootstrap)[0]
        security = security or UpstreamSecurity()
        try:
            sock = socket.create_connection((host, port), timeout=timeout_s)
        except OSError as e:
            raise OffsetsError(f"cannot connect to {host}:{port}: {e}") from e
        if security.ssl_context is not None:
            try:
                sock = security.ssl_context.wrap_socket(sock, server_hostname=host)
            except (OSError, ssl.SSLError) as e:
                sock.close()
                raise OffsetsError(f"TLS handshake with {host}:{port} failed: {e}") from e
        self.sock: socket.socket = sock
        self.buf = FrameBuffer()
        self.cid = 0
        if security.sasl is not None:
            try:
                self._login(security.sasl)
            except BaseException:
                self.sock.close()
                raise

    def _login(self, sasl: SaslSettings) -> None:
        handshake = wire.request_class(17)(mechanism=sasl.mechanism)
        if self.request(handshake, 1).error_code:
            raise OffsetsError(f"SASL mechanism {sasl.mechanism} is not enabled there")
        try:
            auth = sasl.authenticator()
            message: bytes | None = auth.first()
            while message is not None:
                resp = self.request(wire.request_class(36)(auth_bytes=message), 1)
                if resp.error_code:
                    raise OffsetsError(f"SASL authentication failed: {resp.error_message}")
                message = auth.step(bytes(resp.auth_bytes or b""))
        except SaslError as e:
            raise OffsetsError(f"SASL authentication failed: {e}") from e

    def request(self, msg: Any, version: int) -> Any:
        self.cid += 1
        msg.API_VERSION = version
        self.sock.sendall(wire.encode_request(msg, self.cid, "sharegroup-offsets"))
        while (payload := self.buf.next_frame()) is None:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise OffsetsError("the server closed the connection (does it support this API?)")
            self.buf.feed(chunk)
        return wire.decode_response(payload, msg.API_KEY, version)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> WireClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def describe_offsets(
    bootstrap: str, group: str, topics: list[str] | None = None
) -> list[tuple[str, int, int, int]]:
    """(topic, partition, start offset, lag) rows of a share group."""
    with coordinator_client(bootstrap, group) as client:
        return describe(client, group, topics)


def coordinator_client(
    bootstrap: str,
    group: str,
    security: UpstreamSecurity | None = None,
    timeout_s: float = 30.0,
) -> WireClient:
    """A client connected to the group's coordinator, found with FindCoordinator as Kafka's
    admin client does (in a fleet of proxies, the instance that coordinates the group);
    the bootstrap server itself when it cannot say."""
    client = WireClient(bootstrap, timeout_s, security)
    try:
        req = wire.request_class(wire.FIND_COORDINATOR)(key_type=0, coordinator_keys=[group])
        resp = client.request(req, 4)
        (c,) = resp.coordinators
    except (OffsetsError, OSError, ValueError):
        return client
    if c.error_code or c.node_id < 0 or (c.host, c.port) == parse_servers(bootstrap)[0]:
        return client
    client.close()
    return WireClient(f"{c.host}:{c.port}", timeout_s, security)


def _error_name(code: int) -> str:

    try:
        return ErrorCode(code).name
    except ValueError:
        return f"error {code}"


def describe(
    client: WireClient, group: str, topics: list[str] | None
) -> list[tuple[str, int, int, int]]:
    req_cls = messages.DescribeShareGroupOffsetsRequest
    group_cls = req_cls.DescribeShareGroupOffsetsRequestGroup
    topic_req = None
    if topics:
        md = metadata(client, topics)
        topic_req = [
            group_cls.DescribeShareGroupOffsetsRequestTopic(
                topic_name=t, partitions=list(range(md[t]))
            )
            for t in topics
        ]
    resp = client.request(
        req_cls(version=1, groups=[group_cls(group_id=group, topics=topic_req)]), 1
    )
    g = resp.groups[0]
    if g.error_code:
        raise OffsetsError(
            f"group {group}: {_error_name(g.error_code)}: {g.error_message or ''}".rstrip(": ")
        )
    rows = []
    for t in g.topics:
        for p in t.partitions:
            if p.error_code:
                raise OffsetsError(
                    f"{t.topic_name}-{p.partition_index}: {_error_name(p.error_code)}"
                )
            rows.append((t.topic_name, p.partition_index, p.start_offset, p.lag))
    return sorted(rows)


def metadata(client: WireClient, topics: list[str]) -> dict[str, int]:
    resp = client.request(wire.metadata_request(9, topics), 9)
    out = {}
    for t in resp.topics:
        if t.error_code:
            raise OffsetsError(f"topic {t.name}: {_error_name(t.error_code)}")
        out[t.name] = len(t.partitions)
    return out


def log_bounds(client: WireClient, topic: str, partition: int) -> tuple[int, int]:
    """(log start, high watermark) from a Fetch: right on every broker."""
    req = wire.fetch_request(11, [(topic, partition, 0, 1)], max_wait_ms=1, min_bytes=0)
    p = client.request(req, 11).responses[0].partitions[0]
    if p.error_code not in (0, 1):
        raise OffsetsError(f"{topic}-{partition}: {_error_name(p.error_code)}")
    return max(int(p.log_start_offset), 0), int(p.high_watermark)


def alter(client: WireClient, group: str, offsets: dict[tuple[str, int], int]) -> None:
    req_cls = messages.AlterShareGroupOffsetsRequest
    topic_cls = req_cls.AlterShareGroupOffsetsRequestTopic
    by_topic: dict[str, list[Any]] = {}
    for (topic, partition), offset in sorted(offsets.items()):
        by_topic.setdefault(topic, []).append(
            topic_cls.AlterShareGroupOffsetsRequestPartition(
                partition_index=partition, start_offset=offset
            )
        )
    resp = client.request(
        req_cls(
            version=0,
            group_id=group,
            topics=[topic_cls(topic_name=t, partitions=ps) for t, ps in by_topic.items()],
        ),
        0,
    )
    if resp.error_code == NON_EMPTY_GROUP:
        raise OffsetsError(f"share group {group} has active members; stop its consumers first")
    if resp.error_code:
        raise OffsetsError(
            f"altering offsets of {group}: {_error_name(resp.error_code)}: {resp.error_message or ''}"
        )
    for t in resp.responses:
        for p in t.partitions:
            if p.error_code:
                raise OffsetsError(
                    f"{t.topic_name}-{p.partition_index}: {_error_name(p.error_code)}: {p.error_message or ''}"
                )


def delete(client: WireClient, group: str, topics: list[str]) -> None:
    req_cls = messages.DeleteShareGroupOffsetsRequest
    resp = client.request(
        req_cls(
            version=0,
            group_id=group,
            topics=[req_cls.DeleteShareGroupOffsetsRequestTopic(topic_name=t) for t in topics],
        ),
        0,
    )
    if resp.error_code:
        raise OffsetsError(
            f"deleting offsets of {group}: {_error_name(resp.error_code)}: {resp.error_message or ''}"
        )
    for t in resp.responses:
        if t.error_code:
            raise OffsetsError(f"{t.topic_name}: {_error_name(t.error_code)}")


def consumer_group_offsets(
    bootstrap: str, group: str, security: UpstreamSecurity | None = None
) -> dict[tuple[str, int], int]:
    from confluent_kafka import ConsumerGroupTopicPartitions
    from confluent_kafka.admin import AdminClient

    settings = security.librdkafka if security is not None else {}
    admin = AdminClient({"bootstrap.servers": bootstrap, **settings})
    futures = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])
    result = futures[group].result(30)
    return {
        (tp.topic, tp.partition): tp.offset
        for tp in result.topic_partitions
        if tp.offset >= 0 and tp.error is None
    }


def _print_rows(
    rows: list[tuple[str, int, int, int]],
    header: tuple[str, ...] = ("TOPIC", "PARTITION", "START-OFFSET", "LAG"),
) -> None:
    table = [header, *[tuple(str(x) for x in r) for r in rows]]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))


def run(args: argparse.Namespace) -> int:
    try:
        args.security = client_security(args.command_config)
        group = getattr(args, "group", None) or getattr(args, "to_share_group", "")
        client = coordinator_client(args.bootstrap_server, str(group), args.security)
    except OffsetsError as e:
        print(f"sharegroup offsets: {e}", file=sys.stderr)
        return 1
    try:
        return _run(args, client)
    except OffsetsError as e:
        print(f"sharegroup offsets: {e}", file=sys.stderr)
        return 1
    finally:
        client.close()


def _run(args: argparse.Namespace, client: WireClient) -> int:
    if args.action == "describe":
        rows = describe(client, args.group, args.topic)
        if not rows:
            print(f"share group {args.group} has no start offsets yet")
        _print_rows(rows)
        return 0
    if args.action == "delete":
        if not args.topic:
            raise OffsetsError("--topic is required")
        delete(client, args.group, args.topic)
        print(f"deleted the offsets of share group {args.group} for {', '.join(args.topic)}")
        return 0
    if args.action == "reset":
        if not args.topic:
            raise OffsetsError("--topic is required")
        counts = metadata(client, args.topic)
        plan: dict[tuple[str, int], int] = {}
        for topic in args.topic:
            partitions = (
                [args.partition] if args.partition is not None else list(range(counts[topic]))
            )
            for p in partitions:
                if p >= counts[topic]:
                    raise OffsetsError(f"{topic} has no partition {p}")
                start, end = log_bounds(client, topic, p)
                if args.to_offset is not None:
                    if not start <= args.to_offset <= end:
                        raise OffsetsError(
                            f"{topic}-{p}: offset {args.to_offset} outside the log ({start}..{end})"
                        )
                    plan[(topic, p)] = args.to_offset
                else:
                    plan[(topic, p)] = start if args.to_earliest else end
        _print_rows(
            [(t, p, o, -1) for (t, p), o in sorted(plan.items())],
            ("TOPIC", "PARTITION", "NEW-START-OFFSET", ""),
        )
        if not args.execute:
            print("(dry run: add --execute to apply)")
            return 0
        alter(client, args.group, plan)
        print(f"share group {args.group}: {len(plan)} start offsets reset")
        return 0
    # copy
    source = consumer_group_offsets(args.bootstrap_server, args.from_consumer_group, args.security)
    if not source:
        raise OffsetsError(f"consumer group {args.from_consumer_group} has no committed offsets")
    topics = args.topic or sorted({t for t, _ in source})
    missing = [t for t in topics if not any(st == t for st, _ in source)]
    if missing:
        raise OffsetsError(
            f"consumer group {args.from_consumer_group} has no committed offsets for {', '.join(missing)}"
        )
    plan = {tp: o for tp, o in source.items() if tp[0] in topics}
    alter(client, args.to_share_group, plan)  # one request: all partitions or none
    after = {(t, p): o for t, p, o, _ in describe(client, args.to_share_group, topics)}
    wrong = {tp: (o, after.get(tp)) for tp, o in plan.items() if after.get(tp) != o}
    if wrong:
        raise OffsetsError(f"verification failed: {wrong}")
    print(
        f"copied {len(plan)} partition offsets of {len(topics)} topic(s) from consumer group "
        f"{args.from_consumer_group} to share group {args.to_share_group}:"
    )
    _print_rows(
        [(t, p, o, -1) for (t, p), o in sorted(plan.items())],
        ("TOPIC", "PARTITION", "START-OFFSET", ""),
    )
    return 0


def add_offsets_command(sub: Any) -> None:
    offsets = sub.add_parser(
        "offsets",
        help="describe, reset, delete or copy share-group start offsets",
        description="Share-group start offsets, over the Kafka protocol (point it at the proxy).",
    )
    actions = offsets.add_subparsers(dest="action", metavar="ACTION", required=True)

    def common(p: argparse.ArgumentParser, group_flag: str = "--group") -> None:
        p.add_argument(
            "--bootstrap-server",
            required=True,
            metavar="HOST:PORT",
            help="the proxy (or a Kafka 4.x cluster)",
        )
        p.add_argument(
            "--command-config",
            metavar="FILE",
            help="a .properties file of client configs with Kafka's names: security.protocol, "
            "ssl.truststore.location, sasl.mechanism, sasl.username, sasl.password, ...",
        )

    d = actions.add_parser("describe", help="start offset and lag per partition")
    common(d)
    d.add_argument("--group", required=True)
    d.add_argument("--topic", action="append", help="limit to these topics (repeatable)")
    r = actions.add_parser("reset", help="set start offsets (the group must have no members)")
    common(r)
    r.add_argument("--group", required=True)
    r.add_argument("--topic", action="append", required=True)
    r.add_argument("--partition", type=int)
    target = r.add_mutually_exclusive_group(required=True)
    target.add_argument("--to-offset", type=int)
    target.add_argument("--to-earliest", action="store_true")
    target.add_argument("--to-latest", action="store_true")
    r.add_argument("--execute", action="store_true", help="apply (default: show the plan only)")
    x = actions.add_parser(
        "delete", help="forget the group's state for topics (no members allowed)"
    )
    common(x)
    x.add_argument("--group", required=True)
    x.add_argument("--topic", action="append", required=True)
    c = actions.add_parser(
        "copy", help="seed a share group from a consumer group's committed offsets"
    )
    common(c)
    c.add_argument("--from-consumer-group", required=True)
    c.add_argument("--to-share-group", required=True)
    c.add_argument(
        "--topic", action="append", help="only these topics (default: all the consumer group has)"
    )
    offsets.set_defaults(func=run)
