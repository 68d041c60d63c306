# Sourced by the bin/ wrappers: environment of the local stack (STREAMLAB_HOME, conf dirs, ports).
STREAMLAB_REPO="$(cd -P "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"  # -P: also when reached through $KAFKA_HOME/bin
STREAMLAB_PY="$STREAMLAB_REPO/.venv/bin/python"
if [ ! -x "$STREAMLAB_PY" ]; then
  echo "streamlab: no virtualenv yet; run 'make up' first." >&2
  exit 1
fi
eval "$(cd "$STREAMLAB_REPO" && "$STREAMLAB_PY" -m streamlab.stack env)" || exit 1
STREAMLAB_JARS="${STREAMLAB_DEPS:-$STREAMLAB_REPO/.deps}/jars"
if [ -z "$JAVA_HOME" ] && ! command -v java >/dev/null; then
  echo "streamlab: Java 17+ is needed (no JAVA_HOME, no java on PATH)." >&2
  exit 1
fi
STREAMLAB_JAVA="${JAVA_HOME:+$JAVA_HOME/bin/}java"

# Run a Kafka tool class with the broker's classpath and a quiet log4j2 configuration.
kafka_tool() {
  exec "$STREAMLAB_JAVA" -Xmx512m \
    -Dlog4j2.configurationFile="$STREAMLAB_HOME/conf/kafka/tools-log4j2.properties" \
    -cp "$STREAMLAB_JARS/kafka/*" "$@"
}
