"""bigearth_spark: BigEarthNet archives → Delta tables with Spark; Petastorm + Horovod training."""

__version__ = "0.1.0"
