#!/usr/bin/env bash
# Configures the venv's Spark. Puts Delta's jars and the s3a jars (hadoop-aws, AWS SDK bundle; from
# Maven Central, cached) into pyspark's jars/ and writes pyspark's
# conf/spark-defaults.conf with Delta's SQL extension and catalog, so that a plain
# `spark-submit` (whose JVM starts before any Python code) and every executor JVM know Delta,
# and Python workers run the venv's interpreter.
set -euo pipefail
VENV=${1:?usage: configure_spark.sh VENV}
SPARK_HOME=$("$VENV/bin/python" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')
DELTA=$("$VENV/bin/python" -c 'from importlib.metadata import version; print(version("delta-spark"))')
MAVEN=${MAVEN_REPO:-https://repo1.maven.org/maven2}
CACHE=${BIGEARTH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/bigearth_spark}/jars
mkdir -p "$CACHE"
HADOOP=$(ls "$SPARK_HOME/jars" | sed -n 's/^hadoop-client-api-\(.*\)\.jar$/\1/p')
# s3a: hadoop-aws of Spark's Hadoop, and the AWS SDK v2 bundle that this Hadoop release is built with
AWS_SDK=$(curl -fsSL --retry 3 "$MAVEN/org/apache/hadoop/hadoop-project/$HADOOP/hadoop-project-$HADOOP.pom" \
  | sed -n 's|.*<aws-java-sdk-v2.version>\(.*\)</aws-java-sdk-v2.version>.*|\1|p')
[[ -n $AWS_SDK ]] || { echo "no AWS SDK version in hadoop-project $HADOOP's POM" >&2; exit 1; }
# group/artifact/version of each jar (all cached: the SDK bundle is 560 MB)
for coord in "io/delta/delta-spark_2.13/$DELTA" "io/delta/delta-storage/$DELTA" \
  "org/apache/hadoop/hadoop-aws/$HADOOP" "software/amazon/awssdk/bundle/$AWS_SDK"; do
  art=$(basename "$(dirname "$coord")")
  jar=$art-$(basename "$coord").jar
  if [[ ! -s $CACHE/$jar ]]; then
    echo "downloading $jar"
    curl -fsSL --retry 3 -o "$CACHE/$jar.part" "$MAVEN/$coord/$jar"
    mv "$CACHE/$jar.part" "$CACHE/$jar"
  fi
  # a hard link where cache and venv share a file system (the SDK bundle is 560 MB)
  ln -f "$CACHE/$jar" "$SPARK_HOME/jars/$jar" 2>/dev/null || cp "$CACHE/$jar" "$SPARK_HOME/jars/$jar"
done
VENV_PY=$(cd "$VENV" && pwd)/bin/python
# spark-submit puts pyspark's and py4j's zips first on the PYTHONPATH of the driver and of every
# Python worker, and Python compiles each module it imports from a zip again in every process
# (~1 s of the driver's start, ~0.7 s of each worker's first task). Add each module's compiled
# code to the zips, as unchecked hash-based .pyc files, which zipimport loads first.
"$VENV_PY" - "$SPARK_HOME"/python/lib/*.zip <<'PY'
import importlib.util, os, sys, zipfile
from importlib._bootstrap_external import _code_to_hash_pyc

for path in sys.argv[1:]:
    with zipfile.ZipFile(path) as z:
        entries = [(info, z.read(info)) for info in z.infolist()]
    if any(info.filename.endswith(".pyc") for info, _ in entries):
        continue  # compiled by an earlier setup
    with zipfile.ZipFile(path + ".part", "w", zipfile.ZIP_DEFLATED) as out:
        for info, data in entries:
            out.writestr(info, data)
            if info.filename.endswith(".py"):
                code = compile(data, f"{path}/{info.filename}", "exec", dont_inherit=True)
                pyc = _code_to_hash_pyc(code, importlib.util.source_hash(data), checked=False)
                out.writestr(info.filename + "c", bytes(pyc))
    os.replace(path + ".part", path)
PY
mkdir -p "$SPARK_HOME/conf"
cat > "$SPARK_HOME/conf/spark-defaults.conf" <<CONF
# written by bigearth_spark scripts/configure_spark.sh
spark.sql.extensions                   io.delta.sql.DeltaSparkSessionExtension
spark.sql.catalog.spark_catalog        org.apache.spark.sql.delta.catalog.DeltaCatalog
spark.databricks.delta.schema.autoMerge.enabled false
spark.pyspark.python                   $VENV_PY
spark.pyspark.driver.python            $VENV_PY
# The driver JVM compiles with C1 only. A batch driver lives minutes, planning queries and
# committing; C2's compiler thread then costs more CPU than its code saves (a 20,000-pair ingest
# on 2 cores: ~30 s of C2 CPU, and runs of 84.5/87.4 s against 73.0/75.4 s with C1 only).
# Executors of a cluster keep the JVM's default. Users' --driver-java-options add to this.
spark.driver.defaultJavaOptions        -XX:TieredStopAtLevel=1
CONF
# The venv's find-spark-home falls back to `python3` on PATH (no pyspark there unless the venv
# is activated): point it at the venv's interpreter so .venv/bin/spark-submit works as is.
sed -i "s|PYSPARK_DRIVER_PYTHON=\"\${PYSPARK_PYTHON:-\"python3\"}\"|PYSPARK_DRIVER_PYTHON=\"\${PYSPARK_PYTHON:-\"$VENV_PY\"}\"|" \
  "$VENV/bin/find-spark-home"
# Logs: warnings to the console (the UI, progress bars and our own INFO logs stay visible);
# parquet's per-row-group memory notes are noise.
cat > "$SPARK_HOME/conf/log4j2.properties" <<CONF
rootLogger.level = warn
rootLogger.appenderRef.stdout.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n%ex
logger.parquet.name = org.apache.parquet
logger.parquet.level = error
logger.parquet2.name = parquet
logger.parquet2.level = error
logger.delta.name = org.apache.spark.sql.delta
logger.delta.level = warn
CONF
echo "Delta $DELTA jars in $SPARK_HOME/jars; defaults in $SPARK_HOME/conf/spark-defaults.conf"
