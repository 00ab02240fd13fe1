/*
 * A command-line share consumer for the integration tests: Java's KafkaShareConsumer, unmodified.
 *
 * Compiled and run by tests/java_probe.py (javac against the kafka-clients jar of the cached
 * Kafka 4.x libs; no build tool). Usage:
 *
 *   ShareConsumerProbe BOOTSTRAP GROUP TOPIC EXPECTED MODE ACTION TIMEOUT_S [KEY=VALUE ...]
 *
 *   MODE     implicit | explicit (share.acknowledgement.mode)
 *   ACTION   explicit mode only (ignored in implicit mode):
 *              accept         accept every delivery
 *              release-first  release a record on its first delivery, accept it on redelivery
 *              reject         reject every delivery
 *   EXPECTED how many distinct records must be settled (accepted or rejected) before the probe
 *            stops; a released record is not settled.
 *   KEY=VALUE extra consumer configs, or probe options:
 *              probe.linger.ms=N       keep polling (and printing) N ms after EXPECTED was reached
 *              probe.poll.ms=N         poll timeout (default 500)
 *
 * Stdout carries JSON lines only (client logs go to stderr, see log4j2-probe.properties):
 *   {"event":"subscribed"}   once, after the first ShareFetch response came back (the member has
 *                            an assignment and its share partitions are initialized)
 *   {"topic":..,"partition":..,"offset":..,"deliveryCount":..,"value":..,"ack":..}  per delivery
 *   {"event":"summary",...}  last line
 * Exit status: 0 = EXPECTED settled before the timeout, 1 = timed out, 2 = an exception.
 */

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;
import java.util.Set;

import org.apache.kafka.clients.consumer.AcknowledgeType;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaShareConsumer;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.Metric;
import org.apache.kafka.common.MetricName;
import org.apache.kafka.common.TopicIdPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

public final class ShareConsumerProbe {

    private ShareConsumerProbe() {
    }

    public static void main(String[] args) {
        if (args.length < 7) {
            System.err.println("usage: ShareConsumerProbe BOOTSTRAP GROUP TOPIC EXPECTED"
                + " implicit|explicit accept|release-first|reject TIMEOUT_S [KEY=VALUE ...]");
            System.exit(64);
        }
        String bootstrap = args[0];
        String group = args[1];
        String topic = args[2];
        int expected = Integer.parseInt(args[3]);
        String mode = args[4];
        String action = args[5];
        long timeoutMs = Math.round(Double.parseDouble(args[6]) * 1000);
        if (!mode.equals("implicit") && !mode.equals("explicit")) {
            die("unknown mode " + mode);
        }
        if (!action.equals("accept") && !action.equals("release-first") && !action.equals("reject")) {
            die("unknown action " + action);
        }
        boolean explicit = mode.equals("explicit");

        Properties props = new Properties();
        props.put("bootstrap.servers", bootstrap);
        props.put("group.id", group);
        props.put("share.acknowledgement.mode", mode);
        props.put("client.id", "probe-" + group);
        long lingerMs = 0;
        long pollMs = 500;
        for (int i = 7; i < args.length; i++) {
            int eq = args[i].indexOf('=');
            if (eq <= 0) {
                die("expected KEY=VALUE, got " + args[i]);
            }
            String key = args[i].substring(0, eq);
            String value = args[i].substring(eq + 1);
            if (key.equals("probe.linger.ms")) {
                lingerMs = Long.parseLong(value);
            } else if (key.equals("probe.poll.ms")) {
                pollMs = Long.parseLong(value);
            } else {
                props.put(key, value);
            }
        }

        long started = System.nanoTime();
        long deadline = started + timeoutMs * 1_000_000L;
        int delivered = 0;
        Set<String> released = new HashSet<>();
        Set<String> settled = new HashSet<>();
        List<String> commitErrors = new ArrayList<>();
        String error = null;
        boolean subscribed = false;
        long reachedAt = -1;
        int status;

        KafkaShareConsumer<byte[], byte[]> consumer = null;
        try {
            consumer = new KafkaShareConsumer<>(
                props, new ByteArrayDeserializer(), new ByteArrayDeserializer());
            consumer.subscribe(List.of(topic));
            while (true) {
                long now = System.nanoTime();
                if (reachedAt < 0 && now >= deadline) {
                    break;
                }
                if (reachedAt >= 0 && now >= reachedAt + lingerMs * 1_000_000L) {
                    break;
                }
                ConsumerRecords<byte[], byte[]> records = consumer.poll(Duration.ofMillis(pollMs));
                if (!subscribed && (records.count() > 0 || fetchTotal(consumer) >= 1)) {
                    subscribed = true;
                    emit("{\"event\":\"subscribed\",\"elapsedMs\":" + elapsedMs(started) + "}");
                }
                for (ConsumerRecord<byte[], byte[]> r : records) {
                    delivered++;
                    String key = r.partition() + ":" + r.offset();
                    String ack;
                    if (!explicit) {
                        ack = "implicit";
                        settled.add(key);
                    } else {
                        AcknowledgeType type;
                        if (action.equals("accept")) {
                            type = AcknowledgeType.ACCEPT;
                        } else if (action.equals("reject")) {
                            type = AcknowledgeType.REJECT;
                        } else {
                            type = released.add(key) ? AcknowledgeType.RELEASE : AcknowledgeType.ACCEPT;
                        }
                        consumer.acknowledge(r, type);
                        ack = type.name();
                        if (type != AcknowledgeType.RELEASE) {
                            settled.add(key);
                        }
                    }
                    Optional<Short> count = r.deliveryCount();
                    emit("{\"topic\":" + str(r.topic())
                        + ",\"partition\":" + r.partition()
                        + ",\"offset\":" + r.offset()
                        + ",\"deliveryCount\":" + (count.isPresent() ? count.get().toString() : "null")
                        + ",\"value\":" + (r.value() == null ? "null"
                            : str(new String(r.value(), StandardCharsets.UTF_8)))
                        + ",\"ack\":" + str(ack) + "}");
                }
                if (!records.isEmpty()) {
                    // Explicit: send this poll's acknowledgements now. Implicit: accept this
                    // poll's records now rather than with the next poll.
                    Map<TopicIdPartition, Optional<KafkaException>> result = consumer.commitSync();
                    for (Map.Entry<TopicIdPartition, Optional<KafkaException>> e : result.entrySet()) {
                        if (e.getValue().isPresent()) {
                            commitErrors.add(e.getKey() + ": " + e.getValue().get());
                        }
                    }
                }
                if (reachedAt < 0 && settled.size() >= expected) {
                    reachedAt = System.nanoTime();
                }
            }
            status = reachedAt >= 0 ? 0 : 1;
        } catch (Exception e) {
            error = e.toString();
            e.printStackTrace(System.err);
            status = 2;
        } finally {
            if (consumer != null) {
                try {
                    consumer.close(Duration.ofSeconds(10));
                } catch (Exception e) {
                    if (error == null) {
                        error = "close: " + e;
                    }
                    e.printStackTrace(System.err);
                }
            }
        }
        List<String> errs = new ArrayList<>();
        for (String s : commitErrors) {
            errs.add(str(s));
        }
        emit("{\"event\":\"summary\",\"ok\":" + (status == 0)
            + ",\"expected\":" + expected
            + ",\"settled\":" + settled.size()
            + ",\"delivered\":" + delivered
            + ",\"subscribed\":" + subscribed
            + ",\"elapsedMs\":" + elapsedMs(started)
            + ",\"commitErrors\":[" + String.join(",", errs) + "]"
            + ",\"error\":" + (error == null ? "null" : str(error)) + "}");
        System.exit(status);
    }

    /** ShareFetch responses received so far (the share fetch manager's fetch-total). */
    private static double fetchTotal(KafkaShareConsumer<?, ?> consumer) {
        for (Map.Entry<MetricName, ? extends Metric> e : consumer.metrics().entrySet()) {
            MetricName name = e.getKey();
            if (name.name().equals("fetch-total") && name.group().contains("fetch-manager")) {
                Object v = e.getValue().metricValue();
                if (v instanceof Number) {
                    return ((Number) v).doubleValue();
                }
            }
        }
        return 0;
    }

    private static long elapsedMs(long started) {
        return (System.nanoTime() - started) / 1_000_000L;
    }

    private static void emit(String line) {
        System.out.println(line);
        System.out.flush();
    }

    private static void die(String message) {
        System.err.println(message);
        System.exit(64);
    }

    /** A JSON string literal. */
    private static String str(String s) {
        StringBuilder b = new StringBuilder(s.length() + 2).append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"': b.append("\\\""); break;
                case '\\': b.append("\\\\"); break;
                case '\n': b.append("\\n"); break;
                case '\r': b.append("\\r"); break;
                case '\t': b.append("\\t"); break;
                default:
                    if (c < 0x20) {
                        b.append(String.format("\\u%04x", (int) c));
                    } else {
                        b.append(c);
                    }
            }
        }
        return b.append('"').toString();
    }
}
