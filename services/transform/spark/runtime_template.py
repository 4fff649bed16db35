"""PySpark transform for one Headwater table: raw JSON lines -> typed columns, bad rows, advertising view.

This file is the body of the script Headwater generates (``headwater spark-script``): the generator replaces SPEC
with the table's column specification. It implements the local engine's rules (services/transform/engine/values.py)
with Spark SQL expressions, so both engines give the same rows and the same bad rows.

Arguments: --input (comma-separated paths or globs) --staging (output prefix) --dt YYYY-MM-DD
[--format parquet|orc] [--compression zstd|snappy] [--master local[2]]; unknown arguments (Glue's) are ignored.
Writes <staging>data/ (curated rows), <staging>bad/ (gzip JSON lines), <staging>view/ and <staging>_stats.json.
Timestamps are instants (TimestampType, session zone UTC) written as Parquet INT64 TIMESTAMP_MICROS with
isAdjustedToUTC=true; the data and view files leave out the partition column, which their dt= path carries.
"""

import argparse
import json

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

SPEC: dict = {}  # HEADWATER_SPEC

FLOAT32_MAX = 3.4028234663852886e38
MAX_MICROS = 253402300799999999
INT_RANGES = {"smallint": (-(2**15), 2**15 - 1), "integer": (-(2**31), 2**31 - 1), "bigint": (-(2**63), 2**63 - 1)}


def _navigate(column: Column, steps: list) -> Column:
    for step in steps:
        column = column.getItem(step) if isinstance(step, int) else column.getField(step)
    return column


def _error(condition: Column, name: str, kind: str, reason: Column) -> Column:
    error = F.struct(F.lit(name).alias("column"), F.lit(kind).alias("kind"), reason.alias("reason"))
    return F.when(condition, error)


def _iso_micros(text: Column) -> Column:
    """Microseconds since the epoch (UTC) of an ISO-8601 string, null when it is not one (naive means UTC)."""
    iso = SPEC["iso_pattern"]
    part = [F.regexp_extract(text, iso, index) for index in range(9)]
    hour, minute, second = (F.coalesce(F.nullif(p, F.lit("")), F.lit("0")).cast("int") for p in part[4:7])
    fraction = F.rpad(F.substring(part[7], 1, 6), 6, "0")
    seconds = F.concat(second.cast("string"), F.lit("."), fraction).cast("decimal(8,6)")
    moment = F.make_timestamp(
        part[1].cast("int"), part[2].cast("int"), part[3].cast("int"), hour, minute, seconds, F.lit("UTC")
    )
    zone = part[8]
    digits = F.regexp_replace(F.substring(zone, 2, 10), ":", "")
    offset = (
        F.substring(digits, 1, 2).cast("int") * 3600
        + F.coalesce(F.nullif(F.substring(digits, 3, 2), F.lit("")), F.lit("0")).cast("int") * 60
    )
    offset = F.when((zone == "") | (zone == "Z"), F.lit(0)).otherwise(
        F.when(F.substring(zone, 1, 1) == "-", -offset).otherwise(offset)
    )
    valid = text.rlike(iso) & (hour <= 23) & (minute <= 59) & (second <= 59)
    return F.when(valid, F.unix_micros(moment) - offset.cast("long") * 1000000)


def _micros_to_instant(micros: Column) -> Column:
    return F.timestamp_micros(micros)


def _shaped(spec: dict) -> Column:
    """Whether a string column's value is a JSON object or array (those are type mismatches)."""
    if spec.get("detect") is None:
        return F.lit(False)
    return (
        _navigate(F.col("_objects"), spec["steps"]).isNotNull() | _navigate(F.col("_arrays"), spec["steps"]).isNotNull()
    )


def _column(spec: dict) -> tuple[Column, list[Column]]:
    """Return (output value, error expressions) of one column."""
    name, kind, sql = spec["name"], spec["kind"], spec["type"]
    raw = F.get_json_object(F.col("value"), spec["json_path"])
    present = raw.isNotNull()
    parsed = _navigate(F.col(f"_p{spec['parse']}"), spec["steps"])
    errors = []
    mismatch_reason = F.lit(f"type mismatch: {name} expects {sql}")
    if kind == "string":
        shaped = _shaped(spec)
        value = parsed
        if spec.get("transform") == "lower":
            value = F.lower(value)
        elif spec.get("transform") == "upper":
            value = F.upper(value)
        mismatch = present & (shaped | parsed.isNull())
        errors.append(_error(mismatch, name, "type_mismatch", mismatch_reason))
        if spec.get("limit") is not None:
            size = F.octet_length(value)
            errors.append(
                _error(
                    ~mismatch & (size > spec["limit"]),
                    name,
                    "overflow",
                    F.concat(
                        F.lit(f"overflow: {name} is "),
                        size.cast("string"),
                        F.lit(f" bytes, {sql} holds {spec['limit']}"),
                    ),
                )
            )
        value = F.when(~mismatch, value)
    elif kind == "int":
        low, high = INT_RANGES[sql]
        integral = raw.rlike(r"^-?[0-9]+$")
        too_big = present & parsed.isNull() & integral
        out_of_range = parsed.isNotNull() & ((parsed < F.lit(low)) | (parsed > F.lit(high)))
        errors.append(_error(present & parsed.isNull() & ~integral, name, "type_mismatch", mismatch_reason))
        errors.append(
            _error(
                too_big | out_of_range,
                name,
                "overflow",
                F.concat(F.lit(f"overflow: {name} value "), raw, F.lit(f" does not fit {sql}")),
            )
        )
        value = F.when(~out_of_range, parsed)
    elif kind == "float":
        errors.append(_error(present & parsed.isNull(), name, "type_mismatch", mismatch_reason))
        value = parsed
        if sql == "real":
            overflow = F.abs(parsed) > F.lit(FLOAT32_MAX)
            errors.append(_error(overflow, name, "overflow", F.lit(f"overflow: {name} value does not fit real")))
            value = F.when(~overflow, parsed)
    elif kind == "bool":
        errors.append(_error(present & parsed.isNull(), name, "type_mismatch", mismatch_reason))
        value = parsed
    elif kind == "decimal":
        value = parsed.cast(sql.replace(" ", ""))
        errors.append(_error(present & value.isNull(), name, "type_mismatch", mismatch_reason))
    else:  # timestamp or date
        transform = spec.get("transform")
        if transform in ("epoch_seconds_to_timestamp", "epoch_millis_to_timestamp"):
            scale = 1000000.0 if transform == "epoch_seconds_to_timestamp" else 1000.0
            scaled = F.bround(parsed * F.lit(scale), 0)
            overflow = F.abs(scaled) > F.lit(float(MAX_MICROS))
            errors.append(_error(present & parsed.isNull(), name, "type_mismatch", mismatch_reason))
            errors.append(_error(overflow, name, "overflow", F.lit(f"overflow: {name} epoch value is out of range")))
            micros = F.when(~overflow, scaled.cast("long"))
        else:
            micros = _iso_micros(parsed)
            errors.append(_error(present & micros.isNull(), name, "type_mismatch", mismatch_reason))
        value = _micros_to_instant(micros)
        if kind == "date":  # the UTC day: the session time zone is UTC
            value = value.cast("date")
    if spec.get("default") is not None:
        default = F.lit(spec["default"])
        if kind == "timestamp":  # an ISO instant ending in Z
            default = default.cast("timestamp")
        elif kind == "date":
            default = default.cast("date")
        value = F.when(~present, default).otherwise(value)
    elif not spec["nullable"]:
        errors.append(
            _error(~present, name, "missing", F.lit(f"missing required field: {spec['source']} (column {name})"))
        )
    return value.cast(spec["spark_type"]).alias(name), errors


def map_records(lines: DataFrame, dt: str | None) -> DataFrame:
    """Map a DataFrame of (value, source) lines to one with the output columns plus _errors (empty when good)."""
    df = lines.where(~F.col("value").rlike(r"^\s*$"))
    for index, ddl in enumerate(SPEC["parse"]):
        df = df.withColumn(f"_p{index}", F.from_json(F.col("value"), ddl))
    if SPEC.get("objects"):
        df = df.withColumn("_objects", F.from_json(F.col("value"), SPEC["objects"]))
        df = df.withColumn("_arrays", F.from_json(F.col("value"), SPEC["arrays"]))
    values, errors = [], []
    for spec in SPEC["columns"]:
        value, column_errors = _column(spec)
        values.append(value)
        errors.extend(column_errors)
    column_errors = F.filter(F.array(*errors), lambda e: e.isNotNull())
    # Jackson stops after the first document and ignores what follows; inside [ ] trailing content is an error
    # (and a second document a second element), so a line is one JSON document only when this holds.
    wrapped = F.concat(F.lit("["), F.col("value"), F.lit("]"))
    malformed = F.get_json_object(wrapped, "$").isNull() | F.get_json_object(wrapped, "$[1]").isNotNull()
    not_object = ~F.col("value").rlike(r"^\s*\{")
    record_error = F.when(
        malformed,
        F.array(
            F.struct(
                F.lit("").alias("column"),
                F.lit("malformed_json").alias("kind"),
                F.lit("malformed JSON").alias("reason"),
            )
        ),
    ).when(
        not_object,
        F.array(
            F.struct(
                F.lit("").alias("column"),
                F.lit("type_mismatch").alias("kind"),
                F.lit("type mismatch: a record must be a JSON object").alias("reason"),
            )
        ),
    )
    df = df.select("value", "source", *values, F.coalesce(record_error, column_errors).alias("_errors"))
    partition = SPEC.get("partition_column")
    if partition and dt:
        outside = F.col(partition) != F.lit(dt).cast("date")
        mismatch = (F.size("_errors") == 0) & F.col(partition).isNotNull() & outside
        error = F.struct(
            F.lit(partition).alias("column"),
            F.lit("partition_mismatch").alias("kind"),
            F.concat(
                F.lit(f"partition mismatch: {partition} "),
                F.col(partition).cast("string"),
                F.lit(f" is outside the partition {dt}"),
            ).alias("reason"),
        )
        df = df.withColumn("_errors", F.when(mismatch, F.array(error)).otherwise(F.col("_errors")))
    return df


def advertising_view(good: DataFrame) -> DataFrame:
    """Per ad impressions, clicks and CTR of the partition's day (the day is the view path's dt=)."""
    grouped = (
        good.where(F.col("ad_id").isNotNull())
        .groupBy(F.col("ad_id"))
        .agg(
            F.sum(F.when(F.col("event_type") == "impression", 1).otherwise(0)).cast("long").alias("impressions"),
            F.sum(F.when(F.col("event_type") == "click", 1).otherwise(0)).cast("long").alias("clicks"),
        )
    )
    ctr = F.when(F.col("impressions") > 0, F.col("clicks") / F.col("impressions")).otherwise(F.lit(0.0))
    return grouped.withColumn("ctr", ctr.cast("double")).orderBy("ad_id")


def _write_text(spark: SparkSession, path: str, text: str) -> None:
    jvm = spark.sparkContext._jvm
    target = jvm.org.apache.hadoop.fs.Path(path)
    stream = target.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()).create(target, True)
    stream.write(bytearray(text.encode()))
    stream.close()


def run(spark: SparkSession, inputs: list, staging: str, dt: str | None, output_format: str, compression: str) -> dict:
    """Transform the input files into <staging>data/, bad/, view/ and _stats.json; return the stats."""
    staging = staging if staging.endswith("/") else staging + "/"
    # Directories are read recursively; Hadoop skips files named _* and .* (markers such as _COMPLETE).
    lines = spark.read.option("recursiveFileLookup", "true").text(inputs).withColumn("source", F.input_file_name())
    mapped = map_records(lines, dt).persist()
    names = [c["name"] for c in SPEC["columns"]]
    good = mapped.where(F.size("_errors") == 0).select(*names)
    in_file = SPEC["file_columns"] if dt else names
    writer = good.select(*in_file).write.mode("overwrite").option("compression", compression)
    (writer.parquet if output_format == "parquet" else writer.orc)(staging + "data")
    bad = mapped.where(F.size("_errors") > 0).select(
        F.array_join(F.transform("_errors", lambda e: e["reason"]), "; ").alias("reason"),
        F.col("_errors").alias("errors"),
        F.col("source"),
        F.lit(None).cast("long").alias("line"),
        F.col("value").alias("record"),
    )
    bad.write.mode("overwrite").option("compression", "gzip").json(staging + "bad")
    if SPEC.get("advertising_view"):
        view = advertising_view(good)
        view.coalesce(1).write.mode("overwrite").option("compression", "snappy").parquet(staging + "view")
    totals = mapped.agg(
        F.count(F.lit(1)).alias("rows_in"), F.sum(F.when(F.size("_errors") > 0, 1).otherwise(0)).alias("rows_bad")
    ).first()
    stats = {"rows_in": int(totals["rows_in"]), "rows_bad": int(totals["rows_bad"] or 0)}
    stats["rows_out"] = stats["rows_in"] - stats["rows_bad"]
    _write_text(spark, staging + "_stats.json", json.dumps(stats))
    mapped.unpersist()
    return stats


def main(argv: list | None = None) -> None:
    parser = argparse.ArgumentParser(description="Headwater transform: " + SPEC.get("table", ""))
    parser.add_argument("--input", required=True)
    parser.add_argument("--staging", required=True)
    parser.add_argument("--dt")
    parser.add_argument("--format", default="parquet", choices=["parquet", "orc"])
    parser.add_argument("--compression", default="zstd")
    parser.add_argument("--master")
    args, _unknown = parser.parse_known_args(argv)
    builder = SparkSession.builder.appName(f"headwater-{SPEC.get('table')}-v{SPEC.get('version')}")
    if args.master:
        builder = builder.master(args.master).config("spark.ui.enabled", "false")
    spark = (
        builder.config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.ansi.enabled", "false")
        .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")  # not INT96: readers see the instant
        .getOrCreate()
    )
    stats = run(spark, args.input.split(","), args.staging, args.dt, args.format, args.compression)
    print(json.dumps(stats))
    spark.stop()


if __name__ == "__main__":
    main()
