"""jobs/evaluate.py --lake DIR --checkpoint PATH --split test [--report DIR]"""

import sys

from bigearth_spark.evaluate.classify import main

if __name__ == "__main__":
    sys.exit(main())
