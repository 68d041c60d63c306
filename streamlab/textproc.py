"""Tokenization shared by the streaming word count and the batch reprocessing.

A word is a maximal run of Unicode letters and digits, after lower-casing:
"Hello kafka and zookeeper!" -> hello, kafka, and, zookeeper; "Données d'été" -> données, d, été.
Pure DataFrame functions (no Python UDF), so they run unchanged in streaming and batch,
locally or on a cluster. Spark jobs get it, like all of `streamlab`, from the package archive
passed with `--py-files` (`streamlab.deps.python_archive()`).
"""

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

# Anything that is not a letter or a digit separates words (underscore included).
WORD_SEPARATOR = r"[^\p{L}\p{N}]+"


def tokens(text: Column) -> Column:
    """Array of the words of `text` (a string column); null text gives an empty array."""
    parts = F.split(F.lower(F.coalesce(text, F.lit(""))), WORD_SEPARATOR)
    return F.filter(parts, lambda w: w != "")


def words(lines: DataFrame, text_col: str = "value") -> DataFrame:
    """One row per word occurrence, in a column `word`."""
    return lines.select(F.explode(tokens(F.col(text_col))).alias("word"))


def word_counts(lines: DataFrame, text_col: str = "value") -> DataFrame:
    """`word`, `count` (long) over all the lines."""
    return words(lines, text_col).groupBy("word").count()
