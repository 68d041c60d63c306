"""streamlab: shared code of the Kafka + Spark + HDFS platform orchestrated by Airflow."""
