#!/usr/bin/env bash
# Puts Delta's jars (from Maven Central) into pyspark's jars/ and writes pyspark's
# conf/spark-defaults.conf with Delta's SQL extension and catalog, so that a plain
# `spark-submit` (whose JVM starts before any Python code) and every executor JVM know Delta,
# and Python workers run the venv's interpreter.
set -euo pipefail
VENV=${1:?usage: install_delta_jars.sh VENV}
SPARK_HOME=$("$VENV/bin/python" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')
DELTA=$("$VENV/bin/python" -c 'from importlib.metadata import version; print(version("delta-spark"))')
MAVEN=${MAVEN_REPO:-https://repo1.maven.org/maven2}
CACHE=${BIGEARTH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/bigearth_spark}/jars
mkdir -p "$CACHE"
for art in "delta-spark_2.13" "delta-storage"; do
  jar=$art-$DELTA.jar
  if [[ ! -s $CACHE/$jar ]]; then
    curl -fsSL --retry 3 -o "$CACHE/$jar.part" "$MAVEN/io/delta/$art/$DELTA/$jar"
    mv "$CACHE/$jar.part" "$CACHE/$jar"
  fi
  cp "$CACHE/$jar" "$SPARK_HOME/jars/$jar"
done
VENV_PY=$(cd "$VENV" && pwd)/bin/python
mkdir -p "$SPARK_HOME/conf"
cat > "$SPARK_HOME/conf/spark-defaults.conf" <<CONF
# written by bigearth_spark scripts/install_delta_jars.sh
spark.sql.extensions                   io.delta.sql.DeltaSparkSessionExtension
spark.sql.catalog.spark_catalog        org.apache.spark.sql.delta.catalog.DeltaCatalog
spark.databricks.delta.schema.autoMerge.enabled false
spark.pyspark.python                   $VENV_PY
spark.pyspark.driver.python            $VENV_PY
CONF
echo "Delta $DELTA jars in $SPARK_HOME/jars; defaults in $SPARK_HOME/conf/spark-defaults.conf"
