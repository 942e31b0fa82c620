#!/usr/bin/env bash
# The Spark Cassandra connector for the project's PySpark jobs (spark_jobs/), fetched from Maven Central once.
#
#   scripts/spark.sh fetch    download the connector and its runtime jars into .spark/jars (once)
#   scripts/spark.sh jars     print the jar paths, comma-separated (for spark-submit --jars)
#
# Everything lives under SPARK_JARS_DIR (default: <repo>/.spark/jars, git-ignored); afterwards the jobs run
# offline. pyspark itself comes from requirements/spark.txt. See scripts/spark/pom.xml for what is fetched and why.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
jars=${SPARK_JARS_DIR:-$root/.spark/jars}

say() { printf '[spark] %s\n' "$*" >&2; }

fetched() { [[ -f $jars/.complete ]] && compgen -G "$jars/spark-cassandra-connector_*.jar" >/dev/null; }

fetch() {
  if fetched; then
    return 0
  fi
  say "downloading the Spark Cassandra connector from Maven Central into $jars (once)…"
  rm -rf "$jars.partial"
  mkdir -p "$jars.partial"
  mvn -B -f "$here/spark/pom.xml" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$jars.partial" \
      -Dorg.slf4j.simpleLogger.log.org.apache.maven.cli.transfer.Slf4jMavenTransferListener=warn \
    | grep -E 'Copying|BUILD|ERROR' | sed -u 's/^/[maven] /' >&2 || true
  if ! compgen -G "$jars.partial/spark-cassandra-connector_*.jar" >/dev/null; then
    say "download failed (see the Maven output above)"
    exit 1
  fi
  touch "$jars.partial/.complete"
  rm -rf "$jars" && mv "$jars.partial" "$jars"
  say "downloaded $(ls "$jars" | wc -l) jars ($(du -sh "$jars" | cut -f1))"
}

case "${1:-}" in
  fetch) fetch ;;
  jars) fetch; ls "$jars"/*.jar | paste -sd, ;;
  *) echo "usage: $0 fetch|jars" >&2; exit 2 ;;
esac
