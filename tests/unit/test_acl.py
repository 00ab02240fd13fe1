"""The ACL evaluator, one rule of Kafka's StandardAuthorizer per test."""

from __future__ import annotations

from proxy.acl import Acl, AclTable, Op, PatternType, Permission, ResourceType

T, G = ResourceType.TOPIC, ResourceType.GROUP


def acl(
    name: str,
    op: Op,
    permission: Permission = Permission.ALLOW,
    *,
    principal: str = "User:alice",
    host: str = "*",
    pattern: PatternType = PatternType.LITERAL,
    kind: ResourceType = T,
) -> Acl:
    return Acl(kind, name, pattern, principal, host, op, permission)


def can(
    table: AclTable,
    op: Op,
    name: str,
    *,
    kind: ResourceType = T,
    who: str = "User:alice",
    host: str = "10.0.0.1",
) -> bool:
    return table.authorize(who, host, op, kind, name)


def test_no_authorizer_allows_everything() -> None:
    assert can(AclTable(None), Op.READ, "orders")


def test_no_matching_acl_denies() -> None:
    assert not can(AclTable([]), Op.READ, "orders")
    assert not can(AclTable([acl("other", Op.READ)]), Op.READ, "orders")


def test_allow_if_no_acl_found_only_when_no_acl_names_the_resource() -> None:
    assert can(AclTable([], allow_if_no_acl=True), Op.READ, "orders")
    bob_only = AclTable([acl("orders", Op.READ, principal="User:bob")], allow_if_no_acl=True)
    assert not can(bob_only, Op.READ, "orders")


def test_literal_match_and_wildcard_name() -> None:
    table = AclTable([acl("orders", Op.READ), acl("*", Op.WRITE)])
    assert can(table, Op.READ, "orders")
    assert not can(table, Op.READ, "orders2")
    assert can(table, Op.WRITE, "anything")


def test_prefixed_pattern() -> None:
    table = AclTable([acl("ord", Op.READ, pattern=PatternType.PREFIXED)])
    assert can(table, Op.READ, "orders")
    assert not can(table, Op.READ, "xorders")


def test_deny_wins_over_allow() -> None:
    table = AclTable([acl("*", Op.ALL), acl("orders", Op.READ, Permission.DENY)])
    assert not can(table, Op.READ, "orders")
    assert can(table, Op.WRITE, "orders")
    assert can(table, Op.READ, "payments")


def test_deny_all_denies_every_operation() -> None:
    table = AclTable([acl("orders", Op.READ), acl("orders", Op.ALL, Permission.DENY)])
    assert not can(table, Op.READ, "orders")
    assert not can(table, Op.DESCRIBE, "orders")


def test_implied_operations() -> None:
    for op in (Op.READ, Op.WRITE, Op.DELETE, Op.ALTER):
        assert can(AclTable([acl("orders", op)]), Op.DESCRIBE, "orders"), op
    assert can(AclTable([acl("g", Op.ALTER_CONFIGS, kind=G)]), Op.DESCRIBE_CONFIGS, "g", kind=G)
    assert not can(AclTable([acl("orders", Op.DESCRIBE)]), Op.READ, "orders")
    assert not can(AclTable([acl("orders", Op.WRITE)]), Op.READ, "orders")


def test_deny_of_describe_is_not_implied_by_deny_of_read() -> None:
    # Implication widens ALLOWs only: a DENY of READ leaves a DESCRIBE allowed.
    table = AclTable([acl("orders", Op.DESCRIBE), acl("orders", Op.READ, Permission.DENY)])
    assert can(table, Op.DESCRIBE, "orders")


def test_host_must_match() -> None:
    table = AclTable([acl("orders", Op.READ, host="10.0.0.2")])
    assert not can(table, Op.READ, "orders", host="10.0.0.1")
    assert can(table, Op.READ, "orders", host="10.0.0.2")


def test_wildcard_principal() -> None:
    table = AclTable([acl("orders", Op.READ, principal="User:*")])
    assert can(table, Op.READ, "orders", who="User:anyone")


def test_resource_types_are_kept_apart() -> None:
    table = AclTable([acl("orders", Op.READ, kind=G)])
    assert not can(table, Op.READ, "orders", kind=T)
    assert can(table, Op.READ, "orders", kind=G)


def test_super_users_may_do_anything() -> None:
    table = AclTable([acl("orders", Op.ALL, Permission.DENY, principal="User:*")], ["User:root"])
    assert can(table, Op.READ, "orders", who="User:root")
    assert not can(table, Op.READ, "orders")
