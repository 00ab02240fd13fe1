"""The ``sharegroup`` command line. It sits above every other package and imports them at
the top (``sharegroup --help`` takes about 0.7 s here).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import trio

from model import ConfigError
from proxy.app import build_proxy, split_configs
from proxy.security import check_command_line, security_settings
from proxy.server import ProxyConfig
from proxy.upstream import UpstreamError, parse_host_port, parse_servers
from sharegroup import __version__
from sharegroup.brokers import start_tansu
from sharegroup.cli.conformance import add_conformance_command
from sharegroup.cli.dlq import add_dlq_command
from sharegroup.cli.fleet import add_fleet_command
from sharegroup.cli.offsets import add_offsets_command
from sharegroup.cli.properties import read_properties
from sharegroup.cli.scenario import add_scenario_commands
from sharegroup.cli.top import add_top_command
from sharegroup.logs import configure


def _parse_kv(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value.strip()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sharegroup",
        description="Kafka share groups (KIP-932) for any Kafka cluster, through a protocol proxy.",
    )
    parser.add_argument("--version", action="version", version=f"sharegroup {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    proxy = sub.add_parser(
        "proxy",
        help="run the proxy in front of a Kafka cluster",
        description=(
            "Run the share-group proxy. Clients (share consumers, producers, admin tools) "
            "bootstrap from the listen address; the upstream broker with the lowest node id is "
            "served on the listen port and each further broker on the next port. Without "
            "--bootstrap-server a local in-memory broker (Tansu) is started for you."
        ),
        epilog=SECURITY_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    proxy.add_argument(
        "--bootstrap-server",
        metavar="HOST:PORT[,...]",
        help="the upstream cluster (default: start a local in-memory broker)",
    )
    proxy.add_argument(
        "--listen",
        metavar="[PROTOCOL://]HOST:PORT",
        default="127.0.0.1:9192",
        help="address of the first proxy port, with a security protocol as in Kafka's listeners: "
        "PLAINTEXT (default), SSL, SASL_PLAINTEXT or SASL_SSL "
        "(default: %(default)s; port 0 picks free ports)",
    )
    proxy.add_argument(
        "--advertised-host",
        metavar="HOST",
        help="host name clients are told to connect to (default: the listen host)",
    )
    proxy.add_argument(
        "--instance-id",
        metavar="N",
        type=int,
        help="run as instance N of a fleet of proxies sharing the share groups' work "
        "(an integer unique in the fleet, as Kafka's node.id; sets sharegroup.fleet.enabled=true "
        "and sharegroup.fleet.instance.id=N). Start one per core, each with its own --listen "
        "port; clients may bootstrap from any of them (docs/persistence.md, A fleet of instances)",
    )
    proxy.add_argument(
        "--config",
        metavar="KEY=VALUE",
        type=_parse_kv,
        action="append",
        default=[],
        help="a broker config with Kafka's name, e.g. group.share.record.lock.duration.ms=15000 "
        "or socket.request.max.bytes=104857600 (repeatable)",
    )
    proxy.add_argument(
        "--config-file", metavar="FILE", type=Path, help="a .properties file of such configs"
    )
    proxy.add_argument(
        "--metrics-listen",
        metavar="HOST:PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics "
        "(the config sharegroup.metrics.listen; default: no endpoint)",
    )
    proxy.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    proxy.add_argument(
        "--log-format",
        default="text",
        choices=["text", "json"],
        help="one line per event as text or as a JSON object (default: %(default)s)",
    )
    proxy.set_defaults(func=_run_proxy)

    add_offsets_command(sub)

    add_top_command(sub)

    add_dlq_command(sub)

    add_fleet_command(sub)

    add_scenario_commands(sub)

    add_conformance_command(sub)
    return parser


SECURITY_HELP = """\
security configs (--config KEY=VALUE or --config-file; Kafka's names, see docs/security.md):
  TLS listener (--listen SSL://... or SASL_SSL://...):
    ssl.keystore.type=PEM|PKCS12     ssl.keystore.location=FILE (PEM key + chain, or PKCS12)
    ssl.keystore.certificate.chain.location=FILE  ssl.keystore.key.location=FILE
    ssl.key.password=SECRET (PEM)    ssl.keystore.password=SECRET (PKCS12)
    ssl.truststore.type=PEM|PKCS12   ssl.truststore.location=FILE  ssl.truststore.password=SECRET
    ssl.client.auth=none|requested|required       ssl.enabled.protocols=TLSv1.2,TLSv1.3
    ssl.cipher.suites=NAMES
  the upstream cluster, for the proxy's own connections and the clients' relayed ones:
    upstream.security.protocol=PLAINTEXT|SSL|SASL_PLAINTEXT|SASL_SSL
    upstream.ssl.truststore.location=FILE  upstream.ssl.keystore.location=FILE
    upstream.ssl.{keystore,truststore}.type=PEM|PKCS12, .password=SECRET, upstream.ssl.key.password
    upstream.ssl.endpoint.identification.algorithm=https|""  upstream.ssl.enabled.protocols=...
    upstream.sasl.mechanism=PLAIN|SCRAM-SHA-256|SCRAM-SHA-512|OAUTHBEARER
    upstream.sasl.username=NAME      upstream.sasl.password=SECRET
    upstream.sasl.oauthbearer.token.file=FILE   upstream.sasl.oauthbearer.token.command=CMD
  SECRET values are never accepted literally on the command line: put them in --config-file,
  or write ${env:NAME}, ${file:PATH} or ${file:PATH:KEY} (a key of a properties file).
"""


def parse_listen(text: str) -> tuple[str, str]:
    """'[PROTOCOL://]HOST:PORT' -> (protocol, 'HOST:PORT')."""
    protocol, sep, address = text.partition("://")
    if not sep:
        return "PLAINTEXT", text
    return protocol.upper(), address


def _run_proxy(args: argparse.Namespace) -> int:

    configure(args.log_level, args.log_format)
    configs: dict[str, str] = {}
    if args.config_file:
        if not args.config_file.is_file():
            print(
                f"sharegroup proxy: --config-file {args.config_file}: no such file", file=sys.stderr
            )
            return 2
        configs.update(read_properties(args.config_file))

    try:
        check_command_line(dict(args.config))
    except ConfigError as e:
        print(f"sharegroup proxy: --config: {e}", file=sys.stderr)
        return 2
    configs.update(dict(args.config))
    if args.metrics_listen:
        configs["sharegroup.metrics.listen"] = args.metrics_listen
    if args.instance_id is not None:
        configs["sharegroup.fleet.instance.id"] = str(args.instance_id)
        configs.setdefault("sharegroup.fleet.enabled", "true")
    listen_protocol, listen_address = parse_listen(args.listen)
    try:
        listen_host, listen_port = parse_host_port(listen_address, 9192)
    except ValueError as e:
        print(f"sharegroup proxy: --listen: {e}", file=sys.stderr)
        return 2

    try:
        split_configs(configs)
        security_settings(listen_protocol, configs)
    except ConfigError as e:
        print(f"sharegroup proxy: --config: {e}", file=sys.stderr)
        return 2

    embedded = None
    if args.bootstrap_server:
        try:
            bootstrap = parse_servers(args.bootstrap_server)
        except ValueError as e:
            print(f"sharegroup proxy: --bootstrap-server: {e}", file=sys.stderr)
            return 2
    else:
        embedded = start_tansu()
        bootstrap = [("127.0.0.1", embedded.port)]
        logging.getLogger("sharegroup").info(
            "no --bootstrap-server: started a local in-memory broker (Tansu) at %s",
            embedded.bootstrap,
        )
    config = ProxyConfig(
        bootstrap=bootstrap,
        listen_host=listen_host,
        listen_port=listen_port,
        listen_protocol=listen_protocol,
        advertised_host=args.advertised_host,
    )

    async def main() -> None:

        proxy, _service = build_proxy(config, configs)
        async with trio.open_nursery() as nursery:
            await nursery.start(proxy.run)
            host, port = proxy.bootstrap_address
            # SIGTERM (and SIGINT where it is not ignored) stop the proxy cleanly, also right
            # after the line below (so the receiver opens first). Nothing is lost either way:
            # every confirmed acknowledgement is already in the state topic.
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                print(f"sharegroup proxy listening; bootstrap.servers={host}:{port}", flush=True)
                async for signum in signals:
                    logging.getLogger("sharegroup").info(
                        "%s: stopping", signal.Signals(signum).name
                    )
                    nursery.cancel_scope.cancel()
                    break

    rc = 0
    try:
        trio.run(main)
    except* KeyboardInterrupt:
        rc = 0  # Ctrl-C: a normal way to stop
    except* UpstreamError as lost:
        for problem in lost.exceptions:
            print(f"sharegroup proxy: upstream: {problem}", file=sys.stderr)
        rc = 1
    except* OSError as failed:
        for error in failed.exceptions:
            print(f"sharegroup proxy: {error}", file=sys.stderr)
        rc = 1
    finally:
        if embedded is not None:
            embedded.stop()
    return rc


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
