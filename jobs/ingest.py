"""spark-submit jobs/ingest.py --input DIR [--input DIR ...] --lake DIR [--lists DIR]"""

import sys

from bigearth_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["ingest", *sys.argv[1:]]))
