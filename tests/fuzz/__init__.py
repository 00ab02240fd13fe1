"""Coverage-guided fuzzing (atheris, on libFuzzer) of everything that reads a client's bytes.

Targets (``tests/fuzz/targets.py``), each fed a byte stream as a client would send it:

* ``frames`` — ``proxy.framing.FrameBuffer`` fed the stream in random chunks;
* ``requests`` — every frame through the decoding the connection does: the fixed request
  header (``wire.peek_head``), the whole request with its class (``wire.decode_request``, for
  every API key the proxy has a class for, at the version the frame names), the Produce ``acks``
  field (``wire.produce_expects_response``) and the client id (``wire.client_id_of``);
* ``connection`` — the proxy's real per-connection path, ``proxy.connection.ClientConnection``,
  over a socket pair: framing, routing, version checks, decoding, the share APIs answered by a
  real ``ShareService`` (76-79, 90-92), the admin handlers (DescribeConfigs,
  IncrementalAlterConfigs, ListGroups, DescribeGroups), ApiVersions, and the inspection of
  relayed requests (client id, Produce acks, DeleteRecords). The upstream cluster is a
  stand-in built from a real Kafka 3.9's metadata and API versions: nothing leaves the process.

The property: bytes either decode, or fail with the decoder's documented error
(``FrameError``) that the connection turns into a closed connection or a Kafka error code.
Anything else escaping, an error logged by the proxy, a hang (libFuzzer's ``-timeout``) or a
memory blow-up (``-rss_limit_mb``) is a crash.

Seeds (``tests/fuzz/seeds/``) are real client traffic, recorded by ``python -m
tests.fuzz.capture`` from librdkafka's producer, consumer, admin client and ShareConsumer and the
``sharegroup offsets`` commands through a proxy on Kafka 3.9.

Run: ``python -m tests.fuzz --seconds 60`` (every target; ``--target``, ``--runs``, ``--jobs``);
see docs/fuzzing.md.
"""
