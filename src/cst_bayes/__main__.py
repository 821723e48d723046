import sys

from cst_bayes.cli import main

sys.exit(main())
