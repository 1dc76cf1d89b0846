"""horovodrun -np N .venv/bin/python jobs/train.py --lake DIR --model s-cnn --modality s1s2 ..."""

import sys

from bigearth_spark.train.launch import main

if __name__ == "__main__":
    sys.exit(main())
