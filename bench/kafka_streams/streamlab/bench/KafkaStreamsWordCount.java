package streamlab.bench;

import com.ibm.icu.lang.UCharacter;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.regex.Pattern;

import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.AutoOffsetReset;
import org.apache.kafka.streams.CloseOptions;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.processor.WallclockTimestampExtractor;

/**
 * The streaming word count's peer in the benchmark (bench/streaming_bench.py): the same input
 * topic, the same words (streamlab/textproc.py: maximal runs of Unicode letters and digits after
 * lower-casing with ICU, as Spark's lower() does; words longer than 1,000,000 UTF-8 bytes left
 * out, as the Spark job does), running totals to a compacted topic (key word, value the count as
 * decimal text, as the Spark job writes).
 *
 * <pre>
 * java -cp kafka-streams-wordcount.jar:.deps/jars/kafka-streams/*:ICU4J_JAR streamlab.bench.KafkaStreamsWordCount \
 *     BOOTSTRAP INPUT_TOPIC OUTPUT_TOPIC APPLICATION_ID [input.offset.reset=latest|earliest] [setting=value ...]
 * </pre>
 *
 * ICU4J is the jar pyspark ships (the same case mapping as the job). Defaults: exactly_once_v2
 * (exact totals, like the Spark job's checkpointed state; commits every 100 ms), a new
 * application reads its input from the end (input.offset.reset, only the input topic: its own
 * repartition and changelog topics are always read from their start), record time = wall clock
 * (a record with a bad timestamp is counted like any other). Every other argument is a Kafka
 * Streams setting and wins over the defaults. SIGTERM closes it and leaves the consumer group.
 */
public final class KafkaStreamsWordCount {
    private static final Pattern WORD_SEPARATOR = Pattern.compile("[^\\p{L}\\p{N}]+");
    private static final int MAX_WORD_BYTES = 1_000_000;
    private static final String INPUT_OFFSET_RESET = "input.offset.reset";

    private KafkaStreamsWordCount() {}

    static List<String> words(String line) {
        List<String> out = new ArrayList<>();
        if (line == null) {
            return out;
        }
        for (String word : WORD_SEPARATOR.split(UCharacter.toLowerCase(line))) {
            if (!word.isEmpty() && utf8Length(word) <= MAX_WORD_BYTES) {
                out.add(word);
            }
        }
        return out;
    }

    private static int utf8Length(String word) {
        // At most 3 bytes per UTF-16 unit: most words need no encoding to know they fit.
        return word.length() * 3 <= MAX_WORD_BYTES ? 0 : word.getBytes(StandardCharsets.UTF_8).length;
    }

    public static void main(String[] args) throws InterruptedException {
        if (args.length < 4) {
            System.err.println("usage: KafkaStreamsWordCount BOOTSTRAP INPUT OUTPUT APPLICATION_ID [key=value ...]");
            System.exit(2);
        }
        Properties props = new Properties();
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, args[3]);
        props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
        props.put(StreamsConfig.DEFAULT_TIMESTAMP_EXTRACTOR_CLASS_CONFIG, WallclockTimestampExtractor.class);
        props.put(INPUT_OFFSET_RESET, "latest");
        for (int i = 4; i < args.length; i++) {
            int eq = args[i].indexOf('=');
            if (eq <= 0) {
                System.err.println("not a key=value setting: " + args[i]);
                System.exit(2);
            }
            props.put(args[i].substring(0, eq), args[i].substring(eq + 1));
        }

        String reset = (String) props.remove(INPUT_OFFSET_RESET);
        if (!reset.equals("latest") && !reset.equals("earliest")) {
            System.err.println(INPUT_OFFSET_RESET + " is latest or earliest, not " + reset);
            System.exit(2);
        }

        StreamsBuilder builder = new StreamsBuilder();
        Consumed<byte[], String> input = Consumed.with(Serdes.ByteArray(), Serdes.String())
                .withOffsetResetPolicy(reset.equals("latest") ? AutoOffsetReset.latest() : AutoOffsetReset.earliest());
        builder.stream(args[1], input)
                .flatMap((key, line) -> words(line).stream().map(word -> KeyValue.pair(word, "")).toList())
                // The word is the key; an empty value (not the word again, which would double the
                // repartition topic's bytes and make a 1,000,000-byte word a 2 MB record).
                .groupByKey(Grouped.with(Serdes.String(), Serdes.String()))
                .count()
                .toStream()
                .mapValues(String::valueOf)
                .to(args[2], Produced.with(Serdes.String(), Serdes.String()));

        KafkaStreams streams = new KafkaStreams(builder.build(), props);
        CountDownLatch stopped = new CountDownLatch(1);
        streams.setStateListener((now, before) -> {
            System.out.println("state " + before + " -> " + now);
            if (now == KafkaStreams.State.NOT_RUNNING || now == KafkaStreams.State.ERROR) {
                stopped.countDown();
            }
        });
        streams.setUncaughtExceptionHandler(error -> {
            error.printStackTrace();
            return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        // On SIGTERM (the JVM then exits 143): leave the group, so it can be deleted at once.
        Runtime.getRuntime().addShutdownHook(new Thread(() -> streams.close(CloseOptions
                .groupMembershipOperation(CloseOptions.GroupMembershipOperation.LEAVE_GROUP)
                .withTimeout(Duration.ofSeconds(20)))));
        streams.start();
        stopped.await();
        System.exit(streams.state() == KafkaStreams.State.ERROR ? 1 : 0);
    }
}
