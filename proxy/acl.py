"""Kafka ACLs evaluated as Kafka's StandardAuthorizer does, without I/O.

The proxy answers the share-group APIs itself, so it must authorize them itself, with the
upstream cluster's ACLs (read with DescribeAcls, see ``proxy.authz``). The rules, from
``org.apache.kafka.metadata.authorizer.StandardAuthorizerData`` and ``AclOperation``:

* a super user (``super.users``) may do anything;
* an ACL applies when its principal is the requester's or ``User:*``, its host is the
  requester's or ``*``, and its resource pattern matches: LITERAL equal names, the LITERAL
  wildcard ``*`` any name, PREFIXED names that start with the pattern's name;
* DENY wins: an applicable DENY for the operation (or for ALL) refuses, whatever allows it;
* an ALLOW for the operation or ALL allows; so does one for an operation that implies it:
  READ, WRITE, DELETE and ALTER imply DESCRIBE, ALTER_CONFIGS implies DESCRIBE_CONFIGS;
* nothing applicable: refused (``allow.everyone.if.no.acl.found`` false, Kafka's default), or
  allowed when that config is true.

Without an authorizer upstream (DescribeAcls answers SECURITY_DISABLED) everything is allowed,
as Kafka without an authorizer does: ``AclTable(None)``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum


class Op(IntEnum):
    ANY = 1
    ALL = 2
    READ = 3
    WRITE = 4
    CREATE = 5
    DELETE = 6
    ALTER = 7
    DESCRIBE = 8
    CLUSTER_ACTION = 9
    DESCRIBE_CONFIGS = 10
    ALTER_CONFIGS = 11
    IDEMPOTENT_WRITE = 12


class ResourceType(IntEnum):
    ANY = 1
    TOPIC = 2
    GROUP = 3
    CLUSTER = 4
    TRANSACTIONAL_ID = 5


class PatternType(IntEnum):
    ANY = 1
    MATCH = 2
    LITERAL = 3
    PREFIXED = 4


class Permission(IntEnum):
    ANY = 1
    DENY = 2
    ALLOW = 3


WILDCARD = "*"
WILDCARD_PRINCIPAL = "User:*"
CLUSTER_NAME = "kafka-cluster"

# An ALLOW of the key also allows each operation of the value (AclOperation's implications).
_IMPLIED = {
    Op.READ: {Op.DESCRIBE},
    Op.WRITE: {Op.DESCRIBE},
    Op.DELETE: {Op.DESCRIBE},
    Op.ALTER: {Op.DESCRIBE},
    Op.ALTER_CONFIGS: {Op.DESCRIBE_CONFIGS},
}


@dataclass(frozen=True, slots=True)
class Acl:
    resource_type: ResourceType
    name: str
    pattern: PatternType
    principal: str
    host: str
    operation: Op
    permission: Permission

    def matches_resource(self, resource_type: ResourceType, name: str) -> bool:
        if self.resource_type != resource_type:
            return False
        if self.pattern == PatternType.LITERAL:
            return self.name in (name, WILDCARD)
        if self.pattern == PatternType.PREFIXED:
            return name.startswith(self.name)
        return False

    def applies_to(self, principal: str, host: str) -> bool:
        return self.principal in (principal, WILDCARD_PRINCIPAL) and self.host in (host, WILDCARD)


class AclTable:
    """The ACLs of one cluster; ``acls`` None: no authorizer, everything allowed."""

    def __init__(
        self,
        acls: Iterable[Acl] | None,
        super_users: Iterable[str] = (),
        *,
        allow_if_no_acl: bool = False,
    ) -> None:
        self.enabled = acls is not None
        self.super_users = frozenset(super_users)
        self.allow_if_no_acl = allow_if_no_acl
        self._by_type: dict[ResourceType, list[Acl]] = {}
        for acl in acls or ():
            self._by_type.setdefault(acl.resource_type, []).append(acl)

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_type.values())

    def authorize(
        self, principal: str, host: str, op: Op, resource_type: ResourceType, name: str
    ) -> bool:
        if not self.enabled or principal in self.super_users:
            return True
        allowed = False
        found = False
        for acl in self._by_type.get(resource_type, ()):
            if not acl.matches_resource(resource_type, name):
                continue
            found = True
            if not acl.applies_to(principal, host):
                continue
            if acl.permission == Permission.DENY:
                if acl.operation in (op, Op.ALL):
                    return False
            elif acl.permission == Permission.ALLOW and (
                acl.operation in (op, Op.ALL) or op in _IMPLIED.get(acl.operation, ())
            ):
                allowed = True
        if allowed:
            return True
        return not found and self.allow_if_no_acl
