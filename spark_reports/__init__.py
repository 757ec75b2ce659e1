"""The Spark batch job that turns stored orders into sales reports and insights.

Run it with ``python -m spark_reports`` (``--full`` rebuilds everything) or through spark-submit.
"""
