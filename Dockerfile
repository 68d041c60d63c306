# syntax=docker/dockerfile:1
# The Airflow image of docker-compose.yaml: the official image plus what the tasks run in-process.
# With the LocalExecutor the Spark drivers (client mode) run inside the scheduler container, so it
# needs a JDK, pyspark, Spark's Kafka connector jars, the project's jar (jvm/src, the landing's
# Parquet writer) and the archive of the `streamlab` package that every Spark job gets with
# --py-files, on top of the project's runtime Python pins (requirements.txt: no test tools).
#
# docker-compose.yaml passes the build args; tests/compose/test_compose.py checks that they, and
# the defaults below, equal the pins in requirements.txt.
ARG AIRFLOW_VERSION=3.3.2
ARG PYTHON_VERSION=3.11

# The Kafka connector jars, resolved by the same pom (profile spark-kafka) as the local stack.
FROM maven:3.9.11-eclipse-temurin-17 AS spark-kafka-jars
ARG SPARK_VERSION=4.2.0
WORKDIR /build
COPY jvm/pom.xml jvm/pom.xml
RUN mvn -B -q -f jvm/pom.xml -P spark-kafka dependency:copy-dependencies \
        -DoutputDirectory=/build/jars/spark-kafka -Dspark.version="${SPARK_VERSION}"

FROM apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION}
ARG AIRFLOW_VERSION
ARG JAVA_MAJOR=17

USER root
# build-essential and libkrb5-dev: the HDFS provider pulls hdfs[kerberos], whose gssapi and krb5
# packages are published as sources only. The symlink keeps JAVA_HOME independent of the arch.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        "openjdk-${JAVA_MAJOR}-jdk-headless" build-essential libkrb5-dev \
    && ln -s "/usr/lib/jvm/java-${JAVA_MAJOR}-openjdk-$(dpkg --print-architecture)" /usr/lib/jvm/streamlab-java \
    && mkdir -p /opt/airflow/.deps/jars/streamlab && chown -R airflow:0 /opt/airflow/.deps \
    && apt-get autoremove -yqq --purge \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/*
ENV JAVA_HOME=/usr/lib/jvm/streamlab-java

USER airflow
# requirements.txt holds the runtime pins only (pytest and ruff are in requirements-dev.txt).
# constraints.txt is optional (the brackets let COPY match nothing); when present it freezes
# the transitive versions exactly as in the local venv.
COPY requirements.txt constraints.tx[t] /tmp/pins/
# Naming apache-airflow again stops pip from moving the image's Airflow while resolving.
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r /tmp/pins/requirements.txt \
        $([ -f /tmp/pins/constraints.txt ] && echo "-c /tmp/pins/constraints.txt")

# Same place relative to the code as in the repository (.deps/jars/spark-kafka beside streamlab/).
COPY --chown=airflow:0 --from=spark-kafka-jars /build/jars/spark-kafka /opt/airflow/.deps/jars/spark-kafka

# The project's jar, compiled against the image's own pyspark jars as `make deps` does locally.
COPY --chown=airflow:0 jvm/src /tmp/jvm-src
RUN SPARK_JARS="$(python -c 'import os, pyspark; print(os.path.join(os.path.dirname(pyspark.__file__), "jars"))')" \
    && mkdir -p /tmp/jvm-classes \
    && javac --release 17 -nowarn -d /tmp/jvm-classes \
        -cp "${SPARK_JARS}/*:/opt/airflow/.deps/jars/spark-kafka/*" $(find /tmp/jvm-src -name '*.java') \
    && jar cf /opt/airflow/.deps/jars/streamlab/streamlab-jvm.jar -C /tmp/jvm-classes . \
    && rm -rf /tmp/jvm-src /tmp/jvm-classes

# The package archive for spark-submit --py-files, packed by the same code as `make deps`, at the
# place the DAGs look for it (.deps/python/ beside streamlab/). The code itself is mounted, not
# baked in: before each submit the DAGs repack the archive if the mounted sources differ (as the
# image's airflow user, the owner of the folder; `docker compose up -d --build` packs it afresh).
COPY --chown=airflow:0 streamlab /tmp/streamlab-src/streamlab
RUN cd /tmp/streamlab-src \
    && STREAMLAB_DEPS=/opt/airflow/.deps python -m streamlab.deps --python-archive \
    && rm -rf /tmp/streamlab-src
