"""bigearth_spark: BigEarthNet archives → Delta tables with Spark → Horovod training of
multi-label land-cover models from pinned table versions."""

__version__ = "0.1.0"
