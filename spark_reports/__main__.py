"""``python -m spark_reports [--full | --from DAY --to DAY]``: one run of the report job."""

import sys

from spark_reports.job import main

if __name__ == "__main__":
    sys.exit(main())
