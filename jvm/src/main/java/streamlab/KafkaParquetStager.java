package streamlab;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetOutOfRangeException;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.parquet.bytes.ByteBufferAllocator;
import org.apache.parquet.column.ColumnDescriptor;
import org.apache.parquet.column.ColumnWriteStore;
import org.apache.parquet.column.ColumnWriter;
import org.apache.parquet.column.Encoding;
import org.apache.parquet.column.ParquetProperties;
import org.apache.parquet.column.values.ValuesWriter;
import org.apache.parquet.column.values.dictionary.DictionaryValuesWriter;
import org.apache.parquet.column.values.factory.DefaultValuesWriterFactory;
import org.apache.parquet.column.values.factory.ValuesWriterFactory;
import org.apache.parquet.compression.CompressionCodecFactory;
import org.apache.parquet.hadoop.CodecFactory;
import org.apache.parquet.hadoop.ColumnChunkPageWriteStore;
import org.apache.parquet.hadoop.ParquetFileWriter;
import org.apache.parquet.hadoop.ParquetWriter;
import org.apache.parquet.hadoop.metadata.CompressionCodecName;
import org.apache.parquet.hadoop.util.HadoopOutputFile;
import org.apache.parquet.io.OutputFile;
import org.apache.parquet.io.api.Binary;
import org.apache.parquet.schema.LogicalTypeAnnotation;
import org.apache.parquet.schema.MessageType;
import org.apache.parquet.schema.PrimitiveType.PrimitiveTypeName;
import org.apache.parquet.schema.Types;
import org.apache.spark.SparkEnv;
import org.apache.spark.api.java.JavaSparkContext;
import org.apache.spark.deploy.SparkHadoopUtil;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.types.DataTypes;
import org.apache.spark.sql.types.StructType;

/**
 * The landing's staging writer: reads planned Kafka offset ranges and writes them as Parquet into
 * a landing run's staging folder, one Spark task per slice of a partition. The commit protocol
 * (streamlab/landing.py) does the rest: footers, manifest, renames, commit.
 *
 * <p>Why not Spark's Kafka source and DataFrame writer: for this fixed shape (seven columns, split
 * by hour) they spend about twice the CPU per record (row conversion, generic expressions and
 * writers), measured in docs/landing.md. The files are the same: the same Parquet schema and the
 * same Spark footer metadata as `df.write.parquet` of the Kafka source's columns, so Spark,
 * pyarrow and the compaction (which merges footers of identical schemas) see no difference.
 *
 * <p>Layout: {@code <staging>/raw/h=<hours since epoch>/part-<partition>-<first>-<n>.parquet}
 * (decodable records) and {@code <staging>/quarantine/h=<n>/...} (values that are not valid
 * UTF-8 in a text topic, kept as bytes with a reason). A file is written under a hidden name and
 * renamed when complete; a retried task rewrites the same names (same input, same output).
 */
public final class KafkaParquetStager {
  static final String RAW = "raw";
  static final String QUARANTINE = "quarantine";
  static final long HOUR_MS = 3_600_000L;
  /** The last millisecond a dt=YYYY-MM-DD/hr=HH folder can name: the end of year 9999. */
  static final long MAX_TIMESTAMP_MS = 253_402_300_799_999L;

  /**
   * A record timestamp that names an hour folder. Negative ones (-1: "no timestamp") and those
   * past year 9999 (typically microseconds sent as milliseconds) go to quarantine instead.
   */
  static boolean usableTimestamp(long ts) {
    return ts >= 0 && ts <= MAX_TIMESTAMP_MS;
  }

  private KafkaParquetStager() {}

  /**
   * Entry point from the Python driver (py4j). {@code requestJson}: topic, value_format,
   * staging_dir, records_per_file, slices [{partition, from, until}], kafka {consumer config},
   * fail_on_data_loss, poll_timeout_ms, reason, spark_version. Returns JSON: records, quarantined,
   * files, skipped_offsets (deleted by Kafka, only when data loss is accepted), first_record_ms
   * (epoch ms of the first record fetched, absent when none), per slice details (with
   * skipped_ranges: [from, until) pairs, and task_ms / poll_ms / close_ms: the task's time, the
   * part of it in KafkaConsumer.poll (fetching and parsing records), and closing its files).
   */
  public static String stage(SparkSession spark, String requestJson) throws IOException {
    ObjectMapper mapper = new ObjectMapper();
    JsonNode request = mapper.readTree(requestJson);
    List<String> tasks = new ArrayList<>();
    for (JsonNode slice : request.get("slices")) {
      ObjectNode task = ((ObjectNode) request.deepCopy()).without("slices");
      task.set("slice", slice);
      tasks.add(mapper.writeValueAsString(task));
    }
    if (tasks.isEmpty()) {
      return mapper.writeValueAsString(mapper.createObjectNode().put("records", 0).put("quarantined", 0));
    }
    JavaSparkContext jsc = JavaSparkContext.fromSparkContext(spark.sparkContext());
    jsc.setJobDescription("land " + request.get("topic").asText() + " into " + request.get("staging_dir").asText());
    List<String> results = jsc.parallelize(tasks, tasks.size()).map(KafkaParquetStager::stageSlice).collect();
    long records = 0, quarantined = 0, files = 0, skipped = 0;
    long firstRecordMs = Long.MAX_VALUE;
    ArrayNode slices = mapper.createArrayNode();
    for (String r : results) {
      JsonNode n = mapper.readTree(r);
      if (n.hasNonNull("first_record_ms")) {
        firstRecordMs = Math.min(firstRecordMs, n.get("first_record_ms").asLong());
      }
      records += n.get("records").asLong();
      quarantined += n.get("quarantined").asLong();
      files += n.get("files").asLong();
      skipped += n.get("skipped_offsets").asLong();
      slices.add(n);
    }
    ObjectNode out = mapper.createObjectNode();
    out.put("records", records).put("quarantined", quarantined).put("files", files).put("skipped_offsets", skipped);
    if (firstRecordMs != Long.MAX_VALUE) {
      out.put("first_record_ms", firstRecordMs);
    }
    out.set("slices", slices);
    return mapper.writeValueAsString(out);
  }

  /** One Spark task: offsets [from, until) of one partition into Parquet files. */
  static String stageSlice(String taskJson) throws Exception {
    ObjectMapper mapper = new ObjectMapper();
    JsonNode task = mapper.readTree(taskJson);
    JsonNode slice = task.get("slice");
    String topic = task.get("topic").asText();
    int partition = slice.get("partition").asInt();
    long from = slice.get("from").asLong();
    long until = slice.get("until").asLong();
    boolean text = "text".equals(task.get("value_format").asText());
    boolean failOnDataLoss = task.get("fail_on_data_loss").asBoolean(true);
    long pollTimeoutMs = task.path("poll_timeout_ms").asLong(120_000L);

    Configuration conf = SparkHadoopUtil.get().newConfiguration(SparkEnv.get().conf());
    Path staging = new Path(task.get("staging_dir").asText());
    FileSystem fs = staging.getFileSystem(conf);
    Files files = new Files(fs, conf, staging, topic, partition, from, task.get("records_per_file").asLong(),
        task.path("reason").asText("undecodable"), task.path("spark_version").asText(""));
    if (task.has("quarantine_hour")) {
      files.setQuarantineHour(task.get("quarantine_hour").asLong());
    }

    Properties props = new Properties();
    task.get("kafka").properties().forEach(e -> props.setProperty(e.getKey(), e.getValue().asText()));
    props.setProperty("key.deserializer", ByteArrayDeserializer.class.getName());
    props.setProperty("value.deserializer", ByteArrayDeserializer.class.getName());
    props.setProperty("enable.auto.commit", "false");
    props.setProperty("auto.offset.reset", "none"); // a deleted offset is an error, never a jump
    props.setProperty("client.id", "streamlab-landing-" + topic + "-" + partition + "-" + from);
    TopicPartition tp = new TopicPartition(topic, partition);
    long records = 0, quarantined = 0, skipped = 0;
    long firstRecordMs = -1; // the job's own clock for throughput starts at the first record fetched
    long pollNanos = 0, started = System.nanoTime();
    ArrayNode skippedRanges = mapper.createArrayNode();
    try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(props)) {
      consumer.assign(List.of(tp));
      consumer.seek(tp, from);
      long next = from;
      long lastProgress = System.currentTimeMillis();
      while (next < until) {
        ConsumerRecords<byte[], byte[]> batch;
        long polling = System.nanoTime();
        try {
          batch = consumer.poll(Duration.ofMillis(500));
          pollNanos += System.nanoTime() - polling;
        } catch (OffsetOutOfRangeException e) {
          long earliest = consumer.beginningOffsets(List.of(tp)).get(tp);
          if (failOnDataLoss || earliest <= next) {
            throw new IllegalStateException(String.format(
                "Kafka no longer has offsets %d..%d of %s (earliest now %d): deleted by retention before "
                    + "they were landed. Run again with accept_data_loss to skip them.",
                next, Math.min(earliest, until) - 1, tp, earliest), e);
          }
          skipped += Math.min(earliest, until) - next;
          skippedRanges.add(mapper.createArrayNode().add(next).add(Math.min(earliest, until)));
          next = Math.min(earliest, until);
          consumer.seek(tp, next);
          continue;
        }
        for (ConsumerRecord<byte[], byte[]> r : batch.records(tp)) {
          long offset = r.offset();
          if (offset >= until) {
            next = until;
            break;
          }
          if (offset < next) {
            continue;
          }
          if (files.route(r, text) != Files.RAW_FILE) {
            quarantined++;
          }
          records++;
          next = offset + 1;
        }
        if (!batch.isEmpty()) {
          lastProgress = System.currentTimeMillis();
          if (firstRecordMs < 0) {
            firstRecordMs = lastProgress;
          }
        }
        // Offsets without a record (compaction, transaction markers) move the position only.
        if (next < until && consumer.position(tp) >= until) {
          next = until;
        }
        if (next < until && System.currentTimeMillis() - lastProgress > pollTimeoutMs) {
          throw new IllegalStateException(String.format(
              "no record from Kafka for %s at offset %d (planned until %d) in %d ms", tp, next, until, pollTimeoutMs));
        }
      }
    } catch (Exception e) {
      files.abort();
      throw e;
    }
    long closing = System.nanoTime();
    int fileCount = files.closeAll();
    long closeNanos = System.nanoTime() - closing;
    ObjectNode out = mapper.createObjectNode();
    out.put("task_ms", (System.nanoTime() - started) / 1_000_000).put("poll_ms", pollNanos / 1_000_000)
        .put("close_ms", closeNanos / 1_000_000);
    out.put("partition", partition).put("from", from).put("until", until).put("records", records)
        .put("quarantined", quarantined).put("files", fileCount).put("skipped_offsets", skipped);
    if (firstRecordMs >= 0) {
      out.put("first_record_ms", firstRecordMs);
    }
    out.set("skipped_ranges", skippedRanges);
    return mapper.writeValueAsString(out);
  }

  /** The open Parquet files of one slice, one per (kind, hour), rolled every recordsPerFile. */
  public static final class Files {
    private final FileSystem fs;
    private final Configuration conf;
    private final Path staging;
    private final String topic;
    private final int partition;
    private final long from;
    private final long recordsPerFile;
    private final String reason;
    private final String sparkVersion;
    private final Map<Long, Open> raw = new HashMap<>();
    private final Map<Long, Open> bad = new HashMap<>();
    private final Map<Long, Open> badTime = new HashMap<>();
    static final int RAW_FILE = 0;
    static final int UNDECODABLE = 1;
    static final int BAD_TIMESTAMP = 2;
    private long quarantineHour = Math.floorDiv(System.currentTimeMillis(), HOUR_MS);
    private int created;
    private int closed;
    private Open lastRaw;
    private long lastRawHour;

    public Files(FileSystem fs, Configuration conf, Path staging, String topic, int partition, long from,
        long recordsPerFile, String reason, String sparkVersion) {
      this.fs = fs;
      this.conf = conf;
      this.staging = staging;
      this.topic = topic;
      this.partition = partition;
      this.from = from;
      this.recordsPerFile = Math.max(1, recordsPerFile);
      this.reason = reason;
      this.sparkVersion = sparkVersion;
    }

    /** The hour folder of records whose timestamp names none: the run's (the plan's) hour. */
    public void setQuarantineHour(long hour) {
      this.quarantineHour = hour;
    }

    /** Writes one record where it belongs; returns RAW_FILE, UNDECODABLE or BAD_TIMESTAMP. */
    public int route(ConsumerRecord<byte[], byte[]> r, boolean text) throws IOException {
      if (!usableTimestamp(r.timestamp())) {
        writeBadTimestamp(r);
        return BAD_TIMESTAMP;
      }
      byte[] value = r.value();
      if (!text || value == null || Utf8.isValid(value)) {
        write(false, r);
        return RAW_FILE;
      }
      write(true, r);
      return UNDECODABLE;
    }

    private void writeBadTimestamp(ConsumerRecord<byte[], byte[]> r) throws IOException {
      Open f = badTime.get(quarantineHour);
      if (f == null) {
        f = open(true, quarantineHour, "-ts");
        badTime.put(quarantineHour, f);
      }
      // The value stays in the reason: no Parquet reader turns year 56971 into a timestamp.
      String why = String.format("record timestamp %d ms names no hour (negative: no timestamp; past year "
          + "9999: microseconds sent as milliseconds?)", r.timestamp());
      f.writer.write(r, Binary.fromString(why), true);
      if (++f.records >= recordsPerFile) {
        f.close();
        closed++;
        badTime.remove(quarantineHour);
      }
    }

    public void write(boolean quarantine, ConsumerRecord<byte[], byte[]> r) throws IOException {
      long hour = Math.floorDiv(r.timestamp(), HOUR_MS);
      Open f;
      if (!quarantine && hour == lastRawHour && lastRaw != null) {
        f = lastRaw; // consecutive records are nearly always in the same hour: no map lookup
      } else {
        Map<Long, Open> open = quarantine ? bad : raw;
        f = open.get(hour);
        if (f == null) {
          f = open(quarantine, hour);
          open.put(hour, f);
        }
        if (!quarantine) {
          lastRaw = f;
          lastRawHour = hour;
        }
      }
      f.writer.write(r);
      if (++f.records >= recordsPerFile) {
        f.close();
        closed++;
        (quarantine ? bad : raw).remove(hour);
        if (f == lastRaw) {
          lastRaw = null;
        }
      }
    }

    private Open open(boolean quarantine, long hour) throws IOException {
      return open(quarantine, hour, "");
    }

    private Open open(boolean quarantine, long hour, String tag) throws IOException {
      Path dir = new Path(new Path(staging, quarantine ? QUARANTINE : RAW), "h=" + hour);
      String name = String.format("part-%d-%d%s-%05d.parquet", partition, from, tag, created++);
      Path tmp = new Path(dir, "." + name + ".inprogress");
      Path done = new Path(dir, name);
      RecordFileWriter writer = new RecordFileWriter(HadoopOutputFile.fromPath(tmp, conf), conf, topic,
          quarantine ? reason : null, sparkVersion, RecordFileWriter.ROW_GROUP_BYTES);
      return new Open(writer, tmp, done);
    }

    public int closeAll() throws IOException {
      for (Map<Long, Open> open : List.of(raw, bad, badTime)) {
        for (Open f : open.values()) {
          f.close();
          closed++;
        }
        open.clear();
      }
      lastRaw = null;
      return closed;
    }

    void abort() {
      for (Map<Long, Open> open : List.of(raw, bad, badTime)) {
        for (Open f : open.values()) {
          try {
            f.writer.abort();
          } catch (Exception ignored) {
            // the task fails anyway; the landing run's staging is discarded by its recovery
          }
        }
      }
    }

    final class Open {
      final RecordFileWriter writer;
      final Path tmp;
      final Path done;
      long records;

      Open(RecordFileWriter writer, Path tmp, Path done) {
        this.writer = writer;
        this.tmp = tmp;
        this.done = done;
      }

      void close() throws IOException {
        writer.close();
        fs.delete(done, false); // a retried task: same records, same name
        if (!fs.rename(tmp, done)) {
          throw new IOException("cannot rename " + tmp + " to " + done);
        }
      }
    }
  }

  /**
   * One Parquet file of Kafka records: the columns Spark writes for the Kafka source's row (all
   * nullable), with `value` as a string in raw files, as bytes plus a non-null `reason` in
   * quarantine files.
   *
   * <p>It drives parquet-mr's column writers directly, the way its InternalParquetRecordWriter
   * does, but without the record-assembly layer (MessageColumnIO): for a flat schema of seven
   * columns that layer's per-field bookkeeping was a sizeable share of the writer's CPU. Pages,
   * encodings, statistics, row groups and footer are parquet-mr's own.
   */
  public static final class RecordFileWriter {
    static final long ROW_GROUP_BYTES = ParquetWriter.DEFAULT_BLOCK_SIZE; // 128 MiB, as Spark
    private static final int SIZE_CHECK_EVERY = 1_000;
    private final long rowGroupBytes;
    private final Binary topic;
    private final Binary reason;
    private final MessageType schema;
    private final Map<String, String> footer;
    private final ParquetProperties props;
    private final CodecFactory codecs;
    private final CompressionCodecFactory.BytesInputCompressor compressor;
    private final ParquetFileWriter file;
    private ColumnChunkPageWriteStore pages;
    private ColumnWriteStore columns;
    private ColumnWriter[] writers;
    private long rowsInGroup;

    public RecordFileWriter(OutputFile out, Configuration conf, String topic, String reason, String sparkVersion,
        long rowGroupBytes) throws IOException {
      this.rowGroupBytes = rowGroupBytes;
      // Array-backed (fromString is ByteBuffer-backed): hashed by the dictionary for every record.
      this.topic = Binary.fromConstantByteArray(topic.getBytes(StandardCharsets.UTF_8));
      this.reason = reason == null ? null : Binary.fromConstantByteArray(reason.getBytes(StandardCharsets.UTF_8));
      this.schema = schema(reason != null);
      this.footer = footer(reason != null, sparkVersion);
      this.props = ParquetProperties.builder()
          // Offsets, timestamps, keys and values are (nearly) unique: a dictionary only costs.
          .withDictionaryEncoding(false)
          .withDictionaryEncoding("topic", true)
          .withDictionaryEncoding("partition", true)
          .withDictionaryEncoding("timestamp_type", true)
          .withDictionaryEncoding("reason", true)
          // Min/max of the byte columns serve no reader (a folder is one topic; no one filters
          // files by value) and cost comparisons per record; offsets and timestamps keep theirs
          // (the footer is the landing's index).
          .withStatisticsEnabled("topic", false)
          .withStatisticsEnabled("key", false)
          .withStatisticsEnabled("value", false)
          .withStatisticsEnabled("reason", false)
          .withSizeStatisticsEnabled(false)
          .withValuesWriterFactory(new ValuesWriters())
          .build();
      this.codecs = new CodecFactory(conf, props.getPageSizeThreshold());
      this.compressor = codecs.getCompressor(CompressionCodecName.SNAPPY);
      this.file = new ParquetFileWriter(out, schema, ParquetFileWriter.Mode.OVERWRITE, rowGroupBytes,
          ParquetWriter.MAX_PADDING_SIZE_DEFAULT, null, props);
      file.start();
      startRowGroup();
    }

    static MessageType schema(boolean quarantine) {
      Types.MessageTypeBuilder b = Types.buildMessage();
      b.optional(PrimitiveTypeName.BINARY).as(LogicalTypeAnnotation.stringType()).named("topic");
      b.optional(PrimitiveTypeName.INT32).named("partition");
      b.optional(PrimitiveTypeName.INT64).named("offset");
      b.optional(PrimitiveTypeName.INT64)
          .as(LogicalTypeAnnotation.timestampType(true, LogicalTypeAnnotation.TimeUnit.MICROS))
          .named("timestamp");
      b.optional(PrimitiveTypeName.INT32).named("timestamp_type");
      b.optional(PrimitiveTypeName.BINARY).named("key");
      if (quarantine) {
        b.optional(PrimitiveTypeName.BINARY).named("value");
        b.required(PrimitiveTypeName.BINARY).as(LogicalTypeAnnotation.stringType()).named("reason");
      } else {
        b.optional(PrimitiveTypeName.BINARY).as(LogicalTypeAnnotation.stringType()).named("value");
      }
      return b.named("spark_schema");
    }

    /** The key-value footer Spark writes: its row schema (Spark reads it back from there). */
    static Map<String, String> footer(boolean quarantine, String sparkVersion) {
      StructType row = new StructType()
          .add("topic", DataTypes.StringType, true)
          .add("partition", DataTypes.IntegerType, true)
          .add("offset", DataTypes.LongType, true)
          .add("timestamp", DataTypes.TimestampType, true)
          .add("timestamp_type", DataTypes.IntegerType, true)
          .add("key", DataTypes.BinaryType, true)
          .add("value", quarantine ? DataTypes.BinaryType : DataTypes.StringType, true);
      if (quarantine) {
        row = row.add("reason", DataTypes.StringType, false);
      }
      Map<String, String> footer = new HashMap<>();
      footer.put("org.apache.spark.sql.parquet.row.metadata", row.json());
      if (!sparkVersion.isEmpty()) {
        footer.put("org.apache.spark.version", sparkVersion);
      }
      return footer;
    }

    private void startRowGroup() {
      pages = new ColumnChunkPageWriteStore(compressor, schema, props.getAllocator(),
          props.getColumnIndexTruncateLength(), props.getPageWriteChecksumEnabled());
      columns = props.newColumnWriteStore(schema, pages, pages);
      List<ColumnDescriptor> descriptors = schema.getColumns();
      writers = new ColumnWriter[descriptors.size()];
      for (int i = 0; i < writers.length; i++) {
        writers[i] = columns.getColumnWriter(descriptors.get(i));
      }
      rowsInGroup = 0;
    }

    /** One record. Optional columns: definition level 1 for a value, 0 for null; no repetition. */
    public void write(ConsumerRecord<byte[], byte[]> r) throws IOException {
      write(r, reason, false);
    }

    /** One record with its own reason (quarantine files), and a null timestamp if asked. */
    public void write(ConsumerRecord<byte[], byte[]> r, Binary why, boolean nullTimestamp) throws IOException {
      ColumnWriter[] w = writers;
      w[0].write(topic, 0, 1);
      w[1].write(r.partition(), 0, 1);
      w[2].write(r.offset(), 0, 1);
      if (nullTimestamp) {
        w[3].writeNull(0, 0);
      } else {
        w[3].write(r.timestamp() * 1000L, 0, 1);
      }
      w[4].write(r.timestampType().id, 0, 1);
      byte[] key = r.key();
      if (key == null) {
        w[5].writeNull(0, 0);
      } else {
        w[5].write(Binary.fromConstantByteArray(key), 0, 1);
      }
      byte[] value = r.value();
      if (value == null) {
        w[6].writeNull(0, 0);
      } else {
        w[6].write(Binary.fromConstantByteArray(value), 0, 1);
      }
      if (reason != null) {
        w[7].write(why, 0, 0); // required: no definition level to record
      }
      columns.endRecord();
      if (++rowsInGroup % SIZE_CHECK_EVERY == 0 && columns.getBufferedSize() >= rowGroupBytes) {
        flushRowGroup();
        startRowGroup();
      }
    }

    private void flushRowGroup() throws IOException {
      try {
        if (rowsInGroup > 0) {
          file.startBlock(rowsInGroup);
          columns.flush();
          pages.flushToFileWriter(file);
          file.endBlock();
        }
      } finally {
        columns.close();
        pages.close();
      }
    }

    public void close() throws IOException {
      try {
        flushRowGroup();
        file.end(footer);
        file.close();
      } catch (IOException | RuntimeException e) {
        file.abort();
        throw e;
      } finally {
        codecs.release();
      }
    }

    /** After a failure: release the buffers and the stream; the hidden file is left behind. */
    void abort() {
      try {
        columns.close();
        pages.close();
      } finally {
        file.abort();
        codecs.release();
      }
    }
  }

  /**
   * parquet-mr's value writers, except for the columns that hold one value per file (topic,
   * reason). Its dictionary writer hashes every value it is given to find its id (Binary does not
   * cache its hash): for the topic, that was a tenth of the writer's CPU. Ours gives the same
   * object the id it got last time; anything else goes through parquet-mr's own lookup.
   */
  static final class ValuesWriters implements ValuesWriterFactory {
    private final DefaultValuesWriterFactory defaults = new DefaultValuesWriterFactory();
    private ParquetProperties props;

    @Override
    public void initialize(ParquetProperties properties) {
      props = properties;
      defaults.initialize(properties);
    }

    @Override
    public ValuesWriter newValuesWriter(ColumnDescriptor column) {
      String name = column.getPath()[0];
      if ((name.equals("topic") || name.equals("reason"))
          && props.getWriterVersion() == ParquetProperties.WriterVersion.PARQUET_1_0) {
        // The encodings of parquet-mr's v1 dictionary writer.
        return new OneValueDictionaryWriter(props.getDictionaryPageSizeThreshold(), Encoding.PLAIN_DICTIONARY,
            Encoding.PLAIN_DICTIONARY, props.getAllocator());
      }
      return defaults.newValuesWriter(column);
    }
  }

  static final class OneValueDictionaryWriter extends DictionaryValuesWriter.PlainBinaryDictionaryValuesWriter {
    private Binary last;
    private int lastId;

    OneValueDictionaryWriter(int maxDictionaryBytes, Encoding dataPage, Encoding dictionaryPage,
        ByteBufferAllocator allocator) {
      super(maxDictionaryBytes, dataPage, dictionaryPage, allocator);
    }

    @Override
    public void writeBytes(Binary v) {
      if (v == last) {
        encodedValues.add(lastId); // what the parent does for a value already in the dictionary
        return;
      }
      super.writeBytes(v);
      last = v;
      lastId = binaryDictionaryContent.getInt(v);
    }

    @Override
    protected void clearDictionaryContent() {
      super.clearDictionaryContent(); // a new row group: ids start again
      last = null;
    }
  }

  /** Strict UTF-8, as Python's bytes.decode(): no overlong forms, no surrogates, <= U+10FFFF. */
  public static final class Utf8 {
    private static final VarHandle LONGS =
        MethodHandles.byteArrayViewVarHandle(long[].class, ByteOrder.LITTLE_ENDIAN);

    private Utf8() {}

    public static boolean isValid(byte[] b) {
      int i = 0;
      int n = b.length;
      while (i < n) {
        // Text is mostly ASCII: 8 bytes at a time while no byte has its high bit set (this check
        // was 14 % of the landing's CPU byte by byte).
        while (i + 8 <= n && ((long) LONGS.get(b, i) & 0x8080808080808080L) == 0) {
          i += 8;
        }
        if (i >= n) {
          break;
        }
        int c = b[i];
        if (c >= 0) {
          i++;
          continue;
        }
        c &= 0xff;
        if (c < 0xC2) {
          return false; // a continuation byte first, or an overlong 2-byte form
        }
        if (c < 0xE0) {
          if (i + 1 >= n || (b[i + 1] & 0xC0) != 0x80) {
            return false;
          }
          i += 2;
        } else if (c < 0xF0) {
          if (i + 2 >= n) {
            return false;
          }
          int c1 = b[i + 1] & 0xff;
          if ((c1 & 0xC0) != 0x80 || (b[i + 2] & 0xC0) != 0x80) {
            return false;
          }
          if ((c == 0xE0 && c1 < 0xA0) || (c == 0xED && c1 >= 0xA0)) {
            return false; // overlong, or a UTF-16 surrogate
          }
          i += 3;
        } else if (c < 0xF5) {
          if (i + 3 >= n) {
            return false;
          }
          int c1 = b[i + 1] & 0xff;
          if ((c1 & 0xC0) != 0x80 || (b[i + 2] & 0xC0) != 0x80 || (b[i + 3] & 0xC0) != 0x80) {
            return false;
          }
          if ((c == 0xF0 && c1 < 0x90) || (c == 0xF4 && c1 >= 0x90)) {
            return false; // overlong, or above U+10FFFF
          }
          i += 4;
        } else {
          return false;
        }
      }
      return true;
    }
  }
}
